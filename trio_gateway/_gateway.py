"""The ASGI application: routing, authentication, admission, and the last-resort handler.

Everything before the first upstream call happens here, in this order: route → header
limit → authenticate → read the body (bounded) → parse → model → key allow-list → key
concurrency → pick the upstreams. Only then does the relay run.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from typing import Final, assert_never

import trio

from ._admin import serve_admin_usage
from ._asgi import ClientLeftDuringUpload, Receive, Reply, Scope, Send, read_body
from ._attempts import Exchange, Plan
from ._budgets import Budgets, Reservation, estimate_cost
from ._config import GatewayConfig, KeyConfig, ModelConfig
from ._errors import (
    Forbidden,
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ShuttingDown,
    Unauthorized,
    UnknownModel,
    UpstreamError,
)
from ._http1 import Connector
from ._ledger import AttemptRecord, Ledger, spent_since, utc_now
from ._metrics import MeteredReply, Metrics, serve_metrics
from ._protocol._names import Protocol
from ._protocol._requests import parse_request
from ._protocol._upstream_errors import upstream_status_error
from ._relay import Relay
from ._translate._estimate import estimate_input_tokens
from ._upstream import Upstream

logger = logging.getLogger("trio_gateway")

#: The API routes and the client protocol each one speaks (DESIGN §2).
_API_ROUTES: Final[Mapping[str, Protocol]] = {
    "/v1/messages": "anthropic",
    "/v1/chat/completions": "openai-chat",
    "/v1/responses": "openai-responses",
}


_COUNT_TOKENS: Final = "/v1/messages/count_tokens"
#: Largest count_tokens answer read from an upstream.
_MAX_COUNT_BODY: Final = 1024 * 1024


def _guess_protocol(headers: Mapping[bytes, bytes]) -> Protocol:
    """The error shape for routes that have no protocol of their own (DESIGN §2 rule for
    ``/v1/models``: Anthropic when ``anthropic-version`` or ``x-api-key`` is sent)."""
    if b"anthropic-version" in headers or b"x-api-key" in headers:
        return "anthropic"
    return "openai-chat"


def _caller_key(headers: Mapping[bytes, bytes]) -> str | None:
    """The caller's key from ``x-api-key`` or ``Authorization: Bearer`` (DESIGN §8)."""
    value = headers.get(b"x-api-key")
    if value:
        return value.decode("latin-1").strip()
    auth = headers.get(b"authorization")
    if auth and auth[:7].lower() == b"bearer ":
        return auth[7:].decode("latin-1").strip() or None
    return None


