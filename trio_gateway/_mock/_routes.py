"""Routing for the mock upstream: request head and body in, :class:`Script` out (sans-IO).

Order of checks, as the real APIs do it: path (404), method (405), credentials (401, only
when the mock was given a key), JSON body (400), scenario (400 for unknown names), the
endpoint's request rules (400, see ``_validate``), then the scenario's own answer. Every
error uses the shape of the endpoint's protocol; for unknown paths the shape follows the
headers (``anthropic-version`` or ``x-api-key`` means Anthropic, anything else OpenAI).

The scenario is parsed before the body is validated so that a typo in a test's scenario is
reported as such, whatever the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from trio_gateway._mock._render import CREATED, Dialect
from trio_gateway._mock._scenario import ScenarioError, parse_scenario, select_spec
from trio_gateway._mock._script import (
    Script,
    answer_script,
    count_tokens_script,
    error_script,
    json_script,
)
from trio_gateway._mock._validate import Endpoint, validate_request

__all__ = ["MODEL_IDS", "Routed", "dialect_for", "route"]

_ENDPOINTS: Final[Mapping[str, tuple[Dialect, Endpoint]]] = {
    "/v1/messages": ("anthropic", "messages"),
    "/v1/messages/count_tokens": ("anthropic", "count_tokens"),
    "/v1/chat/completions": ("openai-chat", "chat"),
    "/v1/responses": ("openai-responses", "responses"),
}
MODEL_IDS: Final = ("demo", "mock", "mock-text", "mock-tools", "mock-thinking")


@dataclass(frozen=True, slots=True)
class Routed:
    """The routing decision for one request.

    Attributes:
        script: what to send.
        body: the parsed JSON body, or ``None`` (empty or not JSON).
        scenario: the scenario spec used (``""`` where none applies).
    """

    script: Script
    body: object
    scenario: str


def route(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    raw_body: bytes,
    *,
    number: int,
    default_interval: float,
    require_key: str | None,
) -> Routed:
    """Decide the response to one request.

    Args:
        method: the request method, upper case.
        target: the request target; a query string is ignored.
        headers: request headers with lower-cased names.
        raw_body: the whole request body.
        number: the request's serial number (for deterministic ids).
        default_interval: the server's default seconds between stream events.
        require_key: when set, the key the request must carry.

    Returns:
        The script, the parsed body and the scenario spec.
    """
    path = target.partition("?")[0]
    body = _parse_json(raw_body)
    endpoint = _ENDPOINTS.get(path)
    dialect = None if endpoint is None else endpoint[0]
    is_models = path == "/v1/models"
    if endpoint is None and not is_models:
        message = f"Invalid URL ({method} {path})"
        return Routed(error_script(_guess(headers), 404, message, number=number), body, "")
    allowed = "GET" if is_models else "POST"
    if method != allowed:
        script = error_script(
            dialect or _guess(headers),
            405,
            f"Method {method} not allowed for {path}",
            number=number,
            headers=(("allow", allowed),),
        )
        return Routed(script, body, "")
    if require_key is not None and not _has_key(headers, require_key):
        script = error_script(dialect or _guess(headers), 401, _KEY_MESSAGE, number=number)
        return Routed(script, body, "")
    if endpoint is None:
        return Routed(_models(headers), body, "")
    return _model_call(endpoint, headers, body, raw_body, number, default_interval)


_KEY_MESSAGE: Final = "Invalid API key. Send it as x-api-key or Authorization: Bearer."


def _model_call(
    endpoint: tuple[Dialect, Endpoint],
    headers: Sequence[tuple[str, str]],
    body: object,
    raw_body: bytes,
    number: int,
    default_interval: float,
) -> Routed:
    dialect, kind = endpoint
    if not isinstance(body, dict):
        what = "empty" if not raw_body.strip() else "not a JSON object"
        message = f"Could not parse the request body as JSON: it is {what}."
        return Routed(error_script(dialect, 400, message, number=number), body, "")
    spec = select_spec(headers, body)
    try:
        plan = parse_scenario(spec)
    except ScenarioError as error:
        return Routed(error_script(dialect, 400, str(error), number=number), body, spec)
    violation = validate_request(kind, body)
    if violation is not None:
        return Routed(error_script(dialect, 400, str(violation), number=number), body, spec)
    if kind == "count_tokens":
        return Routed(count_tokens_script(plan, number=number), body, spec)
    script = answer_script(
        plan,
        dialect=dialect,
        number=number,
        body=body,
        headers=headers,
        default_interval=default_interval,
    )
    return Routed(script, body, spec)


def _parse_json(raw_body: bytes) -> object:
    if not raw_body.strip():
        return None
    try:
        parsed: object = json.loads(raw_body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    return parsed


def dialect_for(target: str, headers: Sequence[tuple[str, str]]) -> Dialect:
    """The error shape for a request: its endpoint's protocol, else guessed from headers."""
    endpoint = _ENDPOINTS.get(target.partition("?")[0])
    return endpoint[0] if endpoint is not None else _guess(headers)


def _guess(headers: Sequence[tuple[str, str]]) -> Dialect:
    names = {name for name, _ in headers}
    return "anthropic" if names & {"anthropic-version", "x-api-key"} else "openai-chat"


def _has_key(headers: Sequence[tuple[str, str]], key: str) -> bool:
    for name, value in headers:
        if name == "x-api-key" and value == key:
            return True
        if name == "authorization" and value.partition(" ")[::2] == ("Bearer", key):
            return True
    return False


def _models(headers: Sequence[tuple[str, str]]) -> Script:
    if any(name == "anthropic-version" for name, _ in headers):
        data: list[object] = [
            {"type": "model", "id": model, "display_name": model.title(),
             "created_at": "2025-06-15T00:00:00Z"}
            for model in MODEL_IDS
        ]  # fmt: skip
        page = {"data": data, "has_more": False, "first_id": MODEL_IDS[0], "last_id": MODEL_IDS[-1]}
        return json_script(200, page)
    data = [
        {"id": model, "object": "model", "created": CREATED, "owned_by": "mock"}
        for model in MODEL_IDS
    ]
    return json_script(200, {"object": "list", "data": data})
