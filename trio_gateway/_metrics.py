"""Prometheus metrics: one registry per gateway, the DESIGN §6 families, and ``GET /metrics``.

Theory of operation. :class:`Metrics` owns a :class:`~prometheus_client.CollectorRegistry`
(never the global one, STYLE §6) and the metric families of DESIGN §6, prefixed
``trio_gateway_`` (``docs/metrics.md`` lists them). The shell records into it at four places
and nowhere else, all synchronous (nothing here awaits, so recording needs no shield and can
never be cancelled half-way):

- ``Attempts.settle`` (shielded, the one place every upstream attempt ends):
  :meth:`Metrics.attempt_settled`: attempts, tokens, cost, upstream timeouts;
- ``Gateway.__call__`` when an API request ends (after its error, if any, was answered):
  :meth:`Metrics.request_ended`: requests, TTFT, duration, client disconnects. What it
  needs travels on the request's :class:`MeteredReply`;
- the relay's client writer, per keepalive ping written: :meth:`Metrics.ping_sent`;
- the relay, wherever it changes its in-flight counters: the two gauges.

Label values are bounded by construction (RELIABILITY B9): ``model`` is a configured model
entry's name (a pattern such as ``mock-*`` for every name it matches) or ``other``; upstream
and key labels are configured names, never a key; statuses are HTTP statuses. Label
children are cached in dicts, so an event costs a dict lookup, not a ``labels()`` call.

Several hypercorn workers (PEER-BUGS 36). When ``PROMETHEUS_MULTIPROC_DIR`` is set, every
worker writes its samples to memory-mapped files in that directory (prometheus_client's
multiprocess mode; gauges in ``livesum`` mode), and a scrape, whichever worker serves it,
renders all the files through a :class:`~prometheus_client.multiprocess.MultiProcessCollector`
on a fresh registry: counters are sums over the workers, dead ones included, so they stay
monotonic across scrapes. prometheus_client picks its value class (in memory, or mmap files)
**once, when it is first imported**, from the environment: the variable must be set before
the worker process starts (``trio-gateway serve`` sets it to a fresh private directory per
run and starts each worker as a new process); :class:`Metrics` refuses to start if the
variable and the imported value class disagree, rather than silently serving one worker's
numbers. The supervisor calls :func:`mark_worker_dead` for a worker that exited, so its
gauge files stop counting. Without the variable, a scrape renders the gateway's own registry.

Invariants:
- Metrics code never raises into a request and never fails silently (PEER-BUGS 37): a
  failure is counted in ``trio_gateway_metrics_errors_total`` and logged once per place.
- Costs stay exact decimals everywhere else; they become floats only at the counter.
- Rendering (``generate_latest``) is blocking work: it runs in a worker thread, never on the
  trio thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from ._asgi import Reply, Send
from ._errors import GatewayError, MethodNotAllowed, NotFound, Unauthorized, UpstreamTimeout
from ._protocol._error_bodies import error_response
from ._protocol._names import Protocol

if TYPE_CHECKING:
    from ._attempts import Exchange
    from ._config import ModelConfig
    from ._ledger import AttemptRecord
    from ._protocol._usage import Usage

__all__ = [
    "DURATION_BUCKETS",
    "MULTIPROCESS_ENV",
    "OTHER_MODEL",
    "TOKEN_KINDS",
    "TTFT_BUCKETS",
    "MeteredReply",
    "Metrics",
    "bearer_matches",
    "mark_worker_dead",
    "serve_metrics",
]

logger = logging.getLogger("trio_gateway.metrics")

#: The environment variable that turns on prometheus_client's multiprocess mode.
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: The ``model`` label of every name no configured model entry serves (RELIABILITY B9).
OTHER_MODEL: Final = "other"
#: The ``status`` label when no HTTP status was sent (the client left first; an upstream
#: attempt that got no response head).
NO_STATUS: Final = "none"
#: The ``kind`` label of ``tokens_total`` (DESIGN §8), in the order :func:`_token_counts`
#: returns the counts.
TOKEN_KINDS: Final = (
    "input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning",
)  # fmt: skip
#: Time to first token: tens of milliseconds (a cached answer) to minutes (long reasoning
#: before the first token; first_byte_timeout defaults to 300 s).
TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300)
#: Whole requests that reached an upstream: a short unary answer up to an agent's ~30 min stream.
DURATION_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600,
)  # fmt: skip

_M = TypeVar("_M", Counter, Gauge, Histogram)


def _child(family: _M, cache: dict[tuple[str, ...], _M], labels: tuple[str, ...]) -> _M:
    """The family's child for ``labels``, from ``cache`` (``labels()`` once per label set)."""
    child = cache.get(labels)
    if child is None:
        child = cache[labels] = family.labels(*labels)
    return child


