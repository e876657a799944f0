"""Workers: processes that hold the upstream Live API WebSockets.

A worker pulls sessions from Redis while under capacity (:mod:`workers.allocation`), opens each upstream
(:mod:`workers.upstream`), relays both directions between Redis and the WebSocket (:mod:`workers.relay`),
and keeps each session's resumption state in Redis so that any worker can continue it.
"""
