"""`python -m dashboard`: the live dashboard for marketers, a downstream subscriber of the results.

Kafka and topic settings come from the MS_* variables (`streams.settings.Settings`), like the
worker's. It listens on 127.0.0.1 by default. Bound to any other address it refuses to start
without a token (`--token`, or MS_DASHBOARD_TOKEN, which keeps it out of the process list).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys

from aiohttp import web

from dashboard.kafka import Feed, dashboard_group
from dashboard.server import Hub, create_app
from dashboard.state import Dashboard
from streams.campaigns import load_campaigns
from streams.settings import Settings

log = logging.getLogger("dashboard")

DEFAULT_PORT = 8765
MIN_TOKEN_CHARS = 16


class AccessError(ValueError):
    """The address and token do not make a safe dashboard."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def access_token(host: str, token: str | None) -> str | None:
    """The token to require, or None for an open loopback dashboard; raises when it is unsafe."""
    token = token or None  # an empty MS_DASHBOARD_TOKEN (compose without it) is no token
    if token is None:
        if not is_loopback(host):
            raise AccessError(
                f"listening on {host} needs a token: pass --token or set MS_DASHBOARD_TOKEN "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise AccessError(f"the token must be at least {MIN_TOKEN_CHARS} characters long")
    return token


async def serve(settings: Settings, host: str, port: int, token: str | None) -> None:
    hub = Hub(Dashboard(campaigns=load_campaigns().campaigns), prefix=settings.topic_prefix)
    app = create_app(hub, token=token)
    feed = Feed(settings, hub.state, hub.lock)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        feed.start()
        shown = f"[{host}]" if ":" in host else host
        log.info(
            "serving http://%s:%d/ (%s); reading topics%s as group %s from %s",
            shown,
            port,
            "token required" if token else "loopback only, no token",
            f" with prefix {settings.topic_prefix!r}" if settings.topic_prefix else "",
            dashboard_group(settings),
            settings.kafka_bootstrap,
        )
        await stop.wait()
    finally:
        await runner.cleanup()
        feed.stop()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--token", help="required beyond loopback; default MS_DASHBOARD_TOKEN")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    configured = settings.dashboard_token.get_secret_value() if settings.dashboard_token else None
    try:
        token = access_token(args.host, args.token or configured)
    except AccessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, args.host, args.port, token))
    except (OSError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
