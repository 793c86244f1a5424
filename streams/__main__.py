"""`python -m streams worker`: run one Faust worker process with settings from MS_* variables.
`schemas` prints, writes, checks or serves the contract; `tail` prints a topic's records;
`models` lists the served model versions and swaps one live (`models serve text_encoder 2`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    sub.add_parser("create-topics", help="create every topic the scorer uses (idempotent)")
    sub.add_parser("gateway", help="run the OpenRTB 2.6 HTTP bidder gateway until SIGTERM/SIGINT")
    schemas = sub.add_parser(
        "schemas", help="print, write, check or serve the contract: the AsyncAPI document and JSON Schemas"
    )
    schemas.add_argument(
        "name", nargs="?", help="print this payload's JSON Schema (default: the AsyncAPI document)"
    )
    action = schemas.add_mutually_exclusive_group()
    action.add_argument(
        "--write", action="store_true", help="write contract/, unless a change breaks the contract"
    )
    action.add_argument(
        "--check", action="store_true", help="exit 1 if contract/ differs from the code or breaks it"
    )
    action.add_argument("--serve", metavar="[HOST:]PORT", help="serve the files over HTTP (GET / lists them)")
    schemas.add_argument(
        "--dir", type=Path, help="the contract directory (default: contract/ in the repository)"
    )
    schemas.add_argument(
        "--allow-breaking",
        action="store_true",
        help="--write a breaking change without a schema_version bump",
    )
    tail = sub.add_parser("tail", help="print a topic's records decoded and checked against the contract")
    tail.add_argument(
        "topic", help="the topic's name without MS_TOPIC_PREFIX, e.g. segment-updates, chat.dlq"
    )
    tail.add_argument("--from-beginning", action="store_true", help="from the log start")
    tail.add_argument(
        "--last", type=int, default=10, help="else the last N of each partition (default %(default)s)"
    )
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new records until Ctrl-C")
    tail.add_argument("--key", help="only records with this key")
    tail.add_argument("--json", action="store_true", help="one JSON object per record")
    tail.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to reach the end offsets without --follow"
    )
    from streams.models_cli import add_parser as add_models_parser

    add_models_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "models":
        from streams.models_cli import main as models_main

        return models_main(args)

    if args.command == "schemas":
        from streams.contract.cli import main as schemas_main

        return schemas_main(args)

    if args.command == "tail":
        from streams.tail import main as tail_main

        return tail_main(args)

    if args.command == "create-topics":
        from streams.admin import ensure_topics
        from streams.settings import Settings

        settings = Settings()
        created = ensure_topics(settings)
        print(
            f"{len(settings.topics.all())} topics present ({len(created)} created): {', '.join(created) or '-'}"
        )

    if args.command == "gateway":
        import logging

        from streams.gateway.server import main as gateway_main
        from streams.settings import Settings

        settings = Settings()
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return gateway_main(settings)

    if args.command == "worker":
        import faust

        from streams.app import EXIT_FATAL, Health, create_app
        from streams.faust_compat import check_versions
        from streams.settings import Settings

        settings = Settings()
        check_versions(settings.allow_untested_faust)  # refuses untested faust-streaming/aiokafka
        health = Health()
        app = create_app(settings, health)
        try:
            # Worker.execute_from_commandline runs the loop and exits the process (SystemExit).
            faust.Worker(app, loglevel=settings.log_level).execute_from_commandline()
        finally:
            if health.fatal is not None:
                sys.exit(EXIT_FATAL)  # a supervisor (docker restart policy) restarts the worker
    return 0


if __name__ == "__main__":
    sys.exit(main())
