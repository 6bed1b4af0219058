"""Turning an upstream's error response into an error that is safe to show the caller.

Theory of operation: upstream error bodies echo keys, hosts and internal addresses
(RELIABILITY.md finding 6, §2.3), so nothing from them reaches a caller unfiltered. This
module keeps what helps the caller (the status, the upstream's reason code and message, the
retry headers the SDKs obey) and redacts everything else (:func:`sanitize_text`).

Invariants:

- A 401/403/407 from the upstream is the gateway's own account problem: the caller gets a 502
  with a generic message and no upstream text at all (RELIABILITY.md U10).
- A 3xx is never followed and never shown (U11): 502, generic message.
- Any other 4xx/5xx keeps its status, so SDK retry logic works (protocols.md §1.8) and reason
  codes such as ``context_length_exceeded`` are passed on (U9), sanitised.
- The upstream's host or ``base_url`` never appears; its configured *name* does.
- Redaction errs on the side of removing too much: a mangled message is a cosmetic bug, a
  leaked key is an incident (B10).
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from trio_gateway._errors import UpstreamStatusError

__all__ = ["sanitize_text", "upstream_status_error"]

# Bodies larger than this are not parsed: an error body worth showing is small, and this bounds
# the work done on hostile input. (The shell reads error bodies with its own cap.)
_MAX_PARSED_BODY_BYTES: Final = 65_536
# Longest upstream-derived text shown to a caller, after sanitising.
_MAX_MESSAGE_CHARS: Final = 500
# RFC 9110 §10.2.3 values are short: delay-seconds or a 29-character HTTP date.
_MAX_RETRY_AFTER_CHARS: Final = 64
# Any run of this many characters of a secret is redacted, so a truncated or partly masked
# echo ("sk-proj-abc…xyz") still disappears; shorter secrets are matched whole.
_SECRET_FRAGMENT_CHARS: Final = 8

# Upstream reason codes are identifiers ("context_length_exceeded", "insufficient_quota").
_REASON_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
# Type names that only restate the status: passing them on adds nothing (protocols.md §1.8,
# §2.6); the caller's own error type is derived from the status anyway.
_GENERIC_TYPES: Final[frozenset[str]] = frozenset(
    {
        "error",
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
        "server_error",
    }
)

_DIGITS = re.compile(r"[0-9]{1,10}")
_MILLISECONDS = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,6})?")
_HTTP_DATE_CHARS = re.compile(r"[A-Za-z0-9 ,:\-]+")

# Whitespace, control and invisible formatting characters (bidi overrides, zero-width): folded
# to one space so a message is one tidy line that cannot reorder what a terminal shows.
_UNTIDY = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+")


def _host_port(match: re.Match[str]) -> str:
    # "12:30" is a time, not a host: a host has a letter or a dot (hostname or IPv4).
    host = match.group(1)
    return "[host]" if any(ch.isalpha() or ch == "." for ch in host) else match.group(0)


def _ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    return "[host]" if text.count(":") >= 2 and any(ch != ":" for ch in text) else text


_Replacement = str | Callable[[re.Match[str]], str]

_CREDENTIAL_NAME: Final = (
    r"(?:x-api-key|x-goog-api-key|api[-_]?key|api-token|access[-_]?token|refresh[-_]?token|"
    r"client[-_]?secret|secret|password|passwd|token|key|signature|sig)"
)
_SEPARATOR: Final = r"[\"']?\s*[:=]\s*[\"']?"

# Redaction rules, applied in order (RELIABILITY.md finding 6, §2.3, B10). Rules that consume
# whole credentials come before the host rules, so no host rule can split a key and leave half.
# Every pattern that starts with a repeated class has a lookbehind for that class, so a match
# is only tried at the start of a run: linear time on hostile input, no ReDoS.
_RULES: Final[tuple[tuple[re.Pattern[str], _Replacement], ...]] = (
    # URLs of any scheme, query string included (Gemini-style keys live in `?key=`).
    (re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z0-9+.\-]*://\S*"), "[url]"),
    # "Bearer <token>": whitespace after the word is folded first, so a fixed-width lookbehind
    # finds every token that follows one; a decoy ("Bearer 0Bearer x") cannot shield x.
    (re.compile(r"(?i)(bearer)\s+"), r"\1 "),
    (re.compile(r"(?i)(?<=bearer )[^\s\"',;]+"), "[redacted]"),
    # Credentials in header or key/value syntax: "Authorization: Basic x", "x-api-key: x",
    # "api_key=x", '"password": "x"'. No word boundary: "my_api_key=x" must match too. A
    # repeated name ("key: key: x") is consumed with the value.
    (
        re.compile(
            rf"(?i)((?:proxy-)?authorization){_SEPARATOR}(?:{_CREDENTIAL_NAME}{_SEPARATOR})*"
            r"(?:(?:bearer|basic|digest|negotiate|token|key)\s+)*[^\s\"',;]+"
        ),
        r"\1: [redacted]",
    ),
    (
        re.compile(
            rf"(?i)({_CREDENTIAL_NAME}){_SEPARATOR}(?:{_CREDENTIAL_NAME}{_SEPARATOR})*"
            r"[^\s\"',;&]+"
        ),
        r"\1: [redacted]",
    ),
    # Key formats: OpenAI/Anthropic "sk-…" (masked forms included: "sk-proj-****abcd"),
    # Stripe-style "sk_live_…", AWS access key ids, Google API keys, org/project ids.
    (re.compile(r"\bsk-[\w\-*.\u2026]*"), "[redacted]"),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test|prod)_\w+"), "[redacted]"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "[redacted]"),
    (re.compile(r"\bAIza[\w\-]{20,}"), "[redacted]"),
    (re.compile(r"\b(?:org|proj)[-_][A-Za-z0-9]{8,}"), "[redacted]"),
    # JWTs: base64url JSON header ("eyJ") and payload, optional signature.
    (re.compile(r"\beyJ[\w\-]*\.[\w\-]+(?:\.[\w\-]*)?"), "[redacted]"),
    # Long base64/hex-ish runs: tokens, signatures, JWT segments, UUIDs, internal ids.
    (re.compile(r"[A-Za-z0-9+/=_\-]{32,}"), "[redacted]"),
    (re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), "[email]"),
    # Bracketed IPv6 with optional port: "[fd00::1]:8443".
    (re.compile(r"\[(?=[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"), "[host]"),
    # Bare IPv6 (an embedded IPv4 included), before host:port so "fe23:4567" inside an
    # address is not taken for one.
    (re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]+(?![\w:.])"), _ipv6),
    # host:port, e.g. "internal-upstream.example:8443", "10.0.0.5:18182", "redis:6379".
    (re.compile(r"(?<![\w.\-])([\w.\-]+):[0-9]{2,}"), _host_port),
    # Dotted quads, any digit count: "0010.0.0.5" still hides "10.0.0.5".
    (re.compile(r"(?<![0-9.])(?:[0-9]+\.){3}[0-9]+"), "[host]"),
    # Hostnames with a public or typical internal suffix, plus any labels after it.
    (
        re.compile(
            r"(?i)(?<![\w.\-])(?:[\w\-]+\.)+"
            r"(?:com|net|org|io|ai|dev|app|cloud|co|us|eu|uk|de|fr|jp|cn|info|biz|xyz|site|"
            r"tech|internal|local|localdomain|localhost|lan|intranet|corp|home|svc|cluster|"
            r"example|test|invalid|arpa|onion)(?![\w\-])(?:\.[\w\-]+)*"
        ),
        "[host]",
    ),
)


def sanitize_text(text: str, *, secrets: Sequence[str]) -> str:
    """Redact secrets and topology from ``text``.

    Removes every run of :data:`_SECRET_FRAGMENT_CHARS` characters of each value in
    ``secrets`` (whole values when shorter), then key-like tokens (``sk-…``, ``Bearer …``,
    ``x-api-key: …``, runs of 32+ base64/hex characters), URLs, e-mail addresses, host:port
    pairs, IPv4/IPv6 addresses and hostnames with a public or internal suffix. Errs on the
    side of redaction; the result is meant for callers and logs alike.

    Args:
        text: untrusted text, e.g. an upstream error message.
        secrets: exact strings that must never appear: the upstream API keys, and ideally the
            host of its ``base_url``. Empty strings are ignored.

    Returns:
        The redacted text, with placeholders ``[redacted]``, ``[url]``, ``[host]`` and
        ``[email]``.
    """
    text = _remove_secrets(text, secrets)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def upstream_status_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    upstream_name: str,
    secrets: Sequence[str],
) -> UpstreamStatusError:
    """Build the caller-facing error for an upstream's non-2xx response.

    Args:
        status: the upstream's HTTP status.
        body: the upstream's response body (bodies over 64 KiB are not parsed).
        headers: the upstream's response headers, names lower-cased.
        upstream_name: the upstream's name from the config, shown to the caller.
        secrets: strings to redact, as for :func:`sanitize_text`.

    Returns:
        An :class:`UpstreamStatusError`: status 502 with a generic message for a 3xx, for
        401/403/407 (the gateway's credentials) and for a status that is not an HTTP error;
        otherwise the upstream's status with ``upstream 'NAME' returned HTTP <status>``, the
        upstream's reason code in parentheses and its sanitised message after a colon, plus
        the validated ``retry-after``, ``retry-after-ms`` and ``x-should-retry`` headers.
    """
    if 300 <= status < 400:
        return UpstreamStatusError(
            f"upstream '{upstream_name}' answered with a redirect (HTTP {status})",
            status=502,
            upstream_status=status,
        )
    if status in (401, 403, 407):
        # No upstream text at all: it is about the gateway's key, and may echo it (U10).
        return UpstreamStatusError(
            f"upstream '{upstream_name}' rejected the gateway's credentials (HTTP {status})",
            status=502,
            upstream_status=status,
        )
    if not 400 <= status <= 599:
        return UpstreamStatusError(
            f"upstream '{upstream_name}' answered with unexpected HTTP {status}",
            status=502,
            upstream_status=status,
        )
    message, reason = _extract(_parse_json(body))
    return UpstreamStatusError(
        _compose(upstream_name, status, message, reason, secrets),
        status=status,
        retry_after=_retry_after(headers.get("retry-after")),
        retry_after_ms=_retry_after_ms(headers.get("retry-after-ms")),
        should_retry=_should_retry(headers.get("x-should-retry")),
    )


def _compose(
    name: str, status: int, message: str | None, reason: str | None, secrets: Sequence[str]
) -> str:
    text = f"upstream '{name}' returned HTTP {status}"
    # A code must look like an identifier, and could still be a hex token: drop it if
    # redaction would touch it.
    if (
        reason is not None
        and _REASON_CODE.fullmatch(reason)
        and sanitize_text(reason, secrets=secrets) == reason
    ):
        text += f" ({reason})"
    if message is not None:
        # Sanitise the whole message before truncating, so a cut can never leave a partial
        # secret that no longer matches.
        shown = _UNTIDY.sub(" ", sanitize_text(message, secrets=secrets)).strip()
        if len(shown) > _MAX_MESSAGE_CHARS:
            shown = shown[: _MAX_MESSAGE_CHARS - 1].rstrip() + "\u2026"
        if shown:
            text += f": {shown}"
    return text


def _parse_json(body: bytes) -> object:
    if len(body) > _MAX_PARSED_BODY_BYTES:
        return None
    try:
        document: object = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    return document


def _extract(document: object, depth: int = 0) -> tuple[str | None, str | None]:
    """``(message, reason code)`` from the error shapes upstreams use.

    Anthropic ``{"type":"error","error":{"type","message"}}``; OpenAI ``{"error":{"message",
    "type","param","code"}}``; Responses ``error`` events (flat ``code``/``message``) and
    ``response.failed`` (``response.error``); ``{"error": "text"}``; FastAPI ``{"detail":
    "text"}``; and a list holding one of these (Gemini).
    """
    if depth > 2:
        return None, None
    if isinstance(document, list):
        return _extract(document[0], depth + 1) if document else (None, None)
    if not isinstance(document, dict):
        return None, None
    error = document.get("error")
    if isinstance(error, dict):
        return _text(error.get("message")), _reason(error)
    if isinstance(error, str):
        return _text(error), _reason(document)
    response = document.get("response")
    if isinstance(response, dict):
        return _extract(response, depth + 1)
    message = _text(document.get("message")) or _text(document.get("detail"))
    return message, _reason(document)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _reason(error: Mapping[str, object]) -> str | None:
    code = error.get("code")
    if isinstance(code, str) and code:
        return code
    kind = error.get("type")
    if isinstance(kind, str) and kind and kind not in _GENERIC_TYPES:
        return kind
    return None


def _remove_secrets(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of every secret fragment with ``[redacted]``.

    Uses ``str.find`` per distinct fragment (C speed); at one fragment length, at most one
    distinct fragment starts at any position, so the work is bounded by ``len(text)`` per
    secret plus the searches.
    """
    fragments: set[str] = set()
    for secret in secrets:
        size = min(len(secret), _SECRET_FRAGMENT_CHARS)
        fragments.update(secret[i : i + size] for i in range(len(secret) - size + 1) if size)
    hidden = bytearray(len(text))
    for fragment in fragments:
        start = text.find(fragment)
        while start != -1:
            hidden[start : start + len(fragment)] = b"\x01" * len(fragment)
            start = text.find(fragment, start + 1)
    if not any(hidden):
        return text
    out: list[str] = []
    for i, ch in enumerate(text):
        if not hidden[i]:
            out.append(ch)
        elif i == 0 or not hidden[i - 1]:
            out.append("[redacted]")
    return "".join(out)


def _retry_after(value: str | None) -> str | None:
    # RFC 9110 §10.2.3: delay-seconds or an HTTP date; anything else is dropped.
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_RETRY_AFTER_CHARS:
        return None
    if _DIGITS.fullmatch(value):
        return value
    if not _HTTP_DATE_CHARS.fullmatch(value):
        return None
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value


def _retry_after_ms(value: str | None) -> str | None:
    # The SDKs read it with float() (protocols.md §1.8); accept plain decimals only.
    if value is None:
        return None
    value = value.strip()
    return value if _MILLISECONDS.fullmatch(value) else None


def _should_retry(value: str | None) -> str | None:
    # The SDKs compare with exactly "true" / "false" (protocols.md §1.8).
    if value is None:
        return None
    value = value.strip().lower()
    return value if value in ("true", "false") else None
