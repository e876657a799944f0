"""permessage-deflate that leaves big messages (base64 audio) uncompressed.

RFC 7692 lets a sender choose per message: a message without RSV1 is plain. Base64 PCM barely compresses
but deflating it costs ~3/4 of the emulator's per-frame CPU, so messages of `threshold` bytes or more go
out as they are; small JSON (text turns, control messages) is still compressed, at zlib level 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode

DEFAULT_THRESHOLD = 4096


class SelectiveDeflate(PerMessageDeflate):
    threshold = DEFAULT_THRESHOLD

    def encode(self, frame: Frame) -> Frame:
        if frame.fin and frame.opcode in (Opcode.TEXT, Opcode.BINARY) and len(frame.data) >= self.threshold:
            return frame  # RSV1 clear: sent uncompressed
        return super().encode(frame)


class SelectiveDeflateFactory(ServerPerMessageDeflateFactory):
    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        super().__init__(server_max_window_bits=12, client_max_window_bits=12,
                         compress_settings={"level": 1, "memLevel": 5})
        self.threshold = threshold

    def process_request_params(self, params: Sequence[tuple[str, str | None]], accepted: Sequence[Any]) -> Any:
        response, ext = super().process_request_params(params, accepted)
        selective = SelectiveDeflate(
            ext.remote_no_context_takeover,
            ext.local_no_context_takeover,
            ext.remote_max_window_bits,
            ext.local_max_window_bits,
            ext.compress_settings,
        )
        selective.threshold = self.threshold
        return response, selective
