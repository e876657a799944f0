"""What one caller may make the gateway hold: its bytes and its time.

- **Per message**, by kind (``setup``, ``client_content``, ``realtime_input`` audio / video / media_chunks /
  text, ``tool_response``): a bigger message is refused, RESOURCE_EXHAUSTED ``PAYLOAD_TOO_LARGE``.
- **Per second**: every client message's bytes are taken from the session's bucket and from its tenant's bucket
  on this front, messages from a message bucket, and audio (``realtime_input.audio``, audio media chunks,
  audio inline data in ``client_content``) from a bucket of seconds of audio at the validated rate. A spent
  bucket throttles: the front stops reading the caller's stream until the bucket refills, so HTTP/2 flow
  control slows the caller down and nothing piles up in memory. Bytes are metered whatever rate a message
  declares, so no declared rate makes a flood free.
- **Time before the first message**: a Connect must send ``setup`` (or ``reattach``) within
  ``setup_timeout_s``, else DEADLINE_EXCEEDED ``SETUP_TIMEOUT``; while it has not, it is a *pending Connect*,
  capped per tenant and per front (RESOURCE_EXHAUSTED ``TOO_MANY_PENDING_CONNECTS`` beyond).

The session's log in Redis is bounded by :class:`livegate.redis.bus.StreamBytes` in ``service/session.py``
(the c2s log bound throttles too, then refuses with ``C2S_LOG_FULL``). docs/redis.md states the bounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from typing import Any

import grpc

from livegate import metrics
from livegate.errors import GatewayError, invalid_argument
from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

# Input audio rates the Live API takes lie in [8 kHz, 48 kHz] (service/validate.py refuses the others in
# realtime input). Audio is metered at its declared rate only inside that range; any other declaration (none
# that parses, 999999999, 1) is metered at the slowest, so no declared rate makes audio cheaper than 8 kHz.
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 8000, 48000
_RATE_RE = re.compile(r";\s*rate\s*=\s*(\d{1,9})\s*(?:;|$)", re.IGNORECASE)


def metering_rate(mime: str) -> int:
    """The sample rate PCM audio of ``mime`` is metered at (``audio/pcm`` without a rate: 16 kHz)."""
    m = _RATE_RE.search(mime)
    if m is None:
        return 16000 if mime.strip().lower() == "audio/pcm" else MIN_AUDIO_RATE
    rate = int(m.group(1))
    return rate if MIN_AUDIO_RATE <= rate <= MAX_AUDIO_RATE else MIN_AUDIO_RATE


class TokenBucket:
    """``rate`` units per second with ``burst`` in hand; ``take`` returns how long to wait for the units."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.at = time.monotonic()

    def take(self, amount: float) -> float:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def full(self) -> bool:
        return self.level + (time.monotonic() - self.at) * self.rate >= self.burst


def refusal(kind: str, reason: str, size: int, message: str, *, retry_after_s: float | None = None,
            code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED) -> GatewayError:
    """A budget's refusal, counted in ``livegate_budget_refusals_total{kind,reason}``."""
    metrics.BUDGET_REFUSALS.labels(kind, reason.lower()).inc()
    if size:
        metrics.BUDGET_REFUSED_BYTES.labels(kind, reason.lower()).inc(size)
    return GatewayError(code, reason, message, retryable=retry_after_s is not None, retry_after_s=retry_after_s)


def _cap(kind: str, size: int, limit: int) -> None:
    if size > limit:
        raise refusal(kind, "PAYLOAD_TOO_LARGE", size,
                      f"a {kind} of {size} bytes is larger than the {limit} bytes this gateway takes in one message; "
                      "send it in smaller pieces")


def _audio_seconds(blob: live.Blob, kind: str, max_chunk_ms: int | None) -> float:
    """Seconds of PCM audio in ``blob`` at its metering rate (see :func:`metering_rate`); 0 for audio that is not
    PCM (its bytes are metered all the same)."""
    mime = blob.mime_type.strip().lower()
    if not mime.startswith("audio/pcm"):
        return 0.0
    seconds = len(blob.data) / (2 * metering_rate(blob.mime_type))
    if max_chunk_ms is not None and seconds * 1000 > max_chunk_ms:
        metrics.BUDGET_REFUSALS.labels(kind, "audio_chunk_too_long").inc()
        raise invalid_argument(f"an audio chunk of {seconds * 1000:.0f} ms is longer than the {max_chunk_ms} ms allowed "
                               "in one message; send 20-100 ms chunks", "AUDIO_CHUNK_TOO_LONG")
    return seconds


