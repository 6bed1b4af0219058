"""Upstream attempts: failover while nothing is committed, error responses, settlement.

An attempt is one upstream HTTP request. Each is written ahead to the ledger before the
upstream call and settled exactly once, shielded and bounded, by the code that ends it
(``_relay`` for the final attempt of a request, :meth:`Attempts.open` for the ones it fails
over from).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

import trio

from ._asgi import Reply
from ._budgets import Budgets, Reservation, window_start
from ._config import KeyConfig, ModelConfig, StreamingConfig
from ._errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    ShuttingDown,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._http1 import UpstreamResponse
from ._ledger import AttemptRecord, Ledger, Outcome, utc_now
from ._metrics import Metrics
from ._protocol._frames import dumps
from ._protocol._names import Protocol
from ._protocol._pricing import cost_usd
from ._protocol._requests import RequestInfo, build_upstream_body
from ._protocol._sse import SSEDecoder
from ._protocol._tap import StreamTap
from ._protocol._upstream_errors import upstream_status_error
from ._protocol._usage import Usage, UsageSource
from ._translate._request import (
    Conversation,
    ignored_fields,
    parse_conversation,
    render_request,
)
from ._translate._stream import Translator
from ._upstream import Upstream

#: Largest upstream error body read to build a sanitised message.
_MAX_ERROR_BODY: Final = 64 * 1024


@dataclass(slots=True, kw_only=True)
class Plan:
    """Everything decided about a request before any upstream call."""

    protocol: Protocol
    key: KeyConfig
    model_name: str
    model: ModelConfig
    candidates: list[Upstream]
    body: dict[str, object]
    raw: bytes
    info: RequestInfo
    query: bytes
    caller_headers: dict[bytes, bytes]
    #: The request in neutral form, parsed on first use by :meth:`upstream_body`.
    conversation: Conversation | None = None
    #: Upstream request bodies rendered so far, per upstream protocol (model name aside).
    rendered: dict[Protocol, dict[str, object]] = field(default_factory=dict)

    def release_request(self) -> None:
        """Drop the caller's request body (raw, parsed and translated forms) and headers once
        an upstream has accepted it: failover, the only reader of them afterwards, is over. A
        stream lives for minutes and the body of a long conversation is often hundreds of KB.

        The headers dict is emptied in place (its table freed, ~0.3 KB): the gateway's frames
        that built it stay suspended for the whole stream and still refer to it; none reads
        it after admission.
        """
        self.body = {}
        self.raw = b""
        self.conversation = None
        self.rendered.clear()
        self.caller_headers.clear()

    def translated(self, upstream: Upstream) -> bool:
        """Whether requests to ``upstream`` are translated (it speaks another protocol)."""
        return upstream.protocol != self.protocol

    @property
    def ignored(self) -> tuple[str, ...]:
        """Caller fields a translation drops as advisory (``x-trio-gateway-ignored``)."""
        return () if self.conversation is None else ignored_fields(self.conversation)

    def upstream_body(self, upstream: Upstream, *, model: str) -> bytes:
        """The translated request body for ``upstream`` (another protocol), always streamed.

        Parsing and rendering happen once per request and upstream protocol.

        Raises:
            InvalidRequest: the request cannot be expressed in the upstream's protocol
                (``param`` names the caller's field).
        """
        target = upstream.protocol
        rendered = self.rendered.get(target)
        if rendered is None:
            if self.conversation is None:
                self.conversation = parse_conversation(self.protocol, self.body)
            rendered = render_request(
                target,
                self.conversation,
                model=model,
                default_max_tokens=self.model.default_max_tokens,
            )
            self.rendered[target] = rendered
        return dumps({**rendered, "model": model}).encode("utf-8", "backslashreplace")


@dataclass(slots=True, kw_only=True)
class Attempt:
    """One upstream attempt and the state of its stream."""

    record: AttemptRecord
    upstream: Upstream
    started: float
    tap: StreamTap | Translator
    decoder: SSEDecoder
    response: UpstreamResponse | None = None
    error: GatewayError | None = None
    #: The upstream side is over: terminal event, in-band error then EOF, or a failure.
    ended: bool = False
    #: The terminal event arrived while the client was still connected.
    completed_clean: bool = False
    body_usage: tuple[Usage, UsageSource] | None = None
    settled: bool = False
    checkpointed_at: float = 0.0

    @property
    def usage(self) -> Usage:
        return self.body_usage[0] if self.body_usage else self.tap.usage

    @property
    def usage_source(self) -> UsageSource:
        return self.body_usage[1] if self.body_usage else self.tap.usage_source


@dataclass(slots=True, kw_only=True, eq=False)  # identity: kept in the gateway's set
class Exchange:
    """Mutable per-request state, owned by the request's tasks."""

    request_id: str
    plan: Plan
    reply: Reply
    started: float
    client_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    client_gone: str | None = None
    first_content_at: float | None = None
    queued_bytes: int = 0
    writing: bool = False
    #: When the client writer last wrote (trio time): the keepalive timer's origin. The
    #: request's start until the first write: with 0.0, the reader's first timer scope
    #: (``Relay._feed``) took the keepalive as long overdue, so every stream paid a
    #: cancelled first read and often a ``_PING`` for the writer to drop.
    last_write: float = field(init=False)
    pings: int = 0
    attempts: int = 0
    current: Attempt | None = None
    reservation: Reservation | None = None
    #: The ledger outcome of the attempt settled last: the request's outcome once it ends.
    final_outcome: Outcome | None = None
    #: Set by :meth:`cut` (graceful shutdown): the error the request ends with.
    cut_error: GatewayError | None = None
    _cut_scopes: list[trio.CancelScope] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_write = self.started

    def cut(self, error: GatewayError) -> None:
        """End the request's upstream work now (graceful shutdown ran out of time): every
        :meth:`cuttable` scope is cancelled, and its task reports ``error`` to the client."""
        if self.cut_error is None:
            self.cut_error = error
        for scope in self._cut_scopes:
            scope.cancel()

    def cuttable(
        self, deadline: float = math.inf, *, replacing: trio.CancelScope | None = None
    ) -> trio.CancelScope:
        """A cancel scope, to enter at once, that :meth:`cut` cancels (also when entered
        after the cut). Tasks check ``scope.cancelled_caught`` afterwards and report
        :attr:`cut_error`.

        Args:
            deadline: the scope's deadline, so one scope can be both a timer and cuttable
                (the stream reader's timers, ``Relay._feed``).
            replacing: an exited scope of this exchange that the new one takes the place of
                in the list :meth:`cut` cancels: a task that re-arms a timer scope all stream
                long keeps one entry, not one per re-arm.

        A plain scope rather than a context manager that unregisters it on exit: the reader
        holds one for the whole stream, and the generator-based wrapper cost ~0.4 KB per open
        stream. Other exited scopes stay listed (a request makes two or three; cancelling an
        exited scope does nothing).
        """
        scope = trio.CancelScope(deadline=deadline)
        if self.cut_error is not None:
            scope.cancel()
        scopes = self._cut_scopes
        for index, listed in enumerate(scopes):
            if listed is replacing:
                scopes[index] = scope
                return scope
        scopes.append(scope)
        return scope


def _may_fail_over(error: GatewayError) -> bool:
    """Failover happens on connect errors, timeouts before headers, gateway capacity, 429,
    5xx, and the upstream rejecting the gateway's own credentials (401/403: an account
    problem, not the caller's), and only while nothing is committed."""
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status in (401, 403, 429) or error.upstream_status >= 500
    return isinstance(error, UpstreamUnavailable | UpstreamTimeout | RateLimited)


class Attempts:
    """Opens upstream attempts (with failover) and settles them."""

    def __init__(
        self, *, streaming: StreamingConfig, ledger: Ledger, budgets: Budgets, metrics: Metrics
    ) -> None:
        self._streaming = streaming
        self._ledger = ledger
        self._budgets = budgets
        self._metrics = metrics

    async def _new(self, ex: Exchange, upstream: Upstream) -> Attempt:
        """Create an attempt and write its row ahead, committed, before the upstream call.

        Cancellation: the attempt is already ``ex.current``, so whoever ends the request
        settles it even if the write-ahead is cancelled midway.
        """
        plan = ex.plan
        ex.attempts += 1
        upstream_model = plan.model.upstream_name(upstream.name, plan.model_name)
        record = AttemptRecord(
            request_id=ex.request_id,
            attempt=ex.attempts,
            key=plan.key.name,
            model=plan.model_name,
            upstream=upstream.name,
            upstream_model=upstream_model,
            client_protocol=plan.protocol,
            upstream_protocol=upstream.protocol,
            stream=plan.info.stream,
        )
        upstream.in_flight += 1
        now = trio.current_time()
        tap: StreamTap | Translator
        if plan.translated(upstream):
            tap = Translator(
                upstream.protocol,
                plan.protocol,
                request_id=ex.request_id,
                model=plan.model_name,
                created=int(time.time()),
                include_usage=plan.info.wants_usage_chunk,
                stream=plan.info.stream,
                secrets=upstream.secrets,
            )
        else:
            tap = StreamTap(upstream.protocol, strip_usage_chunk=not plan.info.wants_usage_chunk)
        if not ex.reply.committed:
            ignored = plan.ignored if plan.translated(upstream) else ()
            ex.reply.extra_headers = (
                [(b"x-trio-gateway-ignored", ",".join(ignored).encode("ascii", "replace"))]
                if ignored
                else []
            )
        attempt = Attempt(
            record=record,
            upstream=upstream,
            started=now,
            checkpointed_at=now,
            tap=tap,
            decoder=SSEDecoder(max_event_bytes=self._streaming.max_event_bytes),
        )
        ex.current = attempt
        await self._ledger.write_ahead(record, price=plan.model.price)
        return attempt

    async def open(self, ex: Exchange) -> Attempt:
        """Open the first upstream that answers 2xx, failing over while nothing is committed.

        Raises:
            GatewayError: the last attempt's error when no upstream could serve.
        """
        plan = ex.plan
        last_error: GatewayError | None = None
        for upstream in plan.candidates:
            if ex.reply.committed and last_error is not None:
                break
            if not upstream.has_capacity():
                last_error = RateLimited(
                    f"upstream '{upstream.name}' is at its max_concurrency; try again later"
                )
                continue
            if plan.translated(upstream):
                try:
                    plan.upstream_body(upstream, model=plan.model_name)
                except InvalidRequest as refusal:
                    # This failover target cannot carry the request: skip it. (The first
                    # candidate was checked before admission, so this is never the first.)
                    last_error = last_error or refusal
                    continue
            attempt = await self._new(ex, upstream)
            error = await self._try_upstream(ex, attempt)
            if error is None:
                plan.release_request()
                return attempt
            attempt.error = error
            await self.settle(ex, attempt)
            ex.current = None
            last_error = error
            if not _may_fail_over(error):
                raise error
        raise last_error or UpstreamUnavailable("no upstream is configured for this model")

    async def _try_upstream(self, ex: Exchange, attempt: Attempt) -> GatewayError | None:
        """One attempt up to the response head; returns the error that ended it, if any."""
        plan = ex.plan
        upstream = attempt.upstream
        upstream_model = attempt.record.upstream_model
        translated = plan.translated(upstream)
        if translated:
            body = plan.upstream_body(upstream, model=upstream_model)
        else:
            body = build_upstream_body(
                upstream.protocol,
                plan.body,
                plan.raw,
                plan.info,
                upstream_model=None if upstream_model == plan.info.model else upstream_model,
            )
        timeout = self._streaming.first_byte_timeout
        try:
            with trio.move_on_after(timeout) as first_byte_deadline:
                attempt.response = await upstream.send(
                    # A query string belongs to the caller's protocol (`?beta=true`).
                    query=b"" if translated else plan.query,
                    caller=plan.caller_headers,
                    body=body,
                    # Translated routes always stream upstream (protocols.md §5).
                    stream=plan.info.stream or translated,
                    attempt_id=f"{attempt.record.request_id}/{attempt.record.attempt}",
                )
        except (UpstreamUnavailable, UpstreamProtocolError, UpstreamTimeout) as error:
            return error
        if first_byte_deadline.cancelled_caught or attempt.response is None:
            return UpstreamTimeout(
                f"upstream '{upstream.name}' sent no response headers within {timeout:g} s",
                phase="first_byte",
            )
        response = attempt.response
        attempt.record.status = response.status
        if 200 <= response.status < 300:
            return None
        return await self._status_error(upstream, response)

    async def _status_error(
        self, upstream: Upstream, response: UpstreamResponse
    ) -> UpstreamStatusError:
        """Read (bounded) and sanitise an upstream error response."""
        body = b""
        with trio.move_on_after(self._streaming.data_interval_timeout):
            try:
                body = await response.read_all(max_bytes=_MAX_ERROR_BODY)
            except UpstreamError:
                body = b""
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers
        }
        error = upstream_status_error(
            response.status,
            body,
            headers,
            upstream_name=upstream.name,
            secrets=upstream.secrets,
        )
        error.upstream_status = response.status
        return error

    async def settle(self, ex: Exchange, attempt: Attempt) -> None:
        """Close the upstream response and settle the attempt's record, exactly once.

        Cancellation: shielded and bounded by ``settle_timeout``; never raises Cancelled.
        The only await is closing a response whose connection cannot simply go back to the
        pool (``release_nowait``): normally there is none, and no scope is entered.
        """
        if attempt.settled:
            return
        attempt.settled = True
        response = attempt.response
        if response is not None and not response.release_nowait():
            with trio.CancelScope(shield=True), trio.move_on_after(self._streaming.settle_timeout):
                await response.aclose()
        attempt.upstream.in_flight -= 1
        record = attempt.record
        record.outcome = self._outcome(ex, attempt)
        record.usage = replace(attempt.usage)
        record.usage_source = attempt.usage_source
        price = ex.plan.model.price
        record.cost_usd = None if price is None else cost_usd(record.usage, price)
        now = trio.current_time()
        record.duration_ms = (now - attempt.started) * 1000
        if ex.first_content_at is not None and ex.current is attempt:
            record.ttft_ms = (ex.first_content_at - ex.started) * 1000
        record.finished_at = utc_now()
        ex.final_outcome = record.outcome
        self._metrics.attempt_settled(record, model=ex.plan.model.name, error=attempt.error)
        if self._ledger.settle(record) and ex.reservation and record.cost_usd:
            # The window of the row's own start, the rule the ledger sums by (an attempt
            # that starts after midnight belongs to the new day, whenever it was admitted).
            key = ex.plan.key
            window = window_start(key.budget_period, datetime.fromisoformat(record.started_at))
            self._budgets.add_spent(key.name, window, record.cost_usd)

    def checkpoint(self, attempt: Attempt, now: float) -> None:
        """Record the usage seen so far on the in-flight row (RELIABILITY I3), so a crash
        loses at most one interval. Never blocks."""
        attempt.checkpointed_at = now
        record = attempt.record
        record.usage = replace(attempt.usage)
        record.usage_source = attempt.usage_source
        self._ledger.checkpoint(record)

    @staticmethod
    def _outcome(ex: Exchange, attempt: Attempt) -> Outcome:
        error = attempt.error
        if isinstance(error, ShuttingDown):
            return "interrupted"
        if isinstance(error, UpstreamTimeout):
            return "upstream_timeout"
        if attempt.completed_clean and attempt.tap.error is None:
            return "completed"
        if ex.client_gone is not None:
            return "client_disconnected"
        if error is not None or attempt.tap.error is not None or attempt.ended:
            return "upstream_error"
        return "interrupted"
