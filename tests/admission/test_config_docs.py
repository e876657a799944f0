"""Configuration that cannot silently do nothing (issue 20): every JSON example of the docs loads through the real
loaders and passes the front's checks against the real routes and models, and a config whose scopes, tenants or
routes match nothing stops the front at start with a message naming what is valid. (Issue 20: the docs wrote
scopes as ``gemini:models/...``; such a file loaded silently and a tenant with max 4 opened 6 sessions.)"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from livegate.admission.config import AdmissionConfig
from livegate.routes import Routing
from livegate.settings import Settings
from service.auth import known_tenants, parse_keys

ROOT = Path(__file__).resolve().parents[2]
DOC_SCOPE = "gemini:models/gemini-live-2.5-flash"  # the form docs/admission.md showed before the fix


def json_blocks(path: Path) -> list[dict[str, Any]]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", path.read_text(), re.S)]


def routes_doc_example() -> dict[str, Any]:
    """The routes document shown in livegate/routes.py's docstring (the reference for that file's form)."""
    doc = ast.get_docstring(ast.parse((ROOT / "livegate" / "routes.py").read_text())) or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    return json.loads(block)


@pytest.fixture
def keys_file(tmp_path: Path) -> str:
    """docs/auth.md's keys file example, as a real keys file."""
    (example,) = [b for b in json_blocks(ROOT / "docs" / "auth.md") if "keys" in b]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(example))
    parse_keys(path.read_text())
    return str(path)


def admission_examples() -> list[dict[str, Any]]:
    blocks = [b for b in json_blocks(ROOT / "docs" / "admission.md") if {"scopes", "rate"} & set(b)]
    assert blocks, "docs/admission.md shows no admission config"
    return blocks


def check(doc: dict[str, Any], settings: Settings) -> AdmissionConfig:
    config = AdmissionConfig.from_dict(doc)
    config.check(Routing.from_settings(settings).scopes(), *known_tenants(settings))
    return config


def test_every_docs_example_loads_and_checks(keys_file: str) -> None:
    settings = Settings(auth_modes=("api_key",), caller_keys_file=keys_file)
    for doc in admission_examples():
        config = check(doc, settings)
        assert config.scopes and all(s.cap >= 1 for s in config.scopes.values())
    routes = routes_doc_example()
    routing = Routing.from_json(routes, {"GEMINI_API_KEY": "x"})
    assert "vertex-eu/gemini-live-2.5-flash" in routing.scopes()
    for doc in admission_examples():  # the same scopes on the routes example: rename the route, it checks
        renamed = {**doc, "scopes": {k.replace("default/", "gemini/"): v for k, v in doc["scopes"].items()}}
        AdmissionConfig.from_dict(renamed).check(routing.scopes())


def test_the_old_docs_form_fails_at_start_naming_the_valid_scopes(redis_url: str) -> None:
    old = {"scopes": {DOC_SCOPE: {"cap": 10, "tenants": {"default": {"max": 4}}}}}
    with pytest.raises(ValueError) as err:
        check(old, Settings())
    message = str(err.value)
    assert f"admission scope {DOC_SCOPE!r} matches no route/model" in message
    assert "valid scopes: default/gemini-2.0-flash-exp" in message  # sorted, and names the real form
    from service.server import Front

    with pytest.raises(ValueError, match="matches no route/model"):
        Front(Settings(redis_url=redis_url, admission_json=json.dumps(old)))


def test_tenants_and_fields_that_match_nothing_fail(keys_file: str) -> None:
    settings = Settings(auth_modes=("api_key",), caller_keys_file=keys_file)
    scope = {"default/gemini-live-2.5-flash": {"cap": 4, "tenants": {"acme-typo": {"max": 2}}}}
    with pytest.raises(ValueError, match=r"tenant 'acme-typo' is not a tenant any caller can be; tenants: acme, beta"):
        check({"scopes": scope}, settings)
    with pytest.raises(ValueError, match="rate: tenant 'gamma'"):
        check({"rate": {"gamma": {"per_s": 1}}}, settings)
    with pytest.raises(ValueError, match="unknown field 'tenant'; valid fields: cap, tenants, default_tenant"):
        AdmissionConfig.from_dict({"scopes": {"default/gemini-live-2.5-flash": {"cap": 4, "tenant": {}}}})
    with pytest.raises(ValueError, match="unknown field 'scope'"):
        AdmissionConfig.from_dict({"scope": {}})
    # mTLS: any tenant name is possible, so only the scopes are checked
    AdmissionConfig.from_dict({"scopes": scope}).check(Routing.from_settings(Settings()).scopes(), None)


@pytest.mark.parametrize(("doc", "match"), [
    ({"routes": {"a": {"url": "https://x", "modles": []}}}, "unknown field 'modles'; valid fields: url, flavour"),
    ({"routes": {"a": {"url": "https://x", "models": ["gemini-nope"]}}}, "model 'gemini-nope' matches no model"),
    ({"routes": {"a": {"url": "https://x", "flavour": "openai"}}}, "flavour 'openai' is not one of gemini, vertex"),
    ({"routes": {"a": {"url": "https://x"}}, "tenants": {"t": {"routes": ["b"]}}}, "names unknown routes"),
    ({"routes": {"a": {"url": "https://x", "models": ["gemini-live-2.5-flash"]}},
      "tenants": {"t": {"models": ["gemini-2.0-flash-live-001"]}}}, "matches no model it can use; valid models: gemini-live"),
    ({"routes": {}}, "names no route"),
    ({"route": {}}, "unknown field 'route'"),
])
def test_routes_that_match_nothing_fail(doc: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Routing.from_json(doc, {})


def test_routes_tenants_no_caller_can_be_fail(keys_file: str, redis_url: str) -> None:
    from service.server import Front

    routes = {"routes": {"a": {"url": "https://x"}}, "tenants": {"acme": {}, "gamma": {}, "*": {}}}
    with pytest.raises(ValueError, match=r"routes: tenant 'gamma' is not a tenant any caller can be; tenants: acme, beta"):
        Front(Settings(redis_url=redis_url, auth_modes=("api_key",), caller_keys_file=keys_file,
                       upstreams_json=json.dumps(routes)))


def test_allowed_models_must_be_known() -> None:
    with pytest.raises(ValueError, match="allowed_models: model 'gemini-nope'"):
        Routing.from_settings(Settings(allowed_models=("gemini-nope",)))
