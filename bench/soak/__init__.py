"""The chaos soak: many live sessions on a real multi-process stack while processes, connections, the
upstream and the callers themselves fail at random; then the counts that must all be zero.

    python -m bench.soak --sessions 100 --duration-s 300 --faults-each 10 --out docs/benchmarks/soak.json

The stack: one Redis, the emulator (its own process: short connection lifetime, so go_aways happen all
the time), 3 fronts and 3 workers as ``livegate`` processes with a short heartbeat TTL, and an admission
config, so every session holds a real lease. Each session is a caller (:class:`Caller`) on the raw gRPC
API: text callers send numbered turns and check each answer names its own turn; audio callers stream a
spoken question in real time and check the answer. Every caller keeps a resumption handle.

Faults, spread at random over the run (``--faults-each`` of each kind):
worker and front SIGKILL, SIGSTOP past the heartbeat TTL (then SIGCONT), SIGTERM (each killed or stopped
process is replaced, so the fleet keeps its size); Redis connections killed (``CLIENT KILL``); upstream
go_away (natural, from the connection lifetime, counted), 1011 closes and drops injected through the
emulator's admin API; callers that cancel their stream and reattach, and callers that drop their stream and
resume the conversation with their handle.

What it counts, each required to be 0 (``report["zero"]``):
- ``turns_lost``: a turn the caller sent (and the gateway accepted) that the model never saw;
- ``turns_duplicated``: a turn the model saw twice;
- ``messages_missing_after_reattach``: a gap in ``seq`` on a reattached stream;
- ``silent``: a turn with neither an answer nor a status within ``--silent-s``;
- ``wrong_answers``: an answer to another turn (order);
- ``leftover_sessions``, ``leftover_keys``, ``leftover_leases``, ``leftover_upstreams``: what is still there
  after every caller closed and the last grace ran out.
A caller's session that ends with a status (not silently) is not an error by itself: the caller starts a
new session (counted in ``ended_with_status``, by reason).
"""

from bench.soak.faults import FAULTS
from bench.soak.run import soak

__all__ = ["FAULTS", "soak"]
