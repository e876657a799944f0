"""The documentation stands alone: no tracked Markdown page, docstring or comment points at files a user of the
repository does not have (the authors' notes, measurements and source documents outside it), and every relative
link of a page resolves to a file inside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the authors' working files outside the repository (spelled in pieces, so this file does not name them)
OUTSIDE = re.compile("|".join(re.escape(p) for p in ("shared" + "/", "PROTOCOL" + ".md", "PEERS" + ".md",
                                                     "RESULTS" + ".md", "seeds" + "/")))
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def tracked(*suffixes: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p.endswith(suffixes) and "node_modules/" not in p]


def test_no_document_points_outside_the_repository() -> None:
    files = tracked(".md", ".py")
    assert len(files) > 50
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in files if path.exists()
             for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if OUTSIDE.search(line)]
    assert not found, "state the fact, or name a file in the repository, instead of:\n" + "\n".join(found)


def test_relative_links_stay_inside_the_repository() -> None:
    bad = []
    for page in tracked(".md"):
        if not page.exists():
            continue
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}")
    assert not bad, "links to files the repository does not have:\n" + "\n".join(bad)
