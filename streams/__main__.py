"""`python -m streams worker`: run one Faust worker process with settings from MS_* variables."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    sub.add_parser("create-topics", help="create every topic the scorer uses (idempotent)")
    args = parser.parse_args(argv)

    if args.command == "create-topics":
        from streams.admin import ensure_topics
        from streams.settings import Settings

        settings = Settings()
        created = ensure_topics(settings)
        print(
            f"{len(settings.topics.all())} topics present ({len(created)} created): {', '.join(created) or '-'}"
        )

    if args.command == "worker":
        import faust

        from streams.app import EXIT_FATAL, Health, create_app
        from streams.settings import Settings

        settings = Settings()
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
