"""The user's google-genai examples (the Live API docs in Chinese the project was given) through the gateway's
Live API WebSocket endpoint, unchanged except for the client construction: a Gemini API client
(``Client(api_key=..., http_options={"base_url": ...})``) and a Vertex client (``Client(vertexai=True, project=...,
location=..., credentials=..., http_options={"base_url": ...})``). google-genai always connects with ``wss://``
(it rewrites the base URL's scheme), so the endpoint serves TLS here and ``SSL_CERT_FILE`` names its self-signed
certificate, which google-genai reads.

Names the docs' snippets use without defining them (a notebook's ``display``/``Markdown``/``Audio``, the
``async_enumerate`` helper, ``MODEL_ID``) are given below as the notebook would; they do not touch the client.
"""

from __future__ import annotations

import types as pytypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google import genai
from google.genai import types
from google.genai.types import (Content, HttpOptions, LiveConnectConfig, Modality, Part, PrebuiltVoiceConfig,
                                SpeechConfig, VoiceConfig)
from google.oauth2.credentials import Credentials

GOOGLE_CLOUD_PROJECT = "test-project"
GOOGLE_CLOUD_LOCATION = "us-central1"
MODEL_ID = "gemini-2.0-flash-live-preview-04-09"
shown: list[Any] = []


def display(obj: Any) -> None:  # the notebook's display(): what the snippets show is what the test checks
    shown.append(obj)


def Markdown(text: str) -> str:  # noqa: N802 (IPython's name)
    return text


def Audio(data: Any, rate: int, autoplay: bool = False) -> tuple[str, int, int]:  # noqa: N802
    return ("audio", rate, len(data))


async def async_enumerate(aiterable: Any) -> Any:
    i = 0
    async for x in aiterable:
        yield i, x
        i += 1


@pytest.fixture(autouse=True)
def trust_gateway_cert(monkeypatch: pytest.MonkeyPatch, ws_cert: tuple[str, str]) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ws_cert[0])
    shown.clear()


@pytest.fixture
def gemini_client(base_url: str) -> genai.Client:
    return genai.Client(api_key="test-key", http_options={"base_url": base_url})


@pytest.fixture
def vertex_client(base_url: str) -> genai.Client:
    return genai.Client(vertexai=True, project=GOOGLE_CLOUD_PROJECT, location=GOOGLE_CLOUD_LOCATION,
                        credentials=Credentials(token="test-key"), http_options={"base_url": base_url})


# -- 函数调用 (function calling), Vertex --------------------------------------------------------------------

async def test_function_calling(vertex_client: genai.Client, capsys: pytest.CaptureFixture[str]) -> None:
    client = vertex_client
    model = "gemini-live-2.5-flash"
    # Simple function definitions
    turn_on_the_lights = {"name": "turn_on_the_lights"}
    turn_off_the_lights = {"name": "turn_off_the_lights"}
    tools = [{"function_declarations": [turn_on_the_lights, turn_off_the_lights]}]
    config = {"response_modalities": ["TEXT"], "tools": tools}

    async def main():
        async with client.aio.live.connect(model=model, config=config) as session:
            prompt = "Turn on the lights please"
            await session.send_client_content(turns={"parts": [{"text": prompt}]})
            async for chunk in session.receive():
                if chunk.server_content:
                    if chunk.text is not None:
                        print(chunk.text)
                elif chunk.tool_call:
                    function_responses = []
                    for fc in chunk.tool_call.function_calls:  # the doc reads `tool_call`, never defined
                        function_response = types.FunctionResponse(
                            name=fc.name,
                            response={ "result": "ok" }  # simple, hard-coded function response
                        )
                        function_responses.append(function_response)
                    await session.send_tool_response(function_responses=function_responses)

    await main()
    out = capsys.readouterr().out.replace("\n", "")  # printed chunk by chunk
    assert 'turn_on_the_lights returned {"result":"ok"}.' in out


# -- 代码执行 (code execution), Vertex ----------------------------------------------------------------------

