"""The deterministic "model": conversation history and the reply rules (docs/emulator.md, "Reply rules").

Rules, first match wins, on the user's text (typed, or transcribed from audio):
 1. proactive audio on and the text is not addressed to the model (no "gemini"/"assistant") -> silence
 2. "last question" / "what did I (just) ask"        -> You asked: "<previous user question>"
 3. "what did I (just) say"                          -> You said: "<previous user text>"
 4. "repeat after me: X" / "say: X"                  -> X
 5. "what are your instructions" / "system instruction" -> Your instructions are: "<system instruction>"
 5b. video frames received and see/look/camera/video/screen/show -> I have seen N video frames; the last ...
 6. a declared function matches (tools.match_functions) -> toolCall
 7. codeExecution declared and "compute/calculate/run/code" or arithmetic -> executableCode + result
 8. an arithmetic expression                        -> "<expr> = <value>"
 9. retrieval (RAG) declared and the corpus has a match -> From memory: "<stored text>"
10. googleSearch declared and the text is a question -> search answer + groundingMetadata
11. audio without recognisable words                -> I heard <N.N> seconds of audio.
    (no input at all, e.g. an empty turn                -> I did not get any input.)
12. otherwise                                        -> You said: "<text>"
Affective dialog prefixes "I'm sorry to hear that. " when the text contains a sad word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import tools as toolmod

AUDIO_TOKENS_PER_S = 25
VIDEO_TOKENS_PER_S = 258


def text_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(frozen=True)
class Entry:
    """One history item. `tokens` is the context cost (text ~ chars/4, audio 25/s, video 258/s)."""

    role: str  # user | model | tool | system
    text: str
    modality: str = "TEXT"  # TEXT | AUDIO | VIDEO
    tokens: int = 0
    question: bool = False

    @classmethod
    def of_text(cls, role: str, text: str, modality: str = "TEXT", tokens: int | None = None) -> Entry:
        return cls(role, text, modality, text_tokens(text) if tokens is None else tokens, is_question(text))


@dataclass
class Reply:
    text: str = ""
    calls: list[tuple[toolmod.Declaration, dict[str, Any]]] = field(default_factory=list)
    code: tuple[str, str] | None = None  # (code, output)
    grounding: dict[str, Any] | None = None
    silent: bool = False


_QUESTION_START = re.compile(
    r"^\s*(what|when|where|who|whom|why|how|which|is|are|do|does|did|can|could|will|would|should|may)\b", re.I
)
_LAST_QUESTION = re.compile(r"\b(last|previous) question\b|\bwhat did i (just )?ask\b", re.I)
_WHAT_DID_I_SAY = re.compile(r"\bwhat did i (just )?say\b", re.I)
_REPEAT = re.compile(r"^\s*(?:please\s+)?(?:repeat after me|say)\s*[:,]\s*(.+?)\s*$", re.I | re.S)
_INSTRUCTIONS = re.compile(r"\b(your instructions|system instruction)", re.I)
_CODE_WORDS = re.compile(r"\b(compute|calculate|run|code|execute|python)\b", re.I)
_ADDRESSED = re.compile(r"\b(gemini|assistant)\b", re.I)
_SEE = re.compile(r"\b(see|look|camera|video|screen|show)\b", re.I)
_SAD = re.compile(r"\b(sad|upset|unhappy|angry|depressed|lonely|terrible)\b", re.I)


def is_question(text: str) -> bool:
    t = text.strip()
    return t.endswith("?") or bool(_QUESTION_START.match(t))


@dataclass
class Context:
    text: str
    history: list[Entry]  # before this turn
    system_instruction: str
    toolbox: toolmod.Toolbox
    memory: toolmod.MemoryCorpora
    audio_s: float = 0.0
    proactive: bool = False
    affective: bool = False
    video_frames: int = 0
    last_video: tuple[str, int] | None = None  # (mime type, bytes) of the latest frame


def reply(ctx: Context) -> Reply:
    text = ctx.text.strip()
    if ctx.proactive and not _ADDRESSED.search(text):
        return Reply(silent=True)
    out = _reply(ctx, text)
    if ctx.affective and out.text and _SAD.search(text):
        out.text = "I'm sorry to hear that. " + out.text
    return out


def _reply(ctx: Context, text: str) -> Reply:
    users = [e for e in ctx.history if e.role == "user" and e.text]
    if _LAST_QUESTION.search(text):
        questions = [e for e in users if e.question] or users
        if not questions:
            return Reply("You haven't asked me anything yet.")
        return Reply(f'You asked: "{questions[-1].text}"')
    if _WHAT_DID_I_SAY.search(text):
        if not users:
            return Reply("You haven't said anything yet.")
        return Reply(f'You said: "{users[-1].text}"')
    m = _REPEAT.match(text)
    if m:
        return Reply(m.group(1))
    if _INSTRUCTIONS.search(text):
        if not ctx.system_instruction:
            return Reply("I have no system instruction.")
        return Reply(f'Your instructions are: "{ctx.system_instruction}"')
    if ctx.video_frames and ctx.last_video and _SEE.search(text):
        mime, size = ctx.last_video
        return Reply(f"I have seen {ctx.video_frames} video frames; the last one is {mime}, {size} bytes.")
    hits = toolmod.match_functions(text, ctx.toolbox)
    if hits:
        return Reply(calls=[(d, toolmod.extract_args(text, d)) for d in hits])
    expr = toolmod.find_expression(text)
    if ctx.toolbox.code_execution and (expr or _CODE_WORDS.search(text)):
        code, output = toolmod.code_for(text)
        return Reply(f"The code printed {output.strip()}.", code=(code, output))
    if expr is not None:
        value = toolmod.evaluate(expr)
        if value is not None:
            return Reply(f"{expr} = {value}")
    if ctx.toolbox.rag_corpora:
        found = ctx.memory.search(ctx.toolbox.rag_corpora, text)
        if found is not None:
            return Reply(f'From memory: "{found}"')
    if ctx.toolbox.google_search and is_question(text):
        answer = f'Search results for "{text}": this is an emulated answer.'
        return Reply(answer, grounding=toolmod.grounding_metadata(text, answer))
    if not text:
        if ctx.audio_s > 0:
            return Reply(f"I heard {ctx.audio_s:.1f} seconds of audio.")
        return Reply("I did not get any input.")
    return Reply(f'You said: "{text}"')


def tool_result_reply(results: list[tuple[str, Any]]) -> Reply:
    """After function responses: '<name> returned <response JSON>.' for each."""
    import orjson

    parts = [f"{name} returned {orjson.dumps(resp).decode()}." for name, resp in results]
    return Reply(" ".join(parts))