class Gateway:
    """The gateway as an ASGI application. Build it with :func:`open_gateway` (or
    ``trio_gateway.app:create_app()`` under hypercorn)."""

    def __init__(self, config: GatewayConfig, *, connector: Connector | None = None) -> None:
        self.config = config
        self.ledger = Ledger(config.ledger.path, write_ahead_sync=config.ledger.write_ahead_sync)
        self.budgets = Budgets(load_spent=self._load_spent)
        self.metrics = Metrics(
            model_names=[model.name for model in config.models],
            per_key_labels=config.metrics.per_key_labels,
        )
        self.relay = Relay(
            streaming=config.streaming,
            ledger=self.ledger,
            budgets=self.budgets,
            metrics=self.metrics,
        )
        self.upstreams: dict[str, Upstream] = {
            upstream.name: Upstream(
                upstream, connector=connector, connect_timeout=config.streaming.connect_timeout
            )
            for upstream in config.upstreams
        }
        self._keys: dict[str, KeyConfig] = {key.sha256: key for key in config.keys}
        self._key_in_flight: dict[str, int] = {}
        self.shutting_down = False
        self._started = False
        #: API requests in flight (admitted or not yet), and the exchanges among them.
        self._api_in_flight = 0
        self._exchanges: set[Exchange] = set()
        self._idle: trio.Event | None = None

    async def start(self) -> None:
        """Open the ledger (and recover rows a crash left in flight). Idempotent: both
        :func:`open_gateway` and hypercorn's lifespan startup call it."""
        if self._started:
            return
        self._started = True
        interrupted = await self.ledger.start()
        if interrupted:
            logger.warning(
                "ledger: %d attempts left in flight by a crash are now interrupted", interrupted
            )

    # ------------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        """Graceful shutdown begins: readiness 503 and new API requests refused (503)."""
        self.shutting_down = True

    async def wait_idle(self) -> None:
        """Return once no API request is in flight."""
        while self._api_in_flight:
            self._idle = trio.Event()
            await self._idle.wait()

    def cut_in_flight(self) -> int:
        """End every request still in flight with an in-band (or, uncommitted, HTTP 503)
        error; each is then settled as ``interrupted``. Returns how many were cut."""
        error = ShuttingDown("the gateway is shutting down; the request was ended early")
        for exchange in self._exchanges:
            exchange.cut(error)
        return len(self._exchanges)

    def _api_done(self) -> None:
        self._api_in_flight -= 1
        if not self._api_in_flight and self._idle is not None:
            self._idle.set()

    async def aclose(self) -> None:
        """Close idle upstream connections and flush the ledger.

        Cancellation: shielded and bounded.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            for upstream in self.upstreams.values():
                await upstream.aclose()
        if self._started:
            await self.ledger.aclose()
            self._started = False

    async def _load_spent(self, key: str, since: str) -> Decimal:
        """A key's settled spend since ``since``, read off the trio thread."""
        path = self.config.ledger.path
        if path == ":memory:":
            return Decimal(0)  # nothing persisted before this process
        return await trio.to_thread.run_sync(partial(spent_since, path, key=key, since=since))

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        raw_headers = scope.get("headers")
        headers: dict[bytes, bytes] = {}
        header_bytes = 0
        if isinstance(raw_headers, list | tuple):
            for name, value in raw_headers:
                key = bytes(name)
                # hypercorn's names are lowercase already: keep its objects rather than hold
                # a lowered copy of each for the whole request.
                headers.setdefault(key if key.islower() else key.lower(), bytes(value))
                header_bytes += len(name) + len(value)
        path = str(scope.get("path", ""))
        method = str(scope.get("method", "GET"))
        protocol = _API_ROUTES.get(path) or (
            "anthropic" if path == _COUNT_TOKENS else _guess_protocol(headers)
        )
        reply = MeteredReply(send, protocol=protocol, request_id="req_" + uuid.uuid4().hex)
        try:
            if header_bytes > self.config.server.max_header_bytes:
                raise HeadersTooLarge(
                    f"request headers exceed {self.config.server.max_header_bytes} bytes"
                )
            if method == "POST" and path in _API_ROUTES:
                # Straight to the API: every frame on the way stays suspended for the whole
                # stream (~0.3 KB each), so the router is not one of them.
                await self._serve_api(scope, receive, reply, headers)
            else:
                await self._route(scope, receive, reply, headers, path=path, method=method)
        except GatewayError as error:
            await reply.fail(error)
        except ClientLeftDuringUpload:
            return
        except BaseException as exc:
            # The one last-resort boundary (STYLE §5): log, answer 500 if we still can,
            # re-raise so the server sees the bug. A cancellation from the server (graceful
            # shutdown) is not a bug: re-raise it quietly.
            if _only_cancelled(exc):
                raise
            logger.exception("unhandled error in request %s", reply.request_id)
            if not reply.committed:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await reply.fail(GatewayError("internal gateway error"))
            raise
        finally:
            if path in _API_ROUTES:
                self.metrics.request_ended(reply, now=trio.current_time())
            # The exchange refers to the reply: without this the request's whole object
            # graph would be a reference cycle, freed only by the cyclic collector.
            reply.exchange = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                self.shutting_down = True
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(
        self,
        scope: Scope,
        receive: Receive,
        reply: MeteredReply,
        headers: dict[bytes, bytes],
        *,
        path: str,
        method: str,
    ) -> None:
        if path in _API_ROUTES:
            if method != "POST":
                raise MethodNotAllowed(f"{path} accepts POST only", allow=("POST",))
            await self._serve_api(scope, receive, reply, headers)
        elif path == _COUNT_TOKENS:
            if method != "POST":
                raise MethodNotAllowed(f"{path} accepts POST only", allow=("POST",))
            await self._serve_count_tokens(scope, receive, reply, headers)
        elif path == "/v1/models":
            if method != "GET":
                raise MethodNotAllowed("/v1/models accepts GET only", allow=("GET",))
            await self._serve_models(reply, headers)
        elif path == "/admin/usage":
            if method != "GET":
                raise MethodNotAllowed("/admin/usage accepts GET only", allow=("GET",))
            query = scope.get("query_string", b"")
            await serve_admin_usage(
                reply,
                headers=headers,
                query=query if isinstance(query, bytes) else b"",
                token=self.config.admin.token,
                ledger_path=self.config.ledger.path,
            )
        elif path == "/metrics":  # exact match only (RELIABILITY B8)
            await serve_metrics(
                reply,
                metrics=self.metrics,
                headers=headers,
                method=method,
                token=self.config.metrics.token,
            )
        elif path == "/healthz":
            await self._plain(reply, 200, {"status": "ok"})
        elif path == "/readyz":
            if self.shutting_down:
                await self._plain(reply, 503, {"status": "shutting_down"})
            else:
                await self._plain(reply, 200, {"status": "ready"})
        else:
            raise NotFound(f"no route for {method} {path}")

    @staticmethod
    async def _plain(reply: Reply, status: int, body: object) -> None:
        await reply.respond(status, json.dumps(body).encode())

    # ------------------------------------------------------------------ admission

    def _authenticate(self, headers: Mapping[bytes, bytes]) -> KeyConfig:
        """Look the caller's key up by its sha256 (RELIABILITY B11: a hash index leaks
        nothing useful through timing, and the key itself is never stored)."""
        key = _caller_key(headers)
        if not key:
            raise Unauthorized("missing API key: send x-api-key or Authorization: Bearer")
        found = self._keys.get(hashlib.sha256(key.encode()).hexdigest())
        if found is None:
            raise Unauthorized("invalid API key")
        return found

    async def _serve_api(
        self, scope: Scope, receive: Receive, reply: MeteredReply, headers: dict[bytes, bytes]
    ) -> None:
        if self.shutting_down:
            raise ServiceUnavailable("the gateway is shutting down; retry on another instance")
        self._api_in_flight += 1
        try:
            # Admission runs in a frame of its own that returns before the relay starts: only
            # this one stays suspended for the whole stream.
            exchange = await self._admit_request(scope, receive, reply, headers)
            self._exchanges.add(exchange)
            try:
                if exchange.plan.info.stream:
                    await self.relay.serve_stream(exchange, receive)
                else:
                    await self.relay.serve_unary(exchange, receive)
            finally:
                self._exchanges.discard(exchange)
                self._key_in_flight[exchange.plan.key.name] -= 1
                if exchange.reservation is not None:
                    self.budgets.release(exchange.reservation)
        finally:
            self._api_done()

    async def _admit_request(
        self, scope: Scope, receive: Receive, reply: MeteredReply, headers: dict[bytes, bytes]
    ) -> Exchange:
        """Authenticate, read and parse the request, and admit it: the exchange to serve, its
        key's concurrency slot taken and its budget reserved (``_serve_api`` gives both back).

        Raises:
            GatewayError: the request is refused (a refusal by a limit leaves a ledger row).
        """
        started = trio.current_time()
        key = self._authenticate(headers)
        reply.key = key.name
        limit = self.config.server.max_request_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        raw = await read_body(receive, limit=limit)
        protocol = reply.protocol
        body, info = parse_request(protocol, raw)
        model = self.config.model_for(info.model)
        if model is None:
            raise UnknownModel(f"model '{info.model}' is not served by this gateway")
        reply.model = model
        candidates = self._route_upstreams(protocol, model)
        if not candidates:
            raise InvalidRequest(
                f"model '{info.model}' is not served to {protocol} clients on this gateway",
                param="model",
            )
        query = scope.get("query_string", b"")
        plan = Plan(
            protocol=protocol,
            key=key,
            model_name=info.model,
            model=model,
            candidates=candidates,
            body=body,
            raw=raw,
            info=info,
            query=query if isinstance(query, bytes) else b"",
            caller_headers=headers,
        )
        # The plan owns the request body from here and drops it once an upstream accepted it
        # (Plan.release_request).
        del body, raw
        if plan.translated(candidates[0]):
            # The first upstream speaks another protocol: whatever it cannot carry is the
            # caller's 400 now, naming the field, before admission and any upstream call.
            # (Later candidates are checked when failover reaches them.)
            plan.upstream_body(candidates[0], model=info.model)
        exchange = Exchange(request_id=reply.request_id, plan=plan, reply=reply, started=started)
        reply.exchange = exchange
        try:
            exchange.reservation = await self._admit(plan, len(plan.raw))
        except (Forbidden, RateLimited) as refusal:
            self._record_rejection(exchange, refusal)
            raise
        return exchange

    def _route_upstreams(self, protocol: Protocol, model: ModelConfig) -> list[Upstream]:
        """The model's upstreams in the order to try them, per its ``routing``."""
        upstreams = [self.upstreams[name] for name in model.upstreams]
        match model.routing:
            case "ordered":
                return upstreams
            case "same-protocol-first":
                return sorted(upstreams, key=lambda upstream: upstream.protocol != protocol)
            case "same-protocol-only":
                return [upstream for upstream in upstreams if upstream.protocol == protocol]
            case _:
                assert_never(model.routing)

    async def _admit(self, plan: Plan, body_bytes: int) -> Reservation | None:
        """Every limit checked before any upstream call (DESIGN §5): the key's model
        allow-list, its concurrency, its budget, and the upstreams' capacity. On success the
        key's concurrency slot is taken and its budget reservation made.

        Raises:
            Forbidden: the key may not use this model (403).
            RateLimited: a limit is reached (429; the message names which).
        """
        key, model_name = plan.key, plan.model_name
        if not any(fnmatch.fnmatchcase(model_name, pattern) for pattern in key.models):
            raise Forbidden(f"key '{key.name}' may not use model '{model_name}'")
        estimate = estimate_cost(
            plan.model, body_bytes=body_bytes, max_output_tokens=plan.info.max_output_tokens
        )
        reservation = await self.budgets.admit(key, estimate)
        # From here to the end no await: the limits below are checked and the slot taken
        # atomically (a check before an await would let concurrent requests all pass it).
        try:
            in_flight = self._key_in_flight.get(key.name, 0)
            if key.max_concurrency is not None and in_flight >= key.max_concurrency:
                raise RateLimited(
                    f"key '{key.name}' is at its max_concurrency of {key.max_concurrency}",
                    retry_after=1,
                )
            if not any(upstream.has_capacity() for upstream in plan.candidates):
                raise RateLimited(
                    f"every upstream of model '{model_name}' is at its max_concurrency",
                    retry_after=1,
                )
        except RateLimited:
            if reservation is not None:
                self.budgets.release(reservation)
            raise
        self._key_in_flight[key.name] = in_flight + 1
        return reservation

    def _record_rejection(self, exchange: Exchange, refusal: GatewayError) -> None:
        """A refused request leaves one ``rejected`` row (attempt 0: no upstream call)."""
        plan = exchange.plan
        self.ledger.record_rejection(
            AttemptRecord(
                request_id=exchange.request_id,
                attempt=0,
                key=plan.key.name,
                model=plan.model_name,
                upstream="",
                upstream_model="",
                client_protocol=plan.protocol,
                upstream_protocol=plan.protocol,
                stream=plan.info.stream,
                status=refusal.status,
                outcome="rejected",
                finished_at=utc_now(),
            )
        )

    async def _serve_count_tokens(
        self, scope: Scope, receive: Receive, reply: Reply, headers: dict[bytes, bytes]
    ) -> None:
        """``POST /v1/messages/count_tokens`` (DESIGN §2): forwarded to the model's first
        Anthropic upstream; for a model without one, or when that upstream cannot be
        reached, an estimate marked ``x-trio-gateway-estimate: true``. Counting is free
        upstream, so it takes no budget and leaves no ledger row."""
        if self.shutting_down:
            raise ServiceUnavailable("the gateway is shutting down; retry on another instance")
        key = self._authenticate(headers)
        raw = await read_body(receive, limit=self.config.server.max_request_bytes)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidRequest("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("`model` must be a non-empty string.", param="model")
        if not isinstance(body.get("messages"), list):
            raise InvalidRequest("`messages` must be an array.", param="messages")
        model = self.config.model_for(name)
        if model is None:
            raise UnknownModel(f"model '{name}' is not served by this gateway")
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in key.models):
            raise Forbidden(f"key '{key.name}' may not use model '{name}'")
        for upstream in self._route_upstreams("anthropic", model):
            if upstream.protocol != "anthropic":
                continue
            upstream_model = model.upstream_name(upstream.name, name)
            if upstream_model != name:
                raw = json.dumps({**body, "model": upstream_model}).encode()
            query = scope.get("query_string", b"")
            answered = await self._forward_count(
                reply, upstream, headers, raw, query if isinstance(query, bytes) else b""
            )
            if answered:
                return
            break
        estimate = {"input_tokens": estimate_input_tokens(body)}
        await reply.respond(
            200,
            json.dumps(estimate).encode(),
            headers=[(b"x-trio-gateway-estimate", b"true")],
        )

    async def _forward_count(
        self,
        reply: Reply,
        upstream: Upstream,
        headers: Mapping[bytes, bytes],
        raw: bytes,
        query: bytes,
    ) -> bool:
        """Ask ``upstream`` to count; False when it could not be reached in time (the
        caller then gets an estimate). Upstream error statuses are passed on, sanitised."""
        streaming = self.config.streaming
        response = None
        try:
            with trio.move_on_after(streaming.first_byte_timeout):
                response = await upstream.send(
                    query=query,
                    caller=headers,
                    body=raw,
                    stream=False,
                    attempt_id=f"{reply.request_id}/count",
                    path=_COUNT_TOKENS,
                )
            if response is None:
                return False
            answer = None
            with trio.move_on_after(streaming.data_interval_timeout):
                answer = await response.read_all(max_bytes=_MAX_COUNT_BODY)
            if answer is None:
                return False
        except UpstreamError:
            return False
        finally:
            if response is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await response.aclose()
        if 200 <= response.status < 300:
            await reply.respond(response.status, answer)
            return True
        pairs = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers}
        error = upstream_status_error(
            response.status,
            answer,
            pairs,
            upstream_name=upstream.name,
            secrets=upstream.secrets,
        )
        await reply.fail(error)
        return True

    async def _serve_models(self, reply: Reply, headers: Mapping[bytes, bytes]) -> None:
        key = self._authenticate(headers)
        names = [
            model.name
            for model in self.config.models
            if not any(ch in model.name for ch in "*?[")
            and any(fnmatch.fnmatchcase(model.name, pattern) for pattern in key.models)
        ]
        if reply.protocol == "anthropic":
            data: list[dict[str, object]] = [
                {
                    "type": "model",
                    "id": name,
                    "display_name": name,
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for name in names
            ]
            body: dict[str, object] = {
                "data": data,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        else:
            created = int(time.time())
            body = {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": created, "owned_by": "trio-gateway"}
                    for name in names
                ],
            }
        await self._plain(reply, 200, body)


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False


@asynccontextmanager
async def open_gateway(
    config: GatewayConfig, *, connector: Connector | None = None
) -> AsyncGenerator[Gateway, None]:
    """A gateway for ``config``; closes its upstream connections on exit.

    Args:
        config: the validated configuration.
        connector: how upstream connections are made (tests pass an in-memory connector).
    """
    gateway = Gateway(config, connector=connector)
    try:
        await gateway.start()
        yield gateway
    finally:
        await gateway.aclose()
