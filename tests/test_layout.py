"""The house: the core of ``livegate/`` imports no component, and docs/architecture.md's code map names every
module that ``ls livegate/`` shows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("service", "workers", "emulator", "bench", "tests")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_core_imports_no_component() -> None:
    offenders = []
    for path in sorted((ROOT / "livegate").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "cli":  # the command line sits on top of everything
            continue
        for name in _imports(path):
            if name.split(".")[0] in COMPONENTS or name == "livegate.cli" or name.startswith("livegate.cli."):
                offenders.append(f"{rel}: imports {name}")
    assert offenders == []


def test_the_code_map_matches_ls() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    code_map = text[text.index("## Code map"):]
    named = set(re.findall(r"`([^`]+)`", code_map))
    missing = []
    for path in sorted((ROOT / "livegate").iterdir()):
        if path.name.startswith(("_", ".")) or path.suffix not in (".py", ""):
            continue
        if path.is_dir():
            if f"livegate/{path.name}/" not in named:
                missing.append(f"livegate/{path.name}/")
            if path.name == "v1":  # generated
                continue
            for module in sorted(path.glob("[!_]*.py")):
                if module.name not in named and not any(module.name in n for n in named):
                    missing.append(f"livegate/{path.name}/{module.name}")
        elif f"livegate/{path.name}" not in named:
            missing.append(f"livegate/{path.name}")
    assert missing == [], f"docs/architecture.md's code map does not name {missing}"
