"""The user's raw-WebSocket Live API examples (the Vertex docs the project was given) against the gateway, with
only the URL and the headers' credential changed: ``SERVICE_URL`` is the gateway's Vertex path and
``bearer_token`` a caller credential. ``SSL_CERT_FILE`` trusts the endpoint's self-signed certificate (websockets'
default TLS context reads it). Notebook names the examples use (``display``, ``Markdown``, ``Audio``, ``input``)
are stand-ins that record what the example shows or asks.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
bearer_token = ["test-key"]
shown: list[Any] = []


def display(obj: Any) -> None:
    shown.append(obj)


def Markdown(text: str) -> str:  # noqa: N802 (IPython's name)
    return text


def Audio(data: Any, rate: int, autoplay: bool = False) -> tuple[str, int, int]:  # noqa: N802
    return ("audio", rate, len(data))


@pytest.fixture(autouse=True)
def trust_gateway_cert(monkeypatch: pytest.MonkeyPatch, ws_cert: tuple[str, str]) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ws_cert[0])
    shown.clear()


@pytest.fixture
def SERVICE_URL(ws_url: str) -> str:  # noqa: N802 (the examples' name)
    return ws_url + VERTEX_PATH


async def test_audio_transcription(SERVICE_URL: str) -> None:  # noqa: N803
    # Set model generation_config
    CONFIG = {
        'response_modalities': ['AUDIO'],
    }

    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {bearer_token[0]}",
    }

    # Connect to the server
    async with connect(SERVICE_URL, additional_headers=headers) as ws:
        # Setup the session
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "gemini-2.0-flash-live-preview-04-09",
                        "generation_config": CONFIG,
                        'input_audio_transcription': {},
                        'output_audio_transcription': {}
                    }
                }
            )
        )

        # Receive setup response
        raw_response = await ws.recv(decode=False)
        setup_response = json.loads(raw_response.decode("ascii"))

        # Send text message
        text_input = "Hello? Gemini are you there?"
        display(Markdown(f"**Input:** {text_input}"))

        msg = {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": text_input}]}],
                "turn_complete": True,
            }
        }

        await ws.send(json.dumps(msg))

        responses = []
        input_transcriptions = []
        output_transcriptions = []

        # Receive chucks of server response
        async for raw_response in ws:
            response = json.loads(raw_response.decode())
            server_content = response.pop("serverContent", None)
            if server_content is None:
                break

            if (input_transcription := server_content.get("inputTranscription")) is not None:
                if (text := input_transcription.get("text")) is not None:
                    input_transcriptions.append(text)
            if (output_transcription := server_content.get("outputTranscription")) is not None:
                if (text := output_transcription.get("text")) is not None:
                    output_transcriptions.append(text)

            model_turn = server_content.pop("modelTurn", None)
            if model_turn is not None:
                parts = model_turn.pop("parts", None)
                if parts is not None:
                    for part in parts:
                        pcm_data = base64.b64decode(part["inlineData"]["data"])
                        responses.append(np.frombuffer(pcm_data, dtype=np.int16))

            # End of turn
            turn_complete = server_content.pop("turnComplete", None)
            if turn_complete:
                break

        if input_transcriptions:
            display(Markdown(f"**Input transcription >** {''.join(input_transcriptions)}"))

        if responses:
            # Play the returned audio message
            display(Audio(np.concatenate(responses), rate=24000, autoplay=True))

        if output_transcriptions:
            display(Markdown(f"**Output transcription >** {''.join(output_transcriptions)}"))

    assert setup_response == {"setupComplete": {"sessionId": setup_response["setupComplete"]["sessionId"]}}
    audio = [s for s in shown if isinstance(s, tuple)]
    assert audio and audio[0][2] > 2400
    assert any(str(s).startswith("**Output transcription >** ") and "Hello" in str(s) for s in shown)


async def test_streaming_conversation(SERVICE_URL: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: N803
    answers = iter(["Hello? Gemini are you there?", "q"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    printed: list[str] = []
    print = lambda *a: printed.append(" ".join(map(str, a)))  # noqa: E731, A001

    # Set model generation_config
    CONFIG = {"response_modalities": ["AUDIO"]}

    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {bearer_token[0]}",
    }

    async def main() -> None:
        # Connect to the server
        async with connect(SERVICE_URL, additional_headers=headers) as ws:

            # Setup the session
            async def setup() -> None:
                await ws.send(
                    json.dumps(
                        {
                            "setup": {
                                "model": "gemini-2.0-flash-live-preview-04-09",
                                "generation_config": CONFIG,
                            }
                        }
                    )
                )

                # Receive setup response
                raw_response = await ws.recv(decode=False)
                setup_response = json.loads(raw_response.decode("ascii"))
                print(f"Connected: {setup_response}")
                return

            # Send text message
            async def send() -> bool:
                text_input = input("Input > ")
                if text_input.lower() in ("q", "quit", "exit"):
                    return False

                msg = {
                    "client_content": {
                        "turns": [{"role": "user", "parts": [{"text": text_input}]}],
                        "turn_complete": True,
                    }
                }

                await ws.send(json.dumps(msg))
                return True

            # Receive server response
            async def receive() -> None:
                responses = []

                # Receive chucks of server response
                async for raw_response in ws:
                    response = json.loads(raw_response.decode())
                    server_content = response.pop("serverContent", None)
                    if server_content is None:
                        break

                    model_turn = server_content.pop("modelTurn", None)
                    if model_turn is not None:
                        parts = model_turn.pop("parts", None)
                        if parts is not None:
                            for part in parts:
                                pcm_data = base64.b64decode(part["inlineData"]["data"])
                                responses.append(np.frombuffer(pcm_data, dtype=np.int16))

                    # End of turn
                    turn_complete = server_content.pop("turnComplete", None)
                    if turn_complete:
                        break

                # Play the returned audio message
                display(Markdown("**Response >**"))
                display(Audio(np.concatenate(responses), rate=24000, autoplay=True))
                return

            await setup()

            while True:
                if not await send():
                    break
                await receive()

    await main()
    assert printed[0].startswith("Connected: {'setupComplete': {'sessionId': ")
    assert shown[0] == "**Response >**" and shown[1][2] > 2400


async def test_session_resumption(SERVICE_URL: str) -> None:  # noqa: N803
    """The two resumption examples in a row: the second resumes the first's session with its handle."""
    # Set model generation_config
    CONFIG = {"response_modalities": ["TEXT"]}

    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {bearer_token[0]}",
    }

    # Connect to the server
    async with connect(SERVICE_URL, additional_headers=headers) as ws:
        # Setup the session
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "gemini-2.0-flash-live-preview-04-09",
                        "generation_config": CONFIG,
                        # Enable session resumption.
                        "session_resumption": {},
                    }
                }
            )
        )

        # Receive setup response
        raw_response = await ws.recv(decode=False)
        setup_response = json.loads(raw_response.decode("ascii"))

        # Send text message
        text_input = "Hello? Gemini are you there?"
        display(Markdown(f"**Input:** {text_input}"))

        msg = {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": text_input}]}],
                "turn_complete": True,
            }
        }

        await ws.send(json.dumps(msg))

        responses = []
        handle_id = ""

        turn_completed = False
        resumption_received = False

        # Receive chucks of server response,
        # wait for turn completion and resumption handle.
        async for raw_response in ws:
            response = json.loads(raw_response.decode())

            server_content = response.pop("serverContent", None)
            resumption_update = response.pop("sessionResumptionUpdate", None)

            if server_content is not None:
              model_turn = server_content.pop("modelTurn", None)
              if model_turn is not None:
                  parts = model_turn.pop("parts", None)
                  if parts is not None:
                      responses.append(parts[0]["text"])

              # End of turn
              turn_complete = server_content.pop("turnComplete", None)
              if turn_complete:
                turn_completed = True

            elif resumption_update is not None:
              handle_id = resumption_update['newHandle']
              resumption_received = True
            else:
              continue

            if turn_complete and resumption_received:
              break

        # Print the server response
        display(Markdown(f"**Response >** {''.join(responses)}"))
        display(Markdown(f"**Session Handle ID >** {handle_id}"))

    assert handle_id.startswith("lgh_")  # a gateway handle: upstream handles never leave the gateway

    # Connect to the server
    async with connect(SERVICE_URL, additional_headers=headers) as ws:
        # Setup the session
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "gemini-2.0-flash-live-preview-04-09",
                        "generation_config": CONFIG,
                        # Enable session resumption.
                        "session_resumption": {
                            "handle": handle_id,
                        },
                    }
                }
            )
        )

        # Receive setup response
        raw_response = await ws.recv(decode=False)
        setup_response = json.loads(raw_response.decode("ascii"))

        # Send text message
        text_input = "What was the last question I asked?"
        display(Markdown(f"**Input:** {text_input}"))

        msg = {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": text_input}]}],
                "turn_complete": True,
            }
        }

        await ws.send(json.dumps(msg))

        responses = []
        handle_id = ""

        turn_completed = False
        resumption_received = False

        # Receive chucks of server response,
        # wait for turn completion and resumption handle.
        async for raw_response in ws:
            response = json.loads(raw_response.decode())

            server_content = response.pop("serverContent", None)
            resumption_update = response.pop("sessionResumptionUpdate", None)

            if server_content is not None:
              model_turn = server_content.pop("modelTurn", None)
              if model_turn is not None:
                  parts = model_turn.pop("parts", None)
                  if parts is not None:
                      responses.append(parts[0]["text"])

              # End of turn
              turn_complete = server_content.pop("turnComplete", None)
              if turn_complete:
                turn_completed = True

            elif resumption_update is not None:
              handle_id = resumption_update['newHandle']
              resumption_received = True
            else:
              continue

            if turn_complete and resumption_received:
              break

        # Print the server response
        # Expected answer: "You just asked if I was there."
        display(Markdown(f"**Response >** {''.join(responses)}"))
        display(Markdown(f"**Session Handle >** {resumption_update}"))

    assert "".join(responses) == 'You asked: "Hello? Gemini are you there?"'


