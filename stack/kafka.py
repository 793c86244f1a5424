"""A real Apache Kafka broker (KRaft, one node, loopback only) for the local stack and the tests.

There is no Kafka package on PyPI or Debian and its download site is not reachable, but its jars
are on Maven Central. `resolve_jars` copies them, as pinned by `stack/kafka/pom.xml`, into a
git-ignored folder named after the POM's hash, so editing the POM gives a fresh folder and an
unchanged POM reuses the last one without running Maven. `KafkaServer` writes a
`server.properties`, formats the KRaft storage once and runs `kafka.Kafka` on Java 17 as a
`ManagedProcess`; readiness is a successful metadata request from an AdminClient, not an open port,
because the broker opens its socket before it can answer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stack.errors import StackError
from stack.process import ManagedProcess, env_with, free_port, log_tail, stop_orphans, wait_until

log = logging.getLogger("stack.kafka")

KAFKA_VERSION = "4.1.1"

KAFKA_DIR = Path(__file__).resolve().parent / "kafka"
POM_PATH = KAFKA_DIR / "pom.xml"
LOG4J2_CONFIG = KAFKA_DIR / "log4j2.yaml"

_MARKER = ".complete"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Debian's mvn colours its output even with -B
_MVN_TIMEOUT_S = 900.0

# With `sasl_users`, the client listener speaks SASL_PLAINTEXT (mechanism PLAIN) and the broker
# authenticates to itself there as BROKER_USER, with a random password made per KafkaServer.
SASL_LISTENER = "SASL_PLAINTEXT"
TLS_LISTENER = "SASL_SSL"  # beside it, with `tls`
BROKER_USER = "broker"
# Names and passwords go into a JAAS line inside server.properties: keep them to characters that
# need no quoting in either format.
_SASL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SASL_PASSWORD = re.compile(r"[!#-\[\]-~]+")  # printable ASCII but space, double quote and backslash

# The heap a 2-core, shared machine can spare next to Triton and the workers; the rest mirrors the
# GC settings of Kafka's own kafka-run-class.sh (G1 with short pauses).
JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def pom_hash(pom: Path | None = None) -> str:
    """Short sha256 of the POM: the name of the jar folder, so a changed POM never reuses old jars."""
    return hashlib.sha256((pom or POM_PATH).read_bytes()).hexdigest()[:12]


def resolve_jars(state_dir: Path, *, progress: Callable[[str], None] | None = None) -> Path:
    """Return the folder holding the broker's jars, running Maven only when it is not complete yet.

    Maven copies into a temporary sibling that is renamed into place and only then marked complete,
    so an interrupted download is never mistaken for a finished one.
    """
    lib = state_dir / "kafka" / f"lib-{pom_hash()}"
    if (lib / _MARKER).is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (`mvn`) is not on PATH; it is needed once to fetch the Kafka jars")
    say = progress or log.info
    say(f"resolving Kafka {KAFKA_VERSION} jars from Maven Central into {lib} (first run only)")
    tmp = lib.with_name(f"{lib.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(POM_PATH),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StackError(f"mvn timed out after {_MVN_TIMEOUT_S:.0f}s resolving the Kafka jars") from exc
    jars = sorted(tmp.glob("*.jar")) if tmp.is_dir() else []
    if result.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
        shutil.rmtree(tmp, ignore_errors=True)
        output = _ANSI.sub("", result.stdout + result.stderr)[-6000:]
        raise StackError(
            f"mvn failed (exit {result.returncode}) resolving the Kafka jars: {' '.join(argv)}\n{output}"
        )
    if (lib / _MARKER).is_file():  # another process finished first: keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
        return lib
    shutil.rmtree(lib, ignore_errors=True)  # a stale, unmarked folder from an older layout
    tmp.rename(lib)
    (lib / _MARKER).write_text(f"{KAFKA_VERSION}\n{len(jars)} jars\n")
    say(f"resolved {len(jars)} jars in {time.monotonic() - started:.1f}s")
    return lib


def admin_config(bootstrap: str) -> dict[str, str | int | float | bool]:
    """The minimal client configuration the stack's own admin calls use."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "stack-admin",
        # Connection errors while a broker starts are expected; readiness reports them instead.
        "log.connection.close": False,
    }


