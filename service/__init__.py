"""The gRPC front: authenticates callers, admits sessions, hands them to workers through Redis, relays
each caller's stream and lets a dropped caller reattach."""
