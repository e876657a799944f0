"""helm/livegate: `helm lint --strict` and `helm template` of every ci/*-values.yaml scenario, with assertions over
the rendered manifests (parsed with PyYAML). No cluster here: what Kubernetes would do with them is not tested."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHART, CLUSTER_APIS, NAMESPACE, RELEASE, SCENARIOS, run_helm, template

Manifest = dict[str, Any]
LIVEGATE_COMPONENTS = ("front", "worker", "emulator", "test")
COMPONENT = "app.kubernetes.io/component"
FULL = f"{RELEASE}-livegate"


def test_scenarios_are_the_expected_ones() -> None:
    assert set(SCENARIOS) == {"default", "external-redis-secret", "bundled-redis-emulator",
                              "monitoring-hpa-networkpolicy", "vertex-workload-identity", "front-auth-tls",
                              "front-routes"}


# -- helpers ------------------------------------------------------------------------------------------

def kinds(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_spec(d: Manifest) -> Manifest:
    return d["spec"] if d["kind"] == "Pod" else d["spec"]["template"]["spec"]


def pod_labels(d: Manifest) -> dict[str, str]:
    return d["metadata"]["labels"] if d["kind"] == "Pod" else d["spec"]["template"]["metadata"]["labels"]


def workloads(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Pod")]


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def container(docs: list[Manifest], component: str) -> Manifest:
    d = one(docs, "Deployment", f"{FULL}-{component}")
    (c,) = [c for c in pod_spec(d)["containers"] if c["name"] == component]
    return c


def selector_of(d: Manifest) -> dict[str, str] | None:
    """matchLabels-equivalent selector of a resource that selects pods (None: it selects none)."""
    kind, spec = d["kind"], d.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
        assert not spec["selector"].get("matchExpressions"), d["metadata"]["name"]
        return spec["selector"]["matchLabels"]
    if kind == "Service":
        return spec["selector"]
    if kind == "NetworkPolicy":
        return spec["podSelector"]["matchLabels"]
    return None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- lint and render ------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(helm: None, scenario: str) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                    "-f", str(CHART / "ci" / f"{scenario}-values.yaml"))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_renders_and_every_resource_is_labelled(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    docs = rendered[scenario]
    expected = {"Deployment", "Service", "ServiceAccount"} | ({"Pod"} if scenario != "front-auth-tls" else set())
    assert expected <= {d["kind"] for d in docs}
    for d in docs:
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "livegate"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert d["metadata"]["namespace"] == NAMESPACE
        assert len(d["metadata"]["name"]) <= 63
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate resources"


# -- components: labels and selectors ----------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_component_labels_and_selectors_never_overlap(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    docs = rendered[scenario]
    pods = {(d["kind"], d["metadata"]["name"]): pod_labels(d) for d in workloads(docs)}
    for labels in pods.values():
        assert labels[COMPONENT] in (*LIVEGATE_COMPONENTS, "redis")
    selectors: list[tuple[str, str, dict[str, str]]] = []
    for d in docs:
        sel = selector_of(d)
        if sel is None:
            continue
        assert COMPONENT in sel, f"{d['kind']}/{d['metadata']['name']} selects without a component"
        assert sel[COMPONENT] == d["metadata"]["labels"][COMPONENT]
        selectors.append((d["kind"], d["metadata"]["name"], sel))
        # a selector picks exactly the pods of its own component
        picked = {k for k, labels in pods.items() if selects(sel, labels)}
        expected = {k for k, labels in pods.items() if labels[COMPONENT] == sel[COMPONENT] and k[0] != "Pod"}
        assert picked == expected, f"{d['kind']}/{d['metadata']['name']} selects {picked}"
    for (k1, n1, s1), (k2, n2, s2) in itertools.combinations(selectors, 2):
        if s1[COMPONENT] != s2[COMPONENT]:
            assert any(k in s2 and s2[k] != v for k, v in s1.items()), f"{k1}/{n1} and {k2}/{n2} overlap"
    for d in kinds(docs, "Deployment") + kinds(docs, "StatefulSet"):
        assert selects(d["spec"]["selector"]["matchLabels"], pod_labels(d)), d["metadata"]["name"]
        assert d["metadata"]["labels"][COMPONENT] == pod_labels(d)[COMPONENT]


# -- the front --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_front_service_is_grpc_h2c(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    docs = rendered[scenario]
    svc = one(docs, "Service", f"{FULL}-front")
    (port,) = svc["spec"]["ports"]
    assert port["name"] == "grpc" and port["appProtocol"] in ("grpc", "kubernetes.io/h2c")
    assert port["targetPort"] == "grpc"
    c = container(docs, "front")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(ports) == {"grpc", "metrics"}
    env = env_of(c)
    assert env["LIVEGATE_FRONT_LISTEN"]["value"] == f"0.0.0.0:{ports['grpc']}"
    assert env["LIVEGATE_METRICS_LISTEN"]["value"] == f"0.0.0.0:{ports['metrics']}"
    assert c["args"] == ["front"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_livegate_variable_is_a_setting(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    """The chart's LIVEGATE_* variables name Settings fields, and their literal values parse as those fields."""
    from livegate.settings import Settings

    for comp in ("front", "worker"):
        env = env_of(container(rendered[scenario], comp))
        fields = {n.removeprefix("LIVEGATE_").lower(): e.get("value") for n, e in env.items() if n.startswith("LIVEGATE_")}
        assert fields.keys() <= Settings.model_fields.keys(), f"{comp}: {fields.keys() - Settings.model_fields.keys()}"
        literal = {k: v for k, v in fields.items() if v is not None and k.startswith("grpc_")}
        Settings(_env_file=None, **literal)


