"""The aiohttp server of the gateway (`python -m streams gateway`): the bid endpoint, the notice
endpoints, `/health`, `/ready` and `/metrics`, with the bounds that keep a slow or huge request
from tying it up:

- the request line and each header line at most `gateway_max_header_bytes` (aiohttp's parser,
  `max_line_size` / `max_field_size`: it answers 400 past them);
- the body at most `gateway_max_body_bytes` after gzip decompression (413; aiohttp counts the
  decompressed bytes against `client_max_size` as it inflates, so a gzip bomb stops there);
- the body read within `gateway_read_timeout_s` (408, and the connection is closed);
- idle keep-alive connections closed after KEEPALIVE_S;
- at most MAX_IN_FLIGHT bid requests at once: beyond that 503 before the body is read (an
  exchange does not retry a bid; the 503 tells its operator we are saturated).
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import logging
import secrets
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.errors import ConfigError
from streams.gateway.bids import Answer, BidGateway
from streams.gateway.bus import KafkaBus
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.notices import NoticeDesk
from streams.schemas.adevents import NoticeKind
from streams.settings import Settings

log = logging.getLogger("streams.gateway.server")

OPENRTB_VERSION = "2.6"
KEEPALIVE_S = 30.0  # exchanges keep their connections busy; an idle one is closed after this
MAX_IN_FLIGHT = 2_000  # ~20x what one worker answers within a 100 ms tmax on this machine
DEFAULT_NOTICE_KEY = "insecure-development-notice-key"  # streams.settings' default, loopback only
GZIP_LEVEL = 5
_ARRIVED = web.AppKey("arrived", tuple)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_safe(settings: Settings) -> None:
    """Refuse a non-loopback address while a notice key is the development default: anyone who
    read the source could sign notices that move money."""
    if is_loopback(settings.gateway_host):
        return
    weak = [kid for kid, key in settings.notice_keys.items() if key.get_secret_value() == DEFAULT_NOTICE_KEY]
    if weak:
        raise ConfigError(
            f"the gateway would listen on {settings.gateway_host} with the development notice key "
            f"({', '.join(weak)}): set MS_NOTICE_KEYS (JSON: key id -> secret of 16+ bytes) and MS_NOTICE_KEY_ID"
        )


def accepts_gzip(header: str) -> bool:
    """Accept-Encoding lists gzip (or *) without q=0."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and float(q[2:] or 0) == 0)
    return False


def respond(answer: Answer, accept_encoding: str) -> web.Response:
    headers = {"x-openrtb-version": OPENRTB_VERSION}
    body = answer.body
    if body:
        headers["Content-Type"] = "application/json"
        headers["Vary"] = "Accept-Encoding"
        if accepts_gzip(accept_encoding):
            body = gzip.compress(body, GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
    return web.Response(status=answer.status, body=body or None, headers=headers)


def make_app(
    settings: Settings,
    bids: BidGateway,
    notices: NoticeDesk,
    metrics: GatewayMetrics,
    ready: Callable[[web.Request], Awaitable[web.Response]],
) -> web.Application:
    in_flight = 0

    async def bid(request: web.Request) -> web.StreamResponse:
        arrived, arrived_wall = time.monotonic(), time.time()  # first thing: the deadline counts from here
        nonlocal in_flight
        if in_flight >= MAX_IN_FLIGHT:
            return finish(Answer(503, b"", "overloaded"), request, arrived, close=True)
        in_flight += 1
        metrics.in_flight.set(in_flight)
        try:
            try:
                raw = await asyncio.wait_for(request.read(), settings.gateway_read_timeout_s)
            except TimeoutError:
                return finish(Answer(408, b"", "read_timeout"), request, arrived, close=True)
            except web.HTTPRequestEntityTooLarge:
                return finish(Answer(413, b"", "too_large"), request, arrived, close=True)
            answer = await bids.answer(raw, arrived, arrived_wall)
            return finish(answer, request, arrived)
        finally:
            in_flight -= 1
            metrics.in_flight.set(in_flight)

    def finish(answer: Answer, request: web.Request, arrived: float, *, close: bool = False) -> web.Response:
        response = respond(answer, request.headers.get("Accept-Encoding", ""))
        if close:
            response.force_close()  # the rest of the body is not read: the connection cannot be reused
        metrics.answered(answer.status, answer.outcome, time.monotonic() - arrived)
        return response

    async def notice(request: web.Request) -> web.Response:
        try:
            kind = NoticeKind(request.match_info["kind"])
        except ValueError:
            raise web.HTTPNotFound() from None
        query: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            query.update(await request.post())  # type: ignore[arg-type]  # form fields are str
        answer = await notices.take(kind, query)
        return web.Response(status=answer.status, text=answer.outcome)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(client_max_size=settings.gateway_max_body_bytes)
    app.router.add_post(settings.gateway_bid_path, bid)
    notice_path = settings.gateway_notice_path.rstrip("/") + "/{kind}"
    app.router.add_get(notice_path, notice)
    app.router.add_post(notice_path, notice)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_page)
    return app


def runner_for(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner with the header and keep-alive bounds (handler args of aiohttp's RequestHandler)."""
    return web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=KEEPALIVE_S,
        max_line_size=settings.gateway_max_header_bytes,
        max_field_size=settings.gateway_max_header_bytes,
        shutdown_timeout=5.0,
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set: answer what is in flight, write what is owed to Kafka, then close."""
    check_safe(settings)
    metrics = GatewayMetrics()
    signer = settings.notice_signer()
    instance = secrets.token_hex(8)
    gateway: BidGateway | None = None

    def on_replies(replies: list[tuple[str, bytes]]) -> None:
        assert gateway is not None
        gateway.on_replies(replies)

    bus = KafkaBus(settings, instance, on_replies)
    gateway = BidGateway(settings, bus, metrics, signer)
    notices = NoticeDesk(settings, bus, signer, metrics)
    stopping = False

    async def ready(_: web.Request) -> web.Response:
        missing = []
        if not bus.ready():
            missing.append("kafka: the bid-replies partitions are not assigned")
        if stopping:
            missing.append("stopping")
        return web.json_response({"ready": not missing, "missing": missing}, status=503 if missing else 200)

    await bus.start()
    runner = runner_for(make_app(settings, gateway, notices, metrics, ready), settings)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    host, port = runner.addresses[0][:2]
    log.info(
        "OpenRTB gateway %s on http://%s:%d%s (notices under %s)",
        instance,
        host,
        port,
        settings.gateway_bid_path,
        settings.gateway_notice_path,
    )
    try:
        await stop.wait()
    finally:
        stopping = True
        await runner.cleanup()  # stops accepting, lets the requests in flight finish
        await gateway.drain()
        await bus.close()
        log.info("gateway %s stopped", instance)


def main(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT (the entry point configures logging)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(run())
    return 0
