"""The gateway's configuration: frozen dataclasses, a pure parser and a thin loader.

Theory of operation: :func:`parse_config` turns the mapping that ``tomllib`` produced into a
:class:`GatewayConfig`, checking everything it can (unknown keys at every level, types, ranges,
names, cross references). It is pure: the environment arrives as an argument, so tests pass a
dict. :func:`load_config` is the only code in the package that reads a file or ``os.environ``.

Invariants:

- Every :class:`~trio_gateway._errors.ConfigError` message starts with the key path, 0-based
  (``upstreams[0].base_url: ...``), and never contains a secret: values taken from the file are
  not echoed (only names are), values of environment variables never are, and as a last line
  of defence any message is scrubbed of the values of the variables the file names in its
  ``*_env`` keys.
- Secrets are never literal in the file: ``*_env`` keys name environment variables. Resolved
  secrets and key hashes are excluded from ``repr``.
- Money is :class:`~decimal.Decimal`; TOML floats become ``Decimal(str(x))``, so ``0.30`` is
  exactly ``Decimal("0.3")``.

Size: this module is over the house budget (STYLE.md §8), about 1000 lines of which a third
are docstrings. The schema is kept as one piece so that every rule about the file sits next to
the dataclass it fills; the natural split, if it grows, is the readers and converters (from
``_Table`` down) into their own private module.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

from ._errors import ConfigError
from ._protocol._names import PROTOCOLS, Protocol
from ._protocol._sse import DEFAULT_MAX_EVENT_BYTES

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "AdminConfig",
    "GatewayConfig",
    "KeyConfig",
    "LedgerConfig",
    "MetricsConfig",
    "MockUpstreamConfig",
    "ModelConfig",
    "Price",
    "ServerConfig",
    "StreamingConfig",
    "UpstreamConfig",
    "describe_config",
    "hash_key",
    "load_config",
    "parse_config",
]

CONFIG_PATH_ENV: Final = "TRIO_GATEWAY_CONFIG"
"""The environment variable that names the config file (DESIGN.md §1)."""

DEFAULT_CONFIG_PATH: Final = "config.toml"
"""The config file used when ``$TRIO_GATEWAY_CONFIG`` is unset (DESIGN.md §1)."""

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
BudgetPeriod: TypeAlias = Literal["day", "month", "total"]
DisconnectPolicy: TypeAlias = Literal["drain", "cancel"]

_LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
LogFormat: TypeAlias = Literal["json", "text"]
_LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("json", "text")
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "::1"})
_BUDGET_PERIODS: Final[tuple[BudgetPeriod, ...]] = ("day", "month", "total")
_DISCONNECT_POLICIES: Final[tuple[DisconnectPolicy, ...]] = ("drain", "cancel")

# POSIX portable environment variable names; 128 is far above any real name.
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Only names in the conventional UPPER_CASE form are echoed back in messages: a value that
# fails this test might be a key pasted into the wrong field.
_ECHOABLE_ENV_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# Names of keys, upstreams and models: they appear in logs, metrics labels and the ledger.
_NAME: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
# RFC 9110 §5.6.2 token: the grammar of a header field name.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Header values, URLs and secrets: visible ASCII (plus inner spaces/tabs for header values).
_HEADER_VALUE: Final = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")
_VISIBLE_ASCII: Final = re.compile(r"[\x21-\x7e]+")
_HOSTNAME: Final = re.compile(r"[A-Za-z0-9._-]{1,253}")
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# Shorter environment values are not scrubbed from messages: that would mangle ordinary words.
_MIN_SCRUBBED_SECRET: Final = 8

# Headers that carry credentials: secrets never go in the file (RELIABILITY.md B13).
_AUTH_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"}
)
# Hop-by-hop headers (RFC 9110 §7.6.1) and the framing headers the gateway itself sets.
_GATEWAY_OWNED_HEADERS: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer"}
    | {"transfer-encoding", "upgrade", "host", "content-length", "content-type"}
    | {"content-encoding"}
)
# Keys someone may write when pasting a secret: the message then says where secrets belong.
_SECRET_KEYS: Final = frozenset({"api_key", "apikey", "key", "token", "secret", "password"})

_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)
_Convert: TypeAlias = Callable[[object, str], _T]


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Section ``[server]``: the listening socket and process-level limits.

    Attributes:
        bind: ``host:port`` to listen on; IPv6 as ``[::1]:8080``; port 0 picks a free port.
        graceful_timeout: seconds in-flight streams get after SIGTERM.
        accept_grace: seconds after SIGTERM during which connections are still accepted
            (readiness 503, new API requests 503) before the listener closes, so a load
            balancer sees the instance leave before connections are refused; part of
            ``graceful_timeout``.
        max_request_bytes: largest request body accepted (413 beyond).
        max_header_bytes: total request header bytes accepted (431 beyond).
        tcp_user_timeout: kernel ``TCP_USER_TIMEOUT`` in seconds on accepted sockets, so a
            client that stops reading is dropped; 0 = off.
        backlog: the listen backlog.
        workers: number of worker processes.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        log_format: ``json`` (one object per line, for log shippers) or ``text``.
    """

    bind: str = "127.0.0.1:8080"
    graceful_timeout: float = 60.0
    accept_grace: float = 5.0
    max_request_bytes: int = 33554432
    max_header_bytes: int = 65536
    tcp_user_timeout: float = 30.0
    backlog: int = 2048
    workers: int = 1
    log_level: LogLevel = "info"
    log_format: LogFormat = "json"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamingConfig:
    """Section ``[streaming]``: the timers and limits of one streamed request (DESIGN.md §4).

    Attributes:
        keepalive_interval: seconds of silence toward the client before a ping; 0 = off.
        commit_delay: seconds the response is held uncommitted waiting for upstream headers.
        first_byte_timeout: deadline for the upstream's response headers.
        data_interval_timeout: limit on upstream silence once headers have arrived.
        max_event_bytes: one SSE event larger than this is an upstream protocol error.
        on_client_disconnect: ``drain`` (keep reading to bill real usage) or ``cancel``.
        drain_timeout: upper bound on draining after the client left.
        max_concurrent_drains: past this, partial usage is billed and the upstream cancelled.
        connect_timeout: deadline for connecting to an upstream.
        client_buffer_bytes: bytes queued for a client that is not reading before it is
            treated as stalled and dropped (the upstream keeps draining for billing).
        settle_timeout: bound on the shielded settle step (ledger, metrics, logs).
    """

    keepalive_interval: float = 10.0
    commit_delay: float = 5.0
    first_byte_timeout: float = 300.0
    data_interval_timeout: float = 180.0
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    on_client_disconnect: DisconnectPolicy = "drain"
    drain_timeout: float = 300.0
    max_concurrent_drains: int = 256
    connect_timeout: float = 10.0
    client_buffer_bytes: int = 262144
    settle_timeout: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    """Section ``[ledger]``.

    Attributes:
        path: the SQLite database file, relative to the working directory.
        write_ahead_sync: SQLite ``synchronous`` level of a commit holding only write-ahead
            rows (``"normal"``: durable across a process crash at once, across a power loss
            at the next settle's commit; ``"full"``: fsynced before the upstream call).
            Settlements are always committed with ``FULL``.
    """

    path: str = "trio-gateway.db"
    write_ahead_sync: Literal["normal", "full"] = "normal"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """Section ``[metrics]``.

    Attributes:
        token_env: the environment variable holding the ``/metrics`` bearer token; ``None``
            (``token_env = ""`` in the file) means ``/metrics`` is never served.
        token: the resolved token; ``None`` when the variable is unset or empty, and then
            ``/metrics`` is not served. Never shown by ``repr``.
        per_key_labels: add a per-key label to metrics (unbounded cardinality; off by default).
        bind: ``host:port`` of a separate listener serving only ``GET /metrics`` (for
            ``trio-gateway serve``); ``None`` = none. Without a token it must be a loopback
            address, and then needs no token.
    """

    token_env: str | None = "TRIO_GATEWAY_METRICS_TOKEN"
    token: str | None = field(default=None, repr=False)
    per_key_labels: bool = False
    bind: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """Section ``[admin]``.

    Attributes:
        token_env: the environment variable holding the admin bearer token; ``None``
            (``token_env = ""`` in the file) disables the admin routes.
        token: the resolved token; ``None`` when unset or empty, and then the admin routes
            refuse every request. Never shown by ``repr``.
    """

    token_env: str | None = "TRIO_GATEWAY_ADMIN_TOKEN"
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyConfig:
    """One ``[[keys]]`` entry: a caller's key.

    Attributes:
        name: the key's name in the ledger, logs and metrics.
        sha256: 64 lowercase hex characters, the SHA-256 of the key; given in the file or
            computed from the value of ``key_env`` at load time. Never shown by ``repr``.
        key_env: the environment variable that held the key, when ``sha256`` was not given.
        budget_usd: spending limit per ``budget_period``; ``None`` = unlimited.
        budget_period: ``day``, ``month`` or ``total``.
        max_concurrency: concurrent requests allowed; ``None`` = unlimited.
        models: glob patterns (:func:`fnmatch.fnmatchcase`) of the models this key may use.
    """

    name: str
    sha256: str = field(repr=False)
    key_env: str | None = None
    budget_usd: Decimal | None = None
    budget_period: BudgetPeriod = "month"
    max_concurrency: int | None = None
    models: tuple[str, ...] = ("*",)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    """One ``[[upstreams]]`` entry: an account at an LLM provider.

    Attributes:
        name: referenced by ``models[].upstreams`` and used in the ledger and metrics.
        protocol: ``anthropic``, ``openai-chat`` or ``openai-responses``.
        base_url: as the provider's SDK takes it: for ``anthropic`` the origin without
            ``/v1``; for ``openai-*`` including ``/v1``. Any path prefix is kept; no trailing
            slash, query, fragment or credentials.
        api_key_env: the environment variable holding the upstream key; ``None`` = no key.
        api_key: the resolved key. Never shown by ``repr``.
        max_concurrency: concurrent requests to this upstream; ``None`` = unlimited.
        headers: static extra headers sent upstream, names lowercased; read-only.
    """

    name: str
    protocol: Protocol
    base_url: str
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_concurrency: int | None = None
    headers: Mapping[str, str] = field(default_factory=_empty_mapping)


