"""Tools of the deterministic model: function-call matching, code execution, search grounding, RAG memory."""

from __future__ import annotations

import ast
import operator
import random
import re
import uuid
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

_STOP = frozenset({"get", "set", "the", "and", "for", "with", "current", "info", "data", "fetch", "find", "do"})
_WORD = re.compile(r"[A-Za-z0-9]+")
_ARITH = re.compile(r"(-?\d+(?:\.\d+)?(?:\s*(?:\*\*|[-+*/%])\s*\(*-?\d+(?:\.\d+)?\)*)+)")
_AFTER_PREP = re.compile(r"\b(?:in|for|at|of|to|about|called|named)\s+([^,.;!?]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ")
    return [w.lower() for w in spaced.split() if w]


@dataclass(frozen=True)
class Declaration:
    name: str
    behavior: str  # BLOCKING | NON_BLOCKING
    properties: dict[str, Any]  # verbatim keys -> schema (opaque)

    @property
    def blocking(self) -> bool:
        return self.behavior != "NON_BLOCKING"


@dataclass
class Toolbox:
    """What the session's `tools` (and later contextUpdate) declared."""

    functions: list[Declaration] = field(default_factory=list)
    code_execution: bool = False
    google_search: bool = False
    rag_corpora: tuple[str, ...] = ()
    store_context: bool = False

    @classmethod
    def from_tools(cls, tools: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> Toolbox:
        box = cls()
        for tool in tools:
            decls = tool.get("functionDeclarations") or []
            for decl in [decls] if isinstance(decls, dict) else decls:
                params = decl.get("parameters") or decl.get("parametersJsonSchema") or {}
                props = params.get("properties") if isinstance(params, dict) else None
                box.functions.append(
                    Declaration(str(decl.get("name")), str(decl.get("behavior") or "BLOCKING"), props or {})
                )
            box.code_execution |= "codeExecution" in tool
            box.google_search |= "googleSearch" in tool or "googleSearchRetrieval" in tool
            rag = (tool.get("retrieval") or {}).get("vertexRagStore")
            if isinstance(rag, dict):
                corpora = list(rag.get("ragCorpora") or [])
                for res in rag.get("ragResources") or []:
                    if isinstance(res, dict) and res.get("ragCorpus"):
                        corpora.append(str(res["ragCorpus"]))
                box.rag_corpora += tuple(str(c) for c in corpora) or ("default",)
                box.store_context |= bool(rag.get("storeContext"))
        return box

    def declaration(self, name: str) -> Declaration | None:
        return next((d for d in self.functions if d.name == name), None)


def match_functions(text: str, box: Toolbox) -> list[Declaration]:
    """A function is called when the text names it, or contains all its significant name words."""
    lowered = text.lower()
    present = set(words(text))
    hits = []
    for decl in box.functions:
        significant = [w for w in name_words(decl.name) if len(w) >= 3 and w not in _STOP]
        if decl.name.lower() in lowered or (significant and all(_has(w, present) for w in significant)):
            hits.append(decl)
    return hits


def _has(word: str, present: set[str]) -> bool:
    return word in present or any(p.startswith(word) or word.startswith(p) and len(p) >= 4 for p in present)


def extract_args(text: str, decl: Declaration) -> dict[str, Any]:
    """`prop=value` / `prop: value` in the text wins; else the first string property gets the phrase after
    in/for/at/of/to/about, the first number property the first number."""
    args: dict[str, Any] = {}
    string_done = number_done = False
    for prop, schema in decl.properties.items():
        kind = str((schema or {}).get("type", "STRING")).upper() if isinstance(schema, dict) else "STRING"
        m = re.search(rf"\b{re.escape(prop)}\s*[=:]\s*(\"[^\"]*\"|[^,;]+)", text)
        if m:
            raw = m.group(1).strip().strip('"')
            args[prop] = _coerce(raw, kind)
            continue
        if kind == "STRING" and not string_done:
            pm = _AFTER_PREP.search(text)
            if pm:
                args[prop] = pm.group(1).strip()
                string_done = True
        elif kind in ("NUMBER", "INTEGER") and not number_done:
            nm = _NUMBER.search(text)
            if nm:
                args[prop] = _coerce(nm.group(0), kind)
                number_done = True
    return args


def _coerce(raw: str, kind: str) -> Any:
    try:
        if kind == "INTEGER":
            return int(float(raw))
        if kind == "NUMBER":
            return float(raw)
        if kind == "BOOLEAN":
            return raw.lower() in ("true", "yes", "1", "on")
    except ValueError:
        pass
    return raw


def call_id(flavour: str, rng: random.Random) -> str:
    if flavour == "vertex":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return f"function-call-{rng.getrandbits(63)}"


# --- code execution -------------------------------------------------------------------------------

_OPS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def find_expression(text: str) -> str | None:
    m = _ARITH.search(text)
    return m.group(1).strip() if m else None


def evaluate(expression: str) -> int | float | None:
    """Safe arithmetic (+ - * / % **, parentheses); None if not computable."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError("not arithmetic")

    try:
        value = ev(ast.parse(expression, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, (int, float)) else None


def code_for(text: str) -> tuple[str, str]:
    """(python code, its output) for a code-execution request."""
    expr = find_expression(text)
    if expr is not None:
        value = evaluate(expr)
        if value is not None:
            return f"print({expr})\n", f"{value}\n"
    return f"print(len({text!r}.split()))\n", f"{len(text.split())}\n"


# --- search grounding -----------------------------------------------------------------------------


def grounding_metadata(query: str, answer: str) -> dict[str, Any]:
    uri = f"https://www.google.com/search?q={quote_plus(query)}"
    return {
        "webSearchQueries": [query],
        "searchEntryPoint": {"renderedContent": f"<div class=\"emulated-search\">{query}</div>"},
        "groundingChunks": [{"web": {"uri": uri, "title": "emulator.search"}}],
        "groundingSupports": [
            {
                "segment": {"startIndex": 0, "endIndex": len(answer.encode("utf-8")), "text": answer},
                "groundingChunkIndices": [0],
                "confidenceScores": [0.9],
            }
        ],
    }


# --- RAG memory corpus (Vertex retrieval.vertexRagStore) ------------------------------------------


class MemoryCorpora:
    """In-memory RAG corpora shared by all sessions of one server, keyed by corpus resource name."""

    def __init__(self) -> None:
        self._docs: dict[str, list[str]] = {}

    def store(self, corpus: str, text: str) -> None:
        if text.strip():
            self._docs.setdefault(corpus, []).append(text.strip())

    def search(self, corpora: tuple[str, ...], query: str) -> str | None:
        """The stored text sharing the most significant words with the query (ties: the newest)."""
        wanted = {w for w in words(query) if len(w) >= 3 and w not in _QUESTION_WORDS}
        best, best_score = None, 0
        for corpus in corpora:
            for doc in self._docs.get(corpus, []):
                if doc.strip().lower() == query.strip().lower():
                    continue
                score = len(wanted & set(words(doc)))
                if score and score >= best_score:
                    best, best_score = doc, score
        return best

    def documents(self, corpus: str) -> list[str]:
        return list(self._docs.get(corpus, []))


_QUESTION_WORDS = frozenset(
    {"what", "when", "where", "who", "why", "how", "which", "did", "does", "you", "the", "tell", "about",
     "remember", "recall", "know", "was", "were", "are", "is", "my", "your", "me"}
)
