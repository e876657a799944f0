"""Fault injection: rules saying what goes wrong, for which session, at which moment.

A rule is JSON (admin endpoint, scenario file, or `EmulatorServer.faults.add(...)`):

    {"target": "next" | "all" | "<session id>" | "<conversation id>",
     "when": "immediately" | "before_setup_complete" | "mid_turn" | "after_messages",
     "after_messages": N,            # with when=after_messages: after the Nth client message after setup
     "action": "close" | "drop" | "stall" | "delay_pong",
     "code": 1011, "reason": "...",  # or "close": "<name in closes.NAMED>" (action close)
     "duration_s": 0,                # stall: 0 = forever; delay_pong: delay of every pong
     "count": 1}                     # how many sessions it fires for (default 1; "all": unlimited)
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from .closes import INTERNAL, NAMED, truncate_reason

WHENS = ("immediately", "before_setup_complete", "mid_turn", "after_messages")
ACTIONS = ("close", "drop", "stall", "delay_pong")


class FaultSpecError(ValueError):
    """A fault rule that does not parse; the admin endpoint answers 400."""


@dataclass
class FaultRule:
    id: str
    target: str = "next"
    when: str = "immediately"
    after_messages: int = 0
    action: str = "close"
    code: int = INTERNAL[0]
    reason: str = INTERNAL[1]
    duration_s: float = 0.0
    count: int | None = 1
    fired: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


_ids = itertools.count(1)


def parse_rule(spec: dict[str, Any]) -> FaultRule:
    try:
        target = str(spec.get("target", "next"))
        when = str(spec.get("when", "immediately"))
        action = str(spec.get("action", "close"))
        if when not in WHENS:
            raise FaultSpecError(f"when must be one of {WHENS}")
        if action not in ACTIONS:
            raise FaultSpecError(f"action must be one of {ACTIONS}")
        code, reason = INTERNAL
        if "close" in spec:
            name = str(spec["close"])
            if name not in NAMED:
                raise FaultSpecError(f"unknown close name {name!r}; known: {sorted(NAMED)}")
            code, reason = NAMED[name]
        if "code" in spec:
            code = int(spec["code"])
            if not (code == 1000 or 3000 <= code <= 4999 or 1001 <= code <= 1014) or code in (1004, 1005, 1006):
                raise FaultSpecError("code must be a sendable WebSocket close code")
        if "reason" in spec:
            reason = str(spec["reason"])
        default_count = None if target == "all" else 1
        count_raw = spec.get("count", default_count)
        return FaultRule(
            id=str(spec.get("id") or f"fault-{next(_ids)}"),
            target=target,
            when=when,
            after_messages=int(spec.get("after_messages", 0)),
            action=action,
            code=code,
            reason=truncate_reason(reason),
            duration_s=float(spec.get("duration_s", 0.0)),
            count=None if count_raw in (None, "", 0, "0") else int(count_raw),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, FaultSpecError):
            raise
        raise FaultSpecError(str(exc)) from None


class FaultBook:
    """The server's fault rules. Sessions claim the rules aimed at them when they open and after setup."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._listeners: list[Any] = []  # live sessions: .on_fault_added(rule)

    def add(self, spec: dict[str, Any] | FaultRule) -> FaultRule:
        rule = spec if isinstance(spec, FaultRule) else parse_rule(spec)
        self._rules.append(rule)
        for session in list(self._listeners):
            session.on_fault_added(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def claim(self, ids: tuple[str, ...], *, new_connection: bool) -> list[FaultRule]:
        """Rules now owned by a session with these ids. A new connection takes one `next` rule and the
        `all` rules; a later claim (after setup, with the conversation id) only takes rules naming an id."""
        claimed: list[FaultRule] = []
        for rule in list(self._rules):
            if rule.target in ("next", "all"):
                if not new_connection or (rule.target == "next" and any(r.target == "next" for r in claimed)):
                    continue
            elif rule.target not in ids:
                continue
            claimed.append(rule)
            self.consume(rule)
        return claimed

    def consume(self, rule: FaultRule) -> None:
        rule.fired += 1
        if rule.count is not None and rule.fired >= rule.count and rule in self._rules:
            self._rules.remove(rule)

    def subscribe(self, session: Any) -> None:
        self._listeners.append(session)

    def unsubscribe(self, session: Any) -> None:
        if session in self._listeners:
            self._listeners.remove(session)
