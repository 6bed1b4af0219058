"""Path-aware readers shared by the request parsers, and small helpers the renderers share.

Theory of operation: a client body is JSON-decoded but otherwise unchecked. Each reader takes
a value and the JSON path it came from, returns it narrowed to the expected type, or raises
:class:`~trio_gateway._errors.InvalidRequest` whose ``param`` is that path and whose message
names it. Parsers never index into client data without going through these.

Invariants:

- Readers raise nothing but ``InvalidRequest``; ``bool`` is never accepted as a number, and
  numbers are finite (``json.loads`` lets ``NaN`` and ``1e999`` through).
- Tool-call arguments are kept as the client's text once checked to be a JSON object.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Final, NoReturn

from trio_gateway._errors import InvalidRequest
from trio_gateway._translate._request_model import Base64Source, UrlSource

__all__ = [
    "EFFORTS",
    "Notes",
    "arguments_object",
    "as_list",
    "as_object",
    "as_str",
    "check_fields",
    "data_url",
    "dumps_arguments",
    "http_url",
    "invalid",
    "json_object",
    "json_object_text",
    "nonblank",
    "opt_bool",
    "opt_effort",
    "opt_int",
    "opt_number",
    "opt_object",
    "opt_str",
    "safety_identifier",
    "sanitize_tool_id",
    "string_list",
    "url_source",
]

#: Every reasoning effort any of the three protocols knows (protocols.md §1.2, §2.2, §3.1).
EFFORTS: Final = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_UNSAFE_ID: Final = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_SAFETY_ID: Final = 64


class Notes:
    """The advisory fields a parser dropped, each listed once, in the order first seen."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, None] = {}

    def add(self, path: str) -> None:
        """Record ``path`` (again: no effect)."""
        self._seen.setdefault(path, None)

    def note_cache_control(self, obj: dict[str, object]) -> None:
        """Anthropic ``cache_control`` may sit on any block; it is listed once as such."""
        if "cache_control" in obj:
            self.add("cache_control")

    def result(self) -> tuple[str, ...]:
        """The recorded paths."""
        return tuple(self._seen)


def invalid(param: str, problem: str) -> InvalidRequest:
    """An ``InvalidRequest`` naming ``param`` in both its message and its ``param``."""
    return InvalidRequest(f"`{param}`: {problem}", param=param)


def as_object(value: object, param: str) -> dict[str, object]:
    """``value`` if it is a JSON object."""
    if not isinstance(value, dict):
        raise invalid(param, "must be an object.")
    return value


def as_list(value: object, param: str) -> list[object]:
    """``value`` if it is a JSON array."""
    if not isinstance(value, list):
        raise invalid(param, "must be an array.")
    return value


def as_str(value: object, param: str) -> str:
    """``value`` if it is a string."""
    if not isinstance(value, str):
        raise invalid(param, "must be a string.")
    return value


def json_object(value: object, param: str) -> dict[str, object]:
    """A free-form JSON object (a schema, ``logit_bias``) passed on as is: it may not hold
    NaN or infinite numbers, which ``json.loads`` accepts but JSON and the upstreams do not."""
    obj = as_object(value, param)
    stack: list[object] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise invalid(param, "must not hold NaN or infinite numbers.")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return obj


def opt_str(obj: dict[str, object], key: str, param: str) -> str | None:
    """``obj[key]`` as a string, or None when absent or ``null``."""
    value = obj.get(key)
    return None if value is None else as_str(value, param)


def opt_bool(obj: dict[str, object], key: str, param: str) -> bool | None:
    """``obj[key]`` as a bool, or None when absent or ``null``."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise invalid(param, "must be a boolean.")


def opt_object(obj: dict[str, object], key: str, param: str) -> dict[str, object] | None:
    """``obj[key]`` as an object, or None when absent or ``null``."""
    value = obj.get(key)
    return None if value is None else as_object(value, param)


def opt_int(obj: dict[str, object], key: str, param: str, *, minimum: int = 0) -> int | None:
    """``obj[key]`` as an int >= ``minimum``, or None when absent or ``null``."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid(param, f"must be an integer >= {minimum}.")
    return value