async def test_code_execution(vertex_client: genai.Client, capsys: pytest.CaptureFixture[str]) -> None:
    client = vertex_client
    model = "gemini-live-2.5-flash"
    tools = [{'code_execution': {}}]
    config = {"response_modalities": ["TEXT"], "tools": tools}

    async def main():
        async with client.aio.live.connect(model=model, config=config) as session:
            prompt = "Compute the largest prime palindrome under 100000."
            await session.send_client_content(turns={"parts": [{"text": prompt}]})
            async for chunk in session.receive():
                if chunk.server_content:
                    if chunk.text is not None:
                        print(chunk.text)
                    model_turn = chunk.server_content.model_turn
                    if model_turn:
                        for part in model_turn.parts:
                            if part.executable_code is not None:
                                print(part.executable_code.code)
                            if part.code_execution_result is not None:
                                print(part.code_execution_result.output)

    await main()
    out = capsys.readouterr().out
    assert "print(" in out and "The code printed" in out.replace("\n", "")  # the code, then its result


# -- 使用 Google 搜索建立依据 (grounding with Google Search), Vertex ---------------------------------------

async def test_google_search(vertex_client: genai.Client, capsys: pytest.CaptureFixture[str]) -> None:
    client = vertex_client
    model = "gemini-live-2.5-flash"
    tools = [{'google_search': {}}]
    config = {"response_modalities": ["TEXT"], "tools": tools}

    async def main():
        async with client.aio.live.connect(model=model, config=config) as session:
            prompt = "When did the last Brazil vs. Argentina soccer match happen?"
            await session.send_client_content(turns={"parts": [{"text": prompt}]})
            async for chunk in session.receive():
                if chunk.server_content:
                    if chunk.text is not None:
                        print(chunk.text)
                    # The model might generate and execute Python code to use Search
                    model_turn = chunk.server_content.model_turn
                    if model_turn:
                        for part in model_turn.parts:
                            if part.executable_code is not None:
                                print(part.executable_code.code)
                            if part.code_execution_result is not None:
                                print(part.code_execution_result.output)

    await main()
    assert capsys.readouterr().out.strip()


# -- 发送文本并接收音频 (send text, receive audio), Vertex -----------------------------------------------

async def test_text_in_audio_out(vertex_client: genai.Client) -> None:
    client = vertex_client
    voice_name = "Aoede"  # @param ["Aoede", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Zephyr"]

    config = LiveConnectConfig(
        response_modalities=["AUDIO"],
        speech_config=SpeechConfig(
            voice_config=VoiceConfig(
                prebuilt_voice_config=PrebuiltVoiceConfig(
                    voice_name=voice_name,
                )
            ),
        ),
    )

    async with client.aio.live.connect(
        model=MODEL_ID,
        config=config,
    ) as session:
        text_input = "Hello? Gemini are you there?"
        display(Markdown(f"**Input:** {text_input}"))

        await session.send_client_content(
            turns=Content(role="user", parts=[Part(text=text_input)]))

        audio_data = []
        async for message in session.receive():
            if (
                message.server_content.model_turn
                and message.server_content.model_turn.parts
            ):
                for part in message.server_content.model_turn.parts:
                    if part.inline_data:
                        audio_data.append(
                            np.frombuffer(part.inline_data.data, dtype=np.int16)
                        )

        if audio_data:
            display(Audio(np.concatenate(audio_data), rate=24000, autoplay=True))
    kind, rate, samples = shown[-1]
    assert (kind, rate) == ("audio", 24000) and samples > 2400  # > 0.1 s of speech


# -- 发送和接收短信 (send and receive text), Vertex, api_version v1beta1 ------------------------------------

