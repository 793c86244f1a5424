"""The dashboard's web server (aiohttp): the page, its assets, and a server-sent event stream of
aggregated snapshots.

The page never gets records, only `Dashboard.snapshot()`: counts, rates and percentiles, built
at most `PUSH_INTERVAL_S` apart and only when something changed, then sent to every open page.

Access:
- Bound to loopback without a token, it answers requests whose `Host` is a loopback name only,
  so a web page elsewhere cannot read it through DNS rebinding.
- With a token (required when bound to any other address, see `dashboard.__main__`), every
  request needs it: `Authorization: Bearer <token>`, `?token=<token>`, or the session cookie that
  a page opened with `?token=` receives. That request is redirected to the same path without the
  token, so it stays out of the address bar and the history. The cookie holds an HMAC of the
  token, not the token. There is no access log: its lines would carry query strings.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from dashboard.state import Dashboard

PACKAGE = Path(__file__).resolve().parent
STATIC = PACKAGE / "static"
CHART_JS = PACKAGE / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
PUSH_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0
COOKIE = "ms_dashboard"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hub:
    """The state, its lock, and the latest snapshot, shared by the reader threads and the pages."""

    def __init__(self, state: Dashboard, *, prefix: str = "") -> None:
        self.state = state
        self.lock = threading.Lock()
        self.prefix = prefix
        self.seq = 0
        self.latest = b"{}"
        self.closing = False
        self._version = -1
        self._changed = asyncio.Condition()

    def refresh(self, now: datetime) -> bool:
        """Rebuild the snapshot if the state changed since the last one; True if it did."""
        with self.lock:
            if self.state.version == self._version:
                return False
            self._version = self.state.version
            snapshot = self.state.snapshot(now, prefix=self.prefix)
        self.latest = orjson.dumps(snapshot)
        self.seq += 1
        return True

    async def publish(self) -> None:
        """Every PUSH_INTERVAL_S: a new snapshot for the waiting pages, if anything changed."""
        while True:
            if self.refresh(datetime.now(UTC)):
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(PUSH_INTERVAL_S)

    async def next_after(self, seq: int, within_s: float) -> bool:
        """Wait until a snapshot newer than `seq` exists (True) or `within_s` passes (False)."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.seq != seq or self.closing), within_s
                )
            except TimeoutError:
                return False
        return not self.closing

    async def close(self) -> None:
        self.closing = True
        async with self._changed:
            self._changed.notify_all()


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"marketing-scorer-dashboard-session", hashlib.sha256).hexdigest()


def _host_name(request: web.Request) -> str:
    host = request.host
    if host.startswith("["):  # [::1]:8765
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def access_middleware(token: str | None) -> Middleware:
    session = session_value(token) if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or session is None:
            if _host_name(request) not in LOOPBACK_NAMES:
                raise web.HTTPForbidden(text="this dashboard answers loopback host names only\n")
            return await handler(request)
        supplied = request.query.get("token")
        bearer = request.headers.get("Authorization", "")
        if supplied is not None and hmac.compare_digest(supplied.encode(), token.encode()):
            rest = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
            response = web.HTTPSeeOther(location=str(rest))
            response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", path="/")
            raise response
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), token.encode()):
            return await handler(request)
        cookie = request.cookies.get(COOKIE, "")
        if hmac.compare_digest(cookie.encode(), session.encode()):
            return await handler(request)
        raise web.HTTPUnauthorized(
            text="a token is required: open the URL with ?token=... or send Authorization: Bearer ...\n",
            headers={"WWW-Authenticate": 'Bearer realm="dashboard"'},
        )

    return check


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


HUB = web.AppKey("hub", Hub)
PUBLISHER = web.AppKey("publisher", asyncio.Task[None])


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one `data:` line per snapshot, a comment line as a keep-alive."""
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    seq = -1
    try:
        while True:
            if hub.seq == seq and not await hub.next_after(seq, KEEPALIVE_S):
                if hub.closing:
                    break
                await response.write(b": keep-alive\n\n")
                continue
            if hub.closing:
                break
            seq = hub.seq
            await response.write(b"data: " + hub.latest + b"\n\n")
    except ConnectionResetError:  # the page went away
        pass
    return response


async def snapshot(request: web.Request) -> web.Response:
    return web.Response(body=request.app[HUB].latest, content_type="application/json")


def _file(path: Path) -> Handler:
    async def serve(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve


def create_app(hub: Hub, *, token: str | None, chart_js: Path = CHART_JS) -> web.Application:
    if not chart_js.is_file():
        raise FileNotFoundError(
            f"{chart_js} is missing: install the chart library with `make node-deps` (npm ci in dashboard/)"
        )
    app = web.Application(middlewares=[security_headers, access_middleware(token)])
    app[HUB] = hub
    app.router.add_get("/", _file(STATIC / "index.html"))
    app.router.add_get("/static/app.js", _file(STATIC / "app.js"))
    app.router.add_get("/static/app.css", _file(STATIC / "app.css"))
    app.router.add_get("/static/chart.umd.min.js", _file(chart_js))
    app.router.add_get("/events", events)
    app.router.add_get("/snapshot", snapshot)

    async def start_publishing(app: web.Application) -> None:
        hub.refresh(datetime.now(UTC))
        app[PUBLISHER] = asyncio.create_task(hub.publish())

    async def stop_publishing(app: web.Application) -> None:
        await hub.close()
        app[PUBLISHER].cancel()

    app.on_startup.append(start_publishing)
    app.on_shutdown.append(stop_publishing)
    return app
