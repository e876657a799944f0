"""``livegate.v1.ServerMessage`` -> what google-genai's ``receive()`` yields.

With google-genai installed: its ``LiveServerMessage`` (and ``LiveServerSetupComplete``). Without it: a
:class:`MessageView` over the proto with the same accessors: ``.text`` and ``.data`` (the turn's text and inline
audio, None if there is none), and every field by its google-genai name, None when unset (``.server_content``,
``.tool_call``, ``.server_content.model_turn.parts[0].inline_data.data``, ...), as on the pydantic objects.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from livegate.v1 import gateway_pb2 as gw

try:  # optional: return google-genai types, like the SDK does
    from google.genai import types as genai_types
except ImportError:  # `pip install livegate` without the `client` extra
    genai_types = None

_GATEWAY_KEYS = ("seq", "session", "upstreamRenewed", "drain")


def _default(field: FieldDescriptor, value: Any) -> bool:
    if field.message_type is not None:
        return False
    return value == field.default_value


class MessageView:
    """Read-only attribute access to a proto message, shaped like the google-genai pydantic object: a sub-message,
    an optional field or a scalar left at its default reads as None (JSON, and so google-genai, omits them);
    repeated fields read as lists (None when empty); enums as their names."""

    __slots__ = ("_msg",)

    def __init__(self, msg: Message) -> None:
        self._msg = msg

    def __getattr__(self, name: str) -> Any:
        field = self._msg.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            raise AttributeError(f"{type(self._msg).__name__} has no field {name!r}")
        value = getattr(self._msg, name)
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                return dict(value) or None
            items = [MessageView(v) if field.message_type is not None else v for v in value]
            return items or None
        if field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Struct":
                return json_format.MessageToDict(value) if self._msg.HasField(name) else None
            return MessageView(value) if self._msg.HasField(name) else None
        if field.has_presence:
            if not self._msg.HasField(name):
                return None
        elif _default(field, value):
            return None
        if field.enum_type is not None:
            return field.enum_type.values_by_number[value].name if value in field.enum_type.values_by_number else value
        return value

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json_format.MessageToDict(self._msg, preserving_proto_field_name=True)})"


class ServerMessageView(MessageView):
    """A server message without google-genai: :class:`MessageView` plus ``.text`` and ``.data``."""

    __slots__ = ()

    def _parts(self) -> list[Any]:
        msg = self._msg
        if not isinstance(msg, gw.ServerMessage) or not msg.HasField("server_content"):
            return []
        return list(msg.server_content.model_turn.parts)

    @property
    def text(self) -> str | None:
        """The turn's text parts, concatenated (thoughts left out); None if there are none."""
        text = "".join(p.text for p in self._parts() if p.text and not p.thought)
        return text or None

    @property
    def data(self) -> bytes | None:
        """The turn's inline data (audio), concatenated; None if there is none."""
        data = b"".join(p.inline_data.data for p in self._parts() if p.HasField("inline_data"))
        return data or None


def to_genai(msg: gw.ServerMessage) -> Any:
    """A ServerMessage as google-genai's ``LiveServerMessage`` (a :class:`ServerMessageView` without it)."""
    if genai_types is None:
        return ServerMessageView(msg)
    d = json_format.MessageToDict(msg)
    for k in _GATEWAY_KEYS:
        d.pop(k, None)
    return genai_types.LiveServerMessage.model_validate_json(orjson.dumps(d))


def setup_complete_of(msg: gw.ServerMessage) -> Any:
    """``session.setup_complete``: google-genai's ``LiveServerSetupComplete`` (a view without it)."""
    if genai_types is None:
        return MessageView(msg.setup_complete)
    d = json_format.MessageToDict(msg.setup_complete)
    return genai_types.LiveServerSetupComplete.model_validate_json(orjson.dumps(d))


def is_turn_end(msg: gw.ServerMessage) -> bool:
    """Where google-genai's ``receive()`` stops: the interaction is idle, or (without a status) turn_complete."""
    if not msg.HasField("server_content"):
        return False
    sc = msg.server_content
    if sc.HasField("interaction_status") and sc.interaction_status != sc.INTERACTION_STATUS_UNSPECIFIED:
        return sc.interaction_status == sc.IDLE
    return sc.turn_complete