Routing = Literal["ordered", "same-protocol-first", "same-protocol-only"]
ROUTINGS: Final[tuple[Routing, ...]] = ("ordered", "same-protocol-first", "same-protocol-only")


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per million tokens, per token kind; exact decimals."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cache_read: Decimal = Decimal(0)
    cache_write_5m: Decimal = Decimal(0)
    cache_write_1h: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """One ``[[models]]`` entry: a model name callers may send.

    Attributes:
        name: an exact name, or a glob pattern such as ``mock-*``.
        upstreams: names of configured upstreams, tried in order (failover).
        upstream_model: per-upstream rename of the model; keys are in ``upstreams``. When
            ``name`` is a pattern with a single ``*`` (``via-chat/*``), a ``*`` in the rename
            stands for the text the caller's name matched there (see :meth:`upstream_name`).
        price: USD per million tokens; ``None`` = no cost is computed.
        routing: how the caller's protocol orders ``upstreams``: ``"ordered"`` (the
            configured order, translating where an upstream speaks another protocol; the
            default, because that order is the contract), ``"same-protocol-first"`` (those
            speaking the caller's protocol first, in their order, then the others), or
            ``"same-protocol-only"`` (never translate for this model).
        default_max_tokens: the output cap sent to an Anthropic upstream for a translated
            request whose caller gave none (Anthropic requires one).
    """

    name: str
    upstreams: tuple[str, ...]
    upstream_model: Mapping[str, str] = field(default_factory=_empty_mapping)
    price: Price | None = None
    routing: Routing = "ordered"
    default_max_tokens: int = 4096

    def upstream_name(self, upstream: str, requested: str) -> str:
        """The model name to send to ``upstream`` for a caller's ``requested`` name.

        Args:
            upstream: the upstream's configured name.
            requested: the model name the caller sent (it matched ``self.name``).

        Returns:
            The rename for ``upstream`` with any ``*`` replaced by the part of ``requested``
            that the ``*`` of ``self.name`` matched, or ``requested`` when there is no rename.
        """
        rename = self.upstream_model.get(upstream)
        if rename is None:
            return requested
        if "*" not in rename:
            return rename
        prefix, _, suffix = self.name.partition("*")
        matched = requested[len(prefix) : len(requested) - len(suffix)]
        return rename.replace("*", matched)


