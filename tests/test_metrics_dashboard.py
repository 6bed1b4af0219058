"""``docs/grafana-dashboard.json`` asks only for what the gateway exports (DESIGN §6).

Every PromQL expression of the dashboard is parsed (a small recursive-descent parser of the
PromQL the dashboard uses: selectors, range vectors, functions, aggregations with ``by`` /
``without``, binary operators with ``on`` / ``ignoring`` / ``group_*``), and every
``trio_gateway_*`` metric name and every label it uses is checked against the samples the
app's :class:`~trio_gateway._metrics.Metrics` exports after traffic that touches every
family. A dashboard that names a metric or label the app never exports would show an empty
panel forever; the negative tests prove the checker catches both, and syntax errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import trio.testing

from tests.support import CLIENT_KEY, gateway_config, read_until_deltas
from trio_gateway._gateway import open_gateway
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector

DASHBOARD: Final = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"

#: Grafana's own variables, replaced by a value of their kind before parsing.
_GRAFANA_VARIABLES: Final = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
_AGGREGATIONS: Final = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
})  # fmt: skip
_AGGREGATIONS_WITH_PARAMETER: Final = frozenset(
    {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_FUNCTIONS: Final = frozenset({
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "exp", "floor",
    "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_sum", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time",
    "ln", "log2", "log10", "max_over_time", "min_over_time", "predict_linear",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sqrt", "stddev_over_time", "sum_over_time", "time", "timestamp", "vector",
})  # fmt: skip
_BINARY: Final = frozenset(
    {"+", "-", "*", "/", "%", "^", "==", "!=", "<=", ">=", "<", ">", "and", "or", "unless"}
)
_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
      | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],:])
    )""",
    re.VERBOSE,
)
_SUFFIXES: Final = ("_bucket", "_sum", "_count", "_total", "_created")


class PromQLError(ValueError):
    """The expression is not PromQL the parser accepts."""


@dataclass
class Usage:
    """What one expression asks for: selectors (metric name → labels matched) and the labels
    named by grouping clauses."""

    selectors: list[tuple[str | None, set[str]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors if name is not None}


def tokenize(expr: str) -> list[tuple[str, str]]:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr.rstrip()):
        match = _TOKEN.match(expr, position)
        if match is None or match.lastgroup is None:
            raise PromQLError(f"cannot read {expr[position:]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return tokens


class Parser:
    """Recursive descent over the tokens; fills a :class:`Usage`."""

    def __init__(self, expr: str) -> None:
        self.tokens = tokenize(expr)
        self.at = 0
        self.usage = Usage()

    def parse(self) -> Usage:
        self.expression()
        if self.at != len(self.tokens):
            raise PromQLError(f"unexpected {self.peek()!r}")
        return self.usage

    # -- token helpers

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None, *, kind: str | None = None) -> str:
        token_kind, token = self.peek()
        if (value is not None and token != value) or (kind is not None and token_kind != kind):
            raise PromQLError(f"expected {value or kind}, found {token!r}")
        self.at += 1
        return token

    def labels(self) -> set[str]:
        """``( label, ... )`` after by / without / on / ignoring / group_*."""
        self.take("(")
        names: set[str] = set()
        while self.peek()[1] != ")":
            names.add(self.take(kind="ident"))
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")
        return names

    # -- grammar

    def expression(self) -> None:
        self.unary()
        while self.peek()[1] in _BINARY:
            self.take()
            if self.peek()[1] == "bool":
                self.take()
            if self.peek()[1] in {"on", "ignoring"}:
                self.take()
                self.usage.grouping |= self.labels()
            if self.peek()[1] in {"group_left", "group_right"}:
                self.take()
                if self.peek()[1] == "(":
                    self.usage.grouping |= self.labels()
            self.unary()

    def unary(self) -> None:
        if self.peek()[1] in {"-", "+"}:
            self.take()
        self.postfix()

    def postfix(self) -> None:
        self.primary()
        if self.peek()[1] == "[":
            self.take("[")
            self.take(kind="duration")
            if self.peek()[1] == ":":
                self.take(":")
                if self.peek()[0] == "duration":
                    self.take()
            self.take("]")
        if self.peek()[1] == "offset":
            self.take()
            self.take(kind="duration")

    def primary(self) -> None:
        kind, token = self.peek()
        if kind in {"number", "string"}:
            self.take()
        elif token == "(":
            self.take("(")
            self.expression()
            self.take(")")
        elif token == "{":
            self.selector(None)
        elif kind == "ident" and token in _AGGREGATIONS:
            self.aggregation()
        elif kind == "ident" and self.peek(1)[1] == "(":
            if token not in _FUNCTIONS:
                raise PromQLError(f"unknown function {token!r}")
            self.take()
            self.arguments()
        elif kind == "ident":
            self.selector(self.take())
        else:
            raise PromQLError(f"unexpected {token!r}")

    def arguments(self) -> None:
        self.take("(")
        while self.peek()[1] != ")":
            self.expression()
            if self.peek()[1] != ")":
                self.take(",")
        self.take(")")

    def aggregation(self) -> None:
        operator = self.take()
        if self.peek()[1] in {"by", "without"}:
            self.take()
            self.usage.grouping |= self.labels()
        self.take("(")
        if operator in _AGGREGATIONS_WITH_PARAMETER:
            self.expression()
            self.take(",")
        self.expression()
        self.take(")")
        if self.peek()[1] in {"by", "without"}:
            self.take()
            self.usage.grouping |= self.labels()

    def selector(self, name: str | None) -> None:
        matched: set[str] = set()
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                matched.add(self.take(kind="ident"))
                if self.peek()[1] not in {"=", "!=", "=~", "!~"}:
                    raise PromQLError(f"expected a label matcher, found {self.peek()[1]!r}")
                self.take()
                self.take(kind="string")
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
        if name is None and not matched:
            raise PromQLError("an empty selector")
        self.usage.selectors.append((name, matched))


