"""Upstream routes: which Live API endpoint and credentials a session uses, and what each tenant may use.

A route is one upstream: the Gemini API with an API key, Vertex AI (a project and location, google-auth
credentials), or the emulator, plus the models it serves. A tenant policy says which routes a tenant may use,
its default route, and which models it may use. Loaded from ``LIVEGATE_UPSTREAMS_FILE`` (or inline ``LIVEGATE_UPSTREAMS_JSON``)::

    {"routes": {"gemini": {"url": "https://generativelanguage.googleapis.com", "flavour": "gemini",
                           "api_key_env": "GEMINI_API_KEY"},
                "vertex-eu": {"url": "https://europe-west4-aiplatform.googleapis.com", "flavour": "vertex",
                              "vertex_project": "acme-prod", "vertex_location": "europe-west4",
                              "google_credentials_file": "/var/run/secrets/sa.json",
                              "models": ["gemini-live-2.5-flash"]}},
     "default_route": "gemini",
     "tenants": {"acme": {"routes": ["gemini", "vertex-eu"], "default_route": "vertex-eu"},
                 "*": {"routes": ["gemini"], "models": ["gemini-live-2.5-flash"]}}}

Secrets are never in the file: ``api_key_env`` names an environment variable (a Kubernetes Secret), read once
at the edge. A document that would route nothing as written (an unknown field, flavour, model or route, a tenant
no caller can be) stops the front at start with a message naming what is valid. Without a file, the flat ``upstream_*`` settings form the one route ``default``, open to all.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import grpc

from livegate.errors import GatewayError, echo, not_found
from livegate.models import LIVE_MODELS
from livegate.settings import Settings


@dataclasses.dataclass(frozen=True)
class UpstreamRoute:
    name: str
    url: str
    flavour: str = "gemini"
    api_version: str = ""
    api_key: str = dataclasses.field(default="", repr=False)
    ca_file: str = ""
    vertex_project: str = ""
    vertex_location: str = "us-central1"
    google_credentials_file: str = ""
    models: tuple[str, ...] = ()  # empty: every Live model

    def serves(self, model: str) -> bool:
        return model in (self.models or LIVE_MODELS)


@dataclasses.dataclass(frozen=True)
class TenantPolicy:
    routes: tuple[str, ...] = ()  # empty: every route
    default_route: str = ""
    models: tuple[str, ...] = ()  # empty: whatever the route serves


_ROUTE_FIELDS = ("url", "flavour", "api_version", "api_key_env", "ca_file", "vertex_project", "vertex_location",
                 "google_credentials_file", "models")


def known_fields(where: str, d: object, fields: tuple[str, ...]) -> dict[str, object]:
    """``d`` if it is an object whose fields are all among ``fields``; ValueError naming the valid ones."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be an object with {', '.join(fields)}")
    extra = sorted(set(d) - set(fields))
    if extra:
        raise ValueError(f"{where}: unknown field {extra[0]!r}; valid fields: {', '.join(fields)}")
    return d


def _known_models(where: str, models: tuple[str, ...], valid: tuple[str, ...]) -> None:
    for m in models:
        if m not in valid:
            raise ValueError(f"{where}: model {m!r} matches no model it can use; valid models: {', '.join(valid)}")


