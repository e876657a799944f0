"""`pip install livegate` without the `client` extra: `livegate chat`, the demo and the client work with
google-genai impossible to import (a meta-path blocker in the child process makes `import google.genai` fail)."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from emulator.audio import write_wav
from emulator.transcribe import encode_text_tones

BLOCKER = textwrap.dedent("""
    import sys

    class NoGenai:
        def find_spec(self, name, path=None, target=None):
            if name == "google.genai" or name.startswith("google.genai."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, NoGenai())
""")
AFTER = "\nassert not [m for m in sys.modules if m.startswith('google.genai')], 'google.genai was imported'\n"


async def python(program: str, *args: str, timeout_s: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", BLOCKER + program + AFTER, *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "REDIS_URL": ""})
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    return int(proc.returncode or 0), out.decode()


CLI = "from livegate.cli.main import main\nrc = main(sys.argv[1:])\n"


async def test_the_blocker_blocks() -> None:
    code, out = await python("import google.genai")
    assert code != 0 and "blocked by the test" in out


async def test_chat_without_genai(stack: dict[str, Any], tmp_path: Path) -> None:
    code, out = await python(CLI, "chat", "--target", stack["front"].address,
                             "--message", "Hello there", "--message", "What did I just say?")
    assert code == 0, out
    before, after = out.split("What did I just say?")
    assert 'You said: "Hello there"' in before and 'You said: "Hello there"' in after


async def test_chat_audio_without_genai(stack: dict[str, Any], tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    write_wav(question, b"\x00\x00" * 3200 + encode_text_tones("what is two plus two"), 16000)
    code, out = await python(CLI, "chat", "--target", stack["front"].address, "--audio-in", str(question),
                             "--audio-out", str(tmp_path / "reply.wav"))
    assert code == 0, out
    assert "[you said] what is two plus two" in out and "[model said]" in out
    assert (tmp_path / "reply.wav").stat().st_size > 24000


async def test_demo_without_genai(redis_url: str, tmp_path: Path) -> None:
    code, out = await python(CLI, "dev", "--demo", "--pacing", "0", "--listen", "127.0.0.1:0",
                             "--audio-out", str(tmp_path / "reply.wav"), timeout_s=120)
    assert code == 0, out
    assert '[text]   < You said: "Hello? Gemini, are you there?"' in out
    assert "[tools]  < call turn_on_the_lights" in out and "demo complete" in out
    assert (tmp_path / "reply.wav").stat().st_size > 48000


async def test_client_without_genai_views_and_errors(stack: dict[str, Any]) -> None:
    program = textwrap.dedent("""
        import asyncio
        from livegate.client import APIError, Client, ClientError

        async def go(target):
            async with Client(target) as client:
                async with client.aio.live.connect(model="gemini-live-2.5-flash",
                                                   config={"response_modalities": ["TEXT"]}) as session:
                    print("setup_complete", session.setup_complete is not None)
                    await session.send_client_content(turns={"parts": [{"text": "Hi"}]})
                    async for m in session.receive():
                        if m.server_content and m.server_content.model_turn:
                            print("text", m.text, m.data, m.tool_call, m.server_content.model_turn.parts[0].text)
                        if m.server_content and m.server_content.turn_complete:
                            print("turn_complete", m.server_content.interrupted)
                try:
                    async with client.aio.live.connect(model="gemini-nope", config={}):
                        pass
                except APIError as err:
                    print("refused", type(err).__name__, isinstance(err, ClientError), err.code, err.status, err.reason)

        asyncio.run(go(sys.argv[1]))
    """)
    code, out = await python(program, stack["front"].address)
    assert code == 0, out
    assert "setup_complete True" in out
    assert 'text You said: "Hi" None None You said: "Hi"' in out
    assert "turn_complete None" in out
    assert "refused LiveClientError True 1008 NOT_FOUND MODEL_NOT_FOUND" in out
