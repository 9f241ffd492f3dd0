"""Start-up as an editor sees it: initialize is answered at once, and the
model load that follows `initialized` is reported with $/progress from its
start to its end (success or failure)."""
from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import SERVER_CMD

WAIT = 600      # seconds: a bound for a shared, loaded machine, not a speed claim


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD))
async def client(lsp_client: LanguageClient, request):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"), initialization_options=request.param))
    yield
    await lsp_client.shutdown_session()


async def load_progress(client: LanguageClient) -> list:
    """The $/progress values of the model load, once it has ended."""
    async def ended() -> list:
        while True:
            for reports in client.progress_reports.values():
                if reports and isinstance(reports[0], types.WorkDoneProgressBegin) \
                        and reports[0].title.startswith("ditto: loading") \
                        and isinstance(reports[-1], types.WorkDoneProgressEnd):
                    return reports
            await client.wait_for_notification(types.PROGRESS)
    return await asyncio.wait_for(ended(), WAIT)


@pytest.mark.parametrize("client", [{}], indirect=True)
async def test_model_load_is_reported_with_progress(client: LanguageClient):
    reports = await load_progress(client)
    assert reports[0].cancellable is False
    assert reports[-1].message == "loaded"


@pytest.mark.parametrize("client", [{"model": "/nonexistent/model.gguf"}], indirect=True)
async def test_a_failed_load_ends_its_progress(client: LanguageClient):
    reports = await load_progress(client)
    assert reports[-1].message == "the model could not be loaded"
