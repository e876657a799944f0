"""Conversations: a session and all its resumptions — history, counters and the log of client messages.

`EmulatorServer.conversations` (and GET /emulator/v1/conversations) expose `Conversation.snapshot()`.
Client message indexes are per connection: `setup` is 0, the first message after it is 1 (this is also
what `lastConsumedClientMessageIndex` counts).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from .model import Entry

_ids = itertools.count(1)


@dataclass(frozen=True)
class ClientRecord:
    connection: int  # 1 = the first connection of the conversation
    index: int  # per connection; setup = 0
    kind: str  # setup | clientContent | realtimeInput.<field> | toolResponse | contextUpdate
    summary: dict[str, Any]
    at: float

    def as_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "index": self.index, "kind": self.kind, **self.summary}


@dataclass
class Conversation:
    id: str
    flavour: str
    model: str
    credential_kind: str
    history: list[Entry] = field(default_factory=list)
    connections: int = 0
    go_aways: int = 0
    messages: list[ClientRecord] = field(default_factory=list)
    closes: list[dict[str, Any]] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    open_session: Any = None  # the live Session, if a socket is open
    started_at: float = field(default_factory=time.monotonic)
    last_closed_at: float | None = None
    video_seen: bool = False
    log_limit: int = 10_000
    messages_dropped: int = 0

    @classmethod
    def new(cls, flavour: str, model: str, credential_kind: str, log_limit: int = 10_000) -> Conversation:
        return cls(f"conv-{next(_ids)}", flavour, model, credential_kind, log_limit=log_limit)

    def record(self, index: int, kind: str, summary: dict[str, Any]) -> None:
        self.messages.append(ClientRecord(self.connections, index, kind, summary, time.time()))
        if len(self.messages) > self.log_limit:
            excess = len(self.messages) - self.log_limit
            del self.messages[:excess]
            self.messages_dropped += excess

    @property
    def is_open(self) -> bool:
        return self.open_session is not None

    def snapshot(self, include_messages: bool = True) -> dict[str, Any]:
        out = {
            "id": self.id,
            "flavour": self.flavour,
            "model": self.model,
            "credential_kind": self.credential_kind,
            "connections": self.connections,
            "go_aways": self.go_aways,
            "open": self.is_open,
            "session_ids": list(self.session_ids),
            "history_turns": len(self.history),
            "closes": list(self.closes),
            "messages_dropped": self.messages_dropped,
            "message_count": len(self.messages) + self.messages_dropped,
        }
        if include_messages:
            out["messages"] = [m.as_json() for m in self.messages]
            # what the model remembers (a resumption restores it from the handle): role and text of each entry
            out["history"] = [{"role": e.role, "modality": e.modality, "text": e.text[:500]} for e in self.history]
        return out

    def __repr__(self) -> str:
        return (
            f"Conversation({self.id} {self.flavour} {self.model} connections={self.connections} "
            f"messages={len(self.messages)} open={self.is_open})"
        )