@dataclass(frozen=True, slots=True, kw_only=True)
class MockUpstreamConfig:
    """Section ``[mock_upstream]``: when present, ``trio-gateway serve`` also runs the mock.

    Attributes:
        bind: ``host:port`` of the built-in mock upstream.
        interval: seconds between mock stream events.
    """

    bind: str = "127.0.0.1:8081"
    interval: float = 0.02


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """The whole configuration, as :func:`parse_config` validated it."""

    server: ServerConfig = field(default_factory=ServerConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    keys: tuple[KeyConfig, ...]
    upstreams: tuple[UpstreamConfig, ...]
    models: tuple[ModelConfig, ...]
    mock_upstream: MockUpstreamConfig | None = None
    _models_by_name: Mapping[str, ModelConfig] = field(init=False, repr=False, compare=False)
    _upstreams_by_name: Mapping[str, UpstreamConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Reversed so that, were names ever duplicated, the first one in file order wins.
        models = {model.name: model for model in reversed(self.models)}
        upstreams = {upstream.name: upstream for upstream in reversed(self.upstreams)}
        object.__setattr__(self, "_models_by_name", MappingProxyType(models))
        object.__setattr__(self, "_upstreams_by_name", MappingProxyType(upstreams))

    def model_for(self, name: str) -> ModelConfig | None:
        """Find the model entry serving a requested model name.

        Args:
            name: the model name a caller sent.

        Returns:
            The entry whose name equals ``name``; otherwise the first entry, in file order,
            whose glob pattern matches (:func:`fnmatch.fnmatchcase`); otherwise ``None``.
        """
        exact = self._models_by_name.get(name)
        if exact is not None:
            return exact
        return next((m for m in self.models if fnmatch.fnmatchcase(name, m.name)), None)

    def upstream(self, name: str) -> UpstreamConfig:
        """The upstream called ``name``.

        Raises:
            KeyError: no upstream has that name.
        """
        return self._upstreams_by_name[name]


def hash_key(key: str) -> str:
    """The ``sha256`` form of a caller's key: lowercase hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# --- reading the mapping -------------------------------------------------------------------


def _error(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path or '(document)'}: {message}")


def _join(path: str, key: str) -> str:
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    return f"{path}.{shown}" if path else shown


def _kind(value: object) -> str:
    """The TOML name of a value's type, for messages that must not echo the value."""
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    if isinstance(value, Mapping):
        return "table"
    return kinds.get(type(value), "date/time" if hasattr(value, "isoformat") else "other")


def _not(expected: str, value: object) -> str:
    return f"must be {expected}, not {_kind(value)}"


class _Table:
    """One TOML table being read: knows its path and rejects keys its dataclass lacks."""

    __slots__ = ("_data", "path")

    def __init__(self, value: object, path: str, schema: type, *, resolved: str = "") -> None:
        if not isinstance(value, Mapping):
            raise _error(path, _not("a table", value))
        allowed = [f.name for f in fields(schema) if f.init and f.name != resolved]
        for key in value:
            if key not in allowed:
                raise _error(_join(path, str(key)), _unknown_key(str(key), allowed))
        self._data: Mapping[str, object] = value
        self.path = path

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str, default: object) -> object:
        return self._data.get(key, default)

    def section(self, key: str, schema: type, *, resolved: str = "") -> _Table:
        return _Table(self._data.get(key, {}), self.at(key), schema, resolved=resolved)

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def get(self, key: str, convert: _Convert[_T], default: _T) -> _T:
        if key not in self._data:
            return default
        return convert(self._data[key], self.at(key))

    def require(self, key: str, convert: _Convert[_T]) -> _T:
        if key not in self._data:
            raise _error(self.at(key), "required key is missing")
        return convert(self._data[key], self.at(key))


def _unknown_key(key: str, allowed: Collection[str]) -> str:
    if key.lower() in _SECRET_KEYS:
        hint = "unknown key; secrets never go in the file"
        env_key = next((name for name in allowed if name.endswith("_env")), None)
        if env_key is None:
            return hint
        also = ", or sha256 from `trio-gateway keys hash`" if "sha256" in allowed else ""
        return f"{hint}: use {env_key} to name an environment variable{also}"
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _entries(value: object, path: str) -> Iterator[tuple[object, str]]:
    if not isinstance(value, list):
        raise _error(path, f"must be an array of tables ([[{path}]]), not {_kind(value)}")
    for index, item in enumerate(value):
        yield item, f"{path}[{index}]"


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _error(path, _not("a string", value))
    if not value:
        raise _error(path, "must not be empty")
    if _CONTROL.search(value):
        raise _error(path, "must not contain control characters")
    return value


def _name(value: object, path: str) -> str:
    text = _string(value, path)
    if not _NAME.fullmatch(text):
        raise _error(path, "must be at most 200 characters, without spaces")
    return text


def _names(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _error(path, _not("an array of strings", value))
    if not value:
        raise _error(path, "must not be empty")
    return tuple(_name(item, f"{path}[{index}]") for index, item in enumerate(value))


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _error(path, _not("true or false", value))
    return value


def _seconds(*, positive: bool) -> _Convert[float]:
    def convert(value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _error(path, _not("a number of seconds", value))
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _error(path, "must be finite")
        if number < 0 or (positive and number == 0):
            raise _error(path, "must be > 0" if positive else "must be >= 0")
        return number

    return convert


def _integer(*, minimum: int) -> _Convert[int]:
    def convert(value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(path, _not("an integer", value))
        if value < minimum:
            raise _error(path, f"must be >= {minimum}")
        return value

    return convert


def _choice(choices: tuple[_S, ...]) -> _Convert[_S]:
    def convert(value: object, path: str) -> _S:
        for choice in choices:
            if value == choice:
                return choice
        allowed = ", ".join(repr(choice) for choice in choices)
        if not isinstance(value, str):
            raise _error(path, f"{_not('a string', value)} (one of {allowed})")
        raise _error(path, f"must be one of {allowed}")

    return convert


def _usd(value: object, path: str) -> Decimal:
    # Decimal(str(x)) keeps what the file says: 0.30 becomes Decimal("0.3"), not 0.2999...
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _error(path, _not("a number or a decimal string", value))
    try:
        amount = Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        raise _error(path, "must be a decimal number such as 3.75") from None
    if not amount.is_finite():
        raise _error(path, "must be finite")
    if amount < 0:
        raise _error(path, "must be >= 0")
    return amount


def _price(value: object, path: str) -> Price:
    table = _Table(value, path, Price)
    zero = Decimal(0)
    return Price(
        input=table.get("input", _usd, zero),
        output=table.get("output", _usd, zero),
        cache_read=table.get("cache_read", _usd, zero),
        cache_write_5m=table.get("cache_write_5m", _usd, zero),
        cache_write_1h=table.get("cache_write_1h", _usd, zero),
    )


def _bind(value: object, path: str) -> str:
    text = _string(value, path)
    host, colon, port = text.rpartition(":")
    usage = "must be host:port, such as 127.0.0.1:8080 or [::1]:8080"
    if not colon or not host or not port.isdigit() or not port.isascii():
        raise _error(path, usage)
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _error(path, "the bracketed host must be an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise _error(path, f"{usage} (IPv6 addresses go in brackets)")
    if int(port) > 65535:
        raise _error(path, "the port must be 0-65535")
    return text


def _env_name(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _error(path, _not("the name of an environment variable", value))
    if not _ENV_NAME.fullmatch(value):
        # The value is not echoed: it may be a key pasted into the wrong field.
        raise _error(
            path,
            "is not a valid environment variable name (letters, digits and underscores); "
            "give the variable's name, never the secret itself",
        )
    return value


def _optional_env_name(value: object, path: str) -> str | None:
    return None if value == "" else _env_name(value, path)


def _secret(name: str, path: str, environ: Mapping[str, str], *, required: bool) -> str | None:
    """The value of environment variable ``name``; messages name it but never show its value."""
    echoable = _ECHOABLE_ENV_NAME.fullmatch(name)
    shown = f"environment variable {name}" if echoable else "the named environment variable"
    value = environ.get(name)
    if not value:
        if required:
            raise _error(path, f"{shown} {'is not set' if value is None else 'is empty'}")
        return None
    if not _VISIBLE_ASCII.fullmatch(value):
        raise _error(
            path,
            f"the value of {shown} must be printable ASCII without spaces "
            "(look for a trailing newline)",
        )
    return value


def _sha256(value: object, path: str) -> str:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise _error(
            path, "must be 64 lowercase hex characters, the output of `trio-gateway keys hash`"
        )
    return value


def _base_url(protocol: Protocol) -> _Convert[str]:
    def convert(value: object, path: str) -> str:
        text = _string(value, path)
        bad = "must be an http or https URL"
        if not _VISIBLE_ASCII.fullmatch(text):
            raise _error(path, f"{bad} (ASCII, no spaces)")
        try:
            parts = urlsplit(text)
            _ = parts.port  # urlsplit checks the port only when it is read
        except ValueError:
            raise _error(path, bad) from None
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise _error(path, bad)
        if "@" in parts.netloc:
            raise _error(path, "must not contain credentials; use api_key_env")
        if "?" in text or "#" in text:
            raise _error(path, "must not have a query string or fragment")
        prefix = parts.path.rstrip("/")
        if protocol == "anthropic" and prefix.endswith("/v1"):
            raise _error(
                path,
                "for protocol 'anthropic' give the origin without /v1, as the Anthropic SDK "
                "takes it (the gateway appends /v1/messages)",
            )
        return f"{parts.scheme}://{parts.netloc}{prefix}"

    return convert


def _headers(value: object, path: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _error(path, _not("a table of header names to values", value))
    headers: dict[str, str] = {}
    for raw_name, raw_value in value.items():
        name = str(raw_name).lower()
        where = _join(path, str(raw_name))
        if not _HEADER_NAME.fullmatch(name):
            raise _error(where, "is not a valid header name")
        if name in _AUTH_HEADERS:
            raise _error(where, "credentials never go in the file; use api_key_env")
        if name in _GATEWAY_OWNED_HEADERS:
            raise _error(where, "is set by the gateway and cannot be configured")
        if name in headers:
            raise _error(where, "duplicate header (names are case-insensitive)")
        if not isinstance(raw_value, str) or not _HEADER_VALUE.fullmatch(raw_value):
            raise _error(where, "must be a non-empty string of printable ASCII")
        headers[name] = raw_value
    return MappingProxyType(headers)


def _renames(value: object, path: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _error(path, _not("a table of upstream names to model names", value))
    return MappingProxyType(
        {str(key): _name(item, _join(path, str(key))) for key, item in value.items()}
    )


# --- sections ------------------------------------------------------------------------------


def _server(table: _Table) -> ServerConfig:
    d, get, seconds, size = ServerConfig(), table.get, _seconds(positive=False), _integer(minimum=1)
    return ServerConfig(
        bind=get("bind", _bind, d.bind),
        graceful_timeout=get("graceful_timeout", seconds, d.graceful_timeout),
        accept_grace=get("accept_grace", seconds, d.accept_grace),
        max_request_bytes=get("max_request_bytes", size, d.max_request_bytes),
        max_header_bytes=get("max_header_bytes", size, d.max_header_bytes),
        tcp_user_timeout=get("tcp_user_timeout", seconds, d.tcp_user_timeout),
        backlog=get("backlog", size, d.backlog),
        workers=get("workers", size, d.workers),
        log_level=get("log_level", _choice(_LOG_LEVELS), d.log_level),
        log_format=get("log_format", _choice(_LOG_FORMATS), d.log_format),
    )


def _streaming(table: _Table) -> StreamingConfig:
    d, get, size = StreamingConfig(), table.get, _integer(minimum=1)
    zero_ok, positive = _seconds(positive=False), _seconds(positive=True)
    return StreamingConfig(
        keepalive_interval=get("keepalive_interval", zero_ok, d.keepalive_interval),
        commit_delay=get("commit_delay", zero_ok, d.commit_delay),
        first_byte_timeout=get("first_byte_timeout", positive, d.first_byte_timeout),
        data_interval_timeout=get("data_interval_timeout", positive, d.data_interval_timeout),
        max_event_bytes=get("max_event_bytes", size, d.max_event_bytes),
        on_client_disconnect=get(
            "on_client_disconnect", _choice(_DISCONNECT_POLICIES), d.on_client_disconnect
        ),
        drain_timeout=get("drain_timeout", positive, d.drain_timeout),
        max_concurrent_drains=get("max_concurrent_drains", size, d.max_concurrent_drains),
        connect_timeout=get("connect_timeout", positive, d.connect_timeout),
        client_buffer_bytes=get("client_buffer_bytes", size, d.client_buffer_bytes),
        settle_timeout=get("settle_timeout", positive, d.settle_timeout),
    )


def _token(name: str | None, path: str, environ: Mapping[str, str]) -> str | None:
    return None if name is None else _secret(name, path, environ, required=False)


def _ledger(table: _Table) -> LedgerConfig:
    default = LedgerConfig()
    return LedgerConfig(
        path=table.get("path", _string, default.path),
        write_ahead_sync=table.get(
            "write_ahead_sync", _choice(("normal", "full")), default.write_ahead_sync
        ),
    )


def _metrics(table: _Table, environ: Mapping[str, str]) -> MetricsConfig:
    default = MetricsConfig()
    token_env = table.get("token_env", _optional_env_name, default.token_env)
    token = _token(token_env, table.at("token_env"), environ)
    bind = table.get("bind", _bind, None)
    if bind is not None and token is None:
        host = bind.rpartition(":")[0].strip("[]")
        if host not in _LOOPBACK_HOSTS and not host.startswith("127."):
            raise _error(
                table.at("bind"),
                "without a metrics token the metrics listener must be on loopback "
                "(127.0.0.1 or [::1])",
            )
    return MetricsConfig(
        token_env=token_env,
        token=token,
        per_key_labels=table.get("per_key_labels", _boolean, default.per_key_labels),
        bind=bind,
    )


def _admin(table: _Table, environ: Mapping[str, str]) -> AdminConfig:
    token_env = table.get("token_env", _optional_env_name, AdminConfig().token_env)
    return AdminConfig(token_env=token_env, token=_token(token_env, table.at("token_env"), environ))


def _mock_upstream(table: _Table) -> MockUpstreamConfig:
    default = MockUpstreamConfig()
    return MockUpstreamConfig(
        bind=table.get("bind", _bind, default.bind),
        interval=table.get("interval", _seconds(positive=False), default.interval),
    )


def _upstream(value: object, path: str, environ: Mapping[str, str]) -> UpstreamConfig:
    table = _Table(value, path, UpstreamConfig, resolved="api_key")
    name = table.require("name", _name)
    protocol = table.require("protocol", _choice(PROTOCOLS))
    base_url = table.require("base_url", _base_url(protocol))
    api_key_env = table.get("api_key_env", _env_name, None)
    api_key = None
    if api_key_env is not None:
        api_key = _secret(api_key_env, table.at("api_key_env"), environ, required=True)
    return UpstreamConfig(
        name=name,
        protocol=protocol,
        base_url=base_url,
        api_key_env=api_key_env,
        api_key=api_key,
        max_concurrency=table.get("max_concurrency", _integer(minimum=1), None),
        headers=table.get("headers", _headers, _empty_mapping()),
    )


def _model(value: object, path: str, upstreams: Collection[str]) -> ModelConfig:
    table = _Table(value, path, ModelConfig)
    name = table.require("name", _name)
    chosen = table.require("upstreams", _names)
    for index, upstream in enumerate(chosen):
        where = f"{table.at('upstreams')}[{index}]"
        if upstream not in upstreams:
            known = ", ".join(repr(known) for known in upstreams)
            raise _error(where, f"unknown upstream {upstream!r} (configured: {known})")
        if upstream in chosen[:index]:
            raise _error(where, "upstream listed twice")
    renames = table.get("upstream_model", _renames, _empty_mapping())
    for upstream, rename in renames.items():
        where = _join(table.at("upstream_model"), upstream)
        if upstream not in chosen:
            raise _error(where, "not one of this model's upstreams")
        if "*" in rename and (name.count("*") != 1 or any(ch in name for ch in "?[")):
            raise _error(where, "a '*' in a rename needs a model name pattern with exactly one '*'")
    return ModelConfig(
        name=name,
        upstreams=chosen,
        upstream_model=renames,
        price=table.get("price", _price, None),
        routing=table.get("routing", _choice(ROUTINGS), "ordered"),
        default_max_tokens=table.get("default_max_tokens", _integer(minimum=1), 4096),
    )


def _key(value: object, path: str, environ: Mapping[str, str]) -> KeyConfig:
    table = _Table(value, path, KeyConfig)
    name = table.require("name", _name)
    if table.has("sha256") == table.has("key_env"):
        raise _error(path, "give exactly one of sha256 (from `trio-gateway keys hash`) or key_env")
    key_env = table.get("key_env", _env_name, None)
    if key_env is None:
        digest = table.require("sha256", _sha256)
    else:
        secret = _secret(key_env, table.at("key_env"), environ, required=True)
        assert secret is not None  # required=True raises instead of returning None
        digest = hash_key(secret)
    return KeyConfig(
        name=name,
        sha256=digest,
        key_env=key_env,
        budget_usd=table.get("budget_usd", _usd, None),
        budget_period=table.get("budget_period", _choice(_BUDGET_PERIODS), "month"),
        max_concurrency=table.get("max_concurrency", _integer(minimum=1), None),
        models=table.get("models", _names, ("*",)),
    )


def _array(top: _Table, key: str, parse: Callable[[object, str], _T]) -> tuple[_T, ...]:
    items = tuple(parse(item, path) for item, path in _entries(top.raw(key, []), key))
    if not items:
        raise _error(key, f"at least one [[{key}]] entry is required")
    return items


def _unique(entries: list[tuple[str, str]], *, what: str) -> None:
    """Reject the second of two equal values; ``entries`` are ``(path, value)`` pairs."""
    first: dict[str, str] = {}
    for path, value in entries:
        if value in first:
            raise _error(path, f"duplicate {what}, the same as {first[value]}")
        first[value] = path


def _parse(data: Mapping[str, object], environ: Mapping[str, str]) -> GatewayConfig:
    top = _Table(data, "", GatewayConfig)
    server = _server(top.section("server", ServerConfig))
    streaming = _streaming(top.section("streaming", StreamingConfig))
    ledger = _ledger(top.section("ledger", LedgerConfig))
    metrics = _metrics(top.section("metrics", MetricsConfig, resolved="token"), environ)
    admin = _admin(top.section("admin", AdminConfig, resolved="token"), environ)
    mock_upstream = None
    if top.has("mock_upstream"):
        mock_upstream = _mock_upstream(top.section("mock_upstream", MockUpstreamConfig))

    upstreams = _array(top, "upstreams", lambda item, path: _upstream(item, path, environ))
    _unique([(f"upstreams[{i}].name", u.name) for i, u in enumerate(upstreams)], what="name")
    names = [upstream.name for upstream in upstreams]
    models = _array(top, "models", lambda item, path: _model(item, path, names))
    _unique([(f"models[{i}].name", m.name) for i, m in enumerate(models)], what="name")
    keys = _array(top, "keys", lambda item, path: _key(item, path, environ))
    _unique([(f"keys[{i}].name", k.name) for i, k in enumerate(keys)], what="name")
    _unique(
        [
            (f"keys[{i}].{'sha256' if k.key_env is None else 'key_env'}", k.sha256)
            for i, k in enumerate(keys)
        ],
        what="key",
    )
    return GatewayConfig(
        server=server,
        streaming=streaming,
        ledger=ledger,
        metrics=metrics,
        admin=admin,
        keys=keys,
        upstreams=upstreams,
        models=models,
        mock_upstream=mock_upstream,
    )


def parse_config(data: Mapping[str, object], *, environ: Mapping[str, str]) -> GatewayConfig:
    """Validate a parsed TOML document and build the configuration.

    Pure: reads no file and no process environment.

    Args:
        data: the mapping ``tomllib`` produced.
        environ: the environment in which ``*_env`` keys are resolved.

    Returns:
        The validated configuration, secrets resolved.

    Raises:
        ConfigError: the first problem found; the message starts with the key path and
            contains no secret value.
    """
    try:
        return _parse(data, environ)
    except ConfigError as error:
        # Replace the message in place: a new exception would keep the old one as __context__.
        error.args = (_scrub(str(error), _referenced_secrets(data, environ)),)
        raise


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Last line of defence: replace any secret that made its way into ``text``."""
    longest_first = sorted({s for s in secrets if s and len(s) >= _MIN_SCRUBBED_SECRET}, key=len)
    for secret in reversed(longest_first):
        text = text.replace(secret, "<redacted>")
    return text


def _referenced_secrets(value: object, environ: Mapping[str, str]) -> Iterator[str | None]:
    """Values of the variables named by any ``*_env`` key, at any depth (even a wrong one)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).endswith("_env") and isinstance(item, str):
                yield environ.get(item)
            yield from _referenced_secrets(item, environ)
    elif isinstance(value, list):
        for item in value:
            yield from _referenced_secrets(item, environ)


def _read_toml(path: str | os.PathLike[str]) -> dict[str, object]:
    shown = os.fspath(path)
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{shown}: cannot read the config file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: the config file is not UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        # tomllib's messages name keys and positions, never values.
        raise ConfigError(f"{shown}: TOML syntax error: {error}") from None


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read a TOML config file and resolve its secrets from ``os.environ``.

    Args:
        path: the config file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file cannot be read, is not valid TOML (the message gives the path,
            line and column), or fails validation (see :func:`parse_config`).
    """
    return parse_config(_read_toml(path), environ=os.environ)


def load_ledger_config(path: str | os.PathLike[str]) -> LedgerConfig:
    """Only the ``[ledger]`` section of a config file, validated, with no secret resolved:
    reading the ledger (``trio-gateway usage``) must not need the upstream keys.

    Raises:
        ConfigError: the file cannot be read or its ``[ledger]`` section is invalid.
    """
    data = _read_toml(path)
    return _ledger(_Table(data.get("ledger", {}), "ledger", LedgerConfig))


# --- the summary for `trio-gateway check-config` -------------------------------------------


def describe_config(config: GatewayConfig) -> str:
    """A multi-line human summary of a configuration, for ``trio-gateway check-config``.

    Says whether each secret is set, and never shows a secret value or a key hash.

    Args:
        config: a validated configuration.

    Returns:
        The summary, lines separated by ``\\n``, without a trailing newline.
    """
    lines = [
        f"server: bind {config.server.bind}, workers {config.server.workers}, "
        f"log level {config.server.log_level}",
        f"ledger: {config.ledger.path}",
        _describe_token("metrics", config.metrics.token_env, config.metrics.token),
        _describe_token("admin", config.admin.token_env, config.admin.token),
    ]
    if config.mock_upstream is not None:
        mock = config.mock_upstream
        lines.append(f"mock upstream: bind {mock.bind}, event interval {mock.interval} s")
    lines.append(f"upstreams ({len(config.upstreams)}):")
    for upstream in config.upstreams:
        key = "set" if upstream.api_key is not None else "not set"
        lines.append(
            f"  {upstream.name}: {upstream.protocol} {upstream.base_url}, key {key}"
            f"{_env_suffix(upstream.api_key_env)}{_limit(upstream.max_concurrency)}"
        )
    lines.append(f"models ({len(config.models)}):")
    for model in config.models:
        routes = ", ".join(
            f"{name} as {model.upstream_model[name]}" if name in model.upstream_model else name
            for name in model.upstreams
        )
        lines.append(f"  {model.name} -> {routes}; {_describe_price(model.price)}")
    lines.append(f"keys ({len(config.keys)}):")
    lines.extend(f"  {_describe_key(key)}" for key in config.keys)
    secrets = [config.metrics.token, config.admin.token, *(u.api_key for u in config.upstreams)]
    return _scrub("\n".join(lines), secrets)


def _env_suffix(name: str | None) -> str:
    # Only conventional names are shown: anything else may be a secret in the wrong field.
    return f" (${name})" if name is not None and _ECHOABLE_ENV_NAME.fullmatch(name) else ""


def _describe_token(section: str, token_env: str | None, token: str | None) -> str:
    effect = "/metrics is not served" if section == "metrics" else "admin routes refuse everyone"
    if token_env is None:
        return f"{section}: token disabled, {effect}"
    if token is None:
        return f"{section}: token not set{_env_suffix(token_env)}, {effect}"
    return f"{section}: token set{_env_suffix(token_env)}"


def _describe_price(price: Price | None) -> str:
    if price is None:
        return "no price"
    parts = (f"{f.name} {getattr(price, f.name)}" for f in fields(price))
    return f"USD per million tokens: {', '.join(parts)}"


def _describe_key(key: KeyConfig) -> str:
    source = (
        "sha256 in the file" if key.key_env is None else f"from key_env{_env_suffix(key.key_env)}"
    )
    budget = (
        "no budget"
        if key.budget_usd is None
        else f"budget {key.budget_usd} USD per {key.budget_period}"
    )
    models = ", ".join(key.models)
    return f"{key.name}: {source}, {budget}{_limit(key.max_concurrency)}, models {models}"


def _limit(max_concurrency: int | None) -> str:
    return "" if max_concurrency is None else f", max concurrency {max_concurrency}"
