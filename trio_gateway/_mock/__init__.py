"""The mock LLM upstream: Anthropic Messages, OpenAI Chat Completions and Responses.

A scripted upstream for the demo config, the gateway's tests and the benchmarks, on trio and
h11 directly. The scenario comes from the ``x-mock-scenario`` header or the model name
(``mock-<spec>``); see ``_scenario`` for the spec grammar and the list of scenarios.

Public names:
    * :class:`MockUpstream` - the server; ``serve()`` on TCP or ``handle_connection()`` on
      any trio stream; its ``requests`` log holds one :class:`MockRequest` per request.
    * :func:`open_memory_connector` - connect to a mock in memory (``Connector``).
    * :func:`parse_scenario`, :class:`Plan`, :class:`ScenarioError`, :data:`SCENARIO_NAMES`.
    * :data:`CANARY_KEY`, :data:`CANARY_URL`, :data:`REDIRECT_LOCATION` - the secrets the
      ``canary`` and ``redirect`` scenarios leak, for leak tests.
"""

from __future__ import annotations

from trio_gateway._mock._render import CANARY_KEY, CANARY_URL
from trio_gateway._mock._scenario import SCENARIO_NAMES, Plan, ScenarioError, parse_scenario
from trio_gateway._mock._script import REDIRECT_LOCATION
from trio_gateway._mock._server import (
    Connector,
    MockRequest,
    MockUpstream,
    open_memory_connector,
)

__all__ = [
    "CANARY_KEY",
    "CANARY_URL",
    "REDIRECT_LOCATION",
    "SCENARIO_NAMES",
    "Connector",
    "MockRequest",
    "MockUpstream",
    "Plan",
    "ScenarioError",
    "open_memory_connector",
    "parse_scenario",
]
