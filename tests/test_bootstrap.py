"""The bootstrap (run by `make test` and `make demo` before anything else) installs what the project needs
without modifying a tracked file: on a clean clone, the files it could rewrite are as committed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.environ.get("CI") != "true" or shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="checked on CI's clean clone, where the bootstrap has just run")
def test_the_bootstrap_left_tracked_files_alone() -> None:
    changed = subprocess.run(["git", "status", "--porcelain", "--", "package.json", "package-lock.json",
                              "pyproject.toml", "scripts"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert changed.stdout == "", f"the bootstrap modified tracked files:\n{changed.stdout}"