def _quiet_admin(bootstrap: str, client_config: Mapping[str, Any] | None = None) -> AdminClient:
    """An AdminClient whose librdkafka log goes to our logger, not to the test's stderr.

    `client_config` adds the security settings (`Settings.confluent_config()` or
    `KafkaServer.client_security()`); `bootstrap` and the client id still win over it.
    """
    conf: dict[str, Any] = {
        **(client_config or {}),
        **admin_config(bootstrap),
        "logger": logging.getLogger("stack.kafka.librdkafka"),
    }
    return AdminClient(conf)


def _kafka_uuid() -> str:
    """A random cluster id in Kafka's own format (base64url of 16 bytes, no padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise StackError("`java` (17 or newer) is not on PATH; the Kafka broker needs it")
    return java


@dataclass(frozen=True)
class TlsKeystore:
    """The broker's key and certificate (PKCS12) and that certificate in PEM, which clients
    trust as their CA (`MS_KAFKA_SSL_CAFILE`)."""

    keystore: Path
    password: str = field(repr=False)
    cafile: Path


def make_tls_keystore(folder: Path, host: str = "127.0.0.1") -> TlsKeystore:
    """A self-signed certificate for `host` (IP SAN: clients check it) made with the JDK's
    keytool, valid 2 days: for test brokers only."""
    java = _java()
    keytool = Path(os.path.realpath(java)).with_name("keytool")
    if not keytool.is_file():
        raise StackError(f"keytool not found next to {java}; the TLS listener needs the JDK's keytool")
    folder.mkdir(parents=True, exist_ok=True)
    keystore, cafile = folder / "broker.p12", folder / "ca.pem"
    password = secrets.token_urlsafe(18)
    for path in (keystore, cafile):
        path.unlink(missing_ok=True)
    common = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    for argv in (
        [
            "-genkeypair",
            "-alias",
            "broker",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-validity",
            "2",
            "-dname",
            f"CN={host}",
            "-ext",
            f"SAN=IP:{host},DNS:localhost",
            "-keypass",
            password,
        ],
        ["-exportcert", "-alias", "broker", "-rfc", "-file", str(cafile)],
    ):
        done = subprocess.run(
            [str(keytool), *argv, *common], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise StackError(f"keytool {argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return TlsKeystore(keystore, password, cafile)


@dataclass
class KafkaServer:
    """One single-node KRaft broker+controller listening on `host` only.

    Ports are fixed at the first `start()` (a free one is picked if the preferred one is taken) and
    the data folder is chosen then too, so `stop()` + `start()` of the same object keeps both the
    data and the bootstrap address. A new object gets a new, empty data folder.

    `extra_config` is merged last into server.properties, so it can override any default
    (listeners, security protocol map, retention, ...). `jar_cache` is the state folder whose
    `kafka/lib-*` holds the jars (default: `state_dir`), so tests with a throwaway `state_dir`
    reuse the repository's resolved jars. `keep_data` reuses a data folder an earlier run left on
    the same port (a CLI restarting the stack) instead of starting empty.

    The pid file is per `state_dir`: run one KafkaServer per `state_dir` at a time, since starting
    one kills whatever broker a pid file there still names.

    `sasl_users` (username -> password) makes the client listener SASL_PLAINTEXT with the PLAIN
    mechanism: a client without valid credentials is refused. The controller listener stays
    PLAINTEXT (loopback only, the node talks to itself). The broker's own connections and the
    stack's admin calls (readiness, `create_topics`) log in as `BROKER_USER` with a password
    made per object; `client_security()` gives that configuration. server.properties then holds
    the passwords, so it is written readable by its owner only; Kafka logs password values as
    [hidden].

    `tls` (with `sasl_users`) adds a SASL_SSL client listener on `tls_port` with that keystore;
    the SASL_PLAINTEXT one stays for the broker itself and the stack's admin calls.
    """

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    extra_config: dict[str, str] = field(default_factory=dict)
    jar_cache: Path | None = None
    keep_data: bool = False
    stop_grace: float = 30.0
    sasl_users: Mapping[str, str] | None = field(default=None, repr=False)
    tls: TlsKeystore | None = None
    tls_port: int = 0
    _broker_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), init=False, repr=False)
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)
    _data_dir: Path | None = field(default=None, init=False, repr=False)
    _started_once: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tls is not None and self.sasl_users is None:
            raise ValueError("a TLS listener needs sasl_users: it is SASL_SSL")
        for user, password in (self.sasl_users or {}).items():
            if user == BROKER_USER:
                raise ValueError(f"SASL user {BROKER_USER!r} is reserved for the broker itself")
            if not _SASL_NAME.fullmatch(user):
                raise ValueError(f"SASL user name {user!r} must match {_SASL_NAME.pattern}")
            if not _SASL_PASSWORD.fullmatch(password):
                # the password itself stays out of the message
                raise ValueError(
                    f"the password of SASL user {user!r} must be printable ASCII without spaces, quotes "
                    "or backslashes"
                )

    @property
    def home(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_bootstrap(self) -> str:
        """The SASL_SSL listener (with `tls`), known after the first `start()`."""
        if self.tls is None or not self.tls_port:
            raise StackError("this broker has no TLS listener (yet)")
        return f"{self.host}:{self.tls_port}"

    @property
    def log_path(self) -> Path:
        return self.home / f"broker-{self.port}.log"  # per port: two stacks can run side by side

    @property
    def pid_path(self) -> Path:
        return self.home / f"broker-{self.port}.pid"

    @property
    def data_dir(self) -> Path | None:
        """The KRaft log folder, known after the first `start()`."""
        return self._data_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def client_security(self) -> dict[str, str]:
        """librdkafka security settings that this broker accepts, as its own principal: empty
        without SASL. For the stack's admin calls; clients of the scorer use their Settings."""
        if self.sasl_users is None:
            return {}
        return {
            "security.protocol": SASL_LISTENER,
            "sasl.mechanism": "PLAIN",
            "sasl.username": BROKER_USER,
            "sasl.password": self._broker_password,
        }

    def rss_bytes(self) -> int | None:
        """Resident memory of the broker JVM (Linux /proc), for budgeting the 2-core machine."""
        pid = self.pid
        if pid is None or not self.running():
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def start(self, timeout: float = 90.0) -> None:
        """Resolve the jars, format the storage if new, launch the JVM and wait until it answers."""
        if self.running():
            return
        lib = resolve_jars(self.jar_cache or self.state_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        # A broker left by a killed run would hold the ports and the data folder's lock.
        stop_orphans(self.home, "broker-*.pid")
        self._choose_ports()
        if self._data_dir is None:
            self._data_dir = self.home / f"data-{self.port}"
            if self._data_dir.exists() and not self.keep_data:
                # Left by an earlier object (or run) on the same port: a new object starts empty.
                shutil.rmtree(self._data_dir)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        props = self.home / f"server-{self._data_dir.name}.properties"
        if self.sasl_users is not None:  # it holds the passwords
            props.touch(mode=0o600)
            props.chmod(0o600)
        props.write_text(self._render_properties())
        classpath = f"{lib}{os.sep}*"
        if not (self._data_dir / "meta.properties").is_file():
            self._format(classpath, props)
        argv = [
            _java(),
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.home}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ]
        self._proc = ManagedProcess(
            name="kafka",
            argv=argv,
            log_path=self.log_path,
            pid_path=self.pid_path,
            env=env_with({}),
            cwd=self.home,
        )
        log.info("starting Kafka %s on %s (data %s)", KAFKA_VERSION, self.bootstrap, self._data_dir)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        began = time.monotonic()
        self._proc.start()
        self._started_once = True
        try:
            wait_until(
                self._answers,
                timeout=timeout,
                what=f"Kafka on {self.bootstrap} to answer a metadata request",
                interval=0.25,
                alive=self._proc.raise_if_exited,
            )
        except StackError as exc:
            self._proc.stop(grace=5.0)
            # The tail is mostly a stack trace; the cause sits in the first ERROR lines of this run.
            errors = _first_errors(self.log_path, log_offset)
            message = str(exc)
            if str(self.log_path) not in message:  # raise_if_exited already carries the tail
                message += f"; log {self.log_path}:\n{log_tail(self.log_path)}"
            if errors:
                message = f"{message}\nfirst errors of this start:\n{errors}"
            raise StackError(message) from None
        log.info("Kafka ready on %s in %.1fs", self.bootstrap, time.monotonic() - began)

    def stop(self) -> None:
        """Clean SIGTERM shutdown (Kafka flushes and closes its logs), SIGKILL after `stop_grace`."""
        if self._proc is None:
            return
        code = self._proc.stop(grace=self.stop_grace)
        # Drop the handle: a second ManagedProcess.stop() would SIGKILL the group id of a reaped
        # process, which the OS may have given to an unrelated process by then.
        self._proc = None
        log.info("Kafka on %s stopped (exit %s)", self.bootstrap, code)

    def kill(self) -> None:
        """SIGKILL the broker with no shutdown at all, as a crash would (fault tests)."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc = None
        # ManagedProcess.kill leaves the pid file; a later stop_stale() must not signal a reused pid.
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def _choose_ports(self) -> None:
        """Keep the ports across restarts of this object; pick free ones only if they are taken."""
        port = free_port(self.port, self.host)
        controller_port = free_port(self.controller_port, self.host)
        if controller_port == port:
            controller_port = free_port(0, self.host)
        if self._started_once and (port, controller_port) != (self.port, self.controller_port):
            log.warning(
                "Kafka ports %d/%d are taken now; restarting on %d/%d",
                self.port,
                self.controller_port,
                port,
                controller_port,
            )
        self.port, self.controller_port = port, controller_port
        if self.tls is not None:
            tls_port = free_port(self.tls_port, self.host)
            while tls_port in (port, controller_port):
                tls_port = free_port(0, self.host)
            self.tls_port = tls_port

    def _render_properties(self) -> str:
        assert self._data_dir is not None
        props: dict[str, str] = {
            "node.id": "1",
            "process.roles": "broker,controller",
            # A static voter set: the controller endpoint is read from this file, not stored in the
            # metadata log, so a restart on another controller port still finds its quorum.
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._data_dir),
            # One broker: every internal topic must fit on it.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Fewer internal partitions than the default 50: the first group / transaction on a fresh
            # broker creates them, and on 2 cores 50 of each costs seconds.
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.num.partitions": "8",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": "1",
            # Small machine: fewer threads than the defaults sized for servers.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
        }
        if self.sasl_users is not None:
            client = f"{SASL_LISTENER}://{self.host}:{self.port}"
            props.update(
                {
                    "listeners": f"{client},CONTROLLER://{self.host}:{self.controller_port}",
                    "advertised.listeners": client,
                    "inter.broker.listener.name": SASL_LISTENER,
                    "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{SASL_LISTENER}:{SASL_LISTENER}",
                    "sasl.enabled.mechanisms": "PLAIN",
                    "sasl.mechanism.inter.broker.protocol": "PLAIN",
                    f"listener.name.{SASL_LISTENER.lower()}.plain.sasl.jaas.config": self._plain_jaas(),
                }
            )
        if self.tls is not None:
            tls = f"{TLS_LISTENER}://{self.host}:{self.tls_port}"
            prefix = f"listener.name.{TLS_LISTENER.lower()}"
            props.update(
                {
                    "listeners": f"{props['listeners']},{tls}",
                    "advertised.listeners": f"{props['advertised.listeners']},{tls}",
                    "listener.security.protocol.map": (
                        f"{props['listener.security.protocol.map']},{TLS_LISTENER}:{TLS_LISTENER}"
                    ),
                    f"{prefix}.plain.sasl.jaas.config": self._plain_jaas(),
                    f"{prefix}.ssl.keystore.type": "PKCS12",
                    f"{prefix}.ssl.keystore.location": str(self.tls.keystore),
                    f"{prefix}.ssl.keystore.password": self.tls.password,
                    f"{prefix}.ssl.key.password": self.tls.password,
                }
            )
        props.update(self.extra_config)
        lines = ["# written by stack/kafka.py on every start; edits are lost"]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def _plain_jaas(self) -> str:
        """The PLAIN login module of the SASL listener: the broker's own login (username/password)
        and every user it accepts (user_<name>=<password>)."""
        users = {BROKER_USER: self._broker_password, **(self.sasl_users or {})}
        accepted = " ".join(f'user_{name}="{password}"' for name, password in users.items())
        return (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER_USER}" password="{self._broker_password}" {accepted};'
        )

    def _format(self, classpath: str, props: Path) -> None:
        """Format the KRaft storage of a new data folder (once; a formatted one keeps its data)."""
        argv = [
            _java(),
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            # one token: a random id can start with "-", which argparse would take for an option
            f"--cluster-id={_kafka_uuid()}",
            "--config",
            str(props),
            "--ignore-formatted",
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise StackError(
                f"formatting Kafka storage in {self._data_dir} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-4000:]}"
            )

    def _answers(self) -> bool:
        try:
            metadata = _quiet_admin(self.bootstrap, self.client_security()).list_topics(timeout=2.0)
        except KafkaException:
            return False
        return bool(metadata.brokers)


def _first_errors(log_path: Path, offset: int, limit: int = 3) -> str:
    """The first ERROR lines written since `offset`, each with the line after it (the exception)."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    picked: list[str] = []
    for i, line in enumerate(lines):
        if "] ERROR " in line:
            picked.append(line)
            if i + 1 < len(lines) and not lines[i + 1].startswith("["):
                picked.append("    " + lines[i + 1])
            if len(picked) >= 2 * limit:
                break
    return "\n".join(picked)