def _token_counts(usage: Usage) -> tuple[int, ...]:
    """The attempt's token counts in :data:`TOKEN_KINDS` order (the ledger's columns)."""
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
        usage.reasoning_tokens,
    )


def _status(status: int | None) -> str:
    return NO_STATUS if status is None else str(status)


def _is_multiprocess_value_class() -> bool:
    """Whether prometheus_client chose its mmap-file value class when it was imported."""
    return getattr(values.ValueClass, "__name__", "") == "MmapedValue"


def mark_worker_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters keep counting in the scrape).

    For the supervisor of ``trio-gateway serve``, once per worker that exited. A no-op when
    ``PROMETHEUS_MULTIPROC_DIR`` is not set.
    """
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def bearer_matches(authorization: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>``, compared in constant
    time: both sides are hashed first, so :func:`hmac.compare_digest` compares equal-length
    bytes and not even the token's length leaks. The scheme is case-insensitive (RFC 9110
    §11.1); whitespace around the token is ignored."""
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return False
    presented = hashlib.sha256(authorization[7:].strip()).digest()
    return hmac.compare_digest(presented, hashlib.sha256(token.encode()).digest())


class MeteredReply(Reply):
    """A :class:`Reply` that also notes what ``requests_total`` needs when the request ends.

    Attributes:
        status: the HTTP status the caller got (``None`` while nothing was sent): 200 once a
            stream is committed, even if it later ends with an in-band error.
        key: the caller's key name, once authenticated ("" before).
        model: the model entry serving the request, once known.
        exchange: the request's :class:`~trio_gateway._attempts.Exchange`, once admission
            begins.
    """

    __slots__ = ("exchange", "key", "model", "status")

    def __init__(self, send: Send, *, protocol: Protocol, request_id: str) -> None:
        super().__init__(send, protocol=protocol, request_id=request_id)
        self.status: int | None = None
        self.key = ""
        self.model: ModelConfig | None = None
        self.exchange: Exchange | None = None

    async def start_stream(self) -> None:
        self.status = 200
        await super().start_stream()

    async def respond(
        self,
        status: int,
        body: bytes,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        self.status = status
        await super().respond(status, body, headers=headers, content_type=content_type)

    async def fail(self, error: GatewayError, *, frame: bytes | None = None) -> None:
        if not self.committed and not self.finished:
            self.status = error_response(error, self.protocol, request_id=self.request_id)[0]
        await super().fail(error, frame=frame)


@dataclass(frozen=True, slots=True)
class _Billing:
    """The children a settled attempt adds to, for one (model[, key])."""

    tokens: tuple[Counter, ...]
    cost: Counter


class Metrics:
    """The gateway's metric families in its own registry, and their recording.

    Args:
        model_names: the configured model entries' names: the only ``model`` label values
            besides ``other``.
        per_key_labels: add a ``key`` label (the key's configured name) to
            ``requests_total``, ``tokens_total`` and ``cost_usd_total``.

    Raises:
        RuntimeError: ``PROMETHEUS_MULTIPROC_DIR`` was set (or unset) after
            prometheus_client was imported, so samples would not reach the scrape.
    """

    def __init__(self, *, model_names: Iterable[str], per_key_labels: bool = False) -> None:
        self._directory = os.environ.get(MULTIPROCESS_ENV) or None
        if (self._directory is not None) != _is_multiprocess_value_class():
            raise RuntimeError(
                f"{MULTIPROCESS_ENV} must be set (or unset) before prometheus_client is first "
                "imported: start each worker as a new process with the variable in its "
                "environment"
            )
        self._models = frozenset(model_names)
        self._per_key = per_key_labels
        self.registry = CollectorRegistry(auto_describe=True)
        key: tuple[str, ...] = ("key",) if per_key_labels else ()
        reg = self.registry
        self.requests_total = Counter(
            "trio_gateway_requests_total",
            "API requests by how they ended and the HTTP status the caller got.",
            ("client_protocol", "model", "outcome", "status", *key),
            registry=reg,
        )
        self.upstream_attempts_total = Counter(
            "trio_gateway_upstream_attempts_total",
            "Upstream attempts (ledger rows) by upstream, outcome and upstream HTTP status.",
            ("upstream", "outcome", "status"),
            registry=reg,
        )
        self.time_to_first_token_seconds = Histogram(
            "trio_gateway_time_to_first_token_seconds",
            "From the request's arrival to its first content byte, for requests that sent some.",
            ("model",),
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.request_duration_seconds = Histogram(
            "trio_gateway_request_duration_seconds",
            "From the request's arrival to its end, for requests that reached an upstream.",
            ("model",),
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.tokens_total = Counter(
            "trio_gateway_tokens_total",
            "Tokens billed, by kind; input is uncached input, reasoning is part of output.",
            ("model", "kind", *key),
            registry=reg,
        )
        self.cost_usd_total = Counter(
            "trio_gateway_cost_usd_total",
            "Cost billed in USD (the ledger's exact costs, summed as floats).",
            ("model", *key),
            registry=reg,
        )
        self.streams_in_flight = Gauge(
            "trio_gateway_streams_in_flight",
            "Streaming requests being served.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.drains_in_flight = Gauge(
            "trio_gateway_drains_in_flight",
            "Upstream streams being drained for billing after their client left.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.client_disconnects_total = Counter(
            "trio_gateway_client_disconnects_total",
            "Clients that left early: before_first_byte, disconnect (mid-response) or "
            "stalled (stopped reading and was dropped).",
            ("phase",),
            registry=reg,
        )
        self.keepalive_pings_total = Counter(
            "trio_gateway_keepalive_pings_total",
            "Keepalive pings written to clients.",
            registry=reg,
        )
        self.upstream_timeouts_total = Counter(
            "trio_gateway_upstream_timeouts_total",
            "Upstream attempts ended by a gateway deadline, by phase.",
            ("phase",),
            registry=reg,
        )
        self.metrics_errors_total = Counter(
            "trio_gateway_metrics_errors_total",
            "Failures inside metrics recording (each place is logged once).",
            registry=reg,
        )
        self._requests: dict[tuple[str, ...], Counter] = {}
        self._attempts: dict[tuple[str, ...], Counter] = {}
        self._ttft: dict[tuple[str, ...], Histogram] = {}
        self._durations: dict[tuple[str, ...], Histogram] = {}
        self._disconnects: dict[tuple[str, ...], Counter] = {}
        self._timeouts: dict[tuple[str, ...], Counter] = {}
        self._billing: dict[tuple[str, ...], _Billing] = {}
        self._logged: set[str] = set()

    def model_label(self, name: str | None) -> str:
        """The ``model`` label for a model entry name: itself if configured, else ``other``."""
        return name if name is not None and name in self._models else OTHER_MODEL

    # ------------------------------------------------------------------ recording

    def attempt_settled(
        self, record: AttemptRecord, *, model: str, error: GatewayError | None
    ) -> None:
        """Count one settled upstream attempt: the attempt, its tokens and cost, and the
        deadline that ended it, if one did. Never raises.

        Args:
            record: the attempt's settled ledger record.
            model: the name of the model entry that served it (not the caller's name).
            error: the error that ended the attempt, if any.
        """
        # Two independent parts: a failure in one loses none of the other's samples.
        try:
            billing = self._billing_for(self.model_label(model), record.key)
            for counter, count in zip(billing.tokens, _token_counts(record.usage), strict=True):
                if count:
                    counter.inc(count)
            if record.cost_usd:
                billing.cost.inc(float(record.cost_usd))
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("attempt_settled (billing)")
        try:
            labels = (record.upstream, record.outcome, _status(record.status))
            _child(self.upstream_attempts_total, self._attempts, labels).inc()
            if isinstance(error, UpstreamTimeout):
                _child(self.upstream_timeouts_total, self._timeouts, (error.phase,)).inc()
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("attempt_settled")

    def _billing_for(self, model: str, key: str) -> _Billing:
        labels = (model, key) if self._per_key else (model,)
        billing = self._billing.get(labels)
        if billing is None:
            extra = labels[1:]
            billing = self._billing[labels] = _Billing(
                tokens=tuple(self.tokens_total.labels(model, kind, *extra) for kind in TOKEN_KINDS),
                cost=self.cost_usd_total.labels(*labels),
            )
        return billing

    def request_ended(self, reply: MeteredReply, *, now: float) -> None:
        """Count one API request that ended (answered, refused, or left by its client).

        The outcome is the ledger outcome of the request's final attempt; ``rejected`` for a
        request refused before any upstream call; ``client_disconnected`` for one whose
        client left before any answer and any upstream call (during its upload). Duration is
        observed for requests that reached an upstream, TTFT when content was sent. Never
        raises.

        Args:
            reply: the request's reply, with what the gateway noted on it.
            now: the current trio time.
        """
        try:
            exchange = reply.exchange
            final = None if exchange is None else exchange.final_outcome
            if final is not None:
                outcome: str = final
            elif reply.status is None:
                outcome = "client_disconnected"
            else:
                outcome = "rejected"
            model = self.model_label(None if reply.model is None else reply.model.name)
            labels: tuple[str, ...] = (reply.protocol, model, outcome, _status(reply.status))
            if self._per_key:
                labels += (reply.key,)
            _child(self.requests_total, self._requests, labels).inc()
            if exchange is None:
                return
            if final is not None:
                started = exchange.started
                _child(self.request_duration_seconds, self._durations, (model,)).observe(
                    now - started
                )
                if exchange.first_content_at is not None:
                    _child(self.time_to_first_token_seconds, self._ttft, (model,)).observe(
                        exchange.first_content_at - started
                    )
            if exchange.client_gone is not None:
                phase = "before_first_byte" if reply.status is None else exchange.client_gone
                _child(self.client_disconnects_total, self._disconnects, (phase,)).inc()
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("request_ended")

    def ping_sent(self) -> None:
        """Count one keepalive ping written to a client. Never raises."""
        try:
            self.keepalive_pings_total.inc()
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("ping_sent")

    def set_streams_in_flight(self, count: int) -> None:
        """Set the streams gauge to the relay's count. Never raises."""
        try:
            self.streams_in_flight.set(count)
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("streams_in_flight")

    def set_drains_in_flight(self, count: int) -> None:
        """Set the drains gauge to the relay's count. Never raises."""
        try:
            self.drains_in_flight.set(count)
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("drains_in_flight")

    def _failed(self, where: str) -> None:
        """Count a failure of metrics code (PEER-BUGS 37); log the first one of each place,
        with its traceback. Called from an ``except`` block."""
        try:
            self.metrics_errors_total.inc()
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            where += " (and metrics_errors_total)"
        if where not in self._logged:
            self._logged.add(where)
            logger.exception(
                "metrics: recording failed in %s; counted in trio_gateway_metrics_errors_total,"
                " later failures there are not logged",
                where,
            )

    # ------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        """The Prometheus text exposition of every sample: this gateway's registry, or, in
        multiprocess mode, every worker's files. Blocking: call it in a worker thread.

        Raises:
            GatewayError: rendering failed (counted and logged once; the scrape gets 500).
        """
        try:
            if self._directory is None:
                return generate_latest(self.registry)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        except Exception:  # ruff: ignore[blind-except]  # PEER-BUGS 37: counted, logged once
            self._failed("render")
        raise GatewayError("the metrics could not be rendered")


def render_directory(directory: str) -> bytes:
    """Render every worker's multiprocess files in ``directory`` (the supervisor's own
    metrics listener, which records nothing itself). Blocking: call it in a worker thread."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def serve_metrics(
    reply: Reply,
    *,
    metrics: Metrics,
    headers: Mapping[bytes, bytes],
    method: str,
    token: str | None,
) -> None:
    """Answer ``GET /metrics`` (DESIGN §2; RELIABILITY B8), matched on the exact path.

    Order of checks, so that nothing is learnt without the token: no metrics token
    configured → 404 exactly as for an unknown path; a method other than GET → 405; a
    missing or wrong ``Authorization: Bearer`` → 401 in the OpenAI error shape with
    ``WWW-Authenticate: Bearer``; then 200 with the text exposition.

    Cancellation:
        Rendering runs in a worker thread; a cancel takes effect once it returns, and then
        nothing is sent.
    """
    if not token:
        raise NotFound(f"no route for {method} /metrics")
    if method != "GET":
        raise MethodNotAllowed("/metrics accepts GET only", allow=("GET",))
    if not bearer_matches(headers.get(b"authorization"), token):
        refusal = Unauthorized(
            "the metrics token is required: send Authorization: Bearer <metrics token>"
        )
        status, _, body = error_response(refusal, "openai-chat", request_id=reply.request_id)
        await reply.respond(status, body, headers=[(b"www-authenticate", b"Bearer")])
        return
    body = await trio.to_thread.run_sync(metrics.render)
    await reply.respond(
        200,
        body,
        headers=[(b"cache-control", b"no-store")],
        content_type=CONTENT_TYPE_LATEST.encode("ascii"),
    )
