"""buf guards the public API: lint and format are clean, and `buf breaking` catches a changed field.

Runs the buf pinned in package.json (node_modules/.bin/buf; installed with npm when missing). Skipped only when
node/npm are not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
LIVE = "proto/livegate/v1/live.proto"
GATEWAY = "proto/livegate/v1/gateway.proto"


@pytest.fixture(scope="module")
def buf() -> Path:
    if not BUF.exists():
        if shutil.which("node") is None or shutil.which("npm") is None:
            pytest.skip("node/npm not installed: buf (an npm package, see package.json) cannot run")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=100,
        )
    return BUF


def run_buf(buf: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(buf), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def copy_module(dest: Path) -> Path:
    """Copy buf.yaml and proto/ into dest (a self-contained buf workspace)."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "buf.yaml", dest / "buf.yaml")
    shutil.copytree(ROOT / "proto", dest / "proto")
    return dest


def edit(root: Path, relpath: str, pattern: str, replacement: str) -> None:
    path = root / relpath
    text = path.read_text()
    new_text, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, f"pattern {pattern!r} not found in {relpath}"
    path.write_text(new_text)


def test_lint_clean(buf: Path) -> None:
    result = run_buf(buf, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_format_clean(buf: Path) -> None:
    result = run_buf(buf, "format", "--diff", "--exit-code")
    assert result.returncode == 0, result.stdout + result.stderr


BREAKS: dict[str, tuple[Callable[[Path], None], str]] = {
    "rename field": (
        lambda root: edit(root, GATEWAY, r"^(message GetSessionRequest \{\n(?:.*\n)*?  string) session_id = 1;", r"\1 id = 1;"),
        "changed name",
    ),
    "renumber field": (
        lambda root: edit(
            root,
            LIVE,
            r"^(message BidiGenerateContentClientContent \{\n(?:.*\n)*?  optional bool turn_complete) = 2;",
            r"\1 = 3;",
        ),
        "deleted",
    ),
    "change field type": (
        lambda root: edit(root, LIVE, r"^(message SessionResumptionUpdate \{\n(?:.*\n)*?  optional) bool resumable = 2;", r"\1 string resumable = 2;"),
        "changed type",
    ),
    "delete field": (
        lambda root: edit(root, GATEWAY, r"^  uint64 seq = 110;\n", ""),
        "deleted",
    ),
    "rename enum value": (
        lambda root: edit(root, LIVE, r"^    AUDIO = 3;", "    SOUND = 3;"),
        "changed name",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_breaking_change_fails(buf: Path, tmp_path: Path, name: str) -> None:
    mutate, expected = BREAKS[name]
    original = copy_module(tmp_path / "original")
    changed = copy_module(tmp_path / "changed")
    mutate(changed)
    result = run_buf(buf, "breaking", str(changed), "--against", str(original))
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"buf breaking accepted a breaking change ({name}):\n{output}"
    assert expected in output, output


def test_compatible_change_passes(buf: Path, tmp_path: Path) -> None:
    """The control: an unchanged copy and an added field are not breaking."""
    original = copy_module(tmp_path / "original")
    changed = copy_module(tmp_path / "changed")
    unchanged = run_buf(buf, "breaking", str(changed), "--against", str(original))
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    edit(changed, GATEWAY, r"^(message Drain \{\n(?:.*\n)*?  string reason = 1;)", r"\1\n\n  // Added.\n  string detail = 2;")
    added = run_buf(buf, "breaking", str(changed), "--against", str(original))
    assert added.returncode == 0, added.stdout + added.stderr