async def test_function_calling(SERVICE_URL: str) -> None:  # noqa: N803
    """The doc's example never answers the tool call, so its loop would wait forever (against the real service
    too): one added ``break`` ends it at the tool call."""
    # Set model generation_config
    CONFIG = {"response_modalities": ["TEXT"]}

    # Define function declarations
    TOOLS = {
        "function_declarations": {
            "name": "get_current_weather",
            "description": "Get the current weather in the given location",
            "parameters": {
                "type": "OBJECT",
                "properties": {"location": {"type": "STRING"}},
            },
        }
    }

    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {bearer_token[0]}",
    }

    # Connect to the server
    async with connect(SERVICE_URL, additional_headers=headers) as ws:
        # Setup the session
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "gemini-2.0-flash-live-preview-04-09",
                        "generation_config": CONFIG,
                        "tools": TOOLS,
                    }
                }
            )
        )

        # Receive setup response
        raw_response = await ws.recv(decode=False)
        setup_response = json.loads(raw_response.decode())

        # Send text message
        text_input = "Get the current weather in Santa Clara, San Jose and Mountain View"
        display(Markdown(f"**Input:** {text_input}"))

        msg = {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": text_input}]}],
                "turn_complete": True,
            }
        }

        await ws.send(json.dumps(msg))

        responses = []

        # Receive chucks of server response
        async for raw_response in ws:
            response = json.loads(raw_response.decode("UTF-8"))

            if (tool_call := response.get("toolCall")) is not None:
                for function_call in tool_call["functionCalls"]:
                    responses.append(f"FunctionCall: {str(function_call)}\n")
                break  # not in the doc: its loop then waits for a turn that only a tool response starts

            if (server_content := response.get("serverContent")) is not None:
                if server_content.get("turnComplete", True):
                    break

        # Print the server response
        display(Markdown("**Response >** {}".format("\n".join(responses))))

    assert "get_current_weather" in shown[-1]


