"""Input validation at the front, once, with messages a person can act on."""

from __future__ import annotations

from livegate.errors import GatewayError, invalid_argument, not_found
from livegate.models import LIVE_MODELS, short_model
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

MAX_TEXT_CHARS = 1_000_000
CLASSIC_VOICES = ("Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr")
HD_VOICES = ("Achernar", "Achird", "Algenib", "Algieba", "Alnilam", "Aoede", "Autonoe", "Callirrhoe", "Charon",
             "Despina", "Enceladus", "Erinome", "Fenrir", "Gacrux", "Iapetus", "Kore", "Laomedeia", "Leda",
             "Orus", "Pulcherrima", "Puck", "Rasalgethi", "Sadachbia", "Sadaltager", "Schedar", "Sulafat",
             "Umbriel", "Vindemiatrix", "Zephyr", "Zubenelgenubi")


def validate_setup(setup: live.BidiGenerateContentSetup, allowed_models: tuple[str, ...]) -> str:
    """Check a caller's setup; return the short model id."""
    if not setup.model:
        raise invalid_argument("setup.model is required, e.g. \"gemini-live-2.5-flash\"", "MODEL_REQUIRED")
    model = short_model(setup.model)
    allowed = allowed_models or LIVE_MODELS
    if model not in allowed:
        raise not_found(f"model {model!r} is not served by this gateway; use one of: {', '.join(allowed)}",
                        "MODEL_NOT_FOUND")
    gc = setup.generation_config
    if len(gc.response_modalities) > 1:
        raise invalid_argument("generation_config.response_modalities takes exactly one of TEXT or AUDIO per session",
                               "ONE_MODALITY")
    voice = gc.speech_config.voice_config.prebuilt_voice_config.voice_name
    if voice:
        voices = HD_VOICES if "native-audio" in model else CLASSIC_VOICES
        if voice not in voices:
            raise invalid_argument(f"voice {voice!r} is not available for {model}; use one of: {', '.join(voices)}",
                                   "UNKNOWN_VOICE")
    return model


def validate_message(msg: gw.ClientMessage) -> str:
    """Check a message after ``setup``; return its kind."""
    kind = msg.WhichOneof("message")
    if kind is None:
        raise invalid_argument("empty ClientMessage: set one of client_content, realtime_input, tool_response",
                               "EMPTY_MESSAGE")
    if kind == "setup":
        raise invalid_argument("setup may only be the first message of a stream", "SECOND_SETUP")
    if kind == "reattach":
        raise invalid_argument("reattach may only be the first message of a stream", "MISPLACED_REATTACH")
    if kind == "realtime_input":
        _validate_realtime(msg.realtime_input)
    elif kind == "tool_response":
        for i, fr in enumerate(msg.tool_response.function_responses):
            if not fr.name and not fr.id:
                raise invalid_argument(f"tool_response.function_responses[{i}] needs the id (and name) of the call it answers",
                                       "TOOL_RESPONSE_ID")
    return kind


def _validate_realtime(ri: live.BidiGenerateContentRealtimeInput) -> None:
    if ri.HasField("audio"):
        _check_mime(ri.audio.mime_type, "audio/pcm", "realtime_input.audio",
                    "audio is raw PCM s16le mono: mime_type \"audio/pcm;rate=16000\"")
    if ri.HasField("video"):
        _check_mime(ri.video.mime_type, "image/", "realtime_input.video",
                    "video is a sequence of image frames: mime_type \"image/jpeg\" or \"image/png\"")
    for i, chunk in enumerate(ri.media_chunks):
        if not chunk.mime_type.startswith(("audio/pcm", "image/")):
            raise invalid_argument(f"realtime_input.media_chunks[{i}].mime_type {chunk.mime_type!r} is not supported; "
                                   "send audio/pcm;rate=16000 or image/jpeg", "BAD_MIME_TYPE")
    if len(ri.text) > MAX_TEXT_CHARS:
        raise invalid_argument(f"realtime_input.text is longer than {MAX_TEXT_CHARS} characters", "TEXT_TOO_LONG")


def _check_mime(mime: str, prefix: str, field: str, hint: str) -> None:
    if not mime.lower().startswith(prefix):
        raise invalid_argument(f"{field}.mime_type {mime!r} is not supported: {hint}", "BAD_MIME_TYPE")


__all__ = ["validate_setup", "validate_message", "GatewayError"]
