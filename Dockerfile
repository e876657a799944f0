# syntax=docker/dockerfile:1
#
# livegate container image: one image, two workloads (`livegate front`, `livegate worker`), chosen by the
# command (the Helm chart in helm/livegate passes it).
#
#   docker build -t livegate:0.1.0 .                        # runtime (front / worker), the default target
#   docker build --target emulator -t livegate:0.1.0-emulator .   # + espeak-ng, for trials with the emulator
#
# NOTE: no container engine exists on the development machines or in CI, so this file is never built there.
# tests/helm/test_dockerfile.py checks its structure only (stages, pinned base tags, non-root USER, ENTRYPOINT).
#
# Runtime properties the chart relies on:
#   - runs as uid/gid 10001 (non-root, numeric so `runAsNonRoot` can verify it);
#   - writes nothing outside /tmp (HOME=/tmp, no .pyc writes): fine with readOnlyRootFilesystem + an emptyDir /tmp;
#   - ENTRYPOINT is `livegate`, so the pod's `args` are the subcommand (`front`, `worker`, `emulator ...`).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: the package and its pinned dependencies (pyproject.toml pins every direct dependency) into a venv --
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/livegate
WORKDIR /src
# Dependencies first (their layer is reused while only the code changes): every runtime dependency has
# manylinux wheels for CPython 3.11 (x86_64 and aarch64), so no compiler is needed.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt
RUN /opt/livegate/bin/pip install --no-compile -r /tmp/requirements.txt
COPY livegate ./livegate
COPY service ./service
COPY workers ./workers
COPY emulator ./emulator
COPY bench ./bench
# The package itself (not editable), its dependencies already there; bytecode compiled now, since the runtime
# root filesystem is read-only.
RUN /opt/livegate/bin/pip install --no-deps . \
 && /opt/livegate/bin/python -m compileall -q /opt/livegate/lib

# --- base: the slim runtime shared by the final image and the emulator image ---------------------------------
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 livegate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin livegate
COPY --from=builder /opt/livegate /opt/livegate
ENV PATH=/opt/livegate/bin:${PATH} \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIVEGATE_LOG_JSON=true \
    LIVEGATE_FRONT_LISTEN=0.0.0.0:50051 \
    LIVEGATE_METRICS_LISTEN=0.0.0.0:9090
WORKDIR /tmp
EXPOSE 50051 9090
ENTRYPOINT ["livegate"]
CMD ["--help"]

# --- emulator: optional, for trials (`livegate emulator`), with espeak-ng for speech-like audio ----------------
FROM base AS emulator
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
EXPOSE 8443
CMD ["emulator", "--host", "0.0.0.0", "--port", "8443", "--plain"]

# --- runtime: the default (last) target, front and worker ------------------------------------------------------
FROM base AS runtime
USER 10001:10001
