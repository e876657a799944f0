"""Admission config: per-scope caps and tenant shares, per-tenant session-creation rate limits, lease and
waiter timings; parsed and checked from JSON (``admission_file``). The rules they feed are in
``livegate/admission/control.py`` and docs/admission.md."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from livegate.routes import known_fields
from livegate.tenants import TENANT_RE


@dataclasses.dataclass(frozen=True)
class TenantShare:
    guaranteed: int = 0
    max: int | None = None


@dataclasses.dataclass(frozen=True)
class ScopeConfig:
    cap: int
    tenants: Mapping[str, TenantShare] = dataclasses.field(default_factory=dict)
    default_tenant: TenantShare = TenantShare()

    def share(self, tenant: str) -> TenantShare:
        return self.tenants.get(tenant, self.default_tenant)

    def script_args(self) -> list[Any]:
        """cap, default max, then (tenant, guaranteed, max) per listed tenant (-1: no max)."""
        out: list[Any] = [self.cap, _max_arg(self.default_tenant.max), len(self.tenants)]
        for name, share in sorted(self.tenants.items()):
            out += [name, share.guaranteed, _max_arg(share.max)]
        return out


@dataclasses.dataclass(frozen=True)
class RateLimit:
    per_s: float
    burst: int


@dataclasses.dataclass(frozen=True)
class AdmissionConfig:
    scopes: Mapping[str, ScopeConfig] = dataclasses.field(default_factory=dict)
    rate: Mapping[str, RateLimit] = dataclasses.field(default_factory=dict)  # tenant or "default"
    lease_ttl_s: float = 10.0
    waiter_ttl_s: float = 3.0  # a waiter that stops polling loses its place after this
    recover_interval_s: float = 60.0  # a quota-shrunk cap grows back by one per interval

    def rate_for(self, tenant: str) -> RateLimit | None:
        return self.rate.get(tenant) or self.rate.get("default")

    def check(self, scopes: Collection[str], tenant_ok: Callable[[str], bool] | None = None, tenants_hint: str = "",
              *, source: str = "admission config") -> None:
        """Refuse (ValueError, at startup) a config that would silently enforce nothing: a scope that matches no
        ``<route>/<model>`` this gateway serves, or a tenant no caller can be (``tenant_ok``: None when the
        authentication cannot tell, e.g. mTLS). The message names what is valid."""
        for name in self.scopes:
            if name not in scopes:
                raise ValueError(f"{source}: admission scope {name!r} matches no route/model (a scope is "
                                 f"'<route>/<model>'); valid scopes: {_some(sorted(scopes))}")
        if tenant_ok is None:
            return
        listed = [(f"scope {n!r}", t) for n, sc in self.scopes.items() for t in sc.tenants]
        listed += [("rate", t) for t in self.rate if t != "default"]
        for where, tenant in listed:
            if not tenant_ok(tenant):
                raise ValueError(f"{source}: {where}: tenant {tenant!r} is not a tenant any caller can be; "
                                 f"tenants: {tenants_hint or 'see docs/auth.md'}")

    @classmethod
    def from_file(cls, path: str | Path) -> AdmissionConfig:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"admission config {path}: {e}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "admission config") -> AdmissionConfig:
        def fail(msg: str) -> ValueError:
            return ValueError(f"{source}: {msg}")

        def known(where: str, d: Any, fields: tuple[str, ...]) -> Mapping[str, Any]:
            try:
                return known_fields(where, dict(d) if isinstance(d, Mapping) else d, fields)
            except ValueError as exc:
                raise fail(str(exc)) from None

        def share(where: str, d: Mapping[str, Any]) -> TenantShare:
            d = known(where, d, ("guaranteed", "max"))
            g, m = int(d.get("guaranteed", 0)), d.get("max")
            if g < 0 or (m is not None and (int(m) < 1 or int(m) < g)):
                raise fail(f"{where}: need 0 <= guaranteed <= max and max >= 1 (got {g}, {m})")
            return TenantShare(g, None if m is None else int(m))

        raw = known("the document", raw, _TOP_FIELDS)
        scopes: dict[str, ScopeConfig] = {}
        for name, s in dict(raw.get("scopes", {})).items():
            s = known(f"scope {name!r}", s, ("cap", "tenants", "default_tenant"))
            cap = int(s["cap"]) if "cap" in s else 0
            if cap < 1:
                raise fail(f"scope {name!r}: cap must be >= 1")
            tenants = {t: share(f"scope {name!r} tenant {t!r}", d) for t, d in dict(s.get("tenants", {})).items()}
            for t in tenants:
                if not TENANT_RE.match(t):
                    raise fail(f"scope {name!r}: bad tenant name {t!r}")
            if sum(x.guaranteed for x in tenants.values()) > cap:
                raise fail(f"scope {name!r}: guaranteed shares add up to more than the cap {cap}")
            default = share(f"scope {name!r} default_tenant", s.get("default_tenant") or {})
            if default.guaranteed:
                raise fail(f"scope {name!r}: default_tenant.guaranteed must be 0: a share for every unlisted "
                           "tenant cannot be reserved; list the tenant under 'tenants'")
            scopes[name] = ScopeConfig(cap, tenants, default)
        rate: dict[str, RateLimit] = {}
        for tenant, r in dict(raw.get("rate", {})).items():
            r = known(f"rate {tenant!r}", r, ("per_s", "burst"))
            if tenant != "default" and not TENANT_RE.match(tenant):
                raise fail(f"rate: bad tenant name {tenant!r}")
            per_s, burst = float(r["per_s"]), int(r.get("burst", max(1, math.ceil(float(r["per_s"])))))
            if per_s <= 0 or burst < 1:
                raise fail(f"rate {tenant!r}: need per_s > 0 and burst >= 1")
            rate[tenant] = RateLimit(per_s, burst)
        kw = {k: float(raw[k]) for k in ("lease_ttl_s", "waiter_ttl_s", "recover_interval_s") if k in raw}
        if any(v <= 0 for v in kw.values()):
            raise fail("lease_ttl_s, waiter_ttl_s and recover_interval_s must be > 0")
        return cls(scopes=scopes, rate=rate, **kw)


_TOP_FIELDS = ("scopes", "rate", "lease_ttl_s", "waiter_ttl_s", "recover_interval_s")


def _max_arg(m: int | None) -> int:
    return -1 if m is None else m


def _some(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")
