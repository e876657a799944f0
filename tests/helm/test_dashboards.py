"""The Grafana dashboards (helm/livegate/dashboards/*.json) use only what livegate/metrics.py exports.

Static checks: the JSON is a dashboard with a `$datasource` variable that every panel and query uses; every PromQL
expression (panel targets and variable queries) names only samples of metrics declared in livegate/metrics.py,
groups and filters only by their labels (or the labels Prometheus adds to targets), takes rates over
`$__rate_interval` (or `$__range` for totals) and computes quantiles from `_bucket` series by `le`.
Whether the queries return data against a live Prometheus is a separate test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHART
from .promql import TARGET_LABELS, balanced, metric_defs, usage

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
EXPECTED = {"overview", "upstream", "latency", "capacity", "tokens"}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in board.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    out = []
    for p in panels(board):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t.get('refId')}", t["expr"]))
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q))
    return out


def test_the_five_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} == EXPECTED


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_shape(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == f"livegate-{path.stem}" and board["title"].startswith("livegate / ")
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert "__inputs" not in board or board["__inputs"] == [], "import-time inputs would break the sidecar"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}", v["name"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(board):
        if p["type"] == "row":
            continue
        assert p.get("description"), f"panel {p['title']!r} has no description"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_promql_uses_only_livegate_metrics(path: Path) -> None:
    defs = metric_defs()
    board = json.loads(path.read_text())
    found = exprs(board)
    assert found
    for where, expr in found:
        assert balanced(expr), f"{path.stem} {where}: unbalanced {expr!r}"
        u = usage(expr)
        assert u.metrics, f"{path.stem} {where}: no metric in {expr!r}"
        unknown = u.metrics - defs.keys()
        assert not unknown, f"{path.stem} {where}: {sorted(unknown)} not in livegate/metrics.py: {expr!r}"
        used = [defs[m] for m in u.metrics]
        allowed = set(TARGET_LABELS)
        for d in used:
            allowed |= d.labels
            if d.type == "histogram":
                allowed.add("le")
        if not any(d.type == "info" for d in used):  # an Info's labels are set at run time
            stray = u.labels - allowed
            assert not stray, f"{path.stem} {where}: labels {sorted(stray)} not on {sorted(u.metrics)}: {expr!r}"
        for r in u.ranges:
            assert r in ("$__rate_interval", "$__range"), f"{path.stem} {where}: range [{r}] in {expr!r}"
        if re.search(r"\b(rate|increase)\(", expr):
            for m in re.finditer(r"\b(?:rate|increase)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", expr):
                assert defs[m.group(1)].type in ("counter", "histogram"), f"rate of a {defs[m.group(1)].type}: {expr!r}"
        if "histogram_quantile" in expr:
            assert all(m.endswith("_bucket") for m in u.metrics), expr
            assert re.search(r"by \(le\b", expr), f"quantile not grouped by le: {expr!r}"


def test_every_dashboard_filters_by_namespace() -> None:
    for path in DASHBOARDS:
        for where, expr in exprs(json.loads(path.read_text())):
            if where.startswith("variable namespace"):
                continue
            assert 'namespace=~"$namespace"' in expr, f"{path.stem} {where}: {expr!r}"


def test_dashboards_cover_every_metric() -> None:
    """Each metric of livegate/metrics.py appears on at least one dashboard (the catalogue and the dashboards
    move together)."""
    defs = metric_defs()
    seen = set()
    for path in DASHBOARDS:
        for _, expr in exprs(json.loads(path.read_text())):
            seen |= {defs[m].name for m in usage(expr).metrics if m in defs}
    assert {d.name for d in defs.values()} - seen == set()


def test_docs_describe_every_panel_and_metric() -> None:
    dashboards_md = (CHART.parents[1] / "docs" / "dashboards.md").read_text()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert f"## {board['title']}" in dashboards_md, board["title"]
        for p in panels(board):
            heading = f"### {p['title']}" if p["type"] == "row" else f"**{p['title']}**"
            assert heading in dashboards_md, f"docs/dashboards.md does not describe {path.stem} / {p['title']}"
    metrics_md = (CHART.parents[1] / "docs" / "metrics.md").read_text()
    for sample, d in metric_defs().items():
        shown = d.name + {"counter": "_total", "info": "_info"}.get(d.type, "")
        assert f"`{shown}`" in metrics_md, f"docs/metrics.md does not list {shown}"
        for label in d.labels:
            assert f"`{label}`" in metrics_md, f"docs/metrics.md does not name the label {label} of {shown}"
