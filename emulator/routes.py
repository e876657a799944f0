"""Request path -> Live API flavour, version and method (the Live API's endpoint paths), plus the admin prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Flavour = Literal["gemini", "vertex"]

ADMIN_PREFIX = "/emulator/v1/"

_GEMINI = re.compile(
    r"^/+ws/+google\.ai\.generativelanguage\.(v1alpha|v1beta|v1)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_VERTEX = re.compile(r"^/+ws/+google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/(BidiGenerateContent)$")


@dataclass(frozen=True)
class Route:
    flavour: Flavour
    version: str
    method: str  # BidiGenerateContent | BidiGenerateContentConstrained

    @property
    def constrained(self) -> bool:
        return self.method == "BidiGenerateContentConstrained"


def match(path: str) -> Route | None:
    """Routes a request path (query string ignored); None = unknown path (HTTP 404)."""
    bare = path.split("?", 1)[0]
    m = _GEMINI.match(bare)
    if m:
        return Route("gemini", m.group(1), m.group(2))
    m = _VERTEX.match(bare)
    if m:
        return Route("vertex", m.group(1), m.group(2))
    return None


def gemini_path(version: str = "v1beta", constrained: bool = False) -> str:
    method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
    return f"/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"


def vertex_path(version: str = "v1beta1") -> str:
    return f"/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"
