"""The public test kit (like ``trio.testing``): drive the gateway in memory, run the mock
upstream in memory or on a socket."""

from __future__ import annotations

from .._mock import MockRequest, MockUpstream, open_memory_connector
from ._asgi_client import AsgiClient, AsgiResponse

__all__ = ["AsgiClient", "AsgiResponse", "MockRequest", "MockUpstream", "open_memory_connector"]