async def test_send_and_receive_text(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = genai.Client(vertexai=True, project=GOOGLE_CLOUD_PROJECT, location=GOOGLE_CLOUD_LOCATION,
                          credentials=Credentials(token="test-key"),
                          http_options=HttpOptions(api_version="v1beta1", base_url=base_url))
    model_id = "gemini-2.0-flash-live-preview-04-09"

    async with client.aio.live.connect(
        model=model_id,
        config=LiveConnectConfig(response_modalities=[Modality.TEXT]),
    ) as session:
        text_input = "Hello? Gemini, are you there?"
        print("> ", text_input, "\n")
        await session.send_client_content(
            turns=Content(role="user", parts=[Part(text=text_input)])
        )

        response = []

        async for message in session.receive():
            if message.text:
                response.append(message.text)

        print("".join(response))
    assert 'You said: "Hello? Gemini, are you there?"' in capsys.readouterr().out


# -- 发送语音 (send speech), Gemini API, api_version v1alpha -------------------------------------------------

async def test_send_speech(base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wave

    monkeypatch.chdir(tmp_path)  # the snippet writes audio.wav where it runs
    client = genai.Client(api_key="test-key", http_options={'api_version': 'v1alpha', "base_url": base_url})
    model = "gemini-2.0-flash-live-preview-04-09"

    config = {"response_modalities": ["AUDIO"]}

    async def main():
        async with client.aio.live.connect(model=model, config=config) as session:
            wf = wave.open("audio.wav", "wb")
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(24000)

            message = "Hello? Gemini are you there?"
            await session.send_client_content(
                turns=Content(role="user", parts=[Part(text=message)]))

            async for idx,response in async_enumerate(session.receive()):
                if response.data is not None:
                    wf.writeframes(response.data)

                # Un-comment this code to print audio data info
                # if response.server_content.model_turn is not None:
                #      print(response.server_content.model_turn.parts[0].inline_data.mime_type)

            wf.close()

    await main()
    with wave.open(str(tmp_path / "audio.wav")) as wf:
        assert wf.getframerate() == 24000 and wf.getnframes() > 2400


# -- both client forms, and what each flavour of frame carries ------------------------------------------------

@pytest.mark.parametrize("form", ["gemini", "vertex"])
async def test_both_client_forms_text_turn(form: str, gemini_client: genai.Client, vertex_client: genai.Client,
                                           stack: dict[str, Any]) -> None:
    client = gemini_client if form == "gemini" else vertex_client
    async with client.aio.live.connect(model="gemini-live-2.5-flash",
                                       config={"response_modalities": ["TEXT"]}) as session:
        if form == "vertex":  # Vertex frames carry setupComplete.sessionId: the gateway's session id
            assert session.session_id in stack["front"].sessions
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello"}]})
        messages = [m async for m in session.receive()]
    assert "".join(m.text for m in messages if m.text) == 'You said: "Hello"'
    usage = messages[-1].usage_metadata
    assert usage is not None and usage.response_token_count  # Gemini names, or Vertex's candidatesTokenCount


@pytest.mark.parametrize("flavour", ["vertex"])  # retrieval is Vertex only: the upstream is Vertex here
async def test_rag_engine(vertex_client: genai.Client) -> None:
    client = vertex_client
    MODEL_NAME = "gemini-live-2.5-flash"
    TEXT_INPUT = "Remember that the meeting is at noon."
    display = pytypes.SimpleNamespace(display=shown.append, Markdown=Markdown)

    rag_store=types.VertexRagStore(
        rag_resources=[
            types.VertexRagStoreRagResource(
                rag_corpus="projects/test-project/locations/us-central1/ragCorpora/memory"  # Use memory corpus if you want to store context.
            )
        ],
        # Set `store_context` to true to allow Live API sink context into your memory corpus.
        store_context=True
    )
    async with client.aio.live.connect(
        model=MODEL_NAME,
        config=LiveConnectConfig(response_modalities=[Modality.TEXT],
                                 tools=[types.Tool(
                                     retrieval=types.Retrieval(
                                         vertex_rag_store=rag_store))]),
    ) as session:
        text_input=TEXT_INPUT
        print("> ", text_input, "\n")
        await session.send_client_content(
            turns=Content(role="user", parts=[Part(text=text_input)])
        )
        async for message in session.receive():
            if message.text:
                display.display(display.Markdown(message.text))
                continue
    assert shown
