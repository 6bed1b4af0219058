"""The ``trio-gateway`` command line as a user runs it: real processes, real sockets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import pytest
import trio

from trio_gateway._gateway import Gateway
from trio_gateway.app import create_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config.toml"


def _cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_keys_hash_reads_the_key_from_stdin() -> None:
    result = _cli("keys", "hash", stdin="sk-demo-key\n")
    assert result.returncode == 0
    assert result.stdout.strip() == hashlib.sha256(b"sk-demo-key").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)


def test_check_config_on_the_shipped_config() -> None:
    result = _cli("check-config", "--config", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert "mock-anthropic" in result.stdout
    assert hashlib.sha256(b"sk-demo-key").hexdigest() not in result.stdout


def test_check_config_names_the_key_path_and_never_the_secret(tmp_path: Path) -> None:
    bad = SHIPPED.read_text().replace(
        'base_url = "http://127.0.0.1:8081"', 'base_url = "ftp://127.0.0.1:8081"', 1
    )
    path = tmp_path / "bad.toml"
    path.write_text(
        bad + '\n[[upstreams]]\nname = "x"\nprotocol = "anthropic"\n'
        'base_url = "http://127.0.0.1:1"\napi_key_env = "X_KEY"\n'
    )
    result = _cli("check-config", "--config", str(path), env={"X_KEY": "sk-CANARY-cli"})
    assert result.returncode == 2
    assert "upstreams[0].base_url" in result.stderr
    assert "sk-CANARY-cli" not in result.stderr + result.stdout


def test_create_app_reads_the_config_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(SHIPPED.read_text().replace("127.0.0.1:8080", "127.0.0.1:18080"))
    previous = os.environ.get("TRIO_GATEWAY_CONFIG")
    os.environ["TRIO_GATEWAY_CONFIG"] = str(path)
    try:
        app = create_app()
    finally:
        if previous is None:
            del os.environ["TRIO_GATEWAY_CONFIG"]
        else:
            os.environ["TRIO_GATEWAY_CONFIG"] = previous
    assert isinstance(app, Gateway)
    assert app.config.server.bind == "127.0.0.1:18080"


async def test_serve_runs_the_shipped_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    gateway_port, mock_port = _free_port(), _free_port()
    db = tmp_path / "ledger.db"
    config = (
        SHIPPED.read_text()
        .replace("127.0.0.1:8080", f"127.0.0.1:{gateway_port}")
        .replace("127.0.0.1:8081", f"127.0.0.1:{mock_port}")
        .replace('path = "trio-gateway.db"', f'path = "{db}"')
    )
    assert str(db) in config
    path = tmp_path / "config.toml"
    path.write_text(config)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_gateway", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(20):
                while True:
                    try:
                        if (await client.get(base + "/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.1)
        async with (
            anthropic.AsyncAnthropic(base_url=base, api_key="sk-demo-key", max_retries=0) as sdk,
            sdk.messages.stream(
                model="demo", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
            ) as stream,
        ):
            message = await stream.get_final_message()
        assert message.content[0].type == "text"
        assert message.usage.cache_read_input_tokens == 100
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            code = await process.wait()
        assert code == 0
        # The ledger row the request left, through the CLI, both forms.
        as_json = _cli("usage", "--config", str(path), "--json")
        assert as_json.returncode == 0, as_json.stderr
        [row] = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert (row["key"], row["model"], row["outcome"]) == ("demo", "demo", "completed")
        assert row["cache_read_tokens"] == 100
        table = _cli("usage", "--config", str(path), "--key", "demo", "--since", "2020-01-01")
        assert table.returncode == 0, table.stderr
        assert "demo" in table.stdout
        assert row["cost_usd"] in table.stdout
        bad = _cli("usage", "--config", str(path), "--since", "last tuesday")
        assert bad.returncode == 2
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stderr is not None:
            await process.stderr.aclose()


def test_usage_needs_no_upstream_secret(tmp_path: Path) -> None:
    """Reading the ledger must work where the upstream keys are not set (an operator's laptop,
    a cron job): only [ledger] is read, no secret is resolved."""
    db = tmp_path / "ledger.db"
    config = tmp_path / "production.toml"
    config.write_text(
        SHIPPED.read_text().replace('path = "trio-gateway.db"', f'path = "{db}"')
        + '\n[[upstreams]]\nname = "real"\nprotocol = "anthropic"\n'
        'base_url = "https://api.anthropic.com"\napi_key_env = "UNSET_UPSTREAM_KEY_FOR_TEST"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "UNSET_UPSTREAM_KEY_FOR_TEST"}
    assert _cli("check-config", "--config", str(config), env=env).returncode == 2
    missing = _cli("usage", "--config", str(config), env=env)
    assert missing.returncode == 2  # no database yet: a clear error, not a config error
    assert "ledger database not found" in missing.stderr
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE placeholder(x)")  # an existing database, no ledger yet
    connection.close()
    empty = _cli("usage", "--config", str(config), "--json", env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
