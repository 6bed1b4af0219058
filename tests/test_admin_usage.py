"""``GET /admin/usage`` (DESIGN §2, §8; RELIABILITY B11): route off without a token, 401
without the right bearer token, 400 on a bad query, otherwise the ledger as JSON lines read
off the trio thread. Driven through a real :class:`Reply` over a recording ``send``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing

from tests.test_usage_report import row, write_ledger
from trio_gateway._admin import is_admin, parse_usage_query, serve_admin_usage
from trio_gateway._asgi import Message, Reply
from trio_gateway._errors import InvalidRequest
from trio_gateway._usage_report import LEDGER_FIELDS

TOKEN: Final = "admin-token-5f2c9e"
BEARER: Final = b"Bearer " + TOKEN.encode()


class SentResponse:
    """A fake ASGI ``send`` that records the messages a :class:`Reply` sends."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(dict(message))

    @property
    def status(self) -> object:
        assert self.messages[0]["type"] == "http.response.start"
        return self.messages[0]["status"]

    def header_values(self, name: bytes) -> list[bytes]:
        headers = self.messages[0]["headers"]
        assert isinstance(headers, list)
        return [value for key, value in headers if key == name]

    @property
    def body(self) -> bytes:
        assert [m["type"] for m in self.messages] == ["http.response.start", "http.response.body"]
        assert self.messages[1].get("more_body", False) is False
        body = self.messages[1]["body"]
        assert isinstance(body, bytes)
        return body

    def error(self) -> Mapping[str, object]:
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        error = parsed["error"]
        assert isinstance(error, dict)
        return error


async def get_usage(
    ledger_path: Path | str,
    *,
    query: bytes = b"",
    authorization: bytes | None = BEARER,
    token: str | None = TOKEN,
) -> SentResponse:
    sent = SentResponse()
    reply = Reply(sent, protocol="openai-chat", request_id="req_admin")
    headers = {} if authorization is None else {b"authorization": authorization}
    await serve_admin_usage(
        reply, headers=headers, query=query, token=token, ledger_path=str(ledger_path)
    )
    assert reply.committed
    assert reply.finished
    return sent


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "trio-gateway.db"
    write_ledger(
        path,
        [
            row("req_1", started_at="2025-03-01T09:00:00.000+00:00", cost="0.01"),
            row("req_2", key="bob", started_at="2025-03-02T09:00:00.000+00:00", cost="1.5E-7"),
            row("req_3", started_at="2025-03-03T09:00:00.000+00:00", cost="0.03", attempt=2),
            row(
                "req_3",
                started_at="2025-03-03T09:00:00.000+00:00",
                outcome="upstream_error",
                cost="0",
            ),
        ],
    )
    return path


def _ids(sent: SentResponse) -> list[tuple[object, object]]:
    return [(obj["request_id"], obj["attempt"]) for obj in map(json.loads, sent.body.splitlines())]


# ---------------------------------------------------------------------------- 200


async def test_all_rows_as_json_lines(ledger: Path) -> None:
    sent = await get_usage(ledger)
    assert sent.status == 200
    assert _ids(sent) == [("req_1", 1), ("req_2", 1), ("req_3", 1), ("req_3", 2)]
    lines = sent.body.decode().split("\n")
    assert lines[-1] == ""
    for line in lines[:-1]:
        parsed = json.loads(line)
        assert list(parsed) == list(LEDGER_FIELDS)
        assert parsed["stream"] is True
    assert json.loads(lines[1])["cost_usd"] == "0.00000015"
    assert sent.header_values(b"content-length") == [str(len(sent.body)).encode()]
    assert sent.header_values(b"cache-control") == [b"no-store"]
    assert sent.header_values(b"x-request-id") == [b"req_admin"]


async def test_one_content_type_header(ledger: Path) -> None:
    sent = await get_usage(ledger)
    assert len(sent.header_values(b"content-type")) == 1


async def test_content_type_is_ndjson(ledger: Path) -> None:
    sent = await get_usage(ledger)
    assert sent.header_values(b"content-type") == [b"application/x-ndjson"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"key=bob", [("req_2", 1)]),
        (b"since=2025-03-02", [("req_2", 1), ("req_3", 1), ("req_3", 2)]),
        (b"key=alice&since=2025-03-02", [("req_3", 1), ("req_3", 2)]),
        # 10:00 at +01:00 is 09:00 UTC (inclusive); "+" must be sent as %2B in a query
        (b"since=2025-03-03T10:00:00%2B01:00", [("req_3", 1), ("req_3", 2)]),
        (b"since=2025-03-03T09:00:00.001Z", []),
        (b"key=carol", []),
        (b"key=al%69ce&since=2025-03-03", [("req_3", 1), ("req_3", 2)]),
    ],
)
async def test_filters(ledger: Path, query: bytes, expected: list[tuple[str, int]]) -> None:
    sent = await get_usage(ledger, query=query)
    assert sent.status == 200
    assert _ids(sent) == expected


