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
at the edge. Without a file, the flat ``upstream_*`` settings form the one route ``default``, open to all.
"""

from __future__ import annotations

import dataclasses
import json
import os

import grpc

from livegate.errors import GatewayError, not_found
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
        key = s.upstream_api_key.get_secret_value() if s.upstream_api_key else ""
        route = UpstreamRoute("default", s.upstream_url.rstrip("/"), s.upstream_flavour, s.upstream_api_version, key,
                              s.upstream_ca_file, s.vertex_project, s.vertex_location, s.google_credentials_file,
                              tuple(s.allowed_models))
        return cls({"default": route}, "default")

    @classmethod
    def from_json(cls, doc: dict[str, object], env: os._Environ[str] | dict[str, str]) -> Routing:
        routes: dict[str, UpstreamRoute] = {}
        for name, raw in dict(doc.get("routes", {})).items():  # type: ignore[call-overload]
            r = dict(raw)
            key_env = r.pop("api_key_env", "")
            if key_env and key_env not in env:
                raise ValueError(f"route {name!r}: environment variable {key_env} (its API key) is not set")
            models = tuple(r.pop("models", ()))
            routes[name] = UpstreamRoute(name=name, api_key=env.get(key_env, "") if key_env else "", models=models,
                                         **{k: v for k, v in r.items()})
        default = str(doc.get("default_route") or next(iter(routes), ""))
        if default not in routes:
            raise ValueError(f"default_route {default!r} is not one of the routes {sorted(routes)}")
        tenants = {t: TenantPolicy(tuple(p.get("routes", ())), p.get("default_route", ""), tuple(p.get("models", ())))
                   for t, p in dict(doc.get("tenants", {})).items()}  # type: ignore[call-overload]
        for t, p in tenants.items():
            unknown = [r for r in (*p.routes, p.default_route) if r and r not in routes]
            if unknown:
                raise ValueError(f"tenant {t!r} names unknown routes {unknown}")
        return cls(routes, default, tenants)

    def route(self, name: str) -> UpstreamRoute:
        return self.routes.get(name) or self.routes[self.default_route]

    def choose(self, tenant: str, requested: str, model: str) -> UpstreamRoute:
        """The route a tenant's new session uses; raises a typed error a caller can act on."""
        policy = self.tenants.get(tenant) or self.tenants.get("*") or TenantPolicy()
        name = requested or policy.default_route or self.default_route
        if name not in self.routes:
            raise not_found(f"upstream route {name!r} does not exist; routes: {', '.join(sorted(self.routes))}",
                            "ROUTE_NOT_FOUND")
        if policy.routes and name not in policy.routes:
            raise GatewayError(grpc.StatusCode.PERMISSION_DENIED, "ROUTE_NOT_ALLOWED",
                               f"this tenant may not use upstream route {name!r}; allowed: {', '.join(policy.routes)}")
        route = self.routes[name]
        if policy.models and model not in policy.models:
            raise GatewayError(grpc.StatusCode.PERMISSION_DENIED, "MODEL_NOT_ALLOWED",
                               f"this tenant may not use model {model!r}; allowed: {', '.join(policy.models)}")
        if not route.serves(model):
            raise not_found(f"model {model!r} is not served by upstream route {name!r}; "
                            f"use one of: {', '.join(route.models or LIVE_MODELS)}", "MODEL_NOT_FOUND")
        return route
