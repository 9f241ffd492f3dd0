"""Start-up as an editor sees it: initialize is answered at once, and the
model load that follows `initialized` is reported with $/progress from its
start to its end (success or failure). And the rule a cold first completion
follows: the prefill speed measured at run time, the short window that fits
a budget of tokens."""
from __future__ import annotations

import asyncio
import os

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


def test_prefill_meter_weighs_recent_prefills_by_their_tokens():
    from ditto.lsp.prefill_budget import MIN_MEASURED_TOKENS, PrefillMeter

    meter = PrefillMeter()
    assert meter.rate is None and meter.tokens_within(10.0, 128) == 128     # nothing measured: the floor
    meter.add(MIN_MEASURED_TOKENS - 1, 1.0)          # too small to time throughput
    assert meter.rate is None
    meter.add(400, 1.0)
    assert meter.rate == 400
    assert meter.tokens_within(0.5, 128) == 200 and meter.tokens_within(0.1, 128) == 128
    meter.add(100, 1.0)                              # a slower one counts more than the older one
    assert meter.rate == pytest.approx((400 * 0.5 + 100) / (1.0 * 0.5 + 1.0))


def test_prefill_budget_defaults_to_a_quarter_of_the_time_budget():
    from ditto.lsp.prefill_budget import prefill_budget_seconds
    from ditto.lsp.settings import Settings

    assert prefill_budget_seconds(Settings(time_budget_ms=2000)) == 0.5
    assert prefill_budget_seconds(Settings(time_budget_ms=2000, prefill_budget_ms=300)) == 0.3


@pytest.mark.slow
@pytest.mark.parametrize("budget", [0, 20, 128, 400])
def test_short_window_is_the_nearest_lines_within_the_budget(default_model_path, budget):
    from ditto.engine.tokenizer import Tokenizer
    from ditto.lsp.prompt import line_starts, nearest_lines_start

    tokenizer = Tokenizer.from_gguf(default_model_path)
    text = open(os.path.join(os.path.dirname(os.__file__), "sched.py"), encoding="utf-8").read()
    starts = line_starts(text)
    for cursor in (text.index("def enterabs(") + len("def enterabs("), starts[120], len(text)):
        start = nearest_lines_start(tokenizer, text, cursor, budget)
        assert start in starts and start <= cursor
        line = starts.index(start)
        own = text.rfind("\n", 0, cursor) + 1
        floor = own if text[own:cursor].strip() else text.rfind("\n", 0, own - 1) + 1
        if start == floor:          # the cursor's line (or the one above a blank) whatever it costs
            continue
        assert len(tokenizer.encode(text[start:cursor])) <= budget
        if line > 0:    # one more line would not fit
            assert len(tokenizer.encode(text[starts[line - 1]:cursor])) > budget