def opt_number(
    obj: dict[str, object],
    key: str,
    param: str,
    *,
    minimum: float = 0,
    maximum: float | None = None,
) -> float | None:
    """``obj[key]`` as a finite number in ``[minimum, maximum]``, or None when absent or
    ``null``. The client's ``int`` stays an ``int`` so it is re-sent exactly as given."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(param, "must be a number.")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum:g}" if maximum is None else f"in [{minimum:g}, {maximum:g}]"
        raise invalid(param, f"must be a finite number {bounds}.")
    return value


def opt_effort(obj: dict[str, object], key: str, param: str) -> str | None:
    """A reasoning effort (:data:`EFFORTS`), or None when absent or ``null``."""
    effort = opt_str(obj, key, param)
    if effort is not None and effort not in EFFORTS:
        raise invalid(param, f"unknown reasoning effort `{effort}`.")
    return effort


def check_fields(
    body: dict[str, object], understood: frozenset[str], advisory: frozenset[str], notes: Notes
) -> None:
    """Every top-level field is understood, advisory (listed in ``notes``) or refused."""
    for key in body:
        if key in advisory:
            notes.add(key)
        elif key not in understood:
            raise invalid(
                key, "is not supported when the request is translated to another protocol."
            )


def string_list(value: object, param: str) -> tuple[str, ...]:
    """An array of strings."""
    return tuple(as_str(item, f"{param}[{i}]") for i, item in enumerate(as_list(value, param)))


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(name)


def json_object_text(text: object, param: str) -> str:
    """Tool-call arguments: JSON text of an object. Empty text means ``{}`` (some OpenAI
    upstreams emit it for functions without parameters, and clients replay it)."""
    raw = as_str(text, param)
    if not raw.strip():
        return "{}"
    try:
        decoded = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise invalid(param, "must be the JSON text of an object.") from None
    if not isinstance(decoded, dict):
        raise invalid(param, "must be the JSON text of an object.")
    return raw


def arguments_object(text: str, param: str) -> dict[str, object]:
    """The object :func:`json_object_text` checked (for Anthropic ``tool_use.input``)."""
    if not text.strip():
        return {}
    try:
        decoded = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise invalid(param, "must be the JSON text of an object.") from None
    if not isinstance(decoded, dict):
        raise invalid(param, "must be the JSON text of an object.")
    return decoded


def dumps_arguments(value: dict[str, object], param: str) -> str:
    """Anthropic ``tool_use.input`` as OpenAI ``arguments`` text (compact JSON)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):
        raise invalid(param, "must not hold NaN or infinite numbers.") from None


def data_url(url: str) -> Base64Source | None:
    """``data:<media type>;base64,<data>`` as a :class:`Base64Source`; None otherwise."""
    if url[:5].lower() != "data:":
        return None
    header, comma, data = url[5:].partition(",")
    fields = header.split(";")
    if not comma or "base64" not in (f.strip().lower() for f in fields[1:]):
        return None
    media_type = fields[0].strip().lower()
    return Base64Source(media_type=media_type, data=data) if media_type else None


def http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL."""
    return url[:7].lower() == "http://" or url[:8].lower() == "https://"


def url_source(url: object, param: str) -> Base64Source | UrlSource:
    """A ``data:`` (base64) or http(s) URL as a source."""
    text = as_str(url, param)
    inline = data_url(text)
    if inline is not None:
        return inline
    if http_url(text):
        return UrlSource(text)
    raise invalid(param, "must be a base64 `data:` URL or an http(s) URL.")


def sanitize_tool_id(call_id: str) -> str:
    """An id matching Anthropic's ``^[a-zA-Z0-9_-]+$`` (protocols.md §1.3); the same
    function maps ``tool_use.id`` and ``tool_result.tool_use_id`` so they still match."""
    return _UNSAFE_ID.sub("_", call_id) or "_"


def safety_identifier(user: str) -> str:
    """An OpenAI ``safety_identifier`` (at most 64 characters): the id, or its sha256."""
    if len(user) <= _MAX_SAFETY_ID:
        return user
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()


def nonblank(texts: Iterable[str]) -> list[str]:
    """The texts that contain something other than whitespace."""
    return [text for text in texts if text.strip()]
