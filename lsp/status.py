"""workspace/executeCommand ditto.status: model, memory, sessions, drafter stats."""
from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING

from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams

from .feature import LanguageFeature
from .scheduler import URGENT, Cancelled

if TYPE_CHECKING:
    from .server import DittoServer

COMMAND = "ditto.status"


class StatusCommand(LanguageFeature):
    def __init__(self, server: DittoServer) -> None:
        super().__init__(server)
        self.started = time.monotonic()

    def register(self) -> None:
        @self.server.command(COMMAND)
        async def status(*args):   # pygls passes a command's arguments positionally
            if len(args) > 1 or (args and not isinstance(args[0], dict)):
                raise JsonRpcInvalidParams(f"{COMMAND} takes no arguments or one options object")
            ls = self.server
            try:
                engine = await ls.run_job(lambda engine, job: engine.describe(), priority=URGENT, name="status")
            except Cancelled as e:
                raise JsonRpcInternalError(str(e)) from None
            for feature in ls.language_features:
                if feature.status_key is not None:
                    engine[feature.status_key] = feature.describe()
            engine["server"] = {
                "version": ls.version,
                "uptime_seconds": round(time.monotonic() - self.started, 1),
                "open_documents": len(ls.workspace.text_documents),
                "jobs_run": ls.scheduler.jobs_run,
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "settings": ls.settings.__dict__ if hasattr(ls.settings, "__dict__") else {},
            }
            return engine
