"""Session-resumption handles: handle -> (conversation, history snapshot), valid for a TTL after the
conversation's last socket closed (2 h Gemini / 24 h Vertex by default)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from .conversation import Conversation
from .model import Entry


@dataclass(frozen=True)
class Snapshot:
    conversation: Conversation
    history: tuple[Entry, ...]
    last_consumed_index: int


KEEP_PER_CONVERSATION = 16


class HandleStore:
    def __init__(self, ttl_gemini_s: float, ttl_vertex_s: float) -> None:
        self._ttl = {"gemini": ttl_gemini_s, "vertex": ttl_vertex_s}
        self._handles: dict[str, Snapshot] = {}
        self._by_conversation: dict[str, list[str]] = {}

    def issue(self, conversation: Conversation, last_consumed_index: int, history_len: int | None = None) -> str:
        """``history_len``: only the history's first entries are in the snapshot (the turns consumed so far;
        a queued turn's user entry already in the history is not)."""
        handle = f"{conversation.id}-{secrets.token_hex(12)}"
        history = conversation.history if history_len is None else conversation.history[:history_len]
        self._handles[handle] = Snapshot(conversation, tuple(history), last_consumed_index)
        issued = self._by_conversation.setdefault(conversation.id, [])
        issued.append(handle)
        while len(issued) > KEEP_PER_CONVERSATION:  # only recent snapshots stay resumable
            self._handles.pop(issued.pop(0), None)
        return handle

    def lookup(self, handle: str, now: float | None = None) -> Snapshot | None:
        """The snapshot for a live handle; None for unknown or expired ones."""
        snap = self._handles.get(handle)
        if snap is None:
            return None
        conv = snap.conversation
        closed = conv.last_closed_at
        if not conv.is_open and closed is not None:
            if (now if now is not None else time.monotonic()) - closed > self._ttl[conv.flavour]:
                self._handles.pop(handle, None)
                return None
        return snap

    def expire_now(self, handle: str) -> None:
        self._handles.pop(handle, None)

    def __len__(self) -> int:
        return len(self._handles)
