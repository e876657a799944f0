"""docs/metrics.md is the metrics contract: each table row is checked against the registry (name, type, label
names, and every label value the row lists in parentheses), and the roles the page names match the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from livegate import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(livegate_\w+)` \| (\w+) \| ([^|]*) \|", re.M)
LABEL = re.compile(r"`(\w+)`(?:\s*\(([^)]*)\))?")
# listed values that only appear at their first event: any close code the classification does not name, a
# modality the upstream does not name, a Redis read whose client has no role
NOT_KNOWN_IN_ADVANCE = {"upstream_closed", "modality_unspecified", "xread"}
TYPES = {Counter: "counter", Gauge: "gauge", Histogram: "histogram", Info: "info"}


def collectors() -> dict[str, Any]:
    """Every metric of livegate/metrics.py by the name the page shows (``_total``, ``_info`` included)."""
    out = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            kind = TYPES[type(value)]
            out[value._name + {"counter": "_total", "info": "_info"}.get(kind, "")] = value
    return out


def documented() -> dict[str, tuple[str, dict[str, set[str] | None]]]:
    rows = {}
    for name, kind, labels in ROW.findall(DOC.read_text()):
        rows[name] = (kind, {label: ({v.strip() for v in values.split(",")} if values else None)
                             for label, values in LABEL.findall(labels)})
    return rows


def test_every_metric_is_documented_as_it_is() -> None:
    metrics.label_tenants(["default"])
    for role in ("front", "worker"):
        metrics.preinit(role)
    metrics.session_started("gemini-live-2.5-flash", "default", "grpc")
    metrics.session_claimed("gemini-live-2.5-flash", "default")
    code, doc = collectors(), documented()
    assert sorted(code) == sorted(doc), "docs/metrics.md's tables and livegate/metrics.py name different metrics"
    for name, collector in code.items():
        kind, labels = doc[name]
        assert kind == TYPES[type(collector)], f"{name}: documented as a {kind}"
        if kind == "info":
            continue  # an Info's labels are its value, set at run time
        assert list(labels) == list(collector._labelnames), f"{name}: documented labels {list(labels)}"
        for i, (label, values) in enumerate(labels.items()):
            if values is None:
                continue
            seen = {key[i] for key in collector._metrics}
            assert seen <= values, f"{name}{{{label}}}: {sorted(seen - values)} exported but not documented"
            if kind == "counter":  # a counter's listed values are there at 0 from the start
                assert values - seen <= NOT_KNOWN_IN_ADVANCE, \
                    f"{name}{{{label}}}: {sorted(values - seen)} documented but not pre-set at 0"


def test_the_roles_the_page_names_are_the_code_s() -> None:
    text = DOC.read_text()
    front = text.split("Front only:", 1)[1].split("Worker only:", 1)[0]
    worker = text.split("Worker only:", 1)[1].split("Every other metric", 1)[0]

    def names(collectors_: tuple[Any, ...]) -> set[str]:
        return {c._name + ("_total" if isinstance(c, Counter) else "") for c in collectors_}

    assert set(re.findall(r"`(livegate_\w+)`", front)) == names(metrics.FRONT_ONLY)
    assert set(re.findall(r"`(livegate_\w+)`", worker)) == names(metrics.WORKER_ONLY)


def test_label_values_are_lower_case() -> None:
    for role in ("front", "worker"):
        metrics.preinit(role)
    for name, collector in collectors().items():
        for key in getattr(collector, "_metrics", {}):
            assert all(v == v.lower() for v in key), f"{name}{key}"
