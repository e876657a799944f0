"""Secrets never reach a log line: API keys, bearer and ephemeral tokens, the admin token.

websockets logs every request line and header at DEBUG (`< GET /ws/...?key=... HTTP/1.1`,
`< x-goog-api-key: ...`); the emulator hands it a `RedactingLogger` instead of its own logger, so those lines
(and any traceback logged with them) keep the names and lose the values. The emulator's own log calls name
sessions and faults only; a `Credential` prints its kind and a fingerprint.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

REDACTED = "<redacted>"
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-goog-api-key", "cookie", "set-cookie")
SECRET_PARAMS = ("key", "access_token", "token", "admin_token", "api_key")

# `name: value` of a secret header, anywhere in a line (websockets logs "< name: value")
_HEADER = re.compile(r"(?i)\b(" + "|".join(map(re.escape, SECRET_HEADERS)) + r")(\s*:\s*)([^\r\n]*)")
# `?key=value` / `&access_token=value` in a path or URL (also URL-encoded `%3D` / `%26`)
_PARAM = re.compile(r"(?i)([?&;]|%26|%3F)(" + "|".join(SECRET_PARAMS) + r")(=|%3D)([^&;#\s\"'<>]*)")
# `Bearer x` wherever it appears outside a header line, and ephemeral token names anywhere
_BEARER = re.compile(r"(?i)\b(bearer\s+)([^\s\"',;]+)")
_EPHEMERAL = re.compile(r"(auth_tokens/)([A-Za-z0-9._~+/=\-]+)")


def redact(text: str) -> str:
    """`text` with the values of secret headers, query parameters and auth schemes replaced."""
    text = _HEADER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _PARAM.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _EPHEMERAL.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for websockets that formats each message (and its traceback) and logs it redacted."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                exc_info = sys.exc_info()
            if exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # the caller in websockets, not this method
        self.logger.log(level, "%s", redact(text), **kwargs)
