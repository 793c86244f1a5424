"""The dashboard's web server in process (no Kafka): access rules, security headers, the event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dashboard.__main__ import AccessError, access_token, is_loopback, main
from dashboard.server import CHART_JS, COOKIE, HUB, Hub, create_app, session_value
from dashboard.state import Dashboard

TOKEN = "s3cret-token-for-tests-only"


async def client_for(token: str | None) -> TestClient:
    hub = Hub(Dashboard(), prefix="t-")
    client = TestClient(TestServer(create_app(hub, token=token)))
    await client.start_server()
    return client


@pytest.fixture
async def open_client() -> AsyncIterator[TestClient]:
    client = await client_for(None)
    yield client
    await client.close()


@pytest.fixture
async def token_client() -> AsyncIterator[TestClient]:
    client = await client_for(TOKEN)
    yield client
    await client.close()


async def test_loopback_without_a_token_serves_the_page_and_its_chart_library(
    open_client: TestClient,
) -> None:
    page = await open_client.get("/")
    assert page.status == 200
    assert "Brand sentiment" in await page.text()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    chart = await open_client.get("/static/chart.umd.min.js")
    assert chart.status == 200 and (await chart.read()) == CHART_JS.read_bytes()


async def test_loopback_refuses_other_host_names(open_client: TestClient) -> None:
    """A page elsewhere that rebinds its own name to 127.0.0.1 still sends its own Host."""
    response = await open_client.get("/snapshot", headers={"Host": "attacker.example:8765"})
    assert response.status == 403
    assert (await open_client.get("/snapshot", headers={"Host": "localhost:8765"})).status == 200


async def test_a_token_is_required_by_header_query_or_session_cookie(token_client: TestClient) -> None:
    assert (await token_client.get("/snapshot")).status == 401
    wrong = await token_client.get("/snapshot", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "WWW-Authenticate" in wrong.headers
    bearer = await token_client.get("/snapshot", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status == 200 and "health" in orjson.loads(await bearer.read())

    assert (await token_client.get("/?token=wrong", allow_redirects=False)).status == 401
    opened = await token_client.get(f"/?token={TOKEN}", allow_redirects=False)
    assert opened.status == 303 and opened.headers["Location"] == "/"  # the token leaves the address bar
    cookie = opened.cookies[COOKIE]
    assert cookie.value == session_value(TOKEN) and TOKEN not in cookie.value
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    page = await token_client.get("/")  # the client kept the cookie
    assert page.status == 200


async def test_events_push_a_snapshot_and_the_next_one_after_a_change(open_client: TestClient) -> None:
    assert open_client.app is not None
    hub = open_client.app[HUB]
    response = await open_client.get("/events")
    assert response.headers["Content-Type"].startswith("text/event-stream")

    async def next_event() -> dict[str, object]:
        while True:
            line = await asyncio.wait_for(response.content.readline(), 5)
            if line.startswith(b"data: "):
                return orjson.loads(line[6:])

    first = await next_event()
    assert first["cs"] == {"replies": 0, "handoffs": 0, "intents": [], "queues": [], "sentiment": []}
    with hub.lock:
        hub.state.dead_letter("t-chat.dlq", "not_json", ("t-chat", 0, 0))
    second = await next_event()
    assert second["health"]["dead_letters"]["total"] == 1  # type: ignore[index]
    response.close()


def test_the_page_needs_the_chart_library(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make node-deps"):
        create_app(Hub(Dashboard()), token=None, chart_js=tmp_path / "chart.umd.min.js")


def test_refresh_builds_a_snapshot_only_when_the_state_changed() -> None:
    hub = Hub(Dashboard())
    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert hub.refresh(now) and not hub.refresh(now)
    with hub.lock:
        hub.state.input_record("chat", 0, 0, 1_000)
    assert hub.refresh(now) and hub.seq == 2


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("dash.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_beyond_loopback_a_long_token_is_required() -> None:
    assert access_token("127.0.0.1", None) is None
    assert access_token("127.0.0.1", "") is None
    assert access_token("0.0.0.0", TOKEN) == TOKEN
    with pytest.raises(AccessError, match="needs a token"):
        access_token("0.0.0.0", None)
    with pytest.raises(AccessError, match="needs a token"):
        access_token("0.0.0.0", "")  # compose passes an empty MS_DASHBOARD_TOKEN when it is unset
    with pytest.raises(AccessError, match="at least 16"):
        access_token("0.0.0.0", "short")


def test_the_cli_refuses_to_listen_everywhere_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MS_DASHBOARD_TOKEN", raising=False)
    assert main(["--host", "0.0.0.0"]) == 2
    assert "needs a token" in capsys.readouterr().err
