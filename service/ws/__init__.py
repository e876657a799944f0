"""The Live API's own WebSocket protocol on the front (``Settings.ws_listen``): google-genai, @google/genai and
raw Live API clients use the gateway by pointing their base URL at it (docs/websocket.md).

- ``listener.py``: the listener, its TLS and lifecycle, one ``serve`` task per connection;
- ``caller.py``: a WebSocket as the front's ``Caller`` seam (credentials, reads, writes, closes);
- ``wire.py``: the request paths and the frames (Live JSON <-> ``livegate.v1`` messages).
"""

from service.ws.listener import WebSocketFront

__all__ = ["WebSocketFront"]
