"""trio_gateway: an LLM API gateway on Trio structured concurrency."""

from __future__ import annotations

from ._config import GatewayConfig, load_config, parse_config
from ._errors import (
    ClientError,
    ConfigError,
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._gateway import Gateway, open_gateway
from ._server import serve
from ._version import __version__

__all__ = [
    "ClientError",
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "__version__",
    "load_config",
    "open_gateway",
    "parse_config",
    "serve",
]
