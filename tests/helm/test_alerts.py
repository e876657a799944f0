"""The chart's PrometheusRule (metrics.prometheusRule): rendered with the chart's defaults, its groups are checked by
`promtool check rules` and run through `promtool test rules` (Prometheus' own rule engine) with the synthetic
series of tests/helm/alerts.promtool.yaml, where every alert fires on a bad input and stays silent on a good one.
Each alert reads only metrics of livegate/metrics.py and links to its section of docs/alerts.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHART, NAMESPACE, RELEASE, template
from .promql import TARGET_LABELS, balanced, metric_defs, usage

PROMTOOL_CASES = Path(__file__).with_name("alerts.promtool.yaml")
ALERTS_MD = CHART.parents[1] / "docs" / "alerts.md"
MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")
ALERTS = ("LivegateSetupFailures", "LivegateUpstreamCloses", "LivegateUpstreamResumeFailures",
          "LivegateWorkerTakeovers", "LivegateAdmissionRejections", "LivegateEventLoopLag", "LivegateRedisErrors",
          "LivegateHeartbeatStale", "LivegateSessionsNearCapacity")

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="needs Debian's prometheus package (scripts/bootstrap.sh installs it)")


def render_rule(yaml: Any, *settings: str) -> dict[str, Any] | None:
    args = [a for s in ("metrics.prometheusRule.enabled=true", *settings) for a in ("--set", s)]
    out = template("-f", str(CHART / "ci" / "default-values.yaml"), *MONITORING_API, *args).stdout
    found = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule"]
    assert len(found) <= 1
    return found[0] if found else None


def rules_of(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.fixture(scope="module")
def rule(helm: None, yaml: Any) -> dict[str, Any]:
    found = render_rule(yaml)
    assert found is not None
    return found


@pytest.fixture
def rules_file(rule: dict[str, Any], yaml: Any, tmp_path: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file."""
    path = tmp_path / "livegate-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_the_rule_and_its_alerts(rule: dict[str, Any]) -> None:
    assert rule["metadata"]["name"] == f"{RELEASE}-livegate" and rule["metadata"]["namespace"] == NAMESPACE
    alerts = rules_of(rule)
    assert tuple(alerts) == ALERTS
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert r["annotations"]["runbook_url"].endswith(f"/docs/alerts.md#{name.lower()}"), name
        assert f'namespace="{NAMESPACE}"' in r["expr"], f"{name} reads other releases' series"


def test_rule_only_where_the_monitoring_api_is_served(helm: None, yaml: Any) -> None:
    """Without monitoring.coreos.com/v1 (no prometheus-operator CRDs) nothing of the operator's is rendered."""
    settings = ("metrics.prometheusRule.enabled=true", "metrics.serviceMonitor.enabled=true",
                "metrics.podMonitor.enabled=true")
    args = [a for s in settings for a in ("--set", s)]
    without = template("-f", str(CHART / "ci" / "default-values.yaml"), *args).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(without) if d}
    assert not kinds & {"PrometheusRule", "ServiceMonitor", "PodMonitor"}
    with_api = template("-f", str(CHART / "ci" / "default-values.yaml"), *MONITORING_API, *args).stdout
    assert {"PrometheusRule", "ServiceMonitor", "PodMonitor"} <= {d["kind"] for d in yaml.safe_load_all(with_api) if d}


@needs_promtool
def test_promtool_checks_the_rules(rules_file: Path) -> None:
    proc = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


@needs_promtool
def test_every_alert_fires_on_bad_series_and_stays_silent_on_good_ones(rules_file: Path, yaml: Any) -> None:
    cases = yaml.safe_load(PROMTOOL_CASES.read_text())
    cases["rule_files"] = [str(rules_file)]
    path = rules_file.with_name("alerts.test.yaml")
    path.write_text(yaml.safe_dump(cases, sort_keys=False))
    proc = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_silent_case(yaml: Any) -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(PROMTOOL_CASES.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fired == set(ALERTS), f"no case fires {set(ALERTS) - fired}"
    assert silent == set(ALERTS), f"no case keeps {set(ALERTS) - silent} silent"


def test_alerts_read_only_livegate_metrics_and_their_labels(rule: dict[str, Any]) -> None:
    defs = metric_defs()
    for name, r in rules_of(rule).items():
        expr = r["expr"]
        assert balanced(expr), name
        u = usage(expr)
        unknown = u.metrics - defs.keys()
        assert not unknown, f"{name}: {sorted(unknown)} not in livegate/metrics.py"
        allowed = set(TARGET_LABELS) | {"le"}
        for m in u.metrics:
            allowed |= defs[m].labels
        assert u.labels <= allowed, f"{name}: labels {sorted(u.labels - allowed)} not on {sorted(u.metrics)}"
        for m in re.finditer(r"\b(?:rate|increase)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", expr):
            assert defs[m.group(1)].type in ("counter", "histogram"), f"{name}: rate of a gauge"
        # label values are lower-case snake case everywhere
        for value in re.findall(r'[a-z_]+\s*(?:=|!=)\s*"([^"]*)"', expr):
            assert value == NAMESPACE or re.fullmatch(r"[a-z0-9_]+", value), f"{name}: label value {value!r}"


def test_every_alert_has_a_runbook_section(rule: dict[str, Any]) -> None:
    text = ALERTS_MD.read_text()
    headings = re.findall(r"^## (\S+)$", text, flags=re.M)
    assert headings == list(ALERTS), "docs/alerts.md: one section per alert, in the rule's order"
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    for name, section in zip(ALERTS, sections, strict=True):
        for part in ("**What it means.**", "**What to check.**", "**What to do.**"):
            assert part in section, f"docs/alerts.md {name}: no {part}"
    for name, r in rules_of(rule).items():
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == name.lower(), f"{name}: the runbook anchor is GitHub's id of the heading `## {name}`"
    for doc in (CHART / "README.md", CHART.parents[1] / "docs" / "metrics.md"):
        assert "alerts.md" in doc.read_text(), f"{doc.name} does not link docs/alerts.md"


def test_rule_values(helm: None, yaml: Any) -> None:
    rule = render_rule(yaml, "metrics.prometheusRule.disabled={LivegateEventLoopLag,LivegateHeartbeatStale}",
                       "metrics.prometheusRule.alertLabels.team=voice",
                       "metrics.prometheusRule.labels.release=kube-prometheus-stack",
                       'metrics.prometheusRule.seriesSelector=job=~"lg-.*"',
                       "metrics.prometheusRule.runbookUrl=https://runbooks.example/livegate")
    assert rule is not None
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = rules_of(rule)
    assert set(alerts) == set(ALERTS) - {"LivegateEventLoopLag", "LivegateHeartbeatStale"}
    for name, r in alerts.items():
        assert r["labels"]["team"] == "voice" and r["labels"]["severity"], name
        assert 'job=~"lg-.*"' in r["expr"] and "namespace=" not in r["expr"], name
        assert r["annotations"]["runbook_url"] == f"https://runbooks.example/livegate#{name.lower()}"
    thresholds = render_rule(yaml, "metrics.prometheusRule.thresholds.deadWorkerTakeovers=4")
    assert thresholds is not None
    assert rules_of(thresholds)["LivegateWorkerTakeovers"]["expr"].rstrip().endswith("> 4")
    assert render_rule(yaml, "metrics.prometheusRule.enabled=false") is None
