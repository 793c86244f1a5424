"""`python -m streams schemas`: print, write, check or serve the contract (arguments: streams/__main__.py)."""

from __future__ import annotations

import argparse
import sys

from streams.contract.catalogue import PAYLOADS
from streams.contract.publish import (
    ASYNCAPI_FILE,
    CONTRACT_DIR,
    REGENERATE,
    compatibility,
    drift,
    rendered,
    schema_path,
    server,
    write,
)


def main(args: argparse.Namespace) -> int:
    root = args.dir or CONTRACT_DIR
    if args.serve:
        host, _, port = args.serve.rpartition(":")
        host = host or "127.0.0.1"
        httpd = server(host, int(port))
        print(f"serving the contract on http://{host}:{httpd.server_port}/", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()
        return 0
    if args.write or args.check:
        verdicts = compatibility(root)
        for verdict in verdicts:
            for line in verdict.report():
                print(line)
        broken = [v.name for v in verdicts if not v.ok]
        if args.write:
            if broken and not args.allow_breaking:
                print(
                    f"not written: breaking changes to {', '.join(broken)} within their schema_version. "
                    "Make them additive, or bump schema_version (a new contract).",
                    file=sys.stderr,
                )
                return 1
            written = write(root)
            print(f"wrote {len(written)} files under {root}")
            return 0
        stale = drift(root)
        for line in stale:
            print(line)
        if broken:
            print(f"breaking changes to {', '.join(broken)} within their schema_version", file=sys.stderr)
        if stale:
            print(f"the contract files differ from the code: run `{REGENERATE}`", file=sys.stderr)
        return 1 if broken or stale else 0
    files = rendered()
    if args.name is None:
        sys.stdout.write(files[ASYNCAPI_FILE])
        return 0
    path = schema_path(args.name)
    if path not in files:
        print(f"no payload {args.name!r}; one of: {', '.join(p.name for p in PAYLOADS)}", file=sys.stderr)
        return 2
    sys.stdout.write(files[path])
    return 0
