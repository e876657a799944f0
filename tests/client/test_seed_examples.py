"""Every google-genai example of the user's documents runs through livegate.client with only the client line
changed, and does exactly what it does with google-genai itself: each example runs twice against the same
emulator (Vertex flavour, as the documents are Vertex's), once with google-genai connected straight to it and
once with livegate's Client through the whole stack, and what it prints, displays and writes must be equal."""

from __future__ import annotations

import ast
import re
import ssl
import sys
import types as pytypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google import genai
from google.genai import types

from livegate.client import Client
from tests.client.seed_examples import EXAMPLES

MODELS = {"proactive_audio": "gemini-live-2.5-flash-preview-native-audio",
          "affective_dialog": "gemini-live-2.5-flash-preview-native-audio"}


@pytest.fixture
def flavour() -> str:
    return "vertex"


def with_client_line(source: str) -> str:
    """The one change a port makes: the statement building the client becomes ``client = make_client()``."""
    start = source.find("client = genai.Client(")
    if start < 0:
        return source  # a notebook cell: the notebook built `client` earlier
    depth, i = 0, source.index("(", start)
    while True:
        depth += {"(": 1, ")": -1}.get(source[i], 0)
        if depth == 0:
            break
        i += 1
    return source[:start] + "client = make_client()" + source[i + 1:]


class Notebook:
    """The names a notebook (or the documents' earlier cells) provides, recording what the example shows."""

    def __init__(self, client: Any, model_id: str) -> None:
        self.shown: list[Any] = []
        display_module = pytypes.ModuleType("IPython.display")
        display_module.display = self.display  # type: ignore[attr-defined]
        display_module.Markdown = self.markdown  # type: ignore[attr-defined]
        self.ipython = pytypes.ModuleType("IPython")
        self.ipython.display = display_module  # type: ignore[attr-defined]
        self.names: dict[str, Any] = {
            "__name__": "seed_example", "print": self.print, "display": self.display, "Markdown": self.markdown,
            "Audio": self.audio, "np": np, "async_enumerate": async_enumerate, "make_client": lambda: client,
            "client": client, "MODEL_ID": model_id, "voice_name": "Aoede",
            "GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_CLOUD_LOCATION": "us-central1", "YOUR_PROJECT_ID": "p",
            "YOUR_LOCATION": "us-central1", "YOUR_TEXT_INPUT": "What is in my corpus?",
            **{name: getattr(types, name) for name in ("Content", "Part", "LiveConnectConfig", "SpeechConfig",
                                                       "VoiceConfig", "PrebuiltVoiceConfig", "ProactivityConfig",
                                                       "Modality", "HttpOptions")},
        }

    def print(self, *args: Any, **_: Any) -> None:
        self.shown.append(("print", " ".join(str(a) for a in args)))

    def display(self, obj: Any) -> None:
        self.shown.append(obj)

    @staticmethod
    def markdown(text: str) -> tuple[str, str]:
        return ("markdown", text)

    @staticmethod
    def audio(samples: np.ndarray, rate: int, autoplay: bool = False) -> tuple[str, int, int, bytes]:
        return ("audio", rate, len(samples), samples.tobytes())


async def async_enumerate(it: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    i = 0
    async for x in it:
        yield i, x
        i += 1


async def run_example(name: str, client: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run one example as a notebook would (top-level await allowed; a script's ``main()`` awaited)."""
    nb = Notebook(client, MODELS.get(name, "gemini-live-2.5-flash"))
    monkeypatch.setitem(sys.modules, "IPython", nb.ipython)
    monkeypatch.chdir(workdir)
    error = None
    try:
        code = compile(with_client_line(EXAMPLES[name]), f"<{name}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        pending = eval(code, nb.names)  # noqa: S307 - the example's own code
        if pending is not None:
            await pending
        if "main" in nb.names:
            await nb.names["main"]()
    except Exception as e:  # noqa: BLE001 - an example's failure is part of what it does
        error = f"{type(e).__name__}: {e}"
    files = {p.name: p.read_bytes() for p in workdir.iterdir()}
    return {"shown": nb.shown, "error": error, "files": files}


def genai_client(emulator: Any) -> genai.Client:
    """google-genai itself, straight to the emulator (Vertex), as the documents' client would be."""
    import google.oauth2.credentials

    return genai.Client(vertexai=True, project="p", location="us-central1",
                        credentials=google.oauth2.credentials.Credentials(token="test-token"),
                        http_options={"base_url": emulator.url,
                                      "async_client_args": {"ssl": ssl.create_default_context(cafile=emulator.cert_path)}})


async def both(name: str, stack: dict[str, Any], client: Client, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], dict[str, Any]]:
    (tmp_path / "sdk").mkdir()
    (tmp_path / "livegate").mkdir()
    sdk = await run_example(name, genai_client(stack["emulator"]), tmp_path / "sdk", monkeypatch)
    ours = await run_example(name, client, tmp_path / "livegate", monkeypatch)
    return sdk, ours


def texts(run: dict[str, Any]) -> str:
    return " ".join(s[1] for s in run["shown"] if isinstance(s, tuple) and s[0] in ("print", "markdown"))


EXPECTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    # the published script's typo (`tool_call` for `chunk.tool_call`) fails the same way with both clients
    "function_calling": lambda r: r["error"] == "NameError: name 'tool_call' is not defined",
    "code_execution": lambda r: r["error"] is None and bool(texts(r)),
    "google_search": lambda r: r["error"] is None and bool(texts(r)),
    "rag_engine": lambda r: r["error"] is None and "What is in my corpus?" in texts(r),
    "text_to_audio": lambda r: r["error"] is None and r["shown"][-1][0] == "audio" and r["shown"][-1][2] > 24000,
    "text_to_text": lambda r: r["error"] is None and 'You said: "Hello? Gemini, are you there?"' in texts(r),
    "send_voice": lambda r: r["error"] is None and len(r["files"]["audio.wav"]) > 48000,
    "proactive_audio": lambda r: r["error"] is None and r["shown"][-1][0] == "audio",
    "affective_dialog": lambda r: r["error"] is None and r["shown"][-1][0] == "audio",
    "voice_and_language": lambda r: r["error"] is None and r["shown"][-1][0] == "audio",
}


@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_seed_example_ports_by_changing_the_client_line(name: str, stack: dict[str, Any], client: Client,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdk, ours = await both(name, stack, client, tmp_path, monkeypatch)
    assert EXPECTED[name](sdk), f"google-genai itself: {sdk['error'] or sdk['shown']}"
    assert ours == sdk


async def test_function_calling_with_the_typo_fixed_answers_the_call(stack: dict[str, Any], client: Client,
                                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    fixed = re.sub(r"in tool_call\.", "in chunk.tool_call.", EXAMPLES["function_calling"])
    monkeypatch.setitem(EXAMPLES, "function_calling_fixed", fixed)
    sdk, ours = await both("function_calling_fixed", stack, client, tmp_path, monkeypatch)
    assert sdk["error"] is None and sdk["shown"], sdk
    assert ours == sdk
    tool_responses = [m for c in stack["emulator"].conversations for m in c["messages"] if m["kind"] == "toolResponse"]
    assert len(tool_responses) == 2 and tool_responses[0]["names"] == tool_responses[1]["names"] == ["turn_on_the_lights"]
