"""``GET /admin/usage``: the ledger as JSON lines, for the holder of the admin token.

Order of checks, so that nothing is learnt without the token: route off (no token
configured) → 404 as for any unknown path; wrong or missing ``Authorization: Bearer`` →
401; only then is the query validated (400) and the ledger read. Errors are rendered by
``Reply.fail`` in the caller's guessed protocol shape, like every other gateway error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from functools import partial
from typing import Final
from urllib.parse import parse_qsl

import trio

from ._asgi import Reply
from ._errors import InvalidRequest, NotFound, Unauthorized
from ._usage_report import format_json_lines, parse_since, read_ledger

__all__ = ["is_admin", "parse_usage_query", "serve_admin_usage"]

#: The query parameters ``/admin/usage`` accepts; any other is refused, so that a typo
#: (``?keys=alice``) cannot silently return every key's rows.
_PARAMS: Final = frozenset({"key", "since"})
#: More fields than this is not a query anyone meant to send.
_MAX_FIELDS: Final = 8


def is_admin(authorization: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries the admin bearer token.

    The comparison is constant-time (RELIABILITY B11): both sides are hashed first, so
    :func:`hmac.compare_digest` sees equal lengths and not even the token's length leaks.

    Args:
        authorization: the raw header value, or ``None`` when absent. The scheme is
            case-insensitive (RFC 9110 §11.1); whitespace around the token is ignored.
        token: the configured admin token.
    """
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return False
    presented = authorization[7:].strip()
    return hmac.compare_digest(
        hashlib.sha256(presented).digest(), hashlib.sha256(token.encode()).digest()
    )


def parse_usage_query(query: bytes) -> tuple[str | None, str | None]:
    """The ``key`` and ``since`` filters of an ``/admin/usage`` query string.

    Args:
        query: the raw ASGI ``query_string`` (percent-encoded; a literal ``+`` means a space,
            so an offset must be sent as ``%2B01:00``, or use ``Z``).

    Returns:
        ``(key, since)``, each ``None`` when not given; ``since`` normalised by
        :func:`~trio_gateway._usage_report.parse_since`.

    Raises:
        InvalidRequest: an unknown, repeated or empty parameter, a query that is not
            ASCII or not UTF-8 once decoded, or a ``since`` that is not an ISO 8601 date or
            date-time; ``param`` names the parameter when there is one.
    """
    try:
        pairs = parse_qsl(
            query.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is a ValueError, as is "too many fields"
        raise InvalidRequest("the query string is not valid: expected key=NAME&since=ISO") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in _PARAMS:
            raise InvalidRequest(
                f"unknown query parameter {name!r}: /admin/usage accepts key and since",
                param=name,
            )
        if name in found:
            raise InvalidRequest(f"query parameter {name!r} is given more than once", param=name)
        if not value:
            raise InvalidRequest(f"query parameter {name!r} is empty", param=name)
        found[name] = value
    since = found.get("since")
    if since is not None:
        try:
            since = parse_since(since)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="since") from None
    return found.get("key"), since


def _ledger_lines(path: str, *, key: str | None, since: str | None) -> bytes:
    """Read and render the rows (runs in a worker thread: both steps are blocking work).

    A ledger file that does not exist yet holds no rows: the answer is an empty body,
    and nothing is created at ``path``.
    """
    try:
        rows = read_ledger(path, key=key, since=since)
    except FileNotFoundError:
        return b""
    return format_json_lines(rows).encode("ascii")


async def serve_admin_usage(
    reply: Reply,
    *,
    headers: Mapping[bytes, bytes],
    query: bytes,
    token: str | None,
    ledger_path: str,
) -> None:
    """Answer ``GET /admin/usage`` (DESIGN §2): the ledger rows as JSON lines.

    The answer is 404 when no admin token is configured (as for an unknown path); 401 when
    ``Authorization: Bearer <admin token>`` is missing or wrong; 400 on an unknown,
    repeated or empty parameter or a bad ``since``; otherwise 200 with one JSON object per
    ledger row and line (the DESIGN §5 fields, ordered by ``started_at`` then ``attempt``),
    and an empty body when no row matches.

    Args:
        reply: the response to send; nothing has been sent on it yet.
        headers: the request headers, names lower-cased.
        query: the raw ASGI ``query_string``: optional ``key=NAME`` and ``since=ISO``.
        token: the admin token (``[admin]``); ``None`` or empty turns the route off.
        ledger_path: the ledger database (``[ledger].path``).

    Cancellation:
        The ledger read runs in a worker thread (never on the trio thread) and is not
        abandoned on cancellation: a cancel takes effect once the read returns, and then
        nothing is sent.
    """
    if not token:
        await reply.fail(NotFound("no route for GET /admin/usage"))
        return
    if not is_admin(headers.get(b"authorization"), token):
        await reply.fail(
            Unauthorized("the admin token is required: send Authorization: Bearer <admin token>")
        )
        return
    try:
        key, since = parse_usage_query(query)
    except InvalidRequest as error:
        await reply.fail(error)
        return
    body = await trio.to_thread.run_sync(partial(_ledger_lines, ledger_path, key=key, since=since))
    await reply.respond(
        200,
        body,
        headers=[(b"cache-control", b"no-store")],
        content_type=b"application/x-ndjson",
    )