def parse(expr: str) -> Usage:
    return Parser(expr).parse()


def problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What ``expr`` asks for that the app does not export (empty when all is well).

    Args:
        expr: a PromQL expression.
        exported: every exported sample name → the label names its samples carry.
    """
    usage = parse(expr)
    found: list[str] = []
    known_labels: set[str] = set()
    for name, matched in usage.selectors:
        if name is None or not name.startswith("trio_gateway_"):
            found.append(f"a selector outside trio_gateway: {name!r}")
            continue
        if name not in exported:
            found.append(f"unknown metric {name}")
            continue
        known_labels |= exported[name]
        found += [f"{name} has no label {label!r}" for label in matched - exported[name]]
    if found:
        return found  # grouping labels are judged against known metrics only
    return [
        f"grouping by a label no metric here has: {label!r}"
        for label in sorted(usage.grouping - known_labels)
    ]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    nested = [inner for panel in panels for inner in panel.get("panels", [])]
    return [
        target["expr"]
        for panel in panels + nested
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# --------------------------------------------------------------------------- exported


async def _traffic(client: AsgiClient) -> None:
    """One request of each kind, so that every family has samples."""
    anthropic = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    chat = {"authorization": f"Bearer {CLIENT_KEY}"}

    def message(model: str) -> dict[str, object]:
        return {
            "model": model,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        }

    done = await client.request(
        "POST", "/v1/messages", json=message("mock-text"), headers=anthropic
    )
    assert done.status == 200
    async with client.stream(
        "POST", "/v1/messages", json=message("mock-text:tokens=10,interval=1"), headers=anthropic
    ) as drained:
        await read_until_deltas(drained, "anthropic", 2)
        await drained.disconnect()
    stalled = await client.request(
        "POST", "/v1/chat/completions", json=message("mock-stall:after=3,secs=3600"), headers=chat
    )
    assert stalled.status == 200
    unknown = await client.request("POST", "/v1/messages", json=message("nope"), headers=anthropic)
    assert unknown.status == 404


@pytest.fixture
async def exported(mock: MockUpstream) -> dict[str, set[str]]:
    """Every sample name the app exports after traffic → the label names it carries.

    The tests that use it take ``autojump_clock`` themselves (pytest-trio picks the clock
    from the test's own arguments): the traffic waits out a 30 s data-interval timeout."""
    config = gateway_config(streaming={"data_interval_timeout": 30})
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        await _traffic(AsgiClient(gateway))
        names: dict[str, set[str]] = {}
        for family in gateway.metrics.registry.collect():
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


async def test_the_traffic_reaches_every_family(
    exported: dict[str, set[str]], autojump_clock: trio.testing.MockClock
) -> None:
    assert {name for name in exported if name.endswith("_total")} == {
        "trio_gateway_requests_total",
        "trio_gateway_upstream_attempts_total",
        "trio_gateway_tokens_total",
        "trio_gateway_cost_usd_total",
        "trio_gateway_client_disconnects_total",
        "trio_gateway_keepalive_pings_total",
        "trio_gateway_upstream_timeouts_total",
        "trio_gateway_metrics_errors_total",
    }
    assert exported["trio_gateway_requests_total"] == {
        "client_protocol",
        "model",
        "outcome",
        "status",
    }
    assert exported["trio_gateway_time_to_first_token_seconds_bucket"] == {"model", "le"}
    assert exported["trio_gateway_request_duration_seconds_count"] == {"model"}
    assert exported["trio_gateway_streams_in_flight"] == set()


# --------------------------------------------------------------------------- the dashboard


def test_dashboard_shape() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"


async def test_every_dashboard_expression_uses_only_exported_metrics_and_labels(
    exported: dict[str, set[str]], autojump_clock: trio.testing.MockClock
) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        assert problems(expr, exported) == [], expr


async def test_the_dashboard_shows_every_family(
    exported: dict[str, set[str]], autojump_clock: trio.testing.MockClock
) -> None:
    used = {name for expr in dashboard_exprs() for name in parse(expr).metrics}
    families = set()
    for name in exported:
        for suffix in _SUFFIXES:
            name = name.removesuffix(suffix)
        families.add(name)
    shown = set()
    for name in used:
        for suffix in _SUFFIXES:
            name = name.removesuffix(suffix)
        shown.add(name)
    assert families == shown
    assert any("histogram_quantile(0.99" in expr for expr in dashboard_exprs())


# --------------------------------------------------------------------------- the checker


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(trio_gateway_request_total[5m]))", "unknown metric trio_gateway_request_total"),
        (
            "sum by (modle) (rate(trio_gateway_requests_total[5m]))",
            "grouping by a label no metric here has: 'modle'",
        ),
        (
            'rate(trio_gateway_tokens_total{knd="input"}[5m])',
            "trio_gateway_tokens_total has no label 'knd'",
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(trio_gateway_requests_total_bucket[5m])))",
            "unknown metric trio_gateway_requests_total_bucket",
        ),
        (
            "sum without (le) (trio_gateway_cost_usd_total)",
            "grouping by a label no metric here has: 'le'",
        ),
        ("sum(rate(http_requests_total[5m]))", "a selector outside trio_gateway"),
    ],
)
async def test_the_checker_catches_what_the_app_does_not_export(
    exported: dict[str, set[str]], autojump_clock: trio.testing.MockClock, expr: str, problem: str
) -> None:
    found = problems(expr, exported)
    assert len(found) == 1
    assert found[0].startswith(problem)


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(trio_gateway_requests_total[5m])",
        "sum by (model (rate(trio_gateway_requests_total[5m]))",
        'trio_gateway_requests_total{model="x"',
        "rate(trio_gateway_requests_total[five])",
        "ratee(trio_gateway_requests_total[5m])",
        "sum(trio_gateway_requests_total) +",
        'trio_gateway_requests_total{model~"x"}',
        "{}",
    ],
)
def test_the_parser_refuses_broken_promql(expr: str) -> None:
    with pytest.raises(PromQLError):
        parse(expr)


def test_the_parser_reads_the_constructs_the_dashboard_may_use() -> None:
    usage = parse(
        'sum by (model) (rate(trio_gateway_cost_usd_total{model=~"$model"}[$__rate_interval]))'
        " * 3600 / on (model) group_left (kind) -sum(trio_gateway_tokens_total offset 1h)"
        " > bool 0 or vector(0) and topk(3, trio_gateway_streams_in_flight)"
    )
    assert usage.metrics == {
        "trio_gateway_cost_usd_total",
        "trio_gateway_tokens_total",
        "trio_gateway_streams_in_flight",
    }
    assert usage.grouping == {"model", "kind"}
    assert ("trio_gateway_cost_usd_total", {"model"}) in usage.selectors
