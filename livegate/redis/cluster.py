"""livegate's Redis Cluster client: :class:`LiveRedisCluster`, which :func:`livegate.redis.connect.connect`
returns for a cluster URL. Like the single-node client, its commands and pipelines never swallow a
cancellation (:func:`livegate.cleanups.keeping_cancellation`).

Its non-transactional pipelines keep the guarantee livegate's code relies on with one Redis: **a pipeline's
commands take effect in order**, also when they live on different masters (redis-py's ``ClusterPipeline``
sends each master its share in parallel, so e.g. a session could be queued for a worker before its record
exists). See :func:`execute_ordered` for how that is done without one round trip per command, and how a
connection lost in the middle of a pipeline is retried (redis-py's cluster pipeline returns such errors as
per-command results instead of retrying them).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ClusterDownError, RedisClusterException, ResponseError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livegate.cleanups import keeping_cancellation

# Errors after which a command may not have run: retried (with backoff) by the ordered cluster pipeline.
RETRYABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, SlotNotCoveredError, ConnectionResetError,
             OSError)
PIPELINE_RETRIES = 10


def is_transient(exc: BaseException) -> bool:
    """A failure after which the command may simply be tried again once the connection is back: connection
    errors, timeouts, a cluster between topologies, and redis-py 8.1's race where a cluster connection is
    disconnected by another task while in use (``AttributeError: 'NoneType' object has no attribute
    'writelines'``, seen under ``CLIENT KILL``)."""
    if isinstance(exc, RETRYABLE):
        return True
    if isinstance(exc, AttributeError):
        return "'NoneType' object has no attribute" in str(exc)
    if isinstance(exc, RedisClusterException):
        text = str(exc)
        return "cannot be connected" in text or "All slots are not covered" in text
    return False


def _count_retry(client: RedisCluster) -> None:
    """Count a cluster-level retry like CountingRetry counts the single-node ones."""
    from livegate import metrics

    metrics.REDIS_ERRORS.labels(getattr(client.retry, "role", "process"), "retry").inc()


class LiveRedisCluster(RedisCluster):
    """``RedisCluster`` whose ``pipeline(transaction=False)`` runs commands in order across masters, and whose
    commands survive a dropped connection like the single-node client does: redis-py's cluster client retries
    a connection error at once (no backoff) and lets some through (a failure while it re-reads the topology,
    a connection closed under a command by another task); those are retried here with capped, jittered
    exponential backoff (``retries`` times)."""

    retries = PIPELINE_RETRIES

    async def _determine_slot(self, command: Any, *args: Any) -> int:
        """XREAD/XREADGROUP have "movable keys": redis-py asks the server (``COMMAND GETKEYS``, twice per
        call) where their keys are, two extra round trips in front of every read of the hot path. Their
        keys are simply the first half of what follows ``STREAMS``."""
        name = (command.decode() if isinstance(command, bytes) else str(command)).upper()
        if name in ("XREAD", "XREADGROUP"):
            tokens = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
            upper = [t.upper() for t in tokens]
            if "STREAMS" in upper:
                rest = args[upper.index("STREAMS") + 1:]
                slots = {self.keyslot(k) for k in rest[: len(rest) // 2]}
                if len(slots) == 1:
                    return slots.pop()
                if len(slots) > 1:
                    raise RedisClusterException(f"{name} - all keys must map to the same key slot")
        return int(await super()._determine_slot(command, *args))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        failures = 0
        backoff = ExponentialWithJitterBackoff(base=0.02, cap=1.0)
        while True:
            try:
                return await keeping_cancellation(super().execute_command(*args, **kwargs))
            except Exception as exc:
                if not is_transient(exc) or failures >= self.retries:
                    raise
                failures += 1
                _count_retry(self)
                self._initialize = True  # re-read the topology before the next attempt
                await asyncio.sleep(backoff.compute(failures))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if transaction or shard_hint:
            return super().pipeline(transaction, shard_hint)
        return OrderedClusterPipeline(self)


class OrderedClusterPipeline(ClusterPipeline):
    """A non-transactional cluster pipeline whose commands take effect in queue order (see
    :func:`execute_ordered`); connection errors are retried instead of returned as results. With
    ``ordered=False`` only the commands on one slot keep their order (one round trip whatever the mix)."""

    def __init__(self, client: RedisCluster, *, ordered: bool = True) -> None:
        super().__init__(client)
        self.ordered = ordered

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        queue = list(self._execution_strategy._command_queue)  # type: ignore[attr-defined]
        try:
            if not queue:
                return []
            results = await keeping_cancellation(execute_ordered(
                self.cluster_client, [(c.args, c.kwargs) for c in queue], [len(queue)] if self.ordered else [1] * len(queue)))
        finally:
            await self.reset()
        if raise_on_error:
            for i, r in enumerate(results):
                if isinstance(r, Exception):
                    command = " ".join(map(str, queue[i].args))[:100]
                    r.args = (f"Command # {i + 1} ({command}) of pipeline caused error: {r.args}",) + r.args[1:]
                    raise r
        return results


def unordered_pipeline(redis: Redis | RedisCluster) -> Any:
    """A pipeline for commands that do not depend on each other's order (reads, independent TTL refreshes):
    on a cluster one round trip to every master involved instead of one per change of master. On one Redis,
    the ordinary pipeline (which is ordered anyway)."""
    if isinstance(redis, RedisCluster):
        return OrderedClusterPipeline(redis, ordered=False)
    return redis.pipeline(transaction=False)


async def _slot_of(client: RedisCluster, args: Sequence[Any]) -> int | None:
    """The slot ``args`` runs on; None for a command without a key; raises for a CROSSSLOT command."""
    try:
        return int(await client._determine_slot(*args))
    except RedisClusterException as exc:
        if "same key slot" in str(exc):
            raise
        return None


async def plan_phases(client: RedisCluster, commands: Sequence[tuple[Sequence[Any], dict[str, Any]]],
                      group_sizes: Sequence[int]) -> tuple[list[int], list[Exception | None]]:
    """Give every command a phase (phases run one after the other; the commands of one phase go to their
    masters in parallel, each master's share in queue order on one connection) so that:

    - inside a group, a command runs after the previous one: same phase if both are on the same master,
      the next phase otherwise;
    - across groups, commands on the same slot keep their queue order (never an earlier phase);
    - a command without a key (none in livegate) gets a phase of its own after everything before it.

    So a hot-path batch of ``[XADD log(sid), XADD inbox(worker)]`` groups costs two round trips whatever its
    size, and a plain pipeline (one group) costs one round trip per change of master. Commands that cannot
    be routed (CROSSSLOT) get an error instead of a phase (-1) and are not sent.
    """
    if client._initialize:
        await client.initialize()
    phases: list[int] = []
    errors: list[Exception | None] = []
    slot_phase: dict[int, int] = {}
    floor = 0  # no command may run before a keyless command queued earlier
    top = -1  # highest phase given so far
    i = 0
    for size in group_sizes:
        prev_node: str | None = None
        prev_phase = -1
        for args, _kw in commands[i:i + size]:
            i += 1
            try:
                slot = await _slot_of(client, args)
            except RedisClusterException as exc:
                phases.append(-1)
                errors.append(ResponseError(f"CROSSSLOT Keys in request don't hash to the same slot (not sent): {exc}"))
                continue
            if slot is None:
                phase = top + 1
                floor = phase + 1
                node = None
            else:
                node = client.nodes_manager.get_node_from_slot(slot).name
                phase = max(floor, slot_phase.get(slot, 0))
                if prev_phase >= 0:
                    phase = max(phase, prev_phase if (node is not None and node == prev_node) else prev_phase + 1)
                slot_phase[slot] = phase
            top = max(top, phase)
            phases.append(phase)
            errors.append(None)
            prev_node, prev_phase = node, phase
    return phases, errors


def _is_explicit_xadd(args: Sequence[Any]) -> tuple[Any, str, dict[bytes, bytes]] | None:
    """(key, id, fields) of an ``XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] n] [LIMIT n] <id> field value...``
    with an explicit id, else None."""
    if not args or str(args[0]).upper() != "XADD":
        return None
    rest = list(args[2:])
    j = 0
    while j < len(rest):
        token = rest[j].decode() if isinstance(rest[j], bytes) else str(rest[j])
        up = token.upper()
        if up == "NOMKSTREAM":
            j += 1
        elif up in ("MAXLEN", "MINID"):
            j += 1
            nxt = rest[j].decode() if isinstance(rest[j], bytes) else str(rest[j])
            j += 2 if nxt in ("=", "~") else 1
        elif up == "LIMIT":
            j += 2
        else:
            if token == "*":
                return None
            pairs = rest[j + 1:]
            enc = [v if isinstance(v, bytes) else str(v).encode() for v in pairs]
            return args[1], token, dict(zip(enc[0::2], enc[1::2]))
    return None


async def already_written(client: Redis | RedisCluster, args: Sequence[Any]) -> bytes | None:
    """A retried explicit-id XADD refused as "equal or smaller": if the entry at that id is exactly ours, the
    first attempt landed (its reply was lost with the connection); return the id, else None (fenced)."""
    parsed = _is_explicit_xadd(args)
    if parsed is None:
        return None
    key, eid, fields = parsed
    try:
        found = await client.xrange(key, eid, eid)
    except Exception:
        return None
    if found and found[0][1] == fields:
        return found[0][0] if isinstance(found[0][0], bytes) else str(found[0][0]).encode()
    return None


async def execute_ordered(client: RedisCluster, commands: Sequence[tuple[Sequence[Any], dict[str, Any]]],
                          group_sizes: Sequence[int], *, retries: int = PIPELINE_RETRIES) -> list[Any]:
    """Run ``commands`` (``(args, kwargs)``; ``group_sizes`` splits them into groups, see :func:`plan_phases`)
    on a cluster; returns one reply or exception per command (``raise_on_error=False`` semantics).

    A command whose reply is a connection error may or may not have run: it is retried (capped, jittered
    backoff) before any later phase starts. A retried explicit-id ``XADD`` refused as "equal or smaller" is
    checked: if the entry at that id holds exactly our fields, the first attempt landed and its id is the
    reply (a stream id fences *other* writers, not our own retry)."""
    phases, errors = await plan_phases(client, commands, group_sizes)
    results: list[Any] = list(errors)
    backoff = ExponentialWithJitterBackoff(base=0.02, cap=1.0)
    for phase in sorted(set(p for p in phases if p >= 0)):
        todo = [i for i, p in enumerate(phases) if p == phase]
        attempt = 0
        retried: set[int] = set()
        while todo:
            pipe = ClusterPipeline(client)
            for i in todo:
                args, kw = commands[i]
                pipe.execute_command(*args, **kw)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                replies = [exc] * len(todo)
                client._initialize = True
            again = []
            for i, reply in zip(todo, replies):
                if is_transient(reply) and attempt < retries:
                    again.append(i)
                    continue
                if i in retried and isinstance(reply, ResponseError) and "equal or smaller" in str(reply):
                    own = await already_written(client, commands[i][0])
                    if own is not None:
                        reply = own
                results[i] = reply
            if again:
                attempt += 1
                _count_retry(client)
                retried.update(again)
                await asyncio.sleep(backoff.compute(attempt) + random.random() * 0.005)
            todo = again
    return results


__all__ = ["AnyRedis", "connect", "ping", "is_cluster_url", "parse_cluster_url", "LiveRedisCluster",
           "OrderedClusterPipeline", "execute_ordered", "plan_phases", "unordered_pipeline"]