def test_front_connection_age(rendered: dict[str, list[Manifest]]) -> None:
    """Fronts age callers' connections out by default (new fronts get new sessions), never cutting a stream."""
    env = env_of(container(rendered["default"], "front"))
    assert env["LIVEGATE_GRPC_MAX_CONNECTION_AGE_S"]["value"] == "300"
    assert env["LIVEGATE_GRPC_MAX_CONNECTION_AGE_GRACE_S"]["value"] == "0"
    env = env_of(container(rendered["front-routes"], "front"))
    assert env["LIVEGATE_GRPC_MAX_CONNECTION_AGE_S"]["value"] == "120"
    assert "LIVEGATE_GRPC_MAX_CONNECTION_AGE_S" not in env_of(container(rendered["default"], "worker"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_front_native_grpc_probes(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    c = container(rendered[scenario], "front")
    grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    if "LIVEGATE_FRONT_TLS_CERT_FILE" in env_of(c):  # native gRPC probes cannot speak TLS: the metrics port
        assert {p: c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} == {
            "livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
        assert all(c[p]["httpGet"]["port"] == "metrics" and "grpc" not in c[p]
                   for p in ("livenessProbe", "readinessProbe", "startupProbe"))
        return
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["grpc"]["port"] == grpc_port, probe
        assert "httpGet" not in c[probe] and "exec" not in c[probe]
    assert c["readinessProbe"]["grpc"]["service"] == "livegate.v1.LiveGateway"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_front_termination_grace_above_its_shutdown(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    d = one(rendered[scenario], "Deployment", f"{FULL}-front")
    c = container(rendered[scenario], "front")
    grace = float(env_of(c)["LIVEGATE_FRONT_GRACE_S"]["value"])
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert 0 < sleep <= 15, "a short preStop sleep"
    assert pod_spec(d)["terminationGracePeriodSeconds"] > grace + sleep


# -- the worker -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worker_http_probes_on_metrics_port(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    c = container(rendered[scenario], "worker")
    assert [p["name"] for p in c["ports"]] == ["metrics"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["args"] == ["worker"]
    assert env_of(c)["LIVEGATE_METRICS_LISTEN"]["value"] == f"0.0.0.0:{c['ports'][0]['containerPort']}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worker_termination_grace_above_drain_timeout(rendered: dict[str, list[Manifest]], scenario: str,
                                                      scenario_values: dict[str, dict[str, Any]]) -> None:
    d = one(rendered[scenario], "Deployment", f"{FULL}-worker")
    c = container(rendered[scenario], "worker")
    drain = float(env_of(c)["LIVEGATE_DRAIN_TIMEOUT_S"]["value"])
    assert drain == scenario_values[scenario]["worker"]["drainTimeoutSeconds"]
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1]) if "lifecycle" in c else 0
    assert pod_spec(d)["terminationGracePeriodSeconds"] > drain + sleep
    # rolling updates start one new worker before an old one drains, and the next old one waits for that drain
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert d["spec"]["minReadySeconds"] >= drain


def test_worker_min_ready_follows_the_drain_timeout_unless_set(helm: None, yaml: Any) -> None:
    def worker(*settings: str) -> Manifest:
        args = [a for s in settings for a in ("--set", s)]
        out = template("-f", str(CHART / "ci" / "default-values.yaml"), *args).stdout
        return one([d for d in yaml.safe_load_all(out) if d], "Deployment", f"{FULL}-worker")

    assert worker()["spec"]["minReadySeconds"] == 30
    d = worker("worker.drainTimeoutSeconds=45")
    assert d["spec"]["minReadySeconds"] == 45 and pod_spec(d)["terminationGracePeriodSeconds"] == 55
    assert worker("worker.minReadySeconds=0")["spec"]["minReadySeconds"] == 0


def test_front_websocket_port_when_enabled(helm: None, yaml: Any) -> None:
    """front.websocket.enabled serves the Live API WebSocket protocol: LIVEGATE_WS_LISTEN, a `ws` container and
    Service port, and the callers' NetworkPolicy rule lets it in."""
    out = template("-f", str(CHART / "ci" / "monitoring-hpa-networkpolicy-values.yaml"),
                   "--set", "front.websocket.enabled=true", "--set", "front.websocket.port=8081").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    c = container(docs, "front")
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["ws"] == 8081
    assert env_of(c)["LIVEGATE_WS_LISTEN"]["value"] == "0.0.0.0:8081"
    ports = {p["name"]: p for p in one(docs, "Service", f"{FULL}-front")["spec"]["ports"]}
    assert ports["ws"]["port"] == 8081 and ports["ws"]["targetPort"] == "ws"
    rule = next(r for r in one(docs, "NetworkPolicy", f"{FULL}-front")["spec"]["ingress"] if r["ports"][0]["port"] == "grpc")
    assert {"port": "ws", "protocol": "TCP"} in rule["ports"]
    off = [d for d in yaml.safe_load_all(template("-f", str(CHART / "ci" / "default-values.yaml")).stdout) if d]
    assert "LIVEGATE_WS_LISTEN" not in env_of(container(off, "front"))
    assert [p["name"] for p in one(off, "Service", f"{FULL}-front")["spec"]["ports"]] == ["grpc"]


# -- scheduling -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_soft_spread_over_nodes_and_zones(rendered: dict[str, list[Manifest]], scenario: str,
                                          scenario_values: dict[str, dict[str, Any]]) -> None:
    """Front and worker pods spread over nodes and zones by default, softly (never a required term), each
    selecting its own component's pods; a value of the user's replaces the default."""
    for comp in ("front", "worker"):
        d = one(rendered[scenario], "Deployment", f"{FULL}-{comp}")
        spec, labels = pod_spec(d), pod_labels(d)
        values = scenario_values[scenario][comp]
        if values["topologySpreadConstraints"]:
            assert spec["topologySpreadConstraints"] == values["topologySpreadConstraints"]
        else:
            constraints = spec["topologySpreadConstraints"]
            assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
            for c in constraints:
                assert c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1
                assert c["labelSelector"]["matchLabels"][COMPONENT] == comp
                assert selects(c["labelSelector"]["matchLabels"], labels)
                assert c["matchLabelKeys"] == ["pod-template-hash"]
        anti = spec["affinity"]["podAntiAffinity"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
        terms = {t["podAffinityTerm"]["topologyKey"]: t for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]}
        assert set(terms) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        assert terms["kubernetes.io/hostname"]["weight"] > terms["topology.kubernetes.io/zone"]["weight"]
        for t in terms.values():
            assert t["podAffinityTerm"]["labelSelector"]["matchLabels"][COMPONENT] == comp


def test_soft_spread_can_be_turned_off_or_replaced(helm: None, yaml: Any) -> None:
    affinity = '{"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"preference":' \
               '{"matchExpressions":[{"key":"pool","operator":"In","values":["voice"]}]}}]}}'
    out = template("-f", str(CHART / "ci" / "default-values.yaml"), "--set", "front.defaultSpread=false",
                   "--set-json", f"worker.affinity={affinity}").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    front = pod_spec(one(docs, "Deployment", f"{FULL}-front"))
    assert "affinity" not in front and "topologySpreadConstraints" not in front
    worker = pod_spec(one(docs, "Deployment", f"{FULL}-worker"))
    assert worker["affinity"] == json.loads(affinity)
    assert len(worker["topologySpreadConstraints"]) == 2, "only the affinity was replaced"


# -- security ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_security_contexts(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    for d in workloads(rendered[scenario]):
        spec = pod_spec(d)
        name = f"{d['kind']}/{d['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        tmp = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], f"{name}: no emptyDir /tmp"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name
            image = c["image"]
            assert not image.endswith(":latest") and (":" in image.rsplit("/", 1)[-1] or "@sha256:" in image), image


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secret_references_resolve(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    """Every reference to the chart's own Secret names a key it holds; others point at existingSecrets."""
    docs = rendered[scenario]
    own = {d["metadata"]["name"]: set(d["data"]) for d in kinds(docs, "Secret")}
    refs: list[tuple[str, str]] = []
    for d in workloads(docs):
        spec = pod_spec(d)
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref["key"]))
        for v in spec.get("volumes", []):
            if "secret" in v:
                refs.extend((v["secret"]["secretName"], i["key"]) for i in v["secret"]["items"])
    for name, key in refs:
        if name == FULL:
            assert key in own.get(FULL, set()), f"{key} missing from the chart's Secret"
        else:
            assert name.startswith("livegate-"), f"unexpected Secret {name}"  # the scenarios' existingSecrets
    for name, data in own.items():
        for value in (d["data"] for d in kinds(docs, "Secret") if d["metadata"]["name"] == name):
            assert all(v for v in value.values()), "empty Secret value"


# -- scenarios ---------------------------------------------------------------------------------------

def test_default_scenario(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["default"]
    present = {d["kind"] for d in docs}
    assert not present & {"ServiceMonitor", "PodMonitor", "HorizontalPodAutoscaler", "NetworkPolicy", "ConfigMap",
                          "StatefulSet"}
    assert {d["metadata"]["name"] for d in kinds(docs, "PodDisruptionBudget")} == {f"{FULL}-front", f"{FULL}-worker"}
    for pdb in kinds(docs, "PodDisruptionBudget"):
        assert pdb["spec"]["maxUnavailable"] == 1
    for comp in ("front", "worker"):
        assert one(docs, "Deployment", f"{FULL}-{comp}")["spec"]["replicas"] == 2
    w = env_of(container(docs, "worker"))
    assert w["LIVEGATE_UPSTREAM_URL"]["value"] == "https://generativelanguage.googleapis.com"
    assert w["LIVEGATE_UPSTREAM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "livegate-upstream", "key": "api-key"}
    assert w["LIVEGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "redis-url"}
    assert "LIVEGATE_UPSTREAM_API_KEY" not in env_of(container(docs, "front")), "the front never holds upstream keys"
    sa = one(docs, "ServiceAccount", FULL)
    assert "iam.gke.io/gcp-service-account" not in (sa["metadata"].get("annotations") or {})
    # helm test: a gRPC health check of the front Service with the livegate image
    (test_pod,) = kinds(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    tc = test_pod["spec"]["containers"][0]
    assert tc["command"][:2] == ["python", "-c"] and "grpc_health.v1" in tc["command"][2]
    assert tc["command"][3] == f"{FULL}-front:50051" and tc["command"][4] == "livegate.v1.LiveGateway"
    assert tc["image"] == container(docs, "front")["image"]
    compile(tc["command"][2], "helm-test", "exec")


def test_external_redis_from_existing_secret(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["external-redis-secret"]
    assert not kinds(docs, "StatefulSet") and not kinds(docs, "Secret"), "nothing inline: no chart Secret"
    for comp in ("front", "worker"):
        ref = env_of(container(docs, comp))["LIVEGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "livegate-redis", "key": "url"}
    w = env_of(container(docs, "worker"))
    assert w["LIVEGATE_UPSTREAM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "livegate-upstream",
                                                                           "key": "gemini-api-key"}
    assert w["LIVEGATE_DRAIN_TIMEOUT_S"]["value"] == "45"
    assert pod_spec(one(docs, "Deployment", f"{FULL}-worker"))["terminationGracePeriodSeconds"] == 55
    front = container(docs, "front")
    assert env_of(front)["LIVEGATE_CALLER_KEYS_FILE"]["value"] == "/etc/livegate/caller-keys/caller-keys"
    vol = next(v for v in pod_spec(one(docs, "Deployment", f"{FULL}-front"))["volumes"] if v["name"] == "caller-keys")
    assert vol["secret"]["secretName"] == "livegate-caller-keys"
    assert vol["secret"]["items"] == [{"key": "keys", "path": "caller-keys"}]
    assert front["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert one(docs, "Service", f"{FULL}-front")["spec"]["type"] == "LoadBalancer"


def test_bundled_redis_and_emulator(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["bundled-redis-emulator"]
    sts = one(docs, "StatefulSet", f"{FULL}-redis")
    assert sts["spec"]["replicas"] == 1 and "latest" not in pod_spec(sts)["containers"][0]["image"]
    redis_svc = one(docs, "Service", f"{FULL}-redis")
    for comp in ("front", "worker"):
        assert env_of(container(docs, comp))["LIVEGATE_REDIS_URL"]["value"] == f"redis://{FULL}-redis:6379/0"
    assert redis_svc["spec"]["ports"][0]["port"] == 6379
    emu = container(docs, "emulator")
    assert emu["args"][:6] == ["emulator", "--host", "0.0.0.0", "--port", "8443", "--plain"]
    one(docs, "Service", f"{FULL}-emulator")
    w = env_of(container(docs, "worker"))
    assert w["LIVEGATE_UPSTREAM_URL"]["value"] == f"http://{FULL}-emulator:8443"
    assert w["LIVEGATE_UPSTREAM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "upstream-api-key"}
    assert not kinds(docs, "PodDisruptionBudget")
    secret = one(docs, "Secret", FULL)
    assert set(secret["data"]) == {"upstream-api-key", "caller-keys"}


def test_monitoring_hpa_networkpolicy(rendered: dict[str, list[Manifest]], yaml: Any) -> None:
    docs = rendered["monitoring-hpa-networkpolicy"]
    # HPAs own the replica counts
    for comp in ("front", "worker"):
        assert "replicas" not in one(docs, "Deployment", f"{FULL}-{comp}")["spec"]
        hpa = one(docs, "HorizontalPodAutoscaler", f"{FULL}-{comp}")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{FULL}-{comp}"}
    worker_hpa = one(docs, "HorizontalPodAutoscaler", f"{FULL}-worker")
    assert {m["type"] for m in worker_hpa["spec"]["metrics"]} == {"Resource", "Pods"}
    assert worker_hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # ServiceMonitor -> the front's metrics Service; PodMonitor -> worker pods
    sm = one(docs, "ServiceMonitor", f"{FULL}-front")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    metrics_svc = one(docs, "Service", f"{FULL}-front-metrics")
    assert selects(sm["spec"]["selector"]["matchLabels"], metrics_svc["metadata"]["labels"])
    assert not selects(sm["spec"]["selector"]["matchLabels"], one(docs, "Service", f"{FULL}-front")["metadata"]["labels"])
    assert [p["name"] for p in metrics_svc["spec"]["ports"]] == ["metrics"]
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    pm = one(docs, "PodMonitor", FULL)
    (expr,) = pm["spec"]["selector"]["matchExpressions"]
    assert expr == {"key": COMPONENT, "operator": "In", "values": ["worker"]}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # NetworkPolicies
    front_np = one(docs, "NetworkPolicy", f"{FULL}-front")
    grpc_rule = next(r for r in front_np["spec"]["ingress"] if r["ports"][0]["port"] == "grpc")
    assert {"namespaceSelector": {"matchLabels": {"livegate.io/caller": "true"}}} in grpc_rule["from"]
    for comp in ("front", "worker"):
        np = one(docs, "NetworkPolicy", f"{FULL}-{comp}")
        assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        metrics_rule = next(r for r in np["spec"]["ingress"] if r["ports"][0]["port"] == "metrics")
        assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
        egress_ports = {(p["port"], p.get("protocol", "TCP")) for r in np["spec"]["egress"] for p in r["ports"]}
        assert {(53, "UDP"), (53, "TCP"), (6380, "TCP")} <= egress_ports
        redis_rule = next(r for r in np["spec"]["egress"] if r["ports"][0]["port"] == 6380)
        assert redis_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    worker_egress = {p["port"] for r in one(docs, "NetworkPolicy", f"{FULL}-worker")["spec"]["egress"] for p in r["ports"]}
    front_egress = {p["port"] for r in front_np["spec"]["egress"] for p in r["ports"]}
    assert 443 in worker_egress and 443 not in front_egress, "only workers reach the upstream"
    # dashboards: one ConfigMap each, sidecar label, the JSON byte for byte (Grafana's {{ }} intact)
    cms = kinds(docs, "ConfigMap")
    files = {p.stem: p for p in (CHART / "dashboards").glob("*.json")}
    assert {cm["metadata"]["name"] for cm in cms} == {f"{FULL}-dashboard-{n}" for n in files}
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "livegate"}
        ((key, text),) = cm["data"].items()
        stem = cm["metadata"]["name"].removeprefix(f"{FULL}-dashboard-")
        assert key == f"livegate-{stem}.json"
        assert text == files[stem].read_text().rstrip("\n")
        board = json.loads(text)
        assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in board["templating"]["list"])
        assert "{{" in text, "legend templates survive rendering"


def test_vertex_with_service_account_secret_and_workload_identity(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["vertex-workload-identity"]
    sa = one(docs, "ServiceAccount", FULL)
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == "livegate@my-project.iam.gserviceaccount.com"
    assert sa["metadata"]["annotations"]["example.com/owner"] == "platform"
    for comp in ("front", "worker"):
        assert pod_spec(one(docs, "Deployment", f"{FULL}-{comp}"))["serviceAccountName"] == FULL
    c = container(docs, "worker")
    env = env_of(c)
    assert env["LIVEGATE_UPSTREAM_FLAVOUR"]["value"] == "vertex"
    assert env["LIVEGATE_VERTEX_PROJECT"]["value"] == "my-project"
    assert env["LIVEGATE_VERTEX_LOCATION"]["value"] == "europe-west4"
    assert env["LIVEGATE_UPSTREAM_URL"]["value"] == "https://europe-west4-aiplatform.googleapis.com"
    assert "LIVEGATE_UPSTREAM_API_KEY" not in env, "vertex uses Google credentials"
    assert env["LIVEGATE_GOOGLE_CREDENTIALS_FILE"]["value"] == "/etc/livegate/google/credentials.json"
    assert env["LIVEGATE_UPSTREAM_CA_FILE"]["value"] == "/etc/livegate/upstream-ca/ca.crt"
    assert env["LIVEGATE_ALLOWED_MODELS"]["value"] == '["gemini-live-2.5-flash"]'
    assert env["LIVEGATE_LOG_LEVEL"]["value"] == "DEBUG"
    vols = {v["name"]: v for v in pod_spec(one(docs, "Deployment", f"{FULL}-worker"))["volumes"]}
    assert vols["google-credentials"]["secret"]["secretName"] == "livegate-vertex-sa"
    assert vols["google-credentials"]["secret"]["items"] == [{"key": "key.json", "path": "credentials.json"}]
    assert vols["upstream-ca"]["configMap"]["name"] == "corp-ca"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["google-credentials"]["mountPath"] == "/etc/livegate/google" and mounts["google-credentials"]["readOnly"]


def test_front_routes_headless_ingress_grpcroute(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["front-routes"]
    front = one(docs, "Deployment", f"{FULL}-front")
    grpc_port = next(p["containerPort"] for p in container(docs, "front")["ports"] if p["name"] == "grpc")
    # headless: every ready front's address, on the container port (clients connect to the pods)
    headless = one(docs, "Service", f"{FULL}-front-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    assert selects(headless["spec"]["selector"], pod_labels(front))
    (port,) = headless["spec"]["ports"]
    assert port == {"name": "grpc", "port": grpc_port, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    # ingress-nginx: gRPC to the front Service, long read/send timeouts, the user's annotation wins
    ing = one(docs, "Ingress", f"{FULL}-front")
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"
    assert ann["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["livegate.example.com"], "secretName": "livegate-ingress-tls"}]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "livegate.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": f"{FULL}-front", "port": {"name": "grpc"}}
    # GRPCRoute to the front Service's port
    route = one(docs, "GRPCRoute", f"{FULL}-front")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "internal-gateway", "namespace": "gateway-system",
                                            "sectionName": "grpc"}]
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend == {"name": f"{FULL}-front", "port": one(docs, "Service", f"{FULL}-front")["spec"]["ports"][0]["port"]}
    # off by default
    for name in ("default", "monitoring-hpa-networkpolicy"):
        assert not kinds(rendered[name], "Ingress") and not kinds(rendered[name], "GRPCRoute")
        assert all(s["metadata"]["name"] != f"{FULL}-front-headless" for s in kinds(rendered[name], "Service"))


def test_grpcroute_needs_gateway_api_v1_and_a_parent(helm: None, yaml: Any) -> None:
    values = ("-f", str(CHART / "ci" / "front-routes-values.yaml"))
    # Gateway API 1.0 serves gateway.networking.k8s.io/v1 but GRPCRoute only at v1alpha2
    for apis in ((), ("--api-versions", "gateway.networking.k8s.io/v1")):
        docs = [d for d in yaml.safe_load_all(template(*values, *apis).stdout) if d]
        assert not kinds(docs, "GRPCRoute") and kinds(docs, "Ingress")
    proc = template(*values, *CLUSTER_APIS, "--set", "front.grpcRoute.parentRefs=null", check=False)
    assert proc.returncode != 0 and "parentRefs" in proc.stderr, proc.stderr


def test_notes_warn_of_what_the_cluster_cannot_serve(helm: None) -> None:
    """Enabled but not rendered (no prometheus-operator CRDs, no GRPCRoute v1): `helm install` says so."""
    proc = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                    "-f", str(CHART / "ci" / "front-routes-values.yaml"))
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "prometheusRule are enabled but this cluster does not serve" in notes
    assert "front.grpcRoute.enabled, but this cluster does not serve GRPCRoute" in notes
    assert f"dns:///{FULL}-front-headless.{NAMESPACE}.svc.cluster.local:50051" in notes
    quiet = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                     "-f", str(CHART / "ci" / "default-values.yaml")).stdout.split("NOTES:", 1)[1]
    assert "WARNING" not in quiet and "dns:///" not in quiet


def test_ingress_to_a_tls_front_is_grpcs(helm: None, yaml: Any) -> None:
    out = template("-f", str(CHART / "ci" / "front-auth-tls-values.yaml"), "--set", "front.ingress.enabled=true").stdout
    ing = one([d for d in yaml.safe_load_all(out) if d], "Ingress", f"{FULL}-front")
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    assert ing["spec"]["rules"] == [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": f"{FULL}-front", "port": {"name": "grpc"}}}}]}}], "no hosts: one rule for any host"


@pytest.mark.parametrize(("settings", "port"), [
    ((), 443),                                                         # Google's JWKS
    (("auth.oidc.jwks=https://keys.example.internal:8443/certs",), 8443),
    (("auth.oidc.jwks=/etc/livegate/jwks.json",), None),               # a file: no egress
    (("auth.modes={api_key}",), None),                                 # no oidc: no egress
])
def test_oidc_key_egress_of_the_fronts(helm: None, yaml: Any, settings: tuple[str, ...], port: int | None) -> None:
    args = [a for s in ("networkPolicy.enabled=true", *settings) for a in ("--set", s)]
    out = template("-f", str(CHART / "ci" / "front-auth-tls-values.yaml"), *args).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    base = {53, 6379}
    rules = one(docs, "NetworkPolicy", f"{FULL}-front")["spec"]["egress"]
    ports = {p["port"] for r in rules for p in r["ports"]}
    assert ports == (base | {port} if port else base)
    if port:
        (rule,) = [r for r in rules if r["ports"] == [{"port": port, "protocol": "TCP"}]]
        assert "to" not in rule, "any destination unless networkPolicy.oidcTo"
    worker_ports = {p["port"] for r in one(docs, "NetworkPolicy", f"{FULL}-worker")["spec"]["egress"] for p in r["ports"]}
    assert port is None or port == 443 or port not in worker_ports, "the keys are the fronts' egress, not the workers'"


def test_oidc_key_egress_narrowed(helm: None, yaml: Any) -> None:
    peer = '[{"ipBlock":{"cidr":"203.0.113.0/24"}}]'
    out = template("-f", str(CHART / "ci" / "front-auth-tls-values.yaml"), "--set", "networkPolicy.enabled=true",
                   "--set-json", f"networkPolicy.oidcTo={peer}").stdout
    rules = one([d for d in yaml.safe_load_all(out) if d], "NetworkPolicy", f"{FULL}-front")["spec"]["egress"]
    (rule,) = [r for r in rules if r["ports"] == [{"port": 443, "protocol": "TCP"}]]
    assert rule["to"] == json.loads(peer)


def test_workload_identity_alone(helm: None, yaml: Any) -> None:
    """Vertex with workload identity and no credentials file: application default credentials."""
    out = template("-f", str(CHART / "ci" / "vertex-workload-identity-values.yaml"),
                   "--set", "upstream.credentials.existingSecret=").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    env = env_of(container(docs, "worker"))
    assert "LIVEGATE_GOOGLE_CREDENTIALS_FILE" not in env
    assert "google-credentials" not in {v["name"] for v in pod_spec(one(docs, "Deployment", f"{FULL}-worker"))["volumes"]}


# -- the schema and the render-time checks ---------------------------------------------------------------

@pytest.mark.parametrize(("setting", "message"), [
    ("front.replcas=3", "replcas"),                                   # typo in a chart object
    ("worker.drainTimeoutSecond=5", "drainTimeoutSecond"),
    ("metric.serviceMonitor.enabled=true", "metric"),                 # typo at the top level
    ("networkPolicy.enable=true", "enable"),
    ("image.tag=latest", "tag"),
    ("upstream.flavour=openai", "flavour"),
    ("redis.external.url=http://redis:6379", "url"),
    ("metrics.podMonitor.components={front,redis}", "components"),
])
def test_schema_rejects_bad_values(helm: None, setting: str, message: str) -> None:
    proc = template("-f", str(CHART / "ci" / "default-values.yaml"), "--set", setting, check=False)
    assert proc.returncode != 0, f"--set {setting} rendered"
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(("settings", "message"), [
    ((), "Redis is required"),
    (("redis.enabled=true", "redis.external.url=redis://x:6379"), "exclusive"),
    (("redis.enabled=true", "upstream.flavour=vertex"), "upstream.vertex.project"),
    (("redis.enabled=true",), "needs an API key"),
    (("redis.enabled=true", "emulator.enabled=true", "callerKeys.enabled=true"), "callerKeys"),
])
def test_render_fails_on_incomplete_values(helm: None, settings: tuple[str, ...], message: str) -> None:
    args = [a for s in settings for a in ("--set", s)]
    proc = template(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_values_file_documents_every_key() -> None:
    """Every key of values.yaml has a comment line right above it, and every key is camelCase (the insides of
    Kubernetes pass-through objects excepted)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    passthrough_parents = ("resources", "podSecurityContext", "securityContext", "livenessProbe", "readinessProbe",
                           "startupProbe", "behavior", "namespaceSelector", "to", "upstreamTo", "requests", "limits",
                           "matchLabels", "podSelector", "policies", "capabilities", "seccompProfile")
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, key))
        if any(p in passthrough_parents for p in parents):
            continue
        assert key[0].islower() and "_" not in key and "-" not in key, f"values.yaml:{i + 1}: {key} is not camelCase"
        assert lines[i - 1].strip().startswith("#"), f"values.yaml:{i + 1}: {key} has no comment above it"


def test_schema_is_draft07_and_closed(yaml: Any) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '/'} accepts unknown keys"
            for k, v in node["properties"].items():
                walk(v, f"{path}/{k}")

    walk(schema, "")
    # every key of values.yaml is in the schema (and the other way round)
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def keys(v: Any, s: dict[str, Any], path: str) -> None:
        if isinstance(v, dict) and "properties" in s:
            assert set(v) <= set(s["properties"]), f"{path}: {set(v) - set(s['properties'])} not in the schema"
            assert set(s["properties"]) - {"global"} <= set(v), f"{path}: schema keys without a default"
            for k, sub in v.items():
                keys(sub, s["properties"][k], f"{path}/{k}")

    keys(values, schema, "")


def test_chart_metadata(yaml: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["kubeVersion"] and chart["appVersion"]
    import tomllib

    project = tomllib.loads((Path(CHART).parents[1] / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "appVersion follows the package version"
    templates = sorted(p.name for p in (CHART / "templates").glob("*.yaml"))
    for name in templates:
        text = (CHART / "templates" / name).read_text()
        kind_lines = {ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("kind:")}
        assert len(kind_lines) == 1, f"{name}: one kind per template file, found {kind_lines}"
        assert name.split("-")[0].removesuffix(".yaml") == next(iter(kind_lines)).lower(), name


def test_helm_test_pod_script_against_a_real_health_service(rendered: dict[str, list[Manifest]]) -> None:
    """The `helm test` pod's script, run here against a grpc.health.v1 server on a free port: exit 0 while
    SERVING, 1 while NOT_SERVING (as a draining front reports)."""
    import os
    import subprocess
    import sys
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    (pod,) = kinds(rendered["default"], "Pod")
    command = pod["spec"]["containers"][0]["command"]
    script, service = command[2], command[4]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    try:
        for status, rc in ((health_pb2.HealthCheckResponse.SERVING, 0), (health_pb2.HealthCheckResponse.NOT_SERVING, 1)):
            servicer.set(service, status)
            proc = subprocess.run([sys.executable, "-c", script, f"127.0.0.1:{port}", service],
                                  capture_output=True, text=True, timeout=60, env=env)
            assert proc.returncode == rc, proc.stdout + proc.stderr
            assert health_pb2.HealthCheckResponse.ServingStatus.Name(status) in proc.stdout
    finally:
        server.stop(0)


@pytest.mark.parametrize("kube_version", ["1.27.0", "1.35.0"])
def test_renders_on_the_supported_kubernetes_range(helm: None, kube_version: str) -> None:
    template("-f", str(CHART / "ci" / "monitoring-hpa-networkpolicy-values.yaml"), "--kube-version", kube_version)
    proc = template("-f", str(CHART / "ci" / "default-values.yaml"), "--kube-version", "1.26.0", check=False)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr + proc.stdout, proc.stderr


@pytest.mark.parametrize("kube_version", ["1.27.0", "1.35.0"])
def test_manifests_validate_against_kubernetes_schemas(helm: None, tmp_path: Path, kube_version: str) -> None:
    """Every rendered resource of every scenario against the Kubernetes OpenAPI schemas (strict: unknown fields
    fail), with kubernetes-validate in its own process. The prometheus-operator and Gateway API CRDs have no
    schema there."""
    import os
    import subprocess
    import sys

    from .conftest import KUBERNETES_VALIDATE, pip_target

    lib = pip_target(KUBERNETES_VALIDATE)
    files = []
    for scenario in SCENARIOS:
        path = tmp_path / f"{scenario}.yaml"
        path.write_text(template("-f", str(CHART / "ci" / f"{scenario}-values.yaml"),
                                 "--kube-version", kube_version, *CLUSTER_APIS).stdout)
        files.append(str(path))
    env = {**os.environ, "PYTHONPATH": str(lib)}
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", kube_version, "--strict", "--quiet",
                           *files], capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "ERROR" not in out, out
    skipped = {line.split("kind ")[1].split(" ")[0] for line in out.splitlines() if "Couldn't find schema" in line}
    assert skipped <= {"ServiceMonitor", "PodMonitor", "PrometheusRule", "GRPCRoute"}, out
