"""Keeping Kafka credentials out of the worker's log.

`Settings` keeps the SASL password a `SecretStr`, but aiokafka logs every request it sends at
DEBUG (`aiokafka.conn`: "Request to host:port n: <struct>"), and the SaslAuthenticate request of
the PLAIN mechanism carries `authzid NUL username NUL password` in the clear (seen with
aiokafka 0.14 against Kafka 4.1 when the worker ran with `MS_LOG_LEVEL=debug`). The filter below
replaces that one argument before any handler formats the record; every other line is kept.
"""

from __future__ import annotations

import logging

AIOKAFKA_CONN_LOGGER = "aiokafka.conn"
REDACTED = "<SASL authentication bytes redacted>"


def _carries_sasl_bytes(arg: object) -> bool:
    return type(arg).__name__.startswith("SaslAuthenticate") or hasattr(arg, "sasl_auth_bytes")


class HideSaslAuthBytes(logging.Filter):
    """Redacts SaslAuthenticate request/response structs among a record's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_carries_sasl_bytes(a) for a in args):
            record.args = tuple(REDACTED if _carries_sasl_bytes(a) else a for a in args)
        return True


def hide_sasl_secrets() -> None:
    """Attach the filter to aiokafka's connection logger (once; a logger filter applies whatever
    handlers Faust or a test configure later)."""
    logger = logging.getLogger(AIOKAFKA_CONN_LOGGER)
    if not any(isinstance(f, HideSaslAuthBytes) for f in logger.filters):
        logger.addFilter(HideSaslAuthBytes())
