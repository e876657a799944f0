"""livegate: a gRPC gateway for the Gemini Live API.

Shared package: settings, the Redis key layout, the Live-JSON codec, the data-plane bus, the Python client
and the CLI. The generated API lives in :mod:`livegate.v1`; the front in :mod:`service`, the workers in
:mod:`workers`, the Live API emulator in :mod:`emulator`.
"""

__version__ = "0.1.0"
