"""The Grafana dashboard (observability/grafana): its panels' PromQL parses, names only metrics the
worker defines or Triton exports, and uses the provisioned data source. The live check, against
a real worker's and Triton's scrapes, is tests/integration/test_metrics.py; the helpers it uses
are here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from streams.metrics import WorkerMetrics

GRAFANA = Path(__file__).resolve().parents[2] / "observability" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "marketing-scorer.json"
# Made by Prometheus itself for every target, not by what it scrapes.
PROMETHEUS_OWN = frozenset({"up"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])\d[A-Za-z0-9_.]*")  # 0.99, 1e3, and durations: 5m
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "group_left", "group_right"}
)
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)")
_SUFFIXES = ("_bucket", "_sum", "_count")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, by a simple tokenizer: strings, label
    matchers, ranges, grouping clauses and Grafana variables removed, then every identifier that
    is not a function or aggregation (followed by `(`) nor a keyword."""
    text = _STRINGS.sub(" ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPINGS.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if not rest.startswith("(") and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape offers, as Prometheus stores it: each sample's name, and for a
    family declared without samples yet (a labelled metric nothing has touched) the names its
    type gives. (Not prometheus_client's parser: it renames a counter's samples to `_total`,
    which Triton's counters are not.)"""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind in ("histogram", "summary"):
                names.update(f"{name}{suffix}" for suffix in _SUFFIXES)
            else:
                names.add(name)
        elif (sample := _SAMPLE.match(line)) is not None:
            names.add(sample.group(1))
    return names


def unknown_names(used: set[str], exported: set[str]) -> set[str]:
    """Names in `used` that no scrape offers (`exported_names` gives a histogram `x` as `x_bucket`,
    `x_sum` and `x_count`, the series a query can select; the bare `x` selects nothing)."""
    return {name for name in used if name not in exported and name not in PROMETHEUS_OWN}


def panels(dashboard: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    for panel in (dashboard or json.loads(DASHBOARD.read_text()))["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def panel_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def dashboard_metric_names() -> set[str]:
    return {name for _, expr in panel_exprs() for name in promql_metric_names(expr)}


def test_the_tokenizer_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(a_ms_bucket{route!="x"}[$__rate_interval])))'
        " / ignoring(code) group_left sum without (instance) (b_total offset 5m) > bool 2"
        ' or on(instance) up{job="w"} == 0 unless time() - c_seconds and d:recorded:rate5m'
    )
    assert promql_metric_names(expr) == {"a_ms_bucket", "b_total", "up", "c_seconds", "d:recorded:rate5m"}
    assert promql_metric_names('count(up{job="a b (c)"} == 1)') == {"up"}


def test_histogram_suffixes_map_to_the_base_name() -> None:
    exported = exported_names(
        "# TYPE lat_ms histogram\n"
        'lat_ms_bucket{le="1.0"} 1.0\nlat_ms_bucket{le="+Inf"} 1.0\nlat_ms_sum 0.5\nlat_ms_count 1.0\n'
        "# TYPE hits counter\n# TYPE nv_success counter\nnv_success 3\n"
        "# TYPE marketing_scorer_bids_total counter\nmarketing_scorer_bids_total 2.0\n"
    )
    assert (
        unknown_names({"lat_ms_bucket", "lat_ms_count", "hits_total", "nv_success", "up"}, exported) == set()
    )
    assert unknown_names({"lat_ms", "hits", "missing_total"}, exported) == {"lat_ms", "hits", "missing_total"}


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = provisioned["datasources"]
    found = list(panels())
    assert found and len({p["id"] for p in found}) == len(found)
    for panel in found:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    dashboards = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "marketing-scorer.yml").read_text()
    )
    assert dashboards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression, as a recording rule (Grafana's $__rate_interval as 1m)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: `make prometheus` installs Debian's prometheus package")
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(panel_exprs())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_worker_defines_every_worker_metric_the_dashboard_names() -> None:
    """Without a stack: the worker's own names (Triton's are checked against a live scrape)."""
    defined = exported_names(generate_latest(WorkerMetrics().registry).decode())
    worker_side = {n for n in dashboard_metric_names() if not n.startswith("nv_")}
    assert unknown_names(worker_side, defined) == set()
