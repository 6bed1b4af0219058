"""Tests for the config schema, loader and summary (``trio_gateway._config``).

Plain sync tests. Documents are written as TOML text and parsed with ``tomllib``, so what is
tested is what an operator writes. Secrets use a canary (RELIABILITY.md B10, B13): it must
never appear in an error message, a traceback, a ``repr`` or the ``check-config`` summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
import traceback
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gateway._config import (
    AdminConfig,
    GatewayConfig,
    KeyConfig,
    LedgerConfig,
    MetricsConfig,
    MockUpstreamConfig,
    ModelConfig,
    Price,
    ServerConfig,
    StreamingConfig,
    UpstreamConfig,
    describe_config,
    hash_key,
    load_config,
    parse_config,
)
from trio_gateway._errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config.toml"
DOCS = ROOT / "docs" / "config.md"

CANARY = "sk-CANARY-4f1c9a7e2b5d8c3a"
UPSTREAM = 'name = "up"\nprotocol = "anthropic"\nbase_url = "https://api.example.com"\n'
MODEL = 'name = "m"\nupstreams = ["up"]\n'
KEY = f'name = "k"\nsha256 = "{hash_key("k-secret")}"\n'


def document(
    *, head: str = "", upstream: str = UPSTREAM, model: str = MODEL, key: str = KEY, tail: str = ""
) -> str:
    """A TOML document: ``head`` tables, then one upstream, model and key, then ``tail``."""
    return f"{head}\n[[upstreams]]\n{upstream}\n[[models]]\n{model}\n[[keys]]\n{key}\n{tail}\n"


def parse(text: str, environ: dict[str, str] | None = None) -> GatewayConfig:
    return parse_config(tomllib.loads(text), environ=environ or {})


def error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return str(info.value)


def assert_no_canary(exc: BaseException) -> None:
    rendered = "".join(traceback.format_exception(exc))
    assert CANARY not in rendered
    assert CANARY not in repr(exc)


# --- the shipped config and the documented defaults ------------------------------------------


def test_shipped_config_loads_with_an_empty_environment() -> None:
    config = parse_config(tomllib.loads(SHIPPED.read_text("utf-8")), environ={})
    assert config.server == ServerConfig()
    assert config.streaming == StreamingConfig()
    assert config.ledger == LedgerConfig()
    assert config.metrics == MetricsConfig()
    assert config.admin == AdminConfig()
    assert config.mock_upstream == MockUpstreamConfig(bind="127.0.0.1:8081", interval=0.02)
    assert [(u.name, u.protocol, u.base_url, u.api_key) for u in config.upstreams] == [
        ("mock-anthropic", "anthropic", "http://127.0.0.1:8081", None),
        ("mock-chat", "openai-chat", "http://127.0.0.1:8081/v1", None),
        ("mock-responses", "openai-responses", "http://127.0.0.1:8081/v1", None),
    ]
    price = Price(
        input=Decimal("3.0"),
        output=Decimal("15.0"),
        cache_read=Decimal("0.3"),
        cache_write_5m=Decimal("3.75"),
        cache_write_1h=Decimal("6.0"),
    )
    mock_upstreams = ("mock-anthropic", "mock-chat", "mock-responses")
    assert config.models[:2] == (
        ModelConfig(
            name="demo", upstreams=mock_upstreams, price=price, routing="same-protocol-first"
        ),
        ModelConfig(
            name="mock-*", upstreams=mock_upstreams, price=price, routing="same-protocol-first"
        ),
    )
    via = {model.name: model for model in config.models[2:]}
    assert sorted(via) == ["via-anthropic/*", "via-chat/*", "via-responses/*"]
    responses = via["via-responses/*"]
    assert responses.upstream_name("mock-responses", "via-responses/mock-tools") == "mock-tools"
    assert [key.name for key in config.keys] == ["demo"]
    assert config.keys[0].sha256 == hash_key("sk-demo-key")
    assert config.keys[0].models == ("*",)


def test_shipped_config_loads_through_load_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_GATEWAY_METRICS_TOKEN", raising=False)
    monkeypatch.delenv("TRIO_GATEWAY_ADMIN_TOKEN", raising=False)
    config = load_config(SHIPPED)
    assert config.metrics.token is None
    assert config.admin.token is None
    assert config.model_for("mock-stall-headers") is config.models[1]


def test_shipped_commented_examples_parse_when_uncommented() -> None:
    """The commented real-upstream sections are valid TOML and valid config."""
    lines = []
    for line in SHIPPED.read_text("utf-8").splitlines():
        body = line.removeprefix("# ")
        is_code = body.startswith("[[") or re.match(r"[a-z_0-9]+ = ", body)
        lines.append(body if line.startswith("# ") and is_code else line)
    environ = {"ANTHROPIC_API_KEY": CANARY, "OPENAI_API_KEY": CANARY + "-openai"}
    config = parse("\n".join(lines), environ)
    assert config.upstream("anthropic").api_key == CANARY
    assert config.upstream("anthropic").headers == {"anthropic-version": "2023-06-01"}
    assert config.upstream("openai").base_url == "https://api.openai.com/v1"
    claude = config.model_for("claude-sonnet-4-5")
    assert claude is not None
    assert claude.upstreams == ("anthropic", "openai")
    assert claude.upstream_model == {"openai": "gpt-5"}
    assert config.keys[0].budget_usd == Decimal("50.0")
    assert config.keys[0].max_concurrency == 8
    assert CANARY not in describe_config(config)


def test_documented_defaults() -> None:
    """RELIABILITY.md §5: every timer and limit is a key with a stated, tested default."""
    assert dataclasses.asdict(ServerConfig()) == {
        "bind": "127.0.0.1:8080",
        "graceful_timeout": 60.0,
        "accept_grace": 5.0,
        "max_request_bytes": 33554432,
        "max_header_bytes": 65536,
        "tcp_user_timeout": 30.0,
        "backlog": 2048,
        "workers": 1,
        "log_level": "info",
        "log_format": "json",
    }
    assert dataclasses.asdict(StreamingConfig()) == {
        "keepalive_interval": 10.0,
        "commit_delay": 5.0,
        "first_byte_timeout": 300.0,
        "data_interval_timeout": 180.0,
        "max_event_bytes": 83886080,
        "on_client_disconnect": "drain",
        "drain_timeout": 300.0,
        "max_concurrent_drains": 256,
        "connect_timeout": 10.0,
        "client_buffer_bytes": 262144,
        "settle_timeout": 5.0,
    }
    assert LedgerConfig().path == "trio-gateway.db"
    assert MetricsConfig() == MetricsConfig(
        token_env="TRIO_GATEWAY_METRICS_TOKEN", token=None, per_key_labels=False
    )
    assert AdminConfig() == AdminConfig(token_env="TRIO_GATEWAY_ADMIN_TOKEN", token=None)
    assert MockUpstreamConfig() == MockUpstreamConfig(bind="127.0.0.1:8081", interval=0.02)
    assert Price() == Price(
        input=Decimal(0),
        output=Decimal(0),
        cache_read=Decimal(0),
        cache_write_5m=Decimal(0),
        cache_write_1h=Decimal(0),
    )


def test_omitted_sections_and_keys_take_the_defaults() -> None:
    config = parse(document())
    assert config.server == ServerConfig()
    assert config.streaming == StreamingConfig()
    assert config.ledger == LedgerConfig()
    assert config.metrics == MetricsConfig()
    assert config.admin == AdminConfig()
    assert config.mock_upstream is None
    assert config.upstreams == (
        UpstreamConfig(name="up", protocol="anthropic", base_url="https://api.example.com"),
    )
    assert config.models == (ModelConfig(name="m", upstreams=("up",)),)
    key = config.keys[0]
    assert (key.key_env, key.budget_usd, key.budget_period) == (None, None, "month")
    assert (key.max_concurrency, key.models) == (None, ("*",))


def test_an_empty_mock_upstream_section_enables_the_mock_with_defaults() -> None:
    assert parse(document(head="[mock_upstream]")).mock_upstream == MockUpstreamConfig()


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "streaming": StreamingConfig,
    "ledger": LedgerConfig,
    "metrics": MetricsConfig,
    "admin": AdminConfig,
    "mock_upstream": MockUpstreamConfig,
    "keys": KeyConfig,
    "upstreams": UpstreamConfig,
    "models": ModelConfig,
    "price": Price,
}
RESOLVED = {"token", "api_key"}  # filled from the environment, never written in the file


@pytest.mark.parametrize("section", SECTIONS)
def test_every_key_is_in_the_shipped_config_and_the_docs(section: str) -> None:
    shipped, docs = SHIPPED.read_text("utf-8"), DOCS.read_text("utf-8")
    assert f"[{section}]" in docs or section == "price"
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name in RESOLVED:
            continue
        assert re.search(rf"^(# )?{f.name} = ", shipped, re.M) or f"{f.name} = " in shipped, f.name
        assert f"`{f.name}`" in docs, f.name


# --- types and ranges ------------------------------------------------------------------------


def test_ints_are_accepted_for_seconds_and_become_floats() -> None:
    config = parse(document(head="[server]\ngraceful_timeout = 30\n[streaming]\ncommit_delay = 0"))
    assert config.server.graceful_timeout == pytest.approx(30)
    assert isinstance(config.server.graceful_timeout, float)
    assert config.streaming.commit_delay == pytest.approx(0)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("[server]\nworkers = true", "server.workers: must be an integer, not boolean"),
        ("[server]\nworkers = 1.5", "server.workers: must be an integer, not float"),
        ("[server]\nworkers = 0", "server.workers: must be >= 1"),
        ("[server]\nbacklog = -1", "server.backlog: must be >= 1"),
        ("[server]\nmax_request_bytes = 0", "server.max_request_bytes: must be >= 1"),
        ("[server]\nmax_header_bytes = '64k'", "server.max_header_bytes: must be an integer"),
        ("[server]\ngraceful_timeout = true", "server.graceful_timeout: must be a number"),
        ("[server]\ngraceful_timeout = '60'", "server.graceful_timeout: must be a number"),
        ("[server]\ngraceful_timeout = -1", "server.graceful_timeout: must be >= 0"),
        ("[server]\ngraceful_timeout = inf", "server.graceful_timeout: must be finite"),
        ("[server]\ngraceful_timeout = nan", "server.graceful_timeout: must be finite"),
        ("[server]\ntcp_user_timeout = -0.5", "server.tcp_user_timeout: must be >= 0"),
        ("[server]\ngraceful_timeout = 1979-05-27", "server.graceful_timeout: must be a number"),
        ("[server]\nlog_level = 'verbose'", "server.log_level: must be one of 'debug', "),
        ("[server]\nlog_level = 1", "server.log_level: must be a string, not integer"),
        ("[streaming]\nkeepalive_interval = -1", "streaming.keepalive_interval: must be >= 0"),
        ("[streaming]\ncommit_delay = -1", "streaming.commit_delay: must be >= 0"),
        ("[streaming]\nfirst_byte_timeout = 0", "streaming.first_byte_timeout: must be > 0"),
        ("[streaming]\ndata_interval_timeout = 0", "streaming.data_interval_timeout: must be > 0"),
        ("[streaming]\ndrain_timeout = 0", "streaming.drain_timeout: must be > 0"),
        ("[streaming]\nconnect_timeout = 0.0", "streaming.connect_timeout: must be > 0"),
        ("[streaming]\nsettle_timeout = 0", "streaming.settle_timeout: must be > 0"),
        ("[streaming]\nmax_event_bytes = 0", "streaming.max_event_bytes: must be >= 1"),
        ("[streaming]\nclient_buffer_bytes = 0", "streaming.client_buffer_bytes: must be >= 1"),
        ("[streaming]\nmax_concurrent_drains = 0", "streaming.max_concurrent_drains: must be >="),
        ("[streaming]\non_client_disconnect = 'x'", "streaming.on_client_disconnect: must be one"),
        ("[ledger]\npath = ''", "ledger.path: must not be empty"),
        ("[ledger]\nwrite_ahead_sync = 'off'", "ledger.write_ahead_sync: must be one"),
        ('[ledger]\npath = "a\\u0000b"', "ledger.path: must not contain control characters"),
        ("[metrics]\nper_key_labels = 'yes'", "metrics.per_key_labels: must be true or false"),
        ("[metrics]\ntoken_env = 5", "metrics.token_env: must be the name of an environment"),
        ("[mock_upstream]\ninterval = -1", "mock_upstream.interval: must be >= 0"),
        ("server = 5", "server: must be a table, not integer"),
        ("streaming = []", "streaming: must be a table, not array"),
    ],
)
def test_wrong_types_and_ranges_name_the_key(head: str, expected: str) -> None:
    assert error(document(head=head)).startswith(expected)


@pytest.mark.parametrize("bind", ["0.0.0.0:0", "localhost:9000", "[::1]:8080", "[::]:65535"])
def test_valid_binds(bind: str) -> None:
    assert parse(document(head=f'[server]\nbind = "{bind}"')).server.bind == bind


@pytest.mark.parametrize(
    "bind",
    [
        "localhost",
        ":8080",
        "::1:8080",
        "[::1]:65536",
        "[nothost]:80",
        "host:http",
        "a b:80",
        "127.0.0.1:",
        "[::1]8080",
        "host:\uff18\uff10",
    ],
)
def test_invalid_binds(bind: str) -> None:
    assert error(document(head=f'[server]\nbind = "{bind}"')).startswith("server.bind: ")


def test_invalid_mock_upstream_bind() -> None:
    assert error(document(head="[mock_upstream]\nbind = 'x'")).startswith("mock_upstream.bind: ")


# --- unknown keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "upstream", "model", "key", "expected"),
    [
        (
            "[streaming]\nkeepalive_intervl = 1",
            UPSTREAM,
            MODEL,
            KEY,
            "streaming.keepalive_intervl: unknown key (did you mean 'keepalive_interval'?)",
        ),
        ("[server]\nhost = 'x'", UPSTREAM, MODEL, KEY, "server.host: unknown key"),
        ("[ledger]\nwal = true", UPSTREAM, MODEL, KEY, "ledger.wal: unknown key"),
        ("[admin]\nport = 1", UPSTREAM, MODEL, KEY, "admin.port: unknown key"),
        ("[mock_upstream]\nport = 1", UPSTREAM, MODEL, KEY, "mock_upstream.port: unknown key"),
        (
            "[serverr]\nbind = 'x'",
            UPSTREAM,
            MODEL,
            KEY,
            "serverr: unknown key (did you mean 'server'?)",
        ),
        ("", UPSTREAM + "timeout = 5\n", MODEL, KEY, "upstreams[0].timeout: unknown key"),
        ("", UPSTREAM, MODEL + "fallback = []\n", KEY, "models[0].fallback: unknown key"),
        (
            "",
            UPSTREAM,
            MODEL + "price = { inputs = 1 }\n",
            KEY,
            "models[0].price.inputs: unknown key (did you mean 'input'?)",
        ),
        ("", UPSTREAM, MODEL, KEY + "budget = 5\n", "keys[0].budget: unknown key"),
        ("", UPSTREAM, MODEL, KEY + '"odd key" = 5\n', 'keys[0]."odd key": unknown key'),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(
    head: str, upstream: str, model: str, key: str, expected: str
) -> None:
    message = error(document(head=head, upstream=upstream, model=model, key=key))
    assert message == expected or message.startswith(expected)


@pytest.mark.parametrize(
    ("head", "upstream", "key", "expected", "hint"),
    [
        ("", UPSTREAM + f'api_key = "{CANARY}"\n', KEY, "upstreams[0].api_key", "api_key_env"),
        (f'[metrics]\ntoken = "{CANARY}"', UPSTREAM, KEY, "metrics.token", "token_env"),
        (f'[admin]\ntoken = "{CANARY}"', UPSTREAM, KEY, "admin.token", "token_env"),
        ("", UPSTREAM, f'name = "k"\nkey = "{CANARY}"\n', "keys[0].key", "key_env"),
        ("", UPSTREAM, f'name = "k"\napi_key = "{CANARY}"\n', "keys[0].api_key", "use key_env"),
        (f'[server]\nsecret = "{CANARY}"', UPSTREAM, KEY, "server.secret", "never go in the"),
        ("", UPSTREAM + f'Token = "{CANARY}"\n', KEY, "upstreams[0].Token", "use api_key_env"),
    ],
)
def test_literal_secrets_are_unknown_keys_with_a_hint_and_not_echoed(
    head: str, upstream: str, key: str, expected: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(document(head=head, upstream=upstream, key=key))
    message = str(info.value)
    assert message.startswith(f"{expected}: unknown key")
    assert hint in message
    assert_no_canary(info.value)


# --- the three arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["upstreams", "models", "keys"])
def test_at_least_one_upstream_model_and_key_is_required(missing: str) -> None:
    data = tomllib.loads(document())
    del data[missing]
    with pytest.raises(ConfigError, match=rf"^{missing}: at least one \[\[{missing}\]\] entry"):
        parse_config(data, environ={})
    data[missing] = []
    with pytest.raises(ConfigError, match=rf"^{missing}: at least one"):
        parse_config(data, environ={})


@pytest.mark.parametrize("array", ["upstreams", "models", "keys"])
def test_arrays_must_be_arrays_of_tables(array: str) -> None:
    data = tomllib.loads(document())
    data[array] = {"name": "x"}
    with pytest.raises(ConfigError, match=rf"^{array}: must be an array of tables"):
        parse_config(data, environ={})
    data[array] = ["x"]
    with pytest.raises(ConfigError, match=rf"^{array}\[0\]: must be a table, not string"):
        parse_config(data, environ={})


def test_huge_integers_for_seconds_are_not_finite() -> None:
    data = tomllib.loads(document())
    data["streaming"] = {"drain_timeout": 10**400}
    with pytest.raises(ConfigError, match=r"^streaming\.drain_timeout: must be finite"):
        parse_config(data, environ={})


def test_the_document_itself_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        parse_config([], environ={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            f"[[upstreams]]\n{UPSTREAM}",
            "upstreams[1].name: duplicate name, the same as upstreams[0].name",
        ),
        (f"[[models]]\n{MODEL}", "models[1].name: duplicate name, the same as models[0].name"),
        (
            f'[[keys]]\nname = "k"\nsha256 = "{"0" * 64}"',
            "keys[1].name: duplicate name, the same as keys[0].name",
        ),
        (
            f'[[keys]]\nname = "k2"\nsha256 = "{hash_key("k-secret")}"',
            "keys[1].sha256: duplicate key, the same as keys[0].sha256",
        ),
        (
            '[[keys]]\nname = "k2"\nkey_env = "K2"',
            "keys[1].key_env: duplicate key, the same as keys[0].sha256",
        ),
    ],
)
def test_duplicates_are_rejected(tail: str, expected: str) -> None:
    assert error(document(tail=tail), {"K2": "k-secret"}) == expected


# --- upstreams -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "given", "stored"),
    [
        ("anthropic", "https://api.anthropic.com", "https://api.anthropic.com"),
        ("anthropic", "https://api.anthropic.com/", "https://api.anthropic.com"),
        (
            "anthropic",
            "HTTPS://proxy.example.com:8443/anthropic/",
            "https://proxy.example.com:8443/anthropic",
        ),
        ("openai-chat", "https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("openai-chat", "https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("openai-responses", "http://127.0.0.1:8081/v1", "http://127.0.0.1:8081/v1"),
        ("openai-chat", "http://[::1]:9000/openai/v1", "http://[::1]:9000/openai/v1"),
        (
            "openai-chat",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "https://generativelanguage.googleapis.com/v1beta/openai",
        ),
    ],
)
def test_base_url_convention(protocol: str, given: str, stored: str) -> None:
    upstream = f'name = "up"\nprotocol = "{protocol}"\nbase_url = "{given}"\n'
    assert parse(document(upstream=upstream)).upstreams[0].base_url == stored


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("ftp://example.com", "upstreams[0].base_url: must be an http or https URL"),
        ("example.com", "upstreams[0].base_url: must be an http or https URL"),
        ("https://", "upstreams[0].base_url: must be an http or https URL"),
        ("https://host:99999", "upstreams[0].base_url: must be an http or https URL"),
        ("https://[::1", "upstreams[0].base_url: must be an http or https URL"),
        ("https://exa mple.com", "upstreams[0].base_url: must be an http or https URL"),
        ("https://user:pw@example.com", "upstreams[0].base_url: must not contain credentials"),
        ("https://example.com/?key=1", "upstreams[0].base_url: must not have a query string"),
        ("https://example.com/#frag", "upstreams[0].base_url: must not have a query string"),
        ("https://api.anthropic.com/v1", "upstreams[0].base_url: for protocol 'anthropic'"),
        ("https://api.anthropic.com/v1/", "upstreams[0].base_url: for protocol 'anthropic'"),
        ("", "upstreams[0].base_url: must not be empty"),
    ],
)
def test_base_url_errors(base_url: str, expected: str) -> None:
    upstream = f'name = "up"\nprotocol = "anthropic"\nbase_url = "{base_url}"\n'
    assert error(document(upstream=upstream)).startswith(expected)


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        (
            'protocol = "anthropic"\nbase_url = "https://x"',
            "upstreams[0].name: required key is missing",
        ),
        ('name = "up"\nbase_url = "https://x"', "upstreams[0].protocol: required key is missing"),
        ('name = "up"\nprotocol = "anthropic"', "upstreams[0].base_url: required key is missing"),
        (
            'name = "up"\nprotocol = "gemini"\nbase_url = "https://x"',
            "upstreams[0].protocol: must be one of 'anthropic', 'openai-chat', 'openai-responses'",
        ),
        (UPSTREAM + "max_concurrency = 0", "upstreams[0].max_concurrency: must be >= 1"),
        (UPSTREAM + "max_concurrency = true", "upstreams[0].max_concurrency: must be an integer"),
        (
            'name = "a b"\nprotocol = "anthropic"\nbase_url = "https://x"',
            "upstreams[0].name: must be at most 200 characters, without spaces",
        ),
        (
            'name = ""\nprotocol = "anthropic"\nbase_url = "https://x"',
            "upstreams[0].name: must not be empty",
        ),
        (UPSTREAM + 'api_key_env = "1ABC"', "upstreams[0].api_key_env: is not a valid environment"),
        (
            UPSTREAM + 'api_key_env = "MISSING_KEY"',
            "upstreams[0].api_key_env: environment variable MISSING_KEY is not set",
        ),
        (
            UPSTREAM + 'api_key_env = "EMPTY_KEY"',
            "upstreams[0].api_key_env: environment variable EMPTY_KEY is empty",
        ),
        (
            UPSTREAM + 'api_key_env = "NEWLINE_KEY"',
            "upstreams[0].api_key_env: the value of environment variable NEWLINE_KEY must be",
        ),
        (
            UPSTREAM + 'api_key_env = "lower_secretish"',
            "upstreams[0].api_key_env: the named environment variable is not set",
        ),
    ],
)
def test_upstream_errors(upstream: str, expected: str) -> None:
    environ = {"EMPTY_KEY": "", "NEWLINE_KEY": CANARY + "\n"}
    with pytest.raises(ConfigError) as info:
        parse(document(upstream=upstream), environ)
    assert str(info.value).startswith(expected)
    assert_no_canary(info.value)


def test_upstream_api_key_is_resolved_and_hidden() -> None:
    config = parse(document(upstream=UPSTREAM + 'api_key_env = "UP_KEY"'), {"UP_KEY": CANARY})
    upstream = config.upstream("up")
    assert upstream.api_key == CANARY
    assert upstream.api_key_env == "UP_KEY"
    for text in (repr(config), str(config), repr(upstream), describe_config(config)):
        assert CANARY not in text


def test_upstream_lookup() -> None:
    config = parse(
        document(
            tail='[[upstreams]]\nname = "b"\nprotocol = "openai-chat"\n'
            'base_url = "https://b.example/v1"'
        )
    )
    assert config.upstream("b").protocol == "openai-chat"
    with pytest.raises(KeyError):
        config.upstream("nope")


def test_headers_are_lowercased_and_read_only() -> None:
    upstream = UPSTREAM + 'headers = { Anthropic-Version = "2023-06-01", "x-tag" = "a b" }'
    headers = parse(document(upstream=upstream)).upstreams[0].headers
    assert headers == {"anthropic-version": "2023-06-01", "x-tag": "a b"}
    assert isinstance(headers, MappingProxyType)
    with pytest.raises(TypeError):
        headers["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            f'{{ authorization = "Bearer {CANARY}" }}',
            "upstreams[0].headers.authorization: credentials never go in the file",
        ),
        (f'{{ X-Api-Key = "{CANARY}" }}', "upstreams[0].headers.X-Api-Key: credentials never"),
        (f'{{ cookie = "{CANARY}" }}', "upstreams[0].headers.cookie: credentials never"),
        ('{ Host = "evil.example" }', "upstreams[0].headers.Host: is set by the gateway"),
        ('{ connection = "close" }', "upstreams[0].headers.connection: is set by the gateway"),
        ('{ content-length = "1" }', "upstreams[0].headers.content-length: is set by the gat"),
        ('{ transfer-encoding = "chunked" }', "upstreams[0].headers.transfer-encoding: is set"),
        ('{ "bad header" = "x" }', 'upstreams[0].headers."bad header": is not a valid header'),
        (f'{{ x-a = "{CANARY}\\r\\nx-b: y" }}', "upstreams[0].headers.x-a: must be a non-empty"),
        ('{ x-a = "" }', "upstreams[0].headers.x-a: must be a non-empty string"),
        ("{ x-a = 1 }", "upstreams[0].headers.x-a: must be a non-empty string"),
        ('{ x-a = "1", X-A = "2" }', "upstreams[0].headers.X-A: duplicate header"),
        ('"x-a: 1"', "upstreams[0].headers: must be a table"),
    ],
)
def test_header_errors(headers: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(document(upstream=f"{UPSTREAM}headers = {headers}"))
    assert str(info.value).startswith(expected)
    assert_no_canary(info.value)


# --- models ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            'name = "m"\nupstreams = ["x"]',
            "models[0].upstreams[0]: unknown upstream 'x' (configured: 'up')",
        ),
        ('name = "m"\nupstreams = ["up", "up"]', "models[0].upstreams[1]: upstream listed twice"),
        ('name = "m"\nupstreams = []', "models[0].upstreams: must not be empty"),
        ('name = "m"\nupstreams = "up"', "models[0].upstreams: must be an array of strings"),
        ('name = "m"\nupstreams = [1]', "models[0].upstreams[0]: must be a string, not integer"),
        ('name = "m"', "models[0].upstreams: required key is missing"),
        ('upstreams = ["up"]', "models[0].name: required key is missing"),
        (
            MODEL + 'upstream_model = { other = "gpt-5" }',
            "models[0].upstream_model.other: not one of this model's upstreams",
        ),
        (MODEL + "upstream_model = { up = 5 }", "models[0].upstream_model.up: must be a string"),
        (MODEL + 'upstream_model = "gpt-5"', "models[0].upstream_model: must be a table"),
        (MODEL + "price = 3.0", "models[0].price: must be a table, not float"),
        (MODEL + "price = { input = -1 }", "models[0].price.input: must be >= 0"),
        (MODEL + 'price = { output = "abc" }', "models[0].price.output: must be a decimal number"),
        (MODEL + "price = { cache_read = true }", "models[0].price.cache_read: must be a number"),
        (MODEL + "price = { cache_write_5m = nan }", "models[0].price.cache_write_5m: must be fin"),
        (MODEL + 'price = { cache_write_1h = "Infinity" }', "models[0].price.cache_write_1h: must"),
    ],
)
def test_model_errors(model: str, expected: str) -> None:
    assert error(document(model=model)).startswith(expected)


def test_unknown_upstream_in_a_later_model() -> None:
    message = error(document(tail='[[models]]\nname = "n"\nupstreams = ["up", "x"]'))
    assert message.startswith("models[1].upstreams[1]: unknown upstream 'x'")


def test_prices_are_exact_decimals() -> None:
    model = (
        MODEL + 'price = { input = 3, output = 15.0, cache_read = 0.30, cache_write_5m = "3.75" }'
    )
    price = parse(document(model=model)).models[0].price
    assert price == Price(
        input=Decimal(3),
        output=Decimal("15.0"),
        cache_read=Decimal("0.3"),
        cache_write_5m=Decimal("3.75"),
        cache_write_1h=Decimal(0),
    )
    assert price is not None
    assert str(price.cache_read) == "0.3"
    assert all(isinstance(getattr(price, f.name), Decimal) for f in dataclasses.fields(price))


def test_upstream_model_renames() -> None:
    tail = '[[upstreams]]\nname = "oa"\nprotocol = "openai-chat"\nbase_url = "https://o/v1"'
    model = 'name = "m"\nupstreams = ["up", "oa"]\nupstream_model = { oa = "gpt-5" }'
    config = parse(document(model=model, tail=tail))
    assert config.models[0].upstream_model == {"oa": "gpt-5"}
    assert config.models[0].upstreams == ("up", "oa")


def test_model_for_prefers_exact_names_then_the_first_matching_pattern() -> None:
    tail = "".join(
        f'[[models]]\nname = "{name}"\nupstreams = ["up"]\n'
        for name in ["mock-*", "mock-special", "claude-?", "*"]
    )
    config = parse(document(model='name = "mock-x*"\nupstreams = ["up"]', tail=tail))
    names = [model.name for model in config.models]
    assert names == ["mock-x*", "mock-*", "mock-special", "claude-?", "*"]
    assert config.model_for("mock-special") is config.models[2]  # exact beats an earlier glob
    assert config.model_for("mock-xy") is config.models[0]  # first glob in file order
    assert config.model_for("mock-a") is config.models[1]
    assert config.model_for("mock-*") is config.models[1]  # exact on the pattern's own name
    assert config.model_for("claude-3") is config.models[3]
    assert config.model_for("MOCK-a") is config.models[4]  # case-sensitive
    assert config.model_for("anything") is config.models[4]


def test_upstream_name_renames_and_substitutes_the_star() -> None:
    tail = (
        '[[upstreams]]\nname = "oa"\nprotocol = "openai-chat"\nbase_url = "https://o/v1"\n'
        '[[models]]\nname = "via/*"\nupstreams = ["up", "oa"]\n'
        'upstream_model = { up = "*", oa = "gpt-*-mini" }\n'
        '[[models]]\nname = "pre-*-post"\nupstreams = ["up"]\n'
        'upstream_model = { up = "x*y" }\n'
        "default_max_tokens = 1000\n"
    )
    fixed_model = 'name = "fixed"\nupstreams = ["up", "oa"]\nupstream_model = { oa = "gpt-5" }'
    config = parse(document(model=fixed_model, tail=tail))
    fixed, via, pre = config.models
    assert fixed.upstream_name("oa", "fixed") == "gpt-5"
    assert fixed.upstream_name("up", "fixed") == "fixed"  # no rename: the caller's name
    assert via.upstream_name("up", "via/claude-3") == "claude-3"
    assert via.upstream_name("oa", "via/5") == "gpt-5-mini"
    assert pre.upstream_name("up", "pre-mid-post") == "xmidy"
    assert (fixed.default_max_tokens, pre.default_max_tokens) == (4096, 1000)
    assert fixed.routing == "ordered"


@pytest.mark.parametrize("name", ["two*stars*", "no-star", "q?*"])
def test_a_star_rename_needs_a_single_star_pattern(name: str) -> None:
    model = f'name = "{name}"\nupstreams = ["up"]\nupstream_model = {{ up = "*" }}'
    with pytest.raises(ConfigError, match=r"models\[0\]\.upstream_model\.up: .*exactly one"):
        parse(document(model=model))


def test_model_for_without_a_catch_all() -> None:
    config = parse(document(model='name = "demo"\nupstreams = ["up"]'))
    assert config.model_for("demo") is config.models[0]
    assert config.model_for("demo2") is None
    assert config.model_for("") is None


# --- keys ------------------------------------------------------------------------------------


def test_hash_key() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_key("clé") == hashlib.sha256("clé".encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key(""))


def test_key_env_is_hashed_at_load_time() -> None:
    key = 'name = "alice"\nkey_env = "ALICE_KEY"\nbudget_usd = 0.1\nbudget_period = "day"\n'
    key += 'max_concurrency = 2\nmodels = ["claude-*", "gpt-?"]'
    config = parse(document(key=key), {"ALICE_KEY": CANARY})
    alice = config.keys[0]
    assert alice.sha256 == hash_key(CANARY)
    assert alice.key_env == "ALICE_KEY"
    assert (alice.budget_usd, alice.budget_period) == (Decimal("0.1"), "day")
    assert (alice.max_concurrency, alice.models) == (2, ("claude-*", "gpt-?"))
    for text in (repr(config), repr(alice), describe_config(config)):
        assert CANARY not in text
        assert alice.sha256 not in text


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            f'name = "k"\nsha256 = "{"a" * 64}"\nkey_env = "K"',
            "keys[0]: give exactly one of sha256",
        ),
        ('name = "k"', "keys[0]: give exactly one of sha256"),
        (f'sha256 = "{"a" * 64}"', "keys[0].name: required key is missing"),
        (f'name = "k"\nsha256 = "{"A" * 64}"', "keys[0].sha256: must be 64 lowercase hex"),
        (f'name = "k"\nsha256 = "{"a" * 63}"', "keys[0].sha256: must be 64 lowercase hex"),
        (f'name = "k"\nsha256 = "{CANARY}"', "keys[0].sha256: must be 64 lowercase hex"),
        ('name = "k"\nsha256 = 5', "keys[0].sha256: must be 64 lowercase hex"),
        (f'name = "k"\nkey_env = "{CANARY}"', "keys[0].key_env: is not a valid environment variab"),
        ('name = "k"\nkey_env = "NOT_SET"', "keys[0].key_env: environment variable NOT_SET is not"),
        (KEY + "budget_usd = -1", "keys[0].budget_usd: must be >= 0"),
        (KEY + "budget_usd = true", "keys[0].budget_usd: must be a number or a decimal string"),
        (KEY + 'budget_usd = "lots"', "keys[0].budget_usd: must be a decimal number"),
        (KEY + 'budget_period = "week"', "keys[0].budget_period: must be one of 'day', 'month'"),
        (KEY + "max_concurrency = 0", "keys[0].max_concurrency: must be >= 1"),
        (KEY + "models = []", "keys[0].models: must not be empty"),
        (KEY + 'models = ["a", ""]', "keys[0].models[1]: must not be empty"),
        (KEY + 'models = "*"', "keys[0].models: must be an array of strings"),
        ('name = "a\\tb"\nsha256 = "' + "a" * 64 + '"', "keys[0].name: must not contain control"),
    ],
)
def test_key_errors(key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(document(key=key))
    assert str(info.value).startswith(expected)
    assert_no_canary(info.value)


def test_budget_zero_and_string_budget() -> None:
    assert parse(document(key=KEY + "budget_usd = 0")).keys[0].budget_usd == Decimal(0)
    assert parse(document(key=KEY + 'budget_usd = "12.50"')).keys[0].budget_usd == Decimal("12.50")


# --- metrics and admin tokens ----------------------------------------------------------------


def test_tokens_are_resolved_from_the_environment_and_hidden() -> None:
    environ = {"TRIO_GATEWAY_METRICS_TOKEN": CANARY, "TRIO_GATEWAY_ADMIN_TOKEN": CANARY + "-adm"}
    config = parse(document(head="[metrics]\nper_key_labels = true"), environ)
    assert config.metrics.token == CANARY
    assert config.metrics.per_key_labels is True
    assert config.admin.token == CANARY + "-adm"
    summary = describe_config(config)
    assert "metrics: token set ($TRIO_GATEWAY_METRICS_TOKEN)" in summary
    assert "admin: token set ($TRIO_GATEWAY_ADMIN_TOKEN)" in summary
    for text in (repr(config), repr(config.metrics), repr(config.admin), summary):
        assert CANARY not in text


def test_tokens_unset_or_empty_mean_not_served() -> None:
    environ = {"TRIO_GATEWAY_METRICS_TOKEN": ""}
    config = parse(document(head='[admin]\ntoken_env = "MY_ADMIN"'), environ)
    assert config.metrics.token is None
    assert (config.admin.token_env, config.admin.token) == ("MY_ADMIN", None)
    summary = describe_config(config)
    assert "metrics: token not set ($TRIO_GATEWAY_METRICS_TOKEN), /metrics is not served" in summary
    assert "admin: token not set ($MY_ADMIN)" in summary


def test_empty_token_env_disables_the_token_whatever_the_environment() -> None:
    environ = {"TRIO_GATEWAY_METRICS_TOKEN": CANARY}
    config = parse(document(head='[metrics]\ntoken_env = ""\n[admin]\ntoken_env = ""'), environ)
    assert config.metrics == MetricsConfig(token_env=None, token=None)
    assert config.admin == AdminConfig(token_env=None, token=None)
    assert "metrics: token disabled" in describe_config(config)


def test_token_with_a_trailing_newline_is_rejected_without_echo() -> None:
    environ = {"TRIO_GATEWAY_ADMIN_TOKEN": CANARY + "\n"}
    with pytest.raises(ConfigError, match=r"^admin\.token_env: the value of ") as info:
        parse(document(), environ)
    assert_no_canary(info.value)


def test_invalid_token_env_name_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        parse(document(head=f'[metrics]\ntoken_env = "{CANARY}"'))
    assert str(info.value).startswith("metrics.token_env: is not a valid environment variable")
    assert_no_canary(info.value)


# --- secrets in the wrong place --------------------------------------------------------------

WRONG_FIELDS = [
    ("head", "[server]\nbind = '{}'", "server.bind"),
    ("head", "[server]\nlog_level = '{}'", "server.log_level"),
    ("head", "[streaming]\non_client_disconnect = '{}'", "streaming.on_client_disconnect"),
    ("head", "[streaming]\nconnect_timeout = '{}'", "streaming.connect_timeout"),
    ("head", "[mock_upstream]\nbind = '{}'", "mock_upstream.bind"),
    ("upstream", UPSTREAM + "api_key_env = '{}'", "upstreams[0].api_key_env"),
    ("upstream", 'name = "up"\nprotocol = "{}"\nbase_url = "https://x"', "upstreams[0].protocol"),
    ("upstream", 'name = "up"\nprotocol = "anthropic"\nbase_url = "{}"', "upstreams[0].base_url"),
    (
        "upstream",
        'name = "up"\nprotocol = "anthropic"\nbase_url = "https://x/?k={}"',
        "upstreams[0].base_url",
    ),
    (
        "upstream",
        'name = "up"\nprotocol = "anthropic"\nbase_url = "https://u:{}@x"',
        "upstreams[0].base_url",
    ),
    ("upstream", UPSTREAM + "max_concurrency = '{}'", "upstreams[0].max_concurrency"),
    ("model", 'name = "m"\nupstreams = ["{}"]', "models[0].upstreams[0]"),
    ("model", MODEL + "price = {{ input = '{}' }}", "models[0].price.input"),
    ("key", 'name = "k"\nsha256 = "{}"', "keys[0].sha256"),
    ("key", 'name = "k"\nkey_env = "{}"', "keys[0].key_env"),
    ("key", KEY + "budget_usd = '{}'", "keys[0].budget_usd"),
    ("key", KEY + "budget_period = '{}'", "keys[0].budget_period"),
]


@pytest.mark.parametrize(("part", "template", "path"), WRONG_FIELDS)
def test_a_secret_pasted_into_a_wrong_field_is_never_echoed(
    part: str, template: str, path: str
) -> None:
    """RELIABILITY.md B13. The canary is also the value of a variable the file names."""
    parts = {"head": "", "upstream": UPSTREAM, "model": MODEL, "key": KEY}
    parts[part] = template.format(CANARY)
    tail = '[[upstreams]]\nname = "real"\nprotocol = "anthropic"\nbase_url = "https://r"\n'
    tail += 'api_key_env = "ANTHROPIC_API_KEY"'
    with pytest.raises(ConfigError) as info:
        parse(document(tail=tail, **parts), {"ANTHROPIC_API_KEY": CANARY})
    assert str(info.value).startswith(f"{path}: ")
    assert_no_canary(info.value)


def test_a_referenced_secret_echoed_as_a_name_is_redacted() -> None:
    model = f'name = "m"\nupstreams = ["{CANARY}"]'
    upstream = UPSTREAM + 'api_key_env = "UP_KEY"'
    message = error(document(upstream=upstream, model=model), {"UP_KEY": CANARY})
    assert message.startswith("models[0].upstreams[0]: unknown upstream '<redacted>'")


def test_a_secret_used_as_a_name_is_redacted_from_the_summary() -> None:
    upstream = UPSTREAM + 'api_key_env = "UP_KEY"'
    key = f'name = "{CANARY}"\nsha256 = "{"b" * 64}"'
    config = parse(document(upstream=upstream, key=key), {"UP_KEY": CANARY})
    assert CANARY not in describe_config(config)


@given(pasted=st.text(min_size=8), field_index=st.integers(0, len(WRONG_FIELDS) - 1))
def test_any_pasted_text_fails_cleanly_and_is_never_echoed(pasted: str, field_index: int) -> None:
    """Fuzz the wrong-field cases with arbitrary text: only ConfigError, never the secret."""
    part, template, _ = WRONG_FIELDS[field_index]
    parts = {"head": "", "upstream": UPSTREAM, "model": MODEL, "key": KEY}
    parts[part] = template.format("PLACEHOLDER")
    data = tomllib.loads(document(**parts))
    secret = "sk-" + pasted

    def replace(value: object) -> object:
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        if isinstance(value, str) and "PLACEHOLDER" in value:
            return value.replace("PLACEHOLDER", secret)
        return value

    replaced = replace(data)
    assert isinstance(replaced, dict)
    replaced["upstreams"].append(
        {"name": "r", "protocol": "anthropic", "base_url": "https://r", "api_key_env": "K"}
    )
    try:
        config = parse_config(replaced, environ={"K": secret})
    except ConfigError as exc:
        shown = "".join(traceback.format_exception(exc))
    else:
        shown = describe_config(config)
    assert secret not in shown


TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    section=st.sampled_from([*SECTIONS, "upstreams", "models", "keys"]),
    value=TOML_VALUES,
)
def test_arbitrary_values_only_ever_raise_config_error(section: str, value: object) -> None:
    data = tomllib.loads(document())
    data[section] = value
    try:
        parse_config(data, environ={})
    except ConfigError:
        pass


# --- load_config -----------------------------------------------------------------------------


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(path)


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)


def test_load_config_syntax_error_gives_path_and_line_without_the_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[server]\nbind = "127.0.0.1:8080"\n[[upstreams]]\napi_key = {CANARY}\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: TOML syntax error: ")
    assert "line 4" in message
    assert_no_canary(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[ledger]\npath = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: the config file is not UTF-8"):
        load_config(path)


def test_load_config_reads_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(document(upstream=UPSTREAM + 'api_key_env = "TEST_UPSTREAM_KEY"'))
    monkeypatch.setenv("TEST_UPSTREAM_KEY", CANARY)
    assert load_config(path).upstreams[0].api_key == CANARY
    monkeypatch.delenv("TEST_UPSTREAM_KEY")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        "upstreams[0].api_key_env: environment variable TEST_UPSTREAM_KEY is not set"
    )


# --- the config objects ----------------------------------------------------------------------


def test_config_objects_are_frozen_and_comparable() -> None:
    config = parse(document())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.workers = 2  # type: ignore[misc]
    assert config == parse(document())
    assert isinstance(config.models[0].upstream_model, MappingProxyType)
    assert dataclasses.replace(config, models=config.models).model_for("m") is config.models[0]


def test_key_hash_is_not_in_repr() -> None:
    key = KeyConfig(name="k", sha256=hash_key("x"))
    assert hash_key("x") not in repr(key)


def test_describe_config() -> None:
    head = "[server]\nbind = '0.0.0.0:9000'\nworkers = 4\n[mock_upstream]\ninterval = 0.5"
    upstream = UPSTREAM + 'api_key_env = "UP_KEY"\nmax_concurrency = 3'
    tail = (
        '[[upstreams]]\nname = "free"\nprotocol = "openai-responses"\n'
        'base_url = "http://127.0.0.1:8081/v1"\n'
        '[[models]]\nname = "cheap-*"\nupstreams = ["free", "up"]\n'
        'upstream_model = { up = "claude-haiku" }\n'
        '[[keys]]\nname = "bob"\nkey_env = "BOB_KEY"\nbudget_usd = 12.5\n'
        'budget_period = "total"\nmax_concurrency = 2\nmodels = ["cheap-*"]\n'
    )
    model = MODEL + "price = { input = 3.0, output = 15.0, cache_read = 0.30 }"
    environ = {"UP_KEY": CANARY, "BOB_KEY": CANARY + "-bob"}
    config = parse(document(head=head, upstream=upstream, model=model, tail=tail), environ)
    summary = describe_config(config)
    assert summary.splitlines() == [
        "server: bind 0.0.0.0:9000, workers 4, log level info",
        "ledger: trio-gateway.db",
        "metrics: token not set ($TRIO_GATEWAY_METRICS_TOKEN), /metrics is not served",
        "admin: token not set ($TRIO_GATEWAY_ADMIN_TOKEN), admin routes refuse everyone",
        "mock upstream: bind 127.0.0.1:8081, event interval 0.5 s",
        "upstreams (2):",
        "  up: anthropic https://api.example.com, key set ($UP_KEY), max concurrency 3",
        "  free: openai-responses http://127.0.0.1:8081/v1, key not set",
        "models (2):",
        "  m -> up; USD per million tokens: input 3.0, output 15.0, cache_read 0.3, "
        "cache_write_5m 0, cache_write_1h 0",
        "  cheap-* -> free, up as claude-haiku; no price",
        "keys (2):",
        "  k: sha256 in the file, no budget, models *",
        "  bob: from key_env ($BOB_KEY), budget 12.5 USD per total, max concurrency 2, "
        "models cheap-*",
    ]
    for key in config.keys:
        assert key.sha256 not in summary
    assert CANARY not in summary
