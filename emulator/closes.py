"""Every close code and reason text the emulator uses (those the Live API sends), and the typed error carrying one."""

from __future__ import annotations

MAX_REASON_BYTES = 123

INVALID_ARGUMENT = (1007, "Request contains an invalid argument.")
BAD_API_KEY = (1007, "API key not valid. Please pass a valid API key.")
INVALID_HANDLE = (1007, "Invalid session handle")
LOCATION_UNSUPPORTED = (1007, "User location is not supported for the API use.")
NOT_IMPLEMENTED = (1008, "Operation is not implemented, or supported, or enabled.")
SESSION_NOT_FOUND = (1008, "BidiGenerateContent session not found")
ENTITY_NOT_FOUND = (1008, "Requested entity was not found.")
BAD_CREDENTIALS = (
    1008,
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication",
)
GO_AWAY_IGNORED = (
    1008,
    "Connection aborted because the client failed to close the connection after receiving a GoAway "
    "signal once the session duration expired",
)
INTERNAL = (1011, "Internal error encountered.")
UNAVAILABLE = (1011, "The service is currently unavailable.")
DEADLINE = (1011, "Deadline expired before operation could complete.")
QUOTA = (1011, "You exceeded your current quota, please check your plan and billing details.")
NORMAL = (1000, "")

# Named closes accepted by fault injection ({"close": "quota"}), next to raw code/reason pairs.
NAMED: dict[str, tuple[int, str]] = {
    "invalid_argument": INVALID_ARGUMENT,
    "bad_api_key": BAD_API_KEY,
    "invalid_handle": INVALID_HANDLE,
    "location_unsupported": LOCATION_UNSUPPORTED,
    "not_implemented": NOT_IMPLEMENTED,
    "session_not_found": SESSION_NOT_FOUND,
    "entity_not_found": ENTITY_NOT_FOUND,
    "bad_credentials": BAD_CREDENTIALS,
    "go_away_ignored": GO_AWAY_IGNORED,
    "internal": INTERNAL,
    "unavailable": UNAVAILABLE,
    "deadline": DEADLINE,
    "quota": QUOTA,
    "normal": NORMAL,
}


def truncate_reason(reason: str) -> str:
    """Cuts a reason to at most 123 UTF-8 bytes without splitting a character."""
    raw = reason.encode("utf-8")
    if len(raw) <= MAX_REASON_BYTES:
        return reason
    return raw[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def model_not_found_reason(flavour: str, model: str, version: str) -> str:
    if flavour == "vertex":
        text = (
            f"Publisher Model `{model}` was not found or your project does not have access to it. "
            "Please ensure you are using a valid model version."
        )
    else:
        text = (
            f"{model} is not found for API version {version}, or is not supported for "
            "bidiGenerateContent. Call ModelService.ListModels to see the list of available models "
            "and their supported methods."
        )
    return truncate_reason(text)


class SessionClosed(Exception):
    """Raised inside a session to close the WebSocket with a real code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = truncate_reason(reason)

    @classmethod
    def of(cls, pair: tuple[int, str]) -> SessionClosed:
        return cls(pair[0], pair[1])

    def __repr__(self) -> str:
        return f"SessionClosed({self.code}, {self.reason!r})"
