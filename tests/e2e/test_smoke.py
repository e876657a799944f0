from __future__ import annotations

from typing import Any


async def test_text_turn(client: Any, stack: dict[str, Any]) -> None:
    async with client.aio.live.connect(model="gemini-live-2.5-flash",
                                       config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello? Gemini are you there?"}]})
        texts = [m.text async for m in session.receive() if m.text]
    assert texts, "no text came back"
    print("".join(texts))
