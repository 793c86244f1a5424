"""`python -m bench.market day|live`: the seeded market against the bidder (see `bench.market`).

    flock /tmp/ms-integration.lock .venv/bin/python -m bench.market day [--requests 12000]
    flock /tmp/ms-integration.lock flock /tmp/ms-cpu.lock .venv/bin/python -m bench.market live [--rate 100]

Results go to bench/results/market-<mode>-<UTC stamp>.json and .md, with the machine and seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.market import day, live, markdown
from bench.run import commit, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.market",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--auction-type", type=int, choices=(1, 2), default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    modes = parser.add_subparsers(dest="mode", required=True)
    d = modes.add_parser("day", help="a simulated day through the worker's handlers, in-process")
    d.add_argument("--requests", type=int, default=12_000, help="bid requests in the simulated day")
    d.add_argument("--users", type=int, default=593, help="Instacart users (the sample has 593)")
    d.add_argument("--batch", type=int, default=32, help="requests per handler call (one instant)")
    d.add_argument(
        "--budget-scale",
        type=float,
        default=0.01,
        help="daily budgets of config/campaigns.json times this, to fit the simulated traffic",
    )
    lv = modes.add_parser("live", help="real time, over HTTP, against the gateway and a worker")
    lv.add_argument("--rate", type=float, default=100.0, help="bid requests per second (open loop)")
    lv.add_argument("--seconds", type=float, default=30.0)
    lv.add_argument("--users", type=int, default=593)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "args": vars(args) | {"out": str(args.out)},
    }
    if args.mode == "day":
        results |= asyncio.run(day.run(args))
    else:
        results |= live.run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"market-{args.mode}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown.render(results))
    print(markdown.render(results))
    print(f"written to {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
