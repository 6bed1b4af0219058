"""Scenario specs for the mock upstream: selection, parsing and the resolved :class:`Plan`.

Theory of operation: a request names its scenario either in the ``x-mock-scenario`` header
or through its model (``mock-<spec>``; ``demo``, ``mock`` and any other model mean
``text``). A spec is one or more parts joined by ``+``; each part is ``name`` or
``name:k=v,k=v``. Parsing is strict, so a typo in a test is a loud 400 rather than a
silently different scenario. The parts are folded into one frozen :class:`Plan` that the
renderers and the script builder read; nothing here does I/O.

Parameters any part may carry: ``tokens`` (text deltas; 8, or 3 with ``tools``),
``interval`` (seconds between stream events; default the server's), and the usage counts
``in`` (25), ``cr`` (100), ``cw5`` (20), ``cw1`` (10), ``reasoning`` (0, or 12 with
``thinking``).

Scenarios (all three protocols unless noted; "event" = one SSE event, 0-based):
    * content: ``text``, ``tools`` (text then ``get_weather({"city": "Paris"})`` in four
      argument fragments), ``thinking`` (Anthropic thinking block, Responses reasoning item,
      Chat ``delta.reasoning_content`` as DeepSeek-style upstreams send it; reasoning tokens
      in usage), ``echo`` (the text is JSON of what the mock received, credentials left
      out).
    * timing: ``stall_headers:secs`` (3600) before the head; ``slow_first:secs`` (30)
      before the first event; ``stall:after,secs`` (3, 3600) after ``after`` events;
      ``token_pace``: ``interval`` separates content deltas only (text, thinking, tool
      arguments), the framing events around them follow at once, as a real model streams
      (without it every event after the first waits ``interval``).
    * endings: ``cut:after`` (3) closes with FIN after ``after`` events, ``reset:after``
      (3) with RST; on a fixed body any ``after`` >= 1 sends half of it.
    * errors: ``status:code,retry_after`` (500), ``canary:code`` (401, the body echoes
      :data:`~trio_gateway._mock._render.CANARY_KEY` and ``CANARY_URL``), ``redirect``
      (307 to ``http://canary.invalid/v1/messages``), ``error_event:after`` (3; in-band
      error after ``after`` events, then the body ends).
    * wire faults: ``malformed:at`` (2; that event's data is invalid JSON), ``no_terminator``
      (no ``message_stop`` / ``[DONE]`` / terminal response event), ``huge:bytes``
      (10_000_000; one text delta that long), ``crlf``; Anthropic only: ``no_event_lines``,
      ``done`` (``data: [DONE]`` after ``message_stop``).
    * usage variants: ``cumulative`` (Anthropic: message_delta output 10, 25, 40),
      ``usage_in_delta`` (Anthropic: real input/cache counts only in the final
      message_delta), ``usage_with_choices`` (Chat: usage on the finish chunk),
      ``zero_usage``, ``incomplete`` (max_tokens / length / ``response.incomplete``).

Invariants:
    * every name and parameter is known, every value parses and is not negative;
    * parameters that several parts share (``tokens``, ``interval``, the usage counts)
      are merged, a later part winning; part-specific ones (``secs``, ``after``, ...)
      stay with their part;
    * ``cut`` and ``reset`` are mutually exclusive (a stream can only end one way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "FLAGS",
    "SCENARIO_NAMES",
    "Plan",
    "ScenarioError",
    "parse_scenario",
    "select_spec",
]

Ending = Literal["cut", "reset"]
_Kind = Literal["int", "float", "str"]

SCENARIO_HEADER: Final = "x-mock-scenario"
_MODEL_PREFIX: Final = "mock-"

_COMMON: Final[Mapping[str, _Kind]] = {
    "tokens": "int",
    "interval": "float",
    "in": "int",
    "cr": "int",
    "cw5": "int",
    "cw1": "int",
    "reasoning": "int",
}

_PARAMS: Final[Mapping[str, Mapping[str, _Kind]]] = {
    "text": {},
    "tools": {},
    "thinking": {},
    "echo": {},
    "stall_headers": {"secs": "float"},
    "slow_first": {"secs": "float"},
    "token_pace": {},
    "stall": {"after": "int", "secs": "float"},
    "cut": {"after": "int"},
    "reset": {"after": "int"},
    "status": {"code": "int", "retry_after": "str"},
    "canary": {"code": "int"},
    "redirect": {},
    "malformed": {"at": "int"},
    "no_terminator": {},
    "huge": {"bytes": "int"},
    "crlf": {},
    "no_event_lines": {},
    "done": {},
    "cumulative": {},
    "usage_in_delta": {},
    "usage_with_choices": {},
    "zero_usage": {},
    "incomplete": {},
    "error_event": {"after": "int"},
}

SCENARIO_NAMES: Final[frozenset[str]] = frozenset(_PARAMS)

#: Parameterless modifiers that the renderers test with :meth:`Plan.has`.
FLAGS: Final[frozenset[str]] = frozenset(
    {
        "tools",
        "thinking",
        "echo",
        "no_terminator",
        "crlf",
        "no_event_lines",
        "done",
        "cumulative",
        "usage_in_delta",
        "usage_with_choices",
        "zero_usage",
        "incomplete",
        "token_pace",
    }
)

_DEFAULT_TOKENS: Final = 8
_DEFAULT_TOOL_TOKENS: Final = 3
_DEFAULT_REASONING_THINKING: Final = 12


class ScenarioError(ValueError):
    """The scenario spec cannot be parsed; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class UsageParams:
    """The input-side token counts a scenario reports (see the module docs of ``_render``).

    Attributes:
        uncached: uncached input tokens (``in``).
        cache_read: tokens read from the prompt cache (``cr``).
        cache_write_5m: tokens written to the 5-minute cache tier (``cw5``).
        cache_write_1h: tokens written to the 1-hour cache tier (``cw1``).
        reasoning: reasoning/thinking tokens, counted inside the output tokens.
    """

    uncached: int = 25
    cache_read: int = 100
    cache_write_5m: int = 20
    cache_write_1h: int = 10
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one scenario spec asks for, resolved to typed fields.

    Attributes:
        spec: the spec string as selected (for the request log).
        flags: the parameterless modifiers present (subset of :data:`FLAGS`).
        text_deltas: number of text deltas in the answer.
        interval: seconds between stream events, or ``None`` for the server default.
        usage: the usage counts to report.
        head_delay: seconds to wait before sending the response head (``stall_headers``).
        first_delay: seconds between the head and the first event (``slow_first``).
        stall_after: events sent before a mid-stream stall, if any.
        stall_secs: the length of that stall.
        end_after: events sent before the connection is closed early, if any.
        ending: how it is closed: ``"cut"`` (FIN) or ``"reset"`` (RST).
        status: scripted error status (``status`` or ``canary``), if any.
        retry_after: value of the ``retry-after`` header for ``status``.
        canary: whether the error body echoes the canary secrets.
        redirect: whether to answer 307 to the canary host.
        malformed_at: index of the event whose data is invalid JSON.
        huge_bytes: length of the single huge text delta, if any.
        error_after: events sent before an in-band error event, if any.
    """

    spec: str
    flags: frozenset[str] = frozenset()
    text_deltas: int = _DEFAULT_TOKENS
    interval: float | None = None
    usage: UsageParams = UsageParams()
    head_delay: float = 0.0
    first_delay: float = 0.0
    stall_after: int | None = None
    stall_secs: float = 0.0
    end_after: int | None = None
    ending: Ending | None = None
    status: int | None = None
    retry_after: str | None = None
    canary: bool = False
    redirect: bool = False
    malformed_at: int | None = None
    huge_bytes: int | None = None
    error_after: int | None = None

    def has(self, flag: str) -> bool:
        """Whether the parameterless modifier ``flag`` is part of this plan."""
        return flag in self.flags


Value = int | float | str


@dataclass(frozen=True, slots=True)
class _Part:
    name: str
    params: Mapping[str, Value]

    def num(self, key: str, default: float) -> float:
        value = self.params.get(key, default)
        assert isinstance(value, int | float)
        return value

    def count(self, key: str, default: int) -> int:
        value = self.params.get(key, default)
        assert isinstance(value, int)
        return value


def select_spec(headers: Sequence[tuple[str, str]], body: object) -> str:
    """Choose the scenario spec for a request.

    Args:
        headers: request headers with lower-cased names.
        body: the parsed JSON body (or ``None``).

    Returns:
        The ``x-mock-scenario`` header if present, else the part of a ``mock-<spec>`` model
        name after the prefix, else ``"text"`` (models ``demo``, ``mock`` and any other).
    """
    for name, value in headers:
        if name == SCENARIO_HEADER and value.strip():
            return value.strip()
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(model, str) and model.startswith(_MODEL_PREFIX) and len(model) > 5:
        return model[len(_MODEL_PREFIX) :]
    return "text"


def parse_scenario(spec: str) -> Plan:
    """Parse a scenario spec into a :class:`Plan`.

    Args:
        spec: ``part[+part...]`` where a part is ``name`` or ``name:k=v,k=v``.

    Returns:
        The resolved plan.

    Raises:
        ScenarioError: unknown scenario or parameter, bad or negative value, empty part,
            or ``cut`` combined with ``reset``.
    """
    parts = [_parse_part(raw) for raw in spec.split("+")]
    by_name = {part.name: part for part in parts}
    common: dict[str, Value] = {}
    for part in parts:
        common.update({k: v for k, v in part.params.items() if k in _COMMON})
    if "cut" in by_name and "reset" in by_name:
        raise ScenarioError("'cut' and 'reset' cannot be combined")
    return _resolve(spec, by_name, _Part("common", common))


def _parse_part(raw: str) -> _Part:
    name, _, arguments = raw.strip().partition(":")
    name = name.strip()
    if not name:
        raise ScenarioError(f"empty scenario part in {raw!r}")
    kinds = _PARAMS.get(name)
    if kinds is None:
        known = ", ".join(sorted(_PARAMS))
        raise ScenarioError(f"unknown mock scenario {name!r} (known: {known})")
    params: dict[str, Value] = {}
    for item in filter(None, (a.strip() for a in arguments.split(","))):
        key, eq, text = item.partition("=")
        key = key.strip()
        kind = kinds.get(key) or _COMMON.get(key)
        if not eq or kind is None:
            raise ScenarioError(f"unknown or malformed parameter {item!r} for scenario {name!r}")
        params[key] = _convert(name, key, text.strip(), kind)
    return _Part(name, params)


def _convert(name: str, key: str, text: str, kind: _Kind) -> Value:
    try:
        value: Value = int(text) if kind == "int" else float(text) if kind == "float" else text
        if kind == "str":
            float(text)  # the only str parameter is retry_after, in seconds
    except ValueError:
        raise ScenarioError(f"bad value {text!r} for {name}:{key}") from None
    if isinstance(value, int | float) and value < 0:
        raise ScenarioError(f"negative value {text!r} for {name}:{key}")
    return value


def _resolve(spec: str, parts: Mapping[str, _Part], common: _Part) -> Plan:
    flags = frozenset(parts) & FLAGS
    default_tokens = _DEFAULT_TOOL_TOKENS if "tools" in flags else _DEFAULT_TOKENS
    interval = common.params.get("interval")
    assert interval is None or isinstance(interval, int | float)
    stall = parts.get("stall")
    end = parts.get("cut") or parts.get("reset")
    status = parts.get("canary") or parts.get("status")
    retry_after = status.params.get("retry_after") if status else None
    malformed = parts.get("malformed")
    huge = parts.get("huge")
    error_event = parts.get("error_event")
    plan = Plan(
        spec=spec,
        flags=flags,
        text_deltas=common.count("tokens", default_tokens),
        interval=interval,
        usage=_usage(common, thinking="thinking" in flags),
        head_delay=_secs(parts.get("stall_headers"), 3600.0),
        first_delay=_secs(parts.get("slow_first"), 30.0),
        stall_after=stall.count("after", 3) if stall else None,
        stall_secs=stall.num("secs", 3600.0) if stall else 0.0,
        end_after=end.count("after", 3) if end else None,
        ending="cut" if "cut" in parts else "reset" if "reset" in parts else None,
        status=status.count("code", 401 if status.name == "canary" else 500) if status else None,
        retry_after=None if retry_after is None else str(retry_after),
        canary="canary" in parts,
        redirect="redirect" in parts,
        malformed_at=malformed.count("at", 2) if malformed else None,
        huge_bytes=huge.count("bytes", 10_000_000) if huge else None,
        error_after=error_event.count("after", 3) if error_event else None,
    )
    if plan.status is not None and not 200 <= plan.status <= 599:
        raise ScenarioError(f"status code {plan.status} is outside 200-599")
    return plan


def _secs(part: _Part | None, default: float) -> float:
    return 0.0 if part is None else part.num("secs", default)


def _usage(common: _Part, *, thinking: bool) -> UsageParams:
    return UsageParams(
        uncached=common.count("in", 25),
        cache_read=common.count("cr", 100),
        cache_write_5m=common.count("cw5", 20),
        cache_write_1h=common.count("cw1", 10),
        reasoning=common.count("reasoning", _DEFAULT_REASONING_THINKING if thinking else 0),
    )
