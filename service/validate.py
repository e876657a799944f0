"""Input validation at the front, once, with messages a person can act on.

Everything a worker must encode as Live API JSON is checked here, so a message the front accepts can always
be forwarded: numbers are finite (JSON has no NaN or Infinity), ``Duration`` and ``Timestamp`` values are in
their JSON range, ``Struct``/``Value`` nesting is bounded, mime types are the ones the Live API takes. A refusal
names the field (``tool_response.function_responses[0].response.fields["x"]``) and echoes caller input bounded
(:func:`livegate.errors.echo`).
"""

from __future__ import annotations

import functools
import math
import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from livegate.errors import GatewayError, echo, invalid_argument, not_found
from livegate.models import LIVE_MODELS, is_native_audio, short_model
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

MAX_TEXT_CHARS = 1_000_000
MAX_SESSION_ID_CHARS = 128  # the gateway issues 26-character ids
MAX_NESTING = 32  # Struct / ListValue levels in one value (a JSON schema or a tool's result)
# Input audio is 16 kHz natively; the Live API resamples other rates. The rates it is documented to take:
AUDIO_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
IMAGE_MIMES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")
AUDIO_MIME_HINT = ("audio is raw PCM s16le mono: mime_type \"audio/pcm;rate=16000\" (\"audio/pcm\" is 16 kHz too), "
                   f"or \"audio/pcm;rate=N\" with N one of {', '.join(map(str, AUDIO_RATES))}")
IMAGE_MIME_HINT = f"video is a sequence of image frames: mime_type one of {', '.join(IMAGE_MIMES)}"
# lower case, as the Live API documents it (and as the front's audio throttle and the emulator parse it)
_PCM_RE = re.compile(r"audio/pcm(?:;\s*rate=(\d{1,6}))?")

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
        raise not_found(f"model {echo(model)} is not served by this gateway; use one of: {', '.join(allowed)}",
                        "MODEL_NOT_FOUND")
    gc = setup.generation_config
    if len(gc.response_modalities) > 1:
        raise invalid_argument("generation_config.response_modalities takes exactly one of TEXT or AUDIO per session",
                               "ONE_MODALITY")
    if is_native_audio(model) and list(gc.response_modalities) == [live.GenerationConfig.Modality.TEXT]:
        raise invalid_argument(f"{model} is a native-audio model: it answers in AUDIO only. Ask for "
                               "response_modalities [\"AUDIO\"] (with output_audio_transcription for the text of "
                               "its answer), or use a half-cascade model such as gemini-live-2.5-flash for TEXT",
                               "MODALITY_NOT_SUPPORTED")
    voice = gc.speech_config.voice_config.prebuilt_voice_config.voice_name
    if voice:
        voices = HD_VOICES if "native-audio" in model else CLASSIC_VOICES
        if voice not in voices:
            raise invalid_argument(f"voice {echo(voice)} is not available for {model}; use one of: {', '.join(voices)}",
                                   "UNKNOWN_VOICE")
    check_encodable(setup, "setup")
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
    check_encodable(getattr(msg, kind), kind)
    return kind


def validate_session_id(sid: str, field: str = "session_id") -> bool:
    """An admin RPC's or a reattach's session id: INVALID_ARGUMENT if empty; False if it cannot name a session
    (longer than any id the gateway issues: answered NOT_FOUND without asking Redis)."""
    if not sid:
        raise invalid_argument(f"{field} is required: the SessionInfo.session_id the gateway sent when the "
                               "session started", "SESSION_ID_REQUIRED")
    return len(sid) <= MAX_SESSION_ID_CHARS


def _validate_realtime(ri: live.BidiGenerateContentRealtimeInput) -> None:
    if ri.HasField("audio"):
        check_mime(ri.audio.mime_type, "realtime_input.audio", audio=True)
    if ri.HasField("video"):
        check_mime(ri.video.mime_type, "realtime_input.video", audio=False)
    for i, chunk in enumerate(ri.media_chunks):
        audio = chunk.mime_type.lower().startswith("audio/")
        check_mime(chunk.mime_type, f"realtime_input.media_chunks[{i}]", audio=audio)
    if len(ri.text) > MAX_TEXT_CHARS:
        raise invalid_argument(f"realtime_input.text is longer than {MAX_TEXT_CHARS} characters", "TEXT_TOO_LONG")


def pcm_rate(mime: str) -> int | None:
    """The sample rate of an accepted PCM mime type (``audio/pcm``: 16000), or None if it is not one."""
    m = _PCM_RE.fullmatch(mime)
    if m is None:
        return None
    rate = int(m.group(1)) if m.group(1) else 16000
    return rate if rate in AUDIO_RATES else None


def check_mime(mime: str, field: str, *, audio: bool) -> None:
    ok = pcm_rate(mime) is not None if audio else mime.strip().lower() in IMAGE_MIMES
    if not ok:
        raise invalid_argument(f"{field}.mime_type {echo(mime)} is not supported: "
                               f"{AUDIO_MIME_HINT if audio else IMAGE_MIME_HINT}", "BAD_MIME_TYPE")


