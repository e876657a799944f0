"""Model names: the short ids callers use and each upstream flavour's full resource name."""

from __future__ import annotations

from livegate.settings import Flavour

# Live-capable model ids (the Live API's published models). Callers name them short; the gateway expands them.
LIVE_MODELS: tuple[str, ...] = (
    "gemini-live-2.5-flash",
    "gemini-live-2.5-flash-preview",
    "gemini-live-2.5-flash-native-audio",
    "gemini-live-2.5-flash-preview-native-audio",
    "gemini-live-2.5-flash-preview-native-audio-09-2025",
    "gemini-2.0-flash-live-001",
    "gemini-2.0-flash-live-preview-04-09",
    "gemini-2.0-flash-exp",
    "gemini-2.5-flash-preview-native-audio-dialog",
    "gemini-2.5-flash-exp-native-audio-thinking-dialog",
    "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-latest",
    "gemini-3.1-flash-live-preview",
    "gemini-3.8-live",
    "gemini-3.8-live-extended-thinking",
    "gemini-3.5-live-translate-preview",
)

_PREFIXES = ("models/", "publishers/google/models/")


def short_model(name: str) -> str:
    """``models/X``, ``publishers/google/models/X`` or ``projects/P/locations/L/publishers/google/models/X``
    -> ``X``."""
    if name.startswith("projects/") and "/models/" in name:
        return name.rpartition("/models/")[2]
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def upstream_model(short: str, flavour: Flavour, *, project: str = "", location: str = "") -> str:
    """The form each flavour expects in ``setup.model``: ``models/X`` (Gemini API), a publisher model's resource name (Vertex AI)."""
    if flavour == "gemini":
        return f"models/{short}"
    if project:
        return f"projects/{project}/locations/{location or 'us-central1'}/publishers/google/models/{short}"
    return f"publishers/google/models/{short}"


def is_native_audio(short: str) -> bool:
    return "native-audio" in short