async def test_no_ledger_file_yet_is_an_empty_answer(tmp_path: Path) -> None:
    missing = tmp_path / "trio-gateway.db"
    sent = await get_usage(missing)
    assert sent.status == 200
    assert sent.body == b""
    assert not missing.exists()
    memory = await get_usage(":memory:")
    assert memory.status == 200
    assert memory.body == b""


@pytest.mark.parametrize(
    "authorization",
    [
        BEARER,
        b"bearer " + TOKEN.encode(),
        b"BEARER " + TOKEN.encode(),
        b"Bearer   " + TOKEN.encode() + b"  ",
    ],
)
async def test_bearer_forms_accepted(ledger: Path, authorization: bytes) -> None:
    sent = await get_usage(ledger, authorization=authorization)
    assert sent.status == 200


async def test_the_read_does_not_block_the_trio_thread(ledger: Path) -> None:
    # Hold an exclusive lock: the ledger read has to wait for it. On the trio thread that
    # wait would freeze every task; in a worker thread the other tasks keep running.
    locker = sqlite3.connect(ledger, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        result: list[SentResponse] = []

        async def request() -> None:
            result.append(await get_usage(ledger))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(request)
            await trio.testing.wait_all_tasks_blocked()
            assert result == []  # still waiting for the lock, and this task still runs
            locker.execute("ROLLBACK")
        (sent,) = result
        assert sent.status == 200
        assert len(_ids(sent)) == 4
    finally:
        locker.close()


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("token", [None, ""])
async def test_route_off_without_a_token_is_404(ledger: Path, token: str | None) -> None:
    for authorization in (None, BEARER, b"Bearer "):
        sent = await get_usage(ledger, token=token, authorization=authorization)
        assert sent.status == 404
        assert sent.error()["code"] == "not_found"
        assert b"req_1" not in sent.body


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer " + TOKEN[:-1].encode(),
        b"Bearer " + TOKEN.encode() + b"x",
        b"Bearer " + TOKEN.upper().encode(),
        b"Basic " + TOKEN.encode(),
        TOKEN.encode(),
        b"Bearer \xff\xfe",
        b"Bearer " + TOKEN.encode() + b" " + TOKEN.encode(),
    ],
)
async def test_wrong_or_missing_token_is_401(ledger: Path, authorization: bytes | None) -> None:
    sent = await get_usage(ledger, authorization=authorization)
    assert sent.status == 401
    assert sent.error()["type"] == "authentication_error"
    assert TOKEN.encode() not in sent.body
    assert b"req_1" not in sent.body


async def test_the_token_is_checked_before_the_query(ledger: Path) -> None:
    sent = await get_usage(ledger, query=b"since=garbage&nope=1", authorization=b"Bearer nope")
    assert sent.status == 401


@pytest.mark.parametrize(
    ("query", "param"),
    [
        (b"since=yesterday", "since"),
        (b"since=2025-02-30", "since"),
        (b"since=2025-03-03T10:00:00+01:00", "since"),  # unencoded "+" is a space
        (b"keys=alice", "keys"),
        (b"key=alice&key=bob", "key"),
        (b"key=", "key"),
        (b"since=", "since"),
        (b"key=%ff", None),
        (b"key=caf\xc3\xa9", None),
        (b"&".join([b"key=a"] * 20), None),
    ],
)
async def test_bad_query_is_400(ledger: Path, query: bytes, param: str | None) -> None:
    sent = await get_usage(ledger, query=query)
    assert sent.status == 400
    error = sent.error()
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


# ---------------------------------------------------------------------------- pure parts


def test_parse_usage_query() -> None:
    assert parse_usage_query(b"") == (None, None)
    assert parse_usage_query(b"key=alice") == ("alice", None)
    assert parse_usage_query(b"since=2025-01-31&key=a%20b") == (
        "a b",
        "2025-01-31T00:00:00.000+00:00",
    )
    with pytest.raises(InvalidRequest, match="ISO 8601"):
        parse_usage_query(b"since=soon")


def test_is_admin() -> None:
    assert is_admin(BEARER, TOKEN)
    assert not is_admin(None, TOKEN)
    assert not is_admin(BEARER, TOKEN + "x")
    assert is_admin("Bearer jéton".encode(), "jéton")
