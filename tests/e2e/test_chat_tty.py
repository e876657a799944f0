"""``livegate chat`` as a person uses it, on a terminal (a pseudo-terminal that is the process's controlling
terminal): a typed line's reply streams back before the next line is typed, one Ctrl-C ends the session cleanly,
nothing but the session line goes to stderr, and a file that is not a 16-bit mono WAV is refused in one line
before any session exists."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import sys
import termios
import wave
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import run


def _controlling_tty() -> None:
    """In the child: a session of its own, with stdin (the pty) as its controlling terminal, so the pty's ^C
    sends SIGINT to it as a terminal does."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The master side of a pty: what the program printed, and keys typed into it."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.output = b""
        self._more = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal (EIO)
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += data
        self._more.set()

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    async def expect(self, pattern: str, timeout_s: float = 20.0, start: int = 0) -> int:
        """Wait (bounded) until the output after ``start`` matches ``pattern``; return where the match ends."""
        try:
            async with asyncio.timeout(timeout_s):
                while not (m := re.search(pattern.encode(), self.output[start:])):
                    self._more.clear()
                    await self._more.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout_s} s; the terminal shows {self.output!r}") from None
        return start + m.end()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


async def test_chat_on_a_terminal_replies_as_you_type_and_stops_on_one_ctrl_c(stack: dict[str, Any]) -> None:
    master, slave = os.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livegate.cli", "chat", "--target", stack["front"].address,
        stdin=slave, stdout=slave, stderr=asyncio.subprocess.PIPE, preexec_fn=_controlling_tty,
        env={**os.environ, "PYTHONWARNINGS": "default"})
    os.close(slave)
    term = Terminal(master)
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            hello = (await proc.stderr.readline()).decode()  # the session is open
        assert re.match(r"session s-\S+ on ", hello), hello
        term.type(b"Hello there\r")
        # the reply, on one line with one prefix, while the terminal is still open for the next line
        end = await term.expect(r'\[model\] You said: "Hello there"\r?\n')
        assert proc.returncode is None
        term.type(b"And a second line\r")
        end = await term.expect(r'\[model\] You said: "And a second line"\r?\n', start=end)
        assert term.output.count(b"[model]") == 2
        term.type(b"\x03")  # Ctrl-C, once
        async with asyncio.timeout(15):
            code = await proc.wait()
            err = (await proc.stderr.read()).decode()
        assert code in (0, 130), (code, err)
        async with asyncio.timeout(10):  # the session is closed, not left detached for a reattach
            while [k async for k in stack["redis"].scan_iter("lg:{s-*")]:
                await asyncio.sleep(0.05)
        out = term.output.decode(errors="replace")
        assert "Traceback" not in out + err, out + err
        assert "warning" not in err.lower(), err
        assert err.strip() in ("", "type a message and press Enter; Ctrl-D or Ctrl-C to end"), err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        term.close()


def wav(path: Path, *, channels: int, width: int) -> Path:
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(width)
        wf.setframerate(16000)
        wf.writeframes(b"\x00" * 3200 * channels * width)
    return path


async def test_chat_refuses_a_file_that_is_not_a_16_bit_mono_wav(stack: dict[str, Any], tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    stereo = wav(tmp_path / "stereo.wav", channels=2, width=2)
    eight_bit = wav(tmp_path / "8bit.wav", channels=1, width=1)
    for path, what in ((text, "not a WAV file"), (stereo, "16-bit 2-channel"), (eight_bit, "8-bit 1-channel"),
                       (tmp_path / "missing.wav", "no such file")):
        code, out = await run("chat", "--target", stack["front"].address, "--audio-in", str(path), timeout_s=60)
        assert code == 2, out
        assert out.splitlines() == [out.strip()] and out.startswith(f"livegate: {path}: ") and what in out, out
    assert not [k async for k in stack["redis"].scan_iter("lg:{s-*")], "a session was created"


async def test_chat_audio_replies_stream_without_warnings(stack: dict[str, Any]) -> None:
    """An audio reply (inline audio parts beside the transcription): one prefix per turn, no library warning."""
    code, out = await run("chat", "--target", stack["front"].address, "--audio", "--message", "Hello there",
                          timeout_s=60)
    assert code == 0, out
    assert '[model said] You said: "Hello there"' in out and out.count("[model said]") == 1, out
    assert "warning" not in out.lower(), out