@dataclasses.dataclass(slots=True, frozen=True)
class Cost:
    """What one client message takes from its session's budgets."""

    size: int
    audio_s: float = 0.0


def measure(msg: gw.ClientMessage, kind: str, size: int, st: Settings) -> Cost:
    """Check a client message (after ``setup``) against the per-message caps of its kind; return its cost."""
    audio_s = 0.0
    if kind == "realtime_input":
        ri = msg.realtime_input
        if ri.HasField("audio"):
            _cap("audio", len(ri.audio.data), st.max_audio_bytes)
            audio_s += _audio_seconds(ri.audio, "audio", st.max_audio_chunk_ms)
        if ri.HasField("video"):
            _cap("video", len(ri.video.data), st.max_video_bytes)
        if ri.media_chunks:
            _cap("media_chunks", sum(len(c.data) for c in ri.media_chunks), st.max_media_chunks_bytes)
            for chunk in ri.media_chunks:
                if chunk.mime_type.lower().startswith("audio/"):
                    _cap("audio", len(chunk.data), st.max_audio_bytes)
                    audio_s += _audio_seconds(chunk, "media_chunks", st.max_audio_chunk_ms)
        if ri.text:
            _cap("text", len(ri.text.encode()), st.max_text_bytes)
    elif kind == "client_content":
        _cap("client_content", size, st.max_client_content_bytes)
        for turn in msg.client_content.turns:
            for part in turn.parts:
                if part.HasField("inline_data"):  # a recorded clip: metered as audio, not held to a chunk length
                    audio_s += _audio_seconds(part.inline_data, "client_content", None)
    elif kind == "tool_response":
        _cap("tool_response", size, st.max_tool_response_bytes)
    # every message, whatever its kind, is held to the largest cap: nothing unmetered gets through whole
    _cap(kind, size, max(st.max_client_content_bytes, st.max_audio_bytes, st.max_video_bytes,
                         st.max_media_chunks_bytes, st.max_text_bytes, st.max_tool_response_bytes) + 4096)
    return Cost(size, audio_s)


class SessionBudget:
    """One session's buckets (messages, audio seconds, bytes) and its tenant's bytes bucket on this front."""

    __slots__ = ("_msgs", "_audio", "_bytes", "_tenant", "throttled_s")

    def __init__(self, budgets: FrontBudgets, tenant: str) -> None:
        st = budgets.settings
        self._msgs = TokenBucket(rate=st.max_messages_per_s, burst=2 * st.max_messages_per_s)
        self._audio = TokenBucket(rate=st.audio_rate_factor, burst=st.audio_burst_s)  # in seconds of audio
        self._bytes = TokenBucket(rate=st.session_bytes_per_s, burst=st.session_burst_bytes)
        self._tenant = budgets.tenant_bucket(tenant)
        self.throttled_s = 0.0

    async def spend(self, cost: Cost) -> None:
        """Take ``cost`` from every bucket; wait (reading nothing more from the caller) for the slowest."""
        waits = (("messages", self._msgs.take(1.0)), ("session_bytes", self._bytes.take(cost.size)),
                 ("tenant_bytes", self._tenant.take(cost.size)),
                 ("audio", self._audio.take(cost.audio_s) if cost.audio_s else 0.0))
        budget, delay = max(waits, key=lambda w: w[1])
        if delay > 0:
            self.throttled_s += delay
            metrics.BUDGET_THROTTLED_SECONDS.labels(budget).inc(delay)
            await asyncio.sleep(delay)


