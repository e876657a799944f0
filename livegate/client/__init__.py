"""The Python client for livegate, shaped like google-genai's Live API (:mod:`.live`)::

    from livegate.client import Client
"""

from livegate.client.live import Client, LiveSession, build_setup, to_genai

__all__ = ["Client", "LiveSession", "build_setup", "to_genai"]
