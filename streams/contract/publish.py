"""The contract as files: contract/asyncapi.yaml and contract/schemas/<payload>.json.

`rendered()` is the single source of what the files hold; writing, checking for drift and
serving all go through it, so the committed files, `python -m streams schemas` and the HTTP
server can never disagree.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from streams.contract.asyncapi import document
from streams.contract.catalogue import PAYLOADS
from streams.contract.compat import Change, Verdict, check
from streams.contract.jsonschema import payload_schema

log = logging.getLogger("streams.contract")

REPO = Path(__file__).resolve().parents[2]
CONTRACT_DIR = REPO / "contract"
ASYNCAPI_FILE = "asyncapi.yaml"
SCHEMA_DIR = "schemas"
REGENERATE = ".venv/bin/python -m streams schemas --write"
NEW_PAYLOAD = "new payload"
REMOVED_PAYLOAD = "removed payload"
REMOVED_TOPIC = "removed topic"
GENERATED = f"Generated from the code by `{REGENERATE}`: do not edit."


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so the document's prose reads as prose; no `&id`
    anchors for values that occur twice (some tools do not follow YAML aliases)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def schema_path(name: str) -> str:
    return f"{SCHEMA_DIR}/{name}.json"


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """Relative path under contract/ -> file content."""
    files = {}
    for payload in PAYLOADS:
        schema = payload_schema(payload)
        files[schema_path(payload.name)] = json_text(
            {"$schema": schema["$schema"], "$comment": GENERATED, **schema}
        )
    body = yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    files[ASYNCAPI_FILE] = f"# {GENERATED}\n{body}"
    return files


def committed(root: Path = CONTRACT_DIR) -> dict[str, str]:
    """The contract files present under `root` (the AsyncAPI document and the schemas)."""
    paths = [root / ASYNCAPI_FILE, *sorted((root / SCHEMA_DIR).glob("*.json"))]
    return {str(p.relative_to(root)): p.read_text() for p in paths if p.is_file()}


def drift(root: Path = CONTRACT_DIR) -> list[str]:
    """What differs between the files under `root` and the code: 'changed: x', 'missing: x', 'extra: x'."""
    want, have = rendered(), committed(root)
    out = [f"missing: {p}" for p in want if p not in have]
    out += [f"changed: {p}" for p in want if p in have and have[p] != want[p]]
    out += [f"extra: {p}" for p in have if p not in want]
    return sorted(out)


def write(root: Path = CONTRACT_DIR) -> list[str]:
    """Write every file (and remove schemas no payload has any more); returns the paths written."""
    want = rendered()
    (root / SCHEMA_DIR).mkdir(parents=True, exist_ok=True)
    for path in committed(root):
        if path not in want:
            (root / path).unlink()
    for path, text in want.items():
        (root / path).write_text(text)
    return sorted(want)


def compatibility(root: Path = CONTRACT_DIR) -> list[Verdict]:
    """Each payload's generated schema against the one under `root`, plus the payloads and topics
    the code no longer has: removing either breaks whoever used it."""
    verdicts = []
    names = {p.name for p in PAYLOADS}
    for payload in PAYLOADS:
        path = root / schema_path(payload.name)
        if not path.is_file():
            verdicts.append(
                Verdict(payload.name, [Change("", NEW_PAYLOAD, "not published yet", breaking=False)])
            )
            continue
        published = json.loads(path.read_text())
        verdicts.append(check(payload.name, published, payload_schema(payload), written=payload.written))
    for path in sorted((root / SCHEMA_DIR).glob("*.json")):
        if path.stem not in names:
            verdicts.append(
                Verdict(path.stem, [Change("", REMOVED_PAYLOAD, "no topic carries it", breaking=True)])
            )
    doc = root / ASYNCAPI_FILE
    if doc.is_file():
        published_topics = {c["address"] for c in yaml.safe_load(doc.read_text())["channels"].values()}
        topics = {c["address"] for c in document()["channels"].values()}
        removed = [
            Change(t, REMOVED_TOPIC, "the worker no longer uses it", breaking=True)
            for t in sorted(published_topics - topics)
        ]
        if removed:
            verdicts.append(Verdict(ASYNCAPI_FILE, removed))
    return verdicts


def server(host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server of the contract files (`GET /asyncapi.yaml`, `GET /schemas/<name>.json`, and
    `GET /` for the list), rendered once from the code: what a deployment serves is what it runs."""
    files = rendered()
    types = {".yaml": "application/yaml", ".json": "application/schema+json"}
    index = json_text(sorted(files)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].lstrip("/")
            if path == "":
                body, kind = index, "application/json"
            elif path in files:
                body, kind = files[path].encode(), types[Path(path).suffix]
            else:
                self.send_error(404, "no such contract file; GET / lists them")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return ThreadingHTTPServer((host, port), Handler)