@pytest.mark.parametrize("tool", [{"code_execution": {}}, {"google_search": {}}])
async def test_code_execution_and_search(SERVICE_URL: str, tool: dict[str, Any]) -> None:  # noqa: N803
    # Set model generation_config
    CONFIG = {"response_modalities": ["TEXT"]}

    # Set code execution (or: Set google search)
    TOOLS = tool

    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {bearer_token[0]}",
    }

    # Connect to the server
    async with connect(SERVICE_URL, additional_headers=headers) as ws:
        # Setup the session
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "gemini-2.0-flash-live-preview-04-09",
                        "generation_config": CONFIG,
                        "tools": TOOLS,
                    }
                }
            )
        )

        # Receive setup response
        raw_response = await ws.recv(decode=False)
        setup_response = json.loads(raw_response.decode())

        # Send text message
        text_input = "Write code to calculate the 15th fibonacci number then find the nearest palindrome to it"
        display(Markdown(f"**Input:** {text_input}"))

        msg = {
            "client_content": {
                "turns": [{"role": "user", "parts": [{"text": text_input}]}],
                "turn_complete": True,
            }
        }

        await ws.send(json.dumps(msg))

        responses = []

        # Receive chucks of server response
        async for raw_response in ws:
            response = json.loads(raw_response.decode("UTF-8"))

            if (server_content := response.get("serverContent")) is not None:
                if (model_turn:= server_content.get("modelTurn")) is not None:
                  if (parts := model_turn.get("parts")) is not None:
                    if parts[0].get("text"):
                        responses.append(parts[0]["text"])
                    for part in parts:
                        if (executable_code := part.get("executableCode")) is not None:
                            display(
                                Markdown(
                                    f"""**Executable code:**
```py
{executable_code.get("code")}
```
                                """
                                )
                            )
                if server_content.get("turnComplete", False):
                    break

        # Print the server response
        display(Markdown(f"**Response >** {''.join(responses)}"))

    assert shown[-1].startswith("**Response >** ") and len(shown[-1]) > len("**Response >** ")
    if "code_execution" in tool:
        assert any(str(s).startswith("**Executable code:**") for s in shown)
