"""Just enough PromQL reading to check dashboards against livegate/metrics.py: which metric names and which labels
an expression uses. Not a parser: it relies on the plain style of the dashboards (label values in double quotes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase

# Labels Prometheus adds to every scraped series (prometheus-operator targets), plus the histogram bucket label.
TARGET_LABELS = frozenset({"namespace", "pod", "instance", "job", "service", "container", "endpoint"})

FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "count_over_time", "delta", "deriv", "exp", "floor", "histogram_quantile", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log2", "log10", "max_over_time", "min_over_time",
    "predict_linear", "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc",
    "stddev_over_time", "sum_over_time", "time", "timestamp", "vector",
    # aggregations and keywords
    "sum", "avg", "min", "max", "count", "count_values", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    # Grafana template functions
    "label_values", "query_result", "metrics", "label_names",
})


@dataclass(frozen=True)
class MetricDef:
    name: str  # as declared (counters without _total)
    type: str
    labels: frozenset[str]
    samples: frozenset[str] = field(default_factory=frozenset)


def metric_defs() -> dict[str, MetricDef]:
    """sample name (what PromQL selects) -> its definition, from the objects declared in livegate/metrics.py."""
    from livegate import metrics

    out: dict[str, MetricDef] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        name, kind = obj._name, obj._type  # noqa: SLF001 - prometheus_client keeps these as plain attributes
        suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}[kind]
        samples = frozenset(name + s for s in suffixes)
        labels = frozenset(obj._labelnames)  # noqa: SLF001
        d = MetricDef(name, kind, labels, samples)
        for s in samples:
            out[s] = d
    return out


@dataclass
class Usage:
    metrics: set[str]
    labels: set[str]
    ranges: list[str]


_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)")


def usage(expr: str) -> Usage:
    labels: set[str] = set()
    text = expr
    # label matchers
    for block in re.findall(r"\{([^}]*)\}", text):
        for m in _MATCHER.finditer(block):
            labels.add(m.group(1))
        rest = _MATCHER.sub("", block).replace(",", "").strip()
        if rest:
            raise ValueError(f"unparsed label matcher {block!r} in {expr!r}")
    text = re.sub(r"\{[^}]*\}", " ", text)
    ranges = re.findall(r"\[([^\]]*)\]", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    for m in _GROUPING.finditer(text):
        labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
    text = _GROUPING.sub(lambda m: m.group(1) + " ", text)
    # Grafana's label_values(metric, label): the second argument is a label
    def _label_values(m: re.Match[str]) -> str:
        labels.add(m.group(2))
        return f"label_values({m.group(1)})"

    text = re.sub(r"label_values\(\s*([^,()]*?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", _label_values, text)
    idents = {m.group(1) for m in _IDENT.finditer(text)}
    names = {i for i in idents if i not in FUNCTIONS and not re.fullmatch(r"[0-9.eE+-]+", i)}
    return Usage(names, labels, ranges)


def balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    pairs = {")": "(", "}": "{", "]": "["}
    in_str = False
    for i, ch in enumerate(expr):
        if ch == '"' and (i == 0 or expr[i - 1] != "\\"):
            in_str = not in_str
        if in_str:
            continue
        if ch in depth:
            depth[ch] += 1
        elif ch in pairs:
            depth[pairs[ch]] -= 1
            if depth[pairs[ch]] < 0:
                return False
    return not in_str and all(v == 0 for v in depth.values())