class FrontBudgets:
    """A front's shared budgets: its tenants' byte buckets and its pending Connects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tenants: dict[str, TokenBucket] = {}
        self.pending: dict[str, int] = {}  # tenant -> Connects that have not sent their first message
        self.pending_total = 0

    def tenant_bucket(self, tenant: str) -> TokenBucket:
        bucket = self._tenants.get(tenant)
        if bucket is None:
            if len(self._tenants) >= 1024:  # forget the tenants whose bucket is full: nothing to remember
                for name in [t for t, b in self._tenants.items() if b.full()]:
                    del self._tenants[name]
            st = self.settings
            bucket = self._tenants[tenant] = TokenBucket(rate=st.tenant_bytes_per_s, burst=st.tenant_burst_bytes)
        return bucket

    async def first_message(self, caller: Any, tenant: str) -> Any:
        """Read a caller's first message (``service.caller.Caller.read``) within ``setup_timeout_s``, counting the
        call as pending meanwhile; refuse it if its tenant (or this front) has too many pending already, or if
        the message is too big."""
        st = self.settings
        held = self.pending.get(tenant, 0)
        if held >= st.max_pending_connects_per_tenant or self.pending_total >= st.max_pending_connects:
            whose = "this tenant has" if held >= st.max_pending_connects_per_tenant else "this gateway front has"
            raise refusal("connect", "TOO_MANY_PENDING_CONNECTS", 0,
                          f"{whose} too many Connects open that have not sent setup yet; send setup as the first "
                          "message of each stream, then open more", retry_after_s=1.0)
        self.pending[tenant] = held + 1
        self.pending_total += 1
        metrics.PENDING_CONNECTS.inc()
        try:
            async with asyncio.timeout(st.setup_timeout_s):  # not wait_for: on 3.11 it can swallow a cancel
                first = await caller.read()
        except TimeoutError:
            raise refusal("connect", "SETUP_TIMEOUT", 0,
                          f"no setup (or reattach) within {st.setup_timeout_s:g} s of the stream's start; send it as "
                          "the first message", code=grpc.StatusCode.DEADLINE_EXCEEDED) from None
        finally:
            metrics.PENDING_CONNECTS.dec()
            self.pending_total -= 1
            if self.pending[tenant] <= 1:
                del self.pending[tenant]
            else:
                self.pending[tenant] -= 1
        if first is not grpc.aio.EOF and len(first[0]) > st.max_setup_bytes:
            raise refusal("setup", "PAYLOAD_TOO_LARGE", len(first[0]),
                          f"the first message is {len(first[0])} bytes, larger than the {st.max_setup_bytes} bytes "
                          "a setup may take; shorten the system instruction or the tool declarations")
        return first


# -- what Redis holds at most (docs/redis.md, "Memory bound") -------------------------------------------

ALLOCATOR_SLACK = 1.25  # jemalloc rounds an allocation up to its size class: at most 25 % more
ENTRY_OVERHEAD_BYTES = 256  # a stream entry's id, field names, its "t" stamp, listpack and radix-node headers
APPROX_TRIM_ENTRIES = 100  # MAXLEN ~ trims whole nodes: up to stream-node-max-entries (100) more entries stay


@dataclasses.dataclass(frozen=True)
class RedisBound:
    """Worst-case Redis memory (bytes) of one session's keys and of one inbox/outbox stream."""

    meta: int
    c2s: int
    s2c: int
    stream: int  # one worker inbox or one front outbox

    @property
    def session(self) -> int:
        return self.meta + self.c2s + self.s2c

    def fleet(self, sessions: int, workers: int, fronts: int) -> int:
        return sessions * self.session + (workers + fronts) * self.stream


def redis_bound(st: Settings) -> RedisBound:
    """The bound docs/redis.md states, from the settings."""
    slack, entry = ALLOCATOR_SLACK, ENTRY_OVERHEAD_BYTES
    return RedisBound(
        meta=int(slack * (st.max_setup_bytes + 4096)),  # the record holds the setup and the options
        c2s=int(slack * st.c2s_log_max_bytes) + (st.c2s_log_len + APPROX_TRIM_ENTRIES) * entry,
        # trimmed after each append: the bound plus the message just written
        s2c=int(slack * (st.s2c_log_max_bytes + st.upstream_max_frame_bytes))
        + (st.s2c_history_len + APPROX_TRIM_ENTRIES) * entry,
        stream=(st.inbox_len + APPROX_TRIM_ENTRIES) * (int(slack * st.stream_inline_max_bytes) + entry))