def create_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    *,
    config: Mapping[str, str] | None = None,
    client_config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create topics with exact partition counts and wait until the metadata shows them led.

    Idempotent: a topic that already exists with the same partition count is fine; one with a
    different count raises, because Faust tables need source and changelog partitions equal and a
    silent mismatch would surface much later as a lost or misrouted key. `config` is the topics'
    configuration; `client_config` the admin client's security settings (SASL, TLS).
    """
    if not partitions:
        return
    admin = _quiet_admin(bootstrap, client_config)
    new = [
        NewTopic(name, num_partitions=count, replication_factor=1, config=dict(config or {}))
        for name, count in partitions.items()
    ]
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    failures: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            failures.append(f"{name}: {exc}")
        except Exception as exc:  # timeouts of the future itself
            failures.append(f"{name}: {exc!r}")
    if failures:
        raise StackError(f"creating topics on {bootstrap} failed: " + "; ".join(failures))

    mismatched: list[str] = []

    def all_led() -> bool:
        try:
            metadata = admin.list_topics(timeout=5.0)
        except KafkaException:
            return False
        for name, count in partitions.items():
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                return False
            if len(topic.partitions) != count:
                mismatched.append(f"{name} has {len(topic.partitions)} partitions, wanted {count}")
                return True
            if any(p.leader < 0 for p in topic.partitions.values()):
                return False
        return True

    wait_until(all_led, timeout=timeout, what=f"topics {sorted(partitions)} in the metadata of {bootstrap}")
    if mismatched:
        raise StackError("existing topics differ from what was asked: " + "; ".join(mismatched))
    log.debug("topics ready on %s: %s", bootstrap, dict(partitions))
