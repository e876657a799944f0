"""The Python client for livegate, shaped like google-genai's Live API (:mod:`.live`)::

    from livegate.client import Client

Errors are ``google.genai.errors.APIError`` subclasses (:mod:`.errors`); what still differs from google-genai is
listed in docs/client.md.
"""

from livegate.client.client_messages import build_setup
from livegate.client.errors import APIError, ClientError, LiveAPIError, LiveClientError, LiveServerError, ServerError
from livegate.client.live import Client, LiveSession
from livegate.client.server_messages import MessageView, ServerMessageView, to_genai

__all__ = ["APIError", "Client", "ClientError", "LiveAPIError", "LiveClientError", "LiveServerError", "LiveSession",
           "MessageView", "ServerError", "ServerMessageView", "build_setup", "to_genai"]
