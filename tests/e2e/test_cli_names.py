"""Each command names itself as a person types it: ``livegate emulator --help`` is ``livegate emulator``."""

from __future__ import annotations

from tests.e2e.test_cli import run


async def test_emulator_help_shows_its_real_name() -> None:
    code, out = await run("emulator", "--help", timeout_s=60)
    assert code == 0, out
    assert out.startswith("usage: livegate emulator "), out
    assert "python -m emulator" not in out
