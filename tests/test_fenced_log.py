"""The s2c log fenced by epoch: entry ids ``<epoch>-<seq>``, a claim raises the log's last id to its new
epoch (records.CLAIM), and readers find a seq's entry across epochs (records.S2C_AFTER); on a real Redis."""

from __future__ import annotations

from typing import Any

from livegate.redis import keys, records
from livegate.redis.bus import is_stale_id_error
from livegate.redis.cluster import already_written


def _append(sid: str, epoch: int, seq: int, data: bytes) -> tuple[Any, ...]:
    """What a worker sends (workers/worker.py: write_server_message)."""
    return ("XADD", keys.session_s2c(sid), "NOMKSTREAM", "MAXLEN", "~", 100, keys.log_id(epoch, seq), "m", data)


async def _run(redis: Any, cmd: tuple[Any, ...]) -> Any:
    pipe = redis.pipeline(transaction=False)
    pipe.execute_command(*cmd)
    [reply] = await pipe.execute(raise_on_error=False)
    return reply


async def _new_session(redis: Any, sid: str) -> None:
    await redis.hset(keys.session_meta(sid), mapping={"state": "pending"})


async def test_a_claim_fences_every_earlier_owner_out_of_the_log(redis: Any) -> None:
    sid = "s-fenced"
    await _new_session(redis, sid)
    assert not await redis.exists(keys.session_s2c(sid))
    assert await records.claim(redis, sid, "worker-a") == 1
    assert await redis.exists(keys.session_s2c(sid)), "the claim creates the (empty) log: appends never do"
    assert await redis.ttl(keys.session_s2c(sid)) > 0
    assert await _run(redis, _append(sid, 1, 1, b"one")) == b"1-1"
    assert await _run(redis, _append(sid, 1, 2, b"two")) == b"1-2"
    # worker-a is presumed dead: worker-b claims the session; worker-a is refused before worker-b writes anything
    assert await records.claim(redis, sid, "worker-b", expected="worker-a") == 2
    assert is_stale_id_error(await _run(redis, _append(sid, 1, 3, b"stale")))
    assert await _run(redis, _append(sid, 2, 3, b"three")) == b"2-3"
    assert is_stale_id_error(await _run(redis, _append(sid, 1, 4, b"stale")))
    assert [(e, f[b"m"]) for e, f in await redis.xrange(keys.session_s2c(sid))] == [
        (b"1-1", b"one"), (b"1-2", b"two"), (b"2-3", b"three")]
    assert await redis.hget(keys.session_meta(sid), "epochs") == b"1:1 2:3 "
    # the session ended (its keys deleted): nobody appends, and nothing recreates the log
    await redis.delete(*keys.session_keys(sid))
    assert await _run(redis, _append(sid, 2, 4, b"late")) is None
    assert not await redis.exists(keys.session_s2c(sid))


async def test_a_claim_before_the_first_message_fences_too(redis: Any) -> None:
    sid = "s-early"
    await _new_session(redis, sid)
    assert await records.claim(redis, sid, "worker-a") == 1
    assert await records.claim(redis, sid, "worker-b", expected="worker-a") == 2  # worker-a wrote nothing yet
    assert is_stale_id_error(await _run(redis, _append(sid, 1, 1, b"setup_complete")))
    assert await _run(redis, _append(sid, 2, 1, b"setup_complete")) == b"2-1"
    assert await redis.hget(keys.session_meta(sid), "epochs") == b"1:1 2:1 "


async def test_a_claim_of_an_ended_session_creates_nothing(redis: Any) -> None:
    assert await records.claim(redis, "s-gone", "worker-a") == -1
    assert not await redis.exists(*keys.session_keys("s-gone"))


async def test_readers_find_any_seq_across_epochs(redis: Any) -> None:
    sid = "s-read"
    await _new_session(redis, sid)
    owners = ["", "w1", "w2", "w3"]
    seq = 0
    for epoch in (1, 2, 3):  # three owners: 4, 3 and 5 messages
        assert await records.claim(redis, sid, owners[epoch], expected=owners[epoch - 1]) == epoch
        for _ in range({1: 4, 2: 3, 3: 5}[epoch]):
            seq += 1
            assert await _run(redis, _append(sid, epoch, seq, b"m%d" % seq)) == f"{epoch}-{seq}".encode()
    for after in range(0, 13):
        got = await records.s2c_after(redis, sid, after)
        assert got == [(n, b"m%d" % n) for n in range(after + 1, 13)], after
    assert await records.s2c_after(redis, sid, 2, count=3) == [(3, b"m3"), (4, b"m4"), (5, b"m5")]
    assert await records.s2c_after(redis, sid, 6, count=2) == [(7, b"m7"), (8, b"m8")]


async def test_a_log_written_before_epochs_were_recorded_reads_as_epoch_zero(redis: Any) -> None:
    """A session relayed through a rolling upgrade: 0-<seq> ids from the previous version, then a claim."""
    sid = "s-legacy"
    await redis.hset(keys.session_meta(sid), mapping={"state": "active", "worker": "old", "epoch": 1})
    for n in (1, 2, 3):
        await redis.xadd(keys.session_s2c(sid), {"m": b"m%d" % n}, id=f"0-{n}")
    assert await records.claim(redis, sid, "new", expected="old") == 2
    assert is_stale_id_error(await _run(redis, _append(sid, 1, 4, b"stale")))
    assert await _run(redis, _append(sid, 2, 4, b"m4")) == b"2-4"
    assert [n for n, _ in await records.s2c_after(redis, sid, 1)] == [2, 3, 4]
    assert [n for n, _ in await records.s2c_after(redis, sid, 3)] == [4]


async def test_a_retried_append_is_recognised_as_already_written(redis: Any) -> None:
    sid = "s-retried"
    await _new_session(redis, sid)
    assert await records.claim(redis, sid, "worker-a") == 1
    cmd = _append(sid, 1, 1, b"one")
    assert await _run(redis, cmd) == b"1-1"
    # the same append sent again (its first reply lost with the connection): refused as "equal or smaller"...
    assert is_stale_id_error(await _run(redis, cmd))
    # ...and recognised as ours, while other content at that id is not
    assert await already_written(redis, cmd) == b"1-1"
    assert await already_written(redis, _append(sid, 1, 1, b"other")) is None
