"""The emulator as the benchmark's upstream, in its own process, with send/receive timestamps.

``python -m bench.emu --pacing 1 --audio-chunk-ms 20 --stamps FILE`` prints ``emulator <url> <cert>`` and
runs until SIGTERM. It is the unmodified ``emulator`` package, wrapped (at run time, in this process only):

* ``Conversation.record`` also keeps ``(connection, index, time.time())`` of every client message;
* ``Session.send`` also keeps ``(tag, kind, n, time.time())`` of every server frame of interest, where
  ``tag`` is the text of the conversation's latest ``clientContent`` and ``n`` counts frames of that kind
  since it (the client keys what it receives the same way, so frames are matched without changing them).

SIGUSR1 writes everything recorded so far to FILE (atomically) and forgets it.
"""

from __future__ import annotations

import argparse
import gc
import asyncio
import os
import re
import signal
import time
from typing import Any

import orjson

from emulator.config import EmulatorConfig
from emulator.conversation import Conversation
from emulator.server import EmulatorServer
from emulator.session import Session

_KEY = re.compile(r"\b(bs\d+)\b")
KINDS = ("audio", "text", "tool_call", "turn_complete", "setup_complete")


def frame_kind(frame: dict[str, Any]) -> str | None:
    sc = frame.get("serverContent")
    if sc is not None:
        turn = sc.get("modelTurn")
        if turn is not None:
            parts = turn.get("parts") or ()
            if parts and "inlineData" in parts[0]:
                return "audio"
            if parts and "text" in parts[0]:
                return "text"
            return None
        if sc.get("turnComplete"):
            return "turn_complete"
        return None
    if "toolCall" in frame:
        return "tool_call"
    if "setupComplete" in frame:
        return "setup_complete"
    return None


def install() -> None:
    orig_record = Conversation.record
    orig_send = Session.send

    def record(self: Conversation, index: int, kind: str, summary: dict[str, Any]) -> None:
        now = time.time()
        st = self.__dict__.setdefault("_bench", {"key": "", "tag": "", "n": {}, "c2s": [], "s2c": []})
        st["c2s"].append((self.connections, index, kind, now))
        if kind == "clientContent":
            tag = str(summary.get("text", ""))
            st["tag"], st["n"] = tag, {}
            if not st["key"]:
                m = _KEY.search(tag)
                st["key"] = m.group(1) if m else ""
        orig_record(self, index, kind, summary)

    async def send(self: Session, frame: dict[str, Any]) -> None:
        conv = self.conv
        if conv is not None:
            kind = frame_kind(frame)
            if kind is not None:
                st = conv.__dict__.setdefault("_bench", {"key": "", "tag": "", "n": {}, "c2s": [], "s2c": []})
                n = st["n"].get(kind, 0) + 1
                st["n"][kind] = n
                st["s2c"].append((st["tag"], kind, n, time.time()))
        await orig_send(self, frame)

    Conversation.record = record  # type: ignore[method-assign]
    Session.send = send  # type: ignore[method-assign]


def dump(server: EmulatorServer, path: str) -> None:
    convs = []
    for conv in list(server._conversations.values()):
        st = conv.__dict__.get("_bench")
        if st is None:
            continue
        convs.append({"id": conv.id, "key": st["key"], "connections": conv.connections, "go_aways": conv.go_aways,
                      "c2s": st["c2s"], "s2c": st["s2c"]})
        st["c2s"], st["s2c"] = [], []
    server.clear_conversations()
    gc.collect()  # between steps (automatic collection is off, see main)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps({"convs": convs}))
    os.replace(tmp, path)


async def main(args: argparse.Namespace) -> None:
    install()
    cfg = EmulatorConfig(port=0, pacing=args.pacing, audio_chunk_ms=args.audio_chunk_ms,
                         connection_lifetime_s=args.lifetime_s, go_away_lead_s=args.go_away_lead_s,
                         speech_engine="synthetic", transcribe_engine="convention", cert_dir=args.cert_dir,
                         conversation_log_limit=100, max_closed_conversations=100_000)
    server = EmulatorServer(cfg)
    await server.start()
    # the emulator is the benchmark's instrument: its collector's pauses (up to 75 ms for a full collection,
    # 14 ms for a middle one under load) would be counted as the gateway's latency. Collected at each dump
    # (between steps) instead.
    gc.collect()
    gc.freeze()
    gc.disable()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump, server, args.stamps)
    print(f"emulator {server.url} {server.cert_path}", flush=True)
    await stop.wait()
    await server.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--pacing", type=float, default=1.0)
    p.add_argument("--audio-chunk-ms", type=int, default=20)
    p.add_argument("--lifetime-s", type=float, default=600.0)
    p.add_argument("--go-away-lead-s", type=float, default=50.0)
    p.add_argument("--stamps", required=True)
    p.add_argument("--cert-dir", required=True)
    import uvloop

    uvloop.run(main(p.parse_args()))
