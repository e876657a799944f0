"""Which tenants the configuration names: the OIDC tenant allowlist, and the tenants that get their own
metric label.

An allowlist entry (``Settings.oidc_tenants``) is an exact tenant name, a glob (``*@acme.iam.gserviceaccount.com``:
``*``, ``?`` and ``[...]`` as in ``fnmatch``, matched case-sensitively), ``re:<regex>`` (a full match), or either
pattern mapped to one tenant (``*@acme.iam.gserviceaccount.com => acme``).

Metric labels must stay bounded however many identities call: a tenant has its own ``tenant`` label value only
if the configuration names it exactly (:func:`named`: the open tenant, exact allowlist entries, the caller keys
file, the upstream routes' and the admission config's tenants); every other tenant is counted as ``other``
(``livegate.metrics.tenant_label``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Tenants name Redis keys (inside a {hash tag}) and metric labels: no braces, no spaces, bounded.
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,127}$")
_GLOB_CHARS = frozenset("*?[")


@dataclasses.dataclass(frozen=True)
class TenantSet:
    """The identities that may be tenants, and the tenant each one is: exact names, patterns, and patterns
    mapped to one tenant (``"*@acme.iam.gserviceaccount.com => acme"``: every matching identity is tenant
    ``acme``, sharing its sessions, limits and label)."""

    exact: frozenset[str] = frozenset()
    rules: tuple[tuple[re.Pattern[str], str | None], ...] = ()  # (pattern, mapped tenant or None: itself)
    entries: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], *, what: str = "oidc_tenants") -> TenantSet:
        """ValueError (at startup) for an entry that can match no tenant."""
        exact: set[str] = set()
        rules: list[tuple[re.Pattern[str], str | None]] = []
        entries = tuple(e.strip() for e in entries)
        for entry in entries:
            pattern, arrow, target = (p.strip() for p in entry.rpartition("=>")) if "=>" in entry else (entry, "", "")
            if arrow and not TENANT_RE.match(target):
                raise ValueError(f"{what}: {entry!r} maps to {target!r}, which is not a tenant name")
            if pattern.startswith("re:"):
                try:
                    rules.append((re.compile(pattern[3:]), target or None))
                except re.error as exc:
                    raise ValueError(f"{what}: {entry!r} is not a valid regular expression ({exc})") from None
            elif _GLOB_CHARS & set(pattern) or arrow:
                rules.append((re.compile(fnmatch.translate(pattern)), target or None))
            elif TENANT_RE.match(pattern):
                exact.add(pattern)
            else:
                raise ValueError(f"{what}: {entry!r} is not a tenant name (letters, digits and . _ @ : / + -, at most "
                                 "128), a glob ('*@example.com'), 're:<regex>', or '<glob or re:regex> => <tenant>'")
        return cls(frozenset(exact), tuple(rules), entries)

    def __bool__(self) -> bool:
        return bool(self.exact or self.rules)

    def resolve(self, identity: str) -> str | None:
        """The tenant of an identity, or None if the set does not admit it."""
        if identity in self.exact:
            return identity
        for pattern, target in self.rules:
            if pattern.fullmatch(identity):
                return target or identity
        return None

    def named(self) -> set[str]:
        """The tenants this set names exactly: exact entries and mapping targets."""
        return set(self.exact) | {t for _, t in self.rules if t}

    def describe(self, limit: int = 10) -> str:
        shown = ", ".join(self.entries[:limit])
        return shown + (f", … ({len(self.entries)} entries)" if len(self.entries) > limit else "")


def named(settings: Any) -> set[str]:
    """Every tenant the configuration names exactly (for metric labels). Files that cannot be read are skipped
    here: the component that owns each file refuses to start on it."""
    out: set[str] = set()
    modes = [m.strip().lower() for m in settings.auth_modes]
    if "open" in modes:
        out.add(settings.open_tenant)
    if "oidc" in modes:
        try:
            out |= TenantSet.parse(settings.oidc_tenants).named()
        except ValueError:
            pass  # the front refuses to start on it
    keys = _doc(settings.caller_keys_file, "") if "api_key" in modes else {}
    out |= {k["tenant"] for k in keys.get("keys", ()) if isinstance(k, dict) and isinstance(k.get("tenant"), str)}
    routes = _doc(settings.upstreams_file, settings.upstreams_json)
    out |= {t for t in dict(routes.get("tenants") or {}) if t != "*"}
    admission = _doc(settings.admission_file, settings.admission_json)
    for scope in dict(admission.get("scopes") or {}).values():
        if isinstance(scope, dict):
            out |= set(dict(scope.get("tenants") or {}))
    out |= {t for t in dict(admission.get("rate") or {}) if t != "default"}
    return {t for t in out if isinstance(t, str) and TENANT_RE.match(t)}


def _doc(path: str, inline: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text() if path else inline or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
