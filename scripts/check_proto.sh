#!/usr/bin/env bash
# Proto hygiene: buf lint, buf format, buf breaking against main, and generated-code freshness.
#
#   bash scripts/check_proto.sh
#
# buf comes from node_modules (pinned in package.json / package-lock.json); it is installed with npm when missing.
# Set PYTHON to choose the interpreter for gen_proto.py (default: .venv/bin/python if present, else python3).
set -euo pipefail

cd "$(dirname "$0")/.."

BUF=node_modules/.bin/buf
if [[ ! -x "$BUF" ]]; then
  # `npm install` rather than `npm ci`: the lock file holds only the platform packages of @bufbuild/buf that the
  # registry served when it was written (linux), and `npm ci` refuses such a lock file; install still honours it.
  echo "check_proto: installing buf (npm install from package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error
fi

echo "check_proto: buf lint"
"$BUF" lint

echo "check_proto: buf format"
"$BUF" format --diff --exit-code

# PROTO_AGAINST overrides the baseline, e.g. PROTO_AGAINST='.git#ref=HEAD~1,subdir=proto' or a release tag.
AGAINST_BRANCH=main
if [[ -n "${PROTO_AGAINST:-}" ]]; then
  echo "check_proto: buf breaking against $PROTO_AGAINST"
  "$BUF" breaking proto --against "$PROTO_AGAINST"
elif git rev-parse --verify --quiet "refs/heads/$AGAINST_BRANCH" >/dev/null \
  && git ls-tree -r --name-only "$AGAINST_BRANCH" -- proto | grep -q '\.proto$'; then
  echo "check_proto: buf breaking against $AGAINST_BRANCH"
  "$BUF" breaking proto --against ".git#branch=$AGAINST_BRANCH,subdir=proto"
else
  echo "check_proto: buf breaking skipped: branch $AGAINST_BRANCH has no proto files yet (first commit)"
fi

PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
echo "check_proto: generated code"
"$PYTHON" scripts/gen_proto.py --check

echo "check_proto: OK"
