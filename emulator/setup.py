"""The `setup` message: model ids, voices and languages (as the Live API documents them), parsed and validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import voices
from .closes import INVALID_ARGUMENT, SessionClosed, model_not_found_reason
from .routes import Route
from .wire import as_bool, as_dict, as_int, as_list, as_str, content_text, invalid

LIVE_MODELS = frozenset(
    {
        # Gemini API (older and 2026)
        "gemini-2.0-flash-live-001",
        "gemini-2.0-flash-exp",
        "gemini-live-2.5-flash-preview",
        "gemini-2.5-flash-preview-native-audio-dialog",
        "gemini-2.5-flash-exp-native-audio-thinking-dialog",
        "gemini-2.5-flash-native-audio-preview-09-2025",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-2.5-flash-native-audio-latest",
        "gemini-3.1-flash-live-preview",
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.5-live-translate-preview",
        # Vertex
        "gemini-2.0-flash-live-preview-04-09",
        "gemini-live-2.5-flash",
        "gemini-live-2.5-flash-preview-native-audio",
        "gemini-live-2.5-flash-preview-native-audio-09-2025",
        "gemini-live-2.5-flash-native-audio",
    }
)
CLASSIC_VOICES = frozenset(voices.CLASSIC_VOICES)  # non-native-audio models
HD_VOICES = frozenset(voices.HD_VOICES)  # native-audio models
LANGUAGE_CODES = frozenset(voices.LANGUAGE_CODES)
DEFAULT_VOICE = "Puck"


@dataclass(frozen=True)
class VadSettings:
    disabled: bool = False
    start_sensitivity: str = "START_SENSITIVITY_HIGH"
    end_sensitivity: str = "END_SENSITIVITY_HIGH"
    prefix_padding_ms: int = 20
    silence_duration_ms: int = 500
    activity_handling: str = "START_OF_ACTIVITY_INTERRUPTS"
    turn_coverage: str = "TURN_INCLUDES_ONLY_ACTIVITY"

    @property
    def interrupts(self) -> bool:
        return self.activity_handling != "NO_INTERRUPTION"


@dataclass(frozen=True)
class SessionSetup:
    model: str  # bare id, e.g. "gemini-live-2.5-flash"
    model_resource: str  # as sent, e.g. "models/…" or "projects/…/publishers/google/models/…"
    audio_out: bool
    voice: str = DEFAULT_VOICE
    language_code: str | None = None
    system_instruction: str = ""
    tools: tuple[dict[str, Any], ...] = ()
    vad: VadSettings = field(default_factory=VadSettings)
    resumption: bool = False
    resume_handle: str = ""
    transparent: bool = False
    compression: bool = False
    trigger_tokens: int = 0
    target_tokens: int = 0
    input_transcription: bool = False
    output_transcription: bool = False
    proactive_audio: bool = False
    affective_dialog: bool = False
    initial_history: bool = False

    @property
    def native_audio(self) -> bool:
        return "native-audio" in self.model


def bare_model(resource: str) -> str:
    return resource.rsplit("/", 1)[-1]


def parse_setup(body: dict[str, Any], route: Route, *, strict_models: bool) -> SessionSetup:
    """Validates a normalised setup body; raises SessionClosed with the real code and reason."""
    resource = as_str(body.get("model"), "model").strip()
    if not resource:
        raise invalid("setup.model missing")
    model = bare_model(resource)
    well_formed = _well_formed(resource, route)
    if not well_formed or (strict_models and model not in LIVE_MODELS):
        raise SessionClosed(1008, model_not_found_reason(route.flavour, resource, route.version))
    native = "native-audio" in model

    gen = as_dict(body.get("generationConfig"), "generationConfig")
    modalities = [as_str(m, "modality").upper() for m in as_list(gen.get("responseModalities"), "modalities")]
    if len(set(modalities)) > 1 or any(m not in ("TEXT", "AUDIO") for m in modalities):
        raise invalid("exactly one of TEXT or AUDIO")
    audio_out = modalities == ["AUDIO"] or (not modalities and native)
    if native and not audio_out:
        raise invalid("native-audio models only produce AUDIO")

    speech = as_dict(gen.get("speechConfig"), "speechConfig")
    voice_cfg = as_dict(as_dict(speech.get("voiceConfig"), "voiceConfig").get("prebuiltVoiceConfig"), "pvc")
    voice = as_str(voice_cfg.get("voiceName"), "voiceName") or DEFAULT_VOICE
    if voice not in (HD_VOICES if native else CLASSIC_VOICES):
        raise invalid(f"unknown voice {voice!r}")
    language = as_str(speech.get("languageCode"), "languageCode") or None
    if language is not None and language not in LANGUAGE_CODES:
        raise invalid(f"unsupported languageCode {language!r}")

    affective = as_bool(gen.get("enableAffectiveDialog"), "enableAffectiveDialog")
    proactivity = as_dict(body.get("proactivity"), "proactivity")
    proactive = as_bool(proactivity.get("proactiveAudio"), "proactiveAudio")
    if (affective or proactive) and not native:
        raise SessionClosed.of(INVALID_ARGUMENT)

    rt = as_dict(body.get("realtimeInputConfig"), "realtimeInputConfig")
    aad = as_dict(rt.get("automaticActivityDetection"), "automaticActivityDetection")
    defaults = VadSettings()
    vad = VadSettings(
        disabled=as_bool(aad.get("disabled"), "disabled"),
        start_sensitivity=as_str(aad.get("startOfSpeechSensitivity"), "sos") or defaults.start_sensitivity,
        end_sensitivity=as_str(aad.get("endOfSpeechSensitivity"), "eos") or defaults.end_sensitivity,
        prefix_padding_ms=as_int(aad.get("prefixPaddingMs", defaults.prefix_padding_ms), "prefixPaddingMs"),
        silence_duration_ms=as_int(aad.get("silenceDurationMs", defaults.silence_duration_ms), "silenceMs"),
        activity_handling=as_str(rt.get("activityHandling"), "activityHandling") or defaults.activity_handling,
        turn_coverage=as_str(rt.get("turnCoverage"), "turnCoverage") or defaults.turn_coverage,
    )
    if vad.start_sensitivity not in ("START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"):
        raise invalid("startOfSpeechSensitivity")
    if vad.end_sensitivity not in ("END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"):
        raise invalid("endOfSpeechSensitivity")

    resumption_raw = body.get("sessionResumption")
    resumption = as_dict(resumption_raw, "sessionResumption")
    transparent = as_bool(resumption.get("transparent"), "transparent")
    if transparent and route.flavour != "vertex":
        raise invalid("transparent resumption is Vertex only")

    compression_raw = body.get("contextWindowCompression")
    compression = as_dict(compression_raw, "contextWindowCompression")
    trigger = as_int(compression.get("triggerTokens", 0), "triggerTokens")
    window = as_dict(compression.get("slidingWindow"), "slidingWindow")
    target = as_int(window.get("targetTokens", 0), "targetTokens")

    tools = validate_tools(body.get("tools"), route.flavour)

    instruction = body.get("systemInstruction")
    history_cfg = as_dict(body.get("historyConfig"), "historyConfig")
    return SessionSetup(
        model=model,
        model_resource=resource,
        audio_out=audio_out,
        voice=voice,
        language_code=language,
        system_instruction=content_text(instruction) if instruction is not None else "",
        tools=tools,
        vad=vad,
        resumption=resumption_raw is not None,
        resume_handle=as_str(resumption.get("handle"), "handle"),
        transparent=transparent,
        compression=compression_raw is not None,
        trigger_tokens=trigger,
        target_tokens=target,
        input_transcription=as_dict(body.get("inputAudioTranscription"), "iat") is not None
        and body.get("inputAudioTranscription") is not None,
        output_transcription=body.get("outputAudioTranscription") is not None,
        proactive_audio=proactive,
        affective_dialog=affective,
        initial_history=as_bool(history_cfg.get("initialHistoryInClientContent"), "initialHistory"),
    )


def validate_tools(raw: Any, flavour: str) -> tuple[dict[str, Any], ...]:
    """`tools` (setup or contextUpdate) with the shapes the emulator reads checked; 1007 otherwise."""
    tools = tuple(as_dict(t, "tool") for t in as_list(raw, "tools"))
    for tool in tools:
        for decl in as_list(tool.get("functionDeclarations"), "functionDeclarations"):
            d = as_dict(decl, "functionDeclaration")
            if not as_str(d.get("name"), "name"):
                raise invalid("function declaration without a name")
            as_str(d.get("behavior"), "behavior")
            for key in ("parameters", "parametersJsonSchema"):
                as_dict(as_dict(d.get(key), key).get("properties"), "properties")
        for key in ("codeExecution", "googleSearch", "googleSearchRetrieval"):
            as_dict(tool.get(key), key)
        if "retrieval" in tool:
            if flavour != "vertex":
                raise invalid("retrieval is Vertex only")
            store = as_dict(as_dict(tool.get("retrieval"), "retrieval").get("vertexRagStore"), "vertexRagStore")
            for corpus in as_list(store.get("ragCorpora"), "ragCorpora"):
                as_str(corpus, "ragCorpora")
            for res in as_list(store.get("ragResources"), "ragResources"):
                as_str(as_dict(res, "ragResource").get("ragCorpus"), "ragCorpus")
            as_bool(store.get("storeContext"), "storeContext")
    return tools


def _well_formed(resource: str, route: Route) -> bool:
    parts = resource.split("/")
    if route.flavour == "gemini":
        return len(parts) == 2 and parts[0] in ("models", "tunedModels") and bool(parts[1])
    # Vertex: projects/P/locations/L/publishers/X/models/M, publishers/X/models/M, or a bare id (raw clients)
    if len(parts) == 8:
        return parts[0] == "projects" and parts[2] == "locations" and parts[4] == "publishers" and parts[6] == "models"
    if len(parts) == 4:
        return parts[0] == "publishers" and parts[2] == "models"
    return len(parts) == 1 or (len(parts) == 2 and parts[0] == "models")
