"""The Dockerfile's structure (no container engine here, so it is never built in CI): stages, pinned base
images, a non-root numeric USER in the final stage, the `livegate` ENTRYPOINT, and a .dockerignore that keeps
the build context small."""

from __future__ import annotations

import re

from .conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments and heredoc bodies dropped."""
    out: list[tuple[str, str]] = []
    lines = DOCKERFILE.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
        heredoc = re.search(r"<<-?'?([A-Z]+)'?", rest)
        if heredoc:
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
    return out


def stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base, name, instructions) per FROM."""
    out: list[tuple[str, str, list[tuple[str, str]]]] = []
    for word, rest in instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, rest
            out.append((m.group(1), m.group(2) or "", []))
        elif out:
            out[-1][2].append((word, rest))
    return out


def args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)


def test_multi_stage_with_builder_and_runtime_last() -> None:
    names = [name for _, name, _ in stages()]
    assert names[0] == "builder"
    assert names[-1] == "runtime", "the default build target (the last stage) is the front/worker runtime"
    assert "emulator" in names
    assert len(names) == len(set(names))


def test_base_images_pinned_never_latest() -> None:
    defaults = args()
    names = {name for _, name, _ in stages()}
    for base, _, _ in stages():
        if base in names:
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base)
        assert ":" in image.split("/")[-1] or "@sha256:" in image, f"unpinned base image {image}"
        assert not image.endswith(":latest"), image
        assert re.search(r"python:3\.11[.\d]*-slim", image), image
    assert "latest" not in DOCKERFILE.read_text().replace("LATEST", "")


def test_runtime_runs_as_non_root_with_livegate_entrypoint() -> None:
    by_name = {name: (base, body) for base, name, body in stages()}

    def resolved(name: str, word: str) -> str:
        base, body = by_name[name]
        values = [rest for w, rest in body if w == word]
        if values:
            return values[-1]
        return resolved(base, word) if base in by_name else ""

    for target in ("runtime", "emulator"):
        user = resolved(target, "USER")
        assert user, f"{target}: no USER"
        uid = user.split(":")[0]
        assert uid.isdigit() and int(uid) == 10001, f"{target}: USER {user} (numeric, non-root, 10001)"
        assert resolved(target, "ENTRYPOINT") == '["livegate"]'
    # the venv is built in the builder and only copied into the runtime
    assert any(w == "COPY" and "--from=builder" in rest for w, rest in by_name["base"][1])


def test_read_only_root_friendly_environment() -> None:
    text = DOCKERFILE.read_text()
    assert "HOME=/tmp" in text and "PYTHONDONTWRITEBYTECODE=1" in text
    assert "LIVEGATE_METRICS_LISTEN=0.0.0.0:9090" in text and "LIVEGATE_FRONT_LISTEN=0.0.0.0:50051" in text
    # espeak-ng only in the optional emulator stage
    for _, name, body in stages():
        has_espeak = any("espeak-ng" in rest for _, rest in body)
        assert has_espeak == (name == "emulator"), name


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "**", "ignore everything, then allow what the build copies"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied: set[str] = set()
    for word, rest in instructions():
        if word == "COPY" and "--from" not in rest:
            copied.update(src.rstrip("/") for src in rest.split()[:-1])
    assert copied <= allowed, f"COPY of ignored paths: {copied - allowed}"
