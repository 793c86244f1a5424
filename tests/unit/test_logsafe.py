"""aiokafka logs every request at DEBUG; the SASL PLAIN one must not show the password."""

from __future__ import annotations

import logging

import pytest
from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

from streams.logsafe import AIOKAFKA_CONN_LOGGER, REDACTED, HideSaslAuthBytes, hide_sasl_secrets


def test_the_sasl_authenticate_request_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    hide_sasl_secrets()
    hide_sasl_secrets()  # idempotent: one filter
    logger = logging.getLogger(AIOKAFKA_CONN_LOGGER)
    assert sum(isinstance(f, HideSaslAuthBytes) for f in logger.filters) == 1
    request = SaslAuthenticateRequest_v1(b"\x00scorer\x00hunter2-secret")
    with caplog.at_level(logging.DEBUG, logger=AIOKAFKA_CONN_LOGGER):
        # the exact call aiokafka 0.14 makes in AIOKafkaConnection.send
        logger.debug("Request to %s:%d %d: %s", "127.0.0.1", 9092, 3, request)
        logger.debug("Request to %s:%d %d: %s", "127.0.0.1", 9092, 4, "MetadataRequest_v1(topics=[])")
    assert "hunter2-secret" not in caplog.text
    assert f"Request to 127.0.0.1:9092 3: {REDACTED}" in caplog.text
    assert "MetadataRequest_v1(topics=[])" in caplog.text  # other requests are left alone
