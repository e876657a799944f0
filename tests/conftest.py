"""Shared fixtures: a real redis-server for the whole run (its own free port), and the livegate stack
(emulator over real TLS, two workers, a front) per test."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from livegate.cli.devstack import RedisProcess

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

# Property tests check behaviour, never speed: no per-example deadline and no "input generation is slow"
# health check, both of which fail on a busy 2-core CI machine (a first draw once took 1.1 s here).
settings.register_profile("livegate", deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
settings.load_profile("livegate")


# Secrets the suite uses or mints, which no gateway log line may ever contain (issue: "a grep of all logs
# from the suite finds no key, token or handle"). Reattach tokens and upstream handles are random per
# session; the gateway logs neither, and their shapes are covered by the markers below.
SECRET_MARKERS = ("test-upstream-key", "livegate-dev-key", "test-key", "lgh_", "x-goog-api-key", "Bearer ")
GATEWAY_LOGGERS = ("livegate", "service", "workers")


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in GATEWAY_LOGGERS:
            self.lines.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_gateway_logs() -> Iterator[None]:
    """Every gateway log line of the whole run (DEBUG included, tracebacks included) is checked for secrets."""
    recorder = _Recorder()
    recorder.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(recorder)
    saved = {name: logging.getLogger(name).level for name in GATEWAY_LOGGERS}
    for name in GATEWAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    leaks = [line for line in recorder.lines if any(m in line for m in SECRET_MARKERS)]
    assert not leaks, f"{len(leaks)} gateway log lines carry a secret, e.g. {leaks[:3]}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    proc = RedisProcess().start()
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    from livegate.redis.connect import connect

    client = connect(redis_url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def emulator_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulator.config import EmulatorConfig

    return EmulatorConfig(port=0, pacing=0.0, cert_dir=str(tmp_path_factory.getbasetemp() / "emulator-cert"))


@pytest.fixture
def flavour() -> str:
    """The upstream flavour of the stack; tests parametrize it to run against both."""
    return "gemini"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def stack(redis: Any, redis_url: str, emulator_config: Any, flavour: str,
                settings_overrides: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    from livegate.cli.devstack import dev_stack
    from livegate.settings import Settings

    settings = Settings(**{"redis_url": redis_url, "front_listen": "127.0.0.1:0", "worker_capacity": 10,
                           "setup_timeout_s": 10.0, "log_json": False, "upstream_api_key": "test-upstream-key",
                           "upstream_flavour": flavour, "vertex_project": "test-project", **settings_overrides})
    async with dev_stack(settings, workers=2, emulator_config=emulator_config, start_redis=False) as parts:
        parts["redis"] = redis
        yield parts


@pytest.fixture
async def client(stack: dict[str, Any]) -> AsyncIterator[Any]:
    from livegate.client import Client

    async with Client(stack["front"].address) as c:
        yield c


@contextlib.asynccontextmanager
async def nothing() -> AsyncIterator[None]:
    yield
