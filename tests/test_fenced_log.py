"""The s2c log append fenced by epoch (records.FENCED_XADD), on a real Redis."""

from __future__ import annotations

from typing import Any

from livegate import keys, records
from livegate.bus import is_stale_id_error
from livegate.clusterclient import already_written


def _append(sid: str, worker: str, epoch: int, seq: int, data: bytes) -> tuple[Any, ...]:
    return ("EVAL", records.FENCED_XADD, 2, keys.session_meta(sid), keys.session_s2c(sid), worker, epoch,
            "MAXLEN", "~", 100, keys.stream_id(seq), "m", data)


async def test_only_the_owner_at_its_epoch_appends(redis: Any) -> None:
    sid = "s-fenced"
    await redis.hset(keys.session_meta(sid), mapping={"state": "pending"})
    assert await records.claim(redis, sid, "worker-a") == 1
    assert await redis.execute_command(*_append(sid, "worker-a", 1, 1, b"one")) == b"0-1"
    # worker-a is presumed dead: worker-b claims the session before writing anything
    assert await records.claim(redis, sid, "worker-b", expected="worker-a") == 2
    assert await redis.execute_command(*_append(sid, "worker-a", 1, 2, b"stale")) is None
    assert await redis.execute_command(*_append(sid, "worker-b", 2, 2, b"two")) == b"0-2"
    assert [(e, f[b"m"]) for e, f in await redis.xrange(keys.session_s2c(sid))] == [(b"0-1", b"one"), (b"0-2", b"two")]
    # the session ended (its record deleted): nobody appends, and nothing recreates the log's record
    await redis.delete(keys.session_meta(sid))
    assert await redis.execute_command(*_append(sid, "worker-b", 2, 3, b"late")) is None


async def test_a_retried_append_is_recognised_as_already_written(redis: Any) -> None:
    sid = "s-retried"
    await redis.hset(keys.session_meta(sid), mapping={"state": "pending"})
    assert await records.claim(redis, sid, "worker-a") == 1
    cmd = _append(sid, "worker-a", 1, 1, b"one")
    assert await redis.execute_command(*cmd) == b"0-1"
    # the same append sent again (its first reply lost with the connection): refused as "equal or smaller"...
    pipe = redis.pipeline(transaction=False)
    pipe.execute_command(*cmd)
    [reply] = await pipe.execute(raise_on_error=False)
    assert is_stale_id_error(reply)
    # ...and recognised as ours, while other content at that id is not
    assert await already_written(redis, cmd) == b"0-1"
    assert await already_written(redis, _append(sid, "worker-a", 1, 1, b"other")) is None
