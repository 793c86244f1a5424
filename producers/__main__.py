"""`python -m producers`: produce realistic events to the input topics at a rate, or as fast as
Kafka takes them, with a progress bar and a delivery report at the end."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from producers.corpus import BUILTIN, held_out
from producers.events import MIX, EventFactory, bad_records
from producers.kafka import produce
from streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producers", description=__doc__)
    parser.add_argument("--count", type=int, default=300, help="valid events to produce (default 300)")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second; 0 = unthrottled")
    parser.add_argument("--topics", default=",".join(MIX), help=f"comma-separated subset of {','.join(MIX)}")
    parser.add_argument(
        "--bad", action="store_true", help="also send one of each kind of bad record per topic"
    )
    parser.add_argument(
        "--texts",
        choices=("held-out", "builtin"),
        default="held-out",
        help="chat/social text: the models' held-out test splits (default) or a few built-in phrases",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    topics = tuple(t.strip() for t in args.topics.split(",") if t.strip())
    unknown = set(topics) - set(MIX)
    if unknown:
        parser.error(f"unknown topics {sorted(unknown)}; choose from {list(MIX)}")
    settings = Settings()
    factory = EventFactory(args.seed, texts=held_out() if args.texts == "held-out" else BUILTIN)
    stream = factory.stream(topics)
    records = [next(stream) for _ in range(args.count)]
    if args.bad:
        records += [r for t in topics for r in bad_records(t, max_text_chars=settings.max_text_chars)]
    console = Console(stderr=True)
    report = produce(settings, records, rate=args.rate, progress=not args.no_progress, console=console)
    console.print(report.summary())
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
