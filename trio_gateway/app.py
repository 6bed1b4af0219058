"""The ASGI entry point for hypercorn.

    hypercorn --worker-class trio 'trio_gateway.app:create_app()'


The gateway config is read from ``$TRIO_GATEWAY_CONFIG`` (default ``./config.toml``).
"""

from __future__ import annotations

import os

from ._config import load_config
from ._gateway import Gateway

__all__ = ["create_app"]


def create_app() -> Gateway:
    """Build the gateway ASGI application from ``$TRIO_GATEWAY_CONFIG``."""
    return Gateway(load_config(os.environ.get("TRIO_GATEWAY_CONFIG", "config.toml")))
