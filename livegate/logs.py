"""Structured logging: one JSON object per line (or plain text for a terminal), configured once at the edge.

A log line's session, tenant and process id are fields, carried with the call and never parsed out of the
text:
- :func:`bind` puts them in the current context (a :mod:`contextvars` variable), so every line logged by the
  task that bound them, and by the tasks it starts afterwards, carries them: the front binds a session's id
  and tenant in its Connect handler, a worker in the session's relay task.
- A line about a session logged outside its task passes them itself: ``extra=logs.fields(session=sid)``.

The level can be changed at runtime with SIGUSR1 (cycles INFO -> DEBUG -> WARNING -> INFO) by the CLI.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

FIELDS = ("session", "tenant", "worker", "front")

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("livegate_log_context", default={})


def bind(**fields: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Add ``fields`` (of :data:`FIELDS`) to every line logged from this context on; returns the token that
    :func:`unbind` takes to restore the previous fields."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields {sorted(unknown)}; known: {FIELDS}")
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v})
    return _context.set(merged)


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


def bound() -> Mapping[str, str]:
    """The fields bound in the current context."""
    return _context.get()


def fields(**values: str | None) -> dict[str, str]:
    """``extra=`` for one log call about a session logged outside the session's own task."""
    return {k: v for k, v in values.items() if v}


def _stamp(record: logging.LogRecord) -> None:
    for key, value in _context.get().items():
        if getattr(record, key, None) is None:
            setattr(record, key, value)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record as it is handled (in the logging call's own context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process,
            "msg": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class TextFormatter(logging.Formatter):
    """For a terminal: the message, then the bound fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        return f"{line} [{extra}]" if extra else line


def configure(level: str = "INFO", *, json: bool = True, process: str = "livegate") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process) if json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_CYCLE = ("INFO", "DEBUG", "WARNING")


def cycle_level() -> str:
    root = logging.getLogger()
    current = logging.getLevelName(root.level)
    nxt = _CYCLE[(_CYCLE.index(current) + 1) % len(_CYCLE)] if current in _CYCLE else "INFO"
    root.setLevel(nxt)
    logging.getLogger(__name__).warning("log level now %s", nxt)
    return nxt
