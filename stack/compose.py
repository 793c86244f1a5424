"""The local stack's broker configuration, rendered for the compose test deployment's Kafka image.

One source of truth: `docker/kafka/Dockerfile` runs `python -m stack.compose kafka-config DIR` at
build time, which writes the `server.properties` that `stack/kafka.py` gives the local broker
(listeners on 127.0.0.1, host networking) and the same JVM options. The image's entrypoint then
applies the service's `KAFKA_*` environment on top, the way the upstream `apache/kafka` image
reads it, so docker-compose.yml's broker settings are the ones under test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stack.kafka import JVM_OPTS, KafkaServer

DATA_DIR = Path("/var/lib/kafka/data")  # the production compose file's volume
HEADER = "# rendered from stack/kafka.py when the image was built (python -m stack.compose kafka-config)"


def broker_properties(port: int = 9092, controller_port: int = 9093, data_dir: Path = DATA_DIR) -> str:
    """The local broker's server.properties, listening on 127.0.0.1:`port`, logs in `data_dir`."""
    server = KafkaServer(state_dir=data_dir.parent, port=port, controller_port=controller_port)
    server._data_dir = data_dir  # rendering only: nothing is started or written
    lines = [line for line in server._render_properties().splitlines() if not line.startswith("#")]
    return "\n".join([HEADER, *lines]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.compose", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("kafka-config", help="write server.properties and jvm.options into DIR")
    config.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "server.properties").write_text(broker_properties())
    (args.dir / "jvm.options").write_text(" ".join(JVM_OPTS) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