# -- what the worker must encode as JSON ---------------------------------------------------------------

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_STRUCT, _VALUE, _LIST = "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"
_TIMES = ("google.protobuf.Duration", "google.protobuf.Timestamp")
_CHECKED = (_STRUCT, _VALUE, _LIST, *_TIMES)


@functools.cache
def _needs_check(desc: Descriptor) -> bool:
    """Whether a message of this type can hold something JSON cannot carry (a float, a Struct, a Duration...).
    Types that cannot (an audio blob, say) are skipped at no cost."""
    return _reaches(desc, frozenset())


def _reaches(desc: Descriptor, seen: frozenset[str]) -> bool:
    if desc.full_name in _CHECKED:
        return True
    if desc.full_name in seen:
        return False  # a cycle: the other paths decide
    seen = seen | {desc.full_name}
    return any(f.type in _FLOATS or (f.message_type is not None and _reaches(f.message_type, seen))
               for f in desc.fields)


def check_encodable(msg: Message, path: str) -> None:
    """Raise INVALID_ARGUMENT (with the field's path) if ``msg`` holds a value its Live API JSON cannot carry."""
    if _needs_check(msg.DESCRIPTOR):
        _walk(msg, path)


def _walk(msg: Message, path: str) -> None:
    name = msg.DESCRIPTOR.full_name
    if name in _TIMES:
        try:
            msg.ToJsonString()  # type: ignore[attr-defined]
        except ValueError as exc:
            raise invalid_argument(f"{_bounded(path)}: {exc}", "VALUE_OUT_OF_RANGE") from None
        return
    if name in (_STRUCT, _VALUE, _LIST):
        if not _json_ok(msg, 0):
            _walk_json(msg, path, 0)  # again, naming the path (it raises)
        return
    for fd, value in msg.ListFields():
        sub = f"{path}.{fd.name}"
        if fd.type in _FLOATS:
            for i, x in enumerate(value) if _repeated(fd) else ((None, value),):
                if not math.isfinite(x):
                    _non_finite(sub if i is None else f"{sub}[{i}]", x)
        elif fd.message_type is not None and _needs_check(fd.message_type):
            if fd.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if isinstance(v, Message):
                        _walk(v, f"{sub}[{echo(k, 32)}]")
            elif _repeated(fd):
                for i, item in enumerate(value):
                    _walk(item, f"{sub}[{i}]")
            else:
                _walk(value, sub)


def _json_ok(v: Message, depth: int) -> bool:
    """Whether a Struct / Value / ListValue is JSON within the nesting bound (no strings built: the common case)."""
    if depth > MAX_NESTING:
        return False
    name = v.DESCRIPTOR.full_name
    if name == _STRUCT:
        return all(_value_ok(item, depth + 1) for item in v.fields.values())  # type: ignore[attr-defined]
    if name == _LIST:
        return all(_value_ok(item, depth + 1) for item in v.values)  # type: ignore[attr-defined]
    return _value_ok(v, depth)


def _value_ok(v: Message, depth: int) -> bool:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return math.isfinite(v.number_value)  # type: ignore[attr-defined]
    if kind == "struct_value" or kind == "list_value":
        return _json_ok(getattr(v, kind), depth)
    return True


def _walk_json(v: Message, path: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise invalid_argument(f"{_bounded(path)}: nested deeper than {MAX_NESTING} levels", "NESTING_TOO_DEEP")
    name = v.DESCRIPTOR.full_name
    if name == _STRUCT:
        for k, item in v.fields.items():  # type: ignore[attr-defined]
            _walk_json(item, f'{path}.fields[{_json_key(k)}]', depth + 1)
    elif name == _LIST:
        for i, item in enumerate(v.values):  # type: ignore[attr-defined]
            _walk_json(item, f"{path}.values[{i}]", depth + 1)
    else:
        kind = v.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(v.number_value):  # type: ignore[attr-defined]
            _non_finite(path, v.number_value)  # type: ignore[attr-defined]
        elif kind in ("struct_value", "list_value"):
            _walk_json(getattr(v, kind), f"{path}.{kind}", depth)


def _json_key(k: str) -> str:
    text = echo(k, 32)
    return '"' + text[1:-1] + '"' if text[:1] == "'" and text.endswith("'") else text


def _non_finite(path: str, x: float) -> None:
    what = "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    raise invalid_argument(f"{_bounded(path)}: {what} is not valid JSON; send a finite number (or null, or a "
                           "string)", "NON_FINITE_NUMBER")


def _bounded(path: str, limit: int = 240) -> str:
    """A field path for a message: a deep one keeps its start and its end."""
    return path if len(path) <= limit else f"{path[:limit // 3]}…{path[-(2 * limit) // 3:]}"


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


__all__ = ["validate_setup", "validate_message", "validate_session_id", "check_encodable", "check_mime", "pcm_rate",
           "GatewayError"]
