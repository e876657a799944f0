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

# The baseline is the last released API: proto/released.binpb, a buf image committed with each release, so
# the check means the same in any clone (CI clones main, where "against main" would compare main with
# itself). An incompatible change fails the build unless it goes into a new version package (livegate.v2).
# Releasing an API state: node_modules/.bin/buf build -o proto/released.binpb
# PROTO_AGAINST overrides the baseline, e.g. PROTO_AGAINST='.git#ref=HEAD~1,subdir=proto'.
AGAINST=${PROTO_AGAINST:-proto/released.binpb}
echo "check_proto: buf breaking against $AGAINST"
"$BUF" breaking proto --against "$AGAINST"

PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
echo "check_proto: generated code"
"$PYTHON" scripts/gen_proto.py --check

echo "check_proto: OK"