@dataclasses.dataclass(frozen=True)
class Routing:
    routes: dict[str, UpstreamRoute]
    default_route: str
    tenants: dict[str, TenantPolicy] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: Settings) -> Routing:
        if s.upstreams_file:
            with open(s.upstreams_file) as f:
                return cls.from_json(json.load(f), os.environ)
        if s.upstreams_json:
            return cls.from_json(json.loads(s.upstreams_json), os.environ)
        _known_models("allowed_models", tuple(s.allowed_models), LIVE_MODELS)
        key = s.upstream_api_key.get_secret_value() if s.upstream_api_key else ""
        route = UpstreamRoute("default", s.upstream_url.rstrip("/"), s.upstream_flavour, s.upstream_api_version, key,
                              s.upstream_ca_file, s.vertex_project, s.vertex_location, s.google_credentials_file,
                              tuple(s.allowed_models))
        return cls({"default": route}, "default")

    @classmethod
    def from_json(cls, doc: dict[str, object], env: os._Environ[str] | dict[str, str]) -> Routing:
        """Parse and check a routes document; ValueError (at startup) naming what is valid for anything that
        would match nothing: an unknown field, flavour, model or route."""
        known_fields("the routes document", doc, ("routes", "default_route", "tenants"))
        routes: dict[str, UpstreamRoute] = {}
        for name, raw in dict(doc.get("routes", {})).items():  # type: ignore[call-overload]
            r = dict(known_fields(f"route {name!r}", raw, _ROUTE_FIELDS))
            key_env = r.pop("api_key_env", "")
            if key_env and key_env not in env:
                raise ValueError(f"route {name!r}: environment variable {key_env} (its API key) is not set")
            if not r.get("url"):
                raise ValueError(f"route {name!r}: url is required (the Live API's base URL)")
            if r.get("flavour", "gemini") not in ("gemini", "vertex"):
                raise ValueError(f"route {name!r}: flavour {r['flavour']!r} is not one of gemini, vertex")
            models = tuple(r.pop("models", ()))
            _known_models(f"route {name!r}", models, LIVE_MODELS)
            routes[name] = UpstreamRoute(name=name, api_key=env.get(key_env, "") if key_env else "", models=models,
                                         **{k: v for k, v in r.items()})
        if not routes:
            raise ValueError("the routes document names no route: add one under 'routes'")
        default = str(doc.get("default_route") or next(iter(routes), ""))
        if default not in routes:
            raise ValueError(f"default_route {default!r} is not one of the routes {sorted(routes)}")
        tenants: dict[str, TenantPolicy] = {}
        for t, raw in dict(doc.get("tenants", {})).items():  # type: ignore[call-overload]
            p = known_fields(f"tenant {t!r}", raw, ("routes", "default_route", "models"))
            policy = TenantPolicy(tuple(p.get("routes", ())), p.get("default_route", ""), tuple(p.get("models", ())))
            unknown = [r for r in (*policy.routes, policy.default_route) if r and r not in routes]
            if unknown:
                raise ValueError(f"tenant {t!r} names unknown routes {unknown}; routes: {', '.join(sorted(routes))}")
            if policy.routes and policy.default_route and policy.default_route not in policy.routes:
                raise ValueError(f"tenant {t!r}: default_route {policy.default_route!r} is not one of its routes "
                                 f"{list(policy.routes)}")
            usable = [routes[r] for r in policy.routes or routes]
            served = tuple(dict.fromkeys(m for r in usable for m in (r.models or LIVE_MODELS)))
            _known_models(f"tenant {t!r} (on its routes)", policy.models, served)
            tenants[t] = policy
        return cls(routes, default, tenants)

    def check_tenants(self, tenant_ok: Callable[[str], bool] | None, hint: str = "") -> None:
        """ValueError (at startup) for a tenant policy no caller can use (``tenant_ok``: None when the
        authentication cannot tell)."""
        for t in self.tenants:
            if t != "*" and tenant_ok is not None and not tenant_ok(t):
                raise ValueError(f"routes: tenant {t!r} is not a tenant any caller can be; tenants: {hint or 'none'} "
                                 "('*' applies to every other tenant)")

    def scopes(self) -> list[str]:
        """Every admission scope a session can have here: ``<route>/<model>`` for each model a route serves."""
        from livegate.admission.control import scope_of

        return [scope_of(r.name, m) for r in self.routes.values() for m in (r.models or LIVE_MODELS)]

    def route(self, name: str) -> UpstreamRoute:
        return self.routes.get(name) or self.routes[self.default_route]

    def choose(self, tenant: str, requested: str, model: str) -> UpstreamRoute:
        """The route a tenant's new session uses; raises a typed error a caller can act on."""
        policy = self.tenants.get(tenant) or self.tenants.get("*") or TenantPolicy()
        name = requested or policy.default_route or self.default_route
        if name not in self.routes:
            raise not_found(f"upstream route {echo(name)} does not exist; routes: {', '.join(sorted(self.routes))}",
                            "ROUTE_NOT_FOUND")
        if policy.routes and name not in policy.routes:
            raise GatewayError(grpc.StatusCode.PERMISSION_DENIED, "ROUTE_NOT_ALLOWED",
                               f"this tenant may not use upstream route {echo(name)}; allowed: {', '.join(policy.routes)}")
        route = self.routes[name]
        if policy.models and model not in policy.models:
            raise GatewayError(grpc.StatusCode.PERMISSION_DENIED, "MODEL_NOT_ALLOWED",
                               f"this tenant may not use model {model!r}; allowed: {', '.join(policy.models)}")
        if not route.serves(model):
            raise not_found(f"model {model!r} is not served by upstream route {name!r}; "
                            f"use one of: {', '.join(route.models or LIVE_MODELS)}", "MODEL_NOT_FOUND")
        return route
