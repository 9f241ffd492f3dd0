"""workspace/executeCommand ditto.status: model, memory, sessions, drafter stats."""
from __future__ import annotations

import resource
import time

from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams

from .scheduler import URGENT, Cancelled
from .server import VERSION, DittoServer

COMMAND = "ditto.status"


def register(server: DittoServer) -> None:
    @server.command(COMMAND)
    async def status(ls: DittoServer, *args):
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            raise JsonRpcInvalidParams(f"{COMMAND} takes no arguments or one options object")
        try:
            engine = await ls.run_job(lambda engine, job: engine.describe(), priority=URGENT, name="status")
        except Cancelled as e:
            raise JsonRpcInternalError(str(e)) from None
        engine["next_edit"] = ls.next_edit.describe()
        engine["server"] = {
            "version": VERSION,
            "uptime_seconds": round(time.monotonic() - ls.started, 1),
            "open_documents": len(ls.workspace.text_documents),
            "jobs_run": ls.scheduler.jobs_run,
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "settings": ls.settings.__dict__ if hasattr(ls.settings, "__dict__") else {},
        }
        return engine
