"""Structured logging: one JSON object per line (or plain text for a terminal), configured once at the edge.

Session id, tenant and worker id appear in messages as ``session <sid>``; the level can be changed at
runtime with SIGUSR1 (cycles INFO -> DEBUG -> WARNING -> INFO) by the CLI.
"""

from __future__ import annotations

import logging
import re
import sys
import time

import orjson

_FIELDS = ("session", "tenant", "worker")
# every log line about a session names it "session <id>" (and "tenant <name>" where known): lifted into fields
_SESSION_RE = re.compile(r"\bsession (s-[A-Za-z0-9_-]+)")
_TENANT_RE = re.compile(r"\btenant ([A-Za-z0-9._@:/+-]+)")


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process,
            "msg": record.getMessage(),
        }
        for key in _FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if "session" not in out and (m := _SESSION_RE.search(out["msg"])):
            out["session"] = m.group(1)
        if "tenant" not in out and (m := _TENANT_RE.search(out["msg"])):
            out["tenant"] = m.group(1)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure(level: str = "INFO", *, json: bool = True, process: str = "livegate") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process) if json else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
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
