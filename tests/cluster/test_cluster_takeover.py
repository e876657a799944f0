"""Worker crash takeover on the Redis Cluster: the same real-process test as on a single Redis (SIGKILL the
worker that owns a session mid-turn while audio streams in), with tests/cluster's fixtures, so the workers and
the front run against a three-master cluster."""

from __future__ import annotations

from tests.durability.test_process_faults import emulator, procs, test_sigkill_owner_mid_turn

__all__ = ["emulator", "procs", "test_sigkill_owner_mid_turn"]
