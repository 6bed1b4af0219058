"""Layering rules, checked on the source by walking its AST (STYLE.md §1, §2, §9).

1. ``trio_gateway/_protocol/`` and ``trio_gateway/_translate/`` are sans-IO: none of their
   modules imports an I/O library (trio, httpx, httpcore, hypercorn, h11, prometheus_client,
   anyio, socket, ssl) or any ``trio_gateway`` module outside ``_protocol``, ``_translate``
   and ``_errors``, not even for typing.
   Dynamic imports (``__import__``, ``importlib.import_module``) are refused there too,
   since this test could not see what they load.
2. No module under ``trio_gateway/`` imports httpx (or httpcore) at runtime: the upstream
   side is hand-rolled on trio by design (docs/architecture.md). Imports under
   ``if TYPE_CHECKING:`` are allowed.
3. No ``async def`` under ``trio_gateway/`` takes a parameter named ``timeout``: timeouts
   belong to the caller as cancel scopes (STYLE.md §1.3; flake8-async ASYNC109).

Each rule is a pure function from source text to violations; the last tests feed each one a
snippet that breaks it, so none of these tests can pass by finding nothing to check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent / "trio_gateway"
PROTOCOL_ROOT: Final = PACKAGE_ROOT / "_protocol"

#: Top-level modules the sans-IO core must never import.
IO_LIBRARIES: Final = frozenset(
    {
        "trio",
        "httpx",
        "httpcore",
        "hypercorn",
        "h11",
        "prometheus_client",
        "anyio",
        "socket",
        "ssl",
    }
)
#: The only parts of the package the sans-IO core may import.
PROTOCOL_MAY_IMPORT: Final = frozenset({"_protocol", "_errors", "_translate"})
#: What the package never imports at runtime (httpcore is httpx's engine).
NOT_AT_RUNTIME: Final = frozenset({"httpx", "httpcore"})


def module_name(path: Path) -> str:
    """``trio_gateway/_protocol/_sse.py`` → ``trio_gateway._protocol._sse``."""
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    # Level 1 is the module's own package: drop the module's last component per level.
    base = module.split(".")
    base = base[: len(base) - node.level]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, *, module: str, runtime_only: bool = False) -> Iterator[str]:
    """Every name ``source`` imports, absolute: ``import p.q`` yields ``p.q`` and
    ``from p import name`` yields ``p.name`` (``name`` may be a submodule or an attribute;
    either way it comes from ``p``), ``from p import *`` yields ``p``.

    Args:
        source: the module's text.
        module: its dotted name, to resolve relative imports (use ``pkg.__init__`` for a
            package's ``__init__.py`` so that ``.`` means ``pkg``).
        runtime_only: skip the bodies of ``if TYPE_CHECKING:`` blocks.
    """
    for node in _walk(ast.parse(source), runtime_only=runtime_only):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            for alias in node.names:
                yield base if alias.name == "*" else f"{base}.{alias.name}"


def _walk(tree: ast.AST, *, runtime_only: bool) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        yield node
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield child
                yield from _walk(child, runtime_only=runtime_only)
            continue
        yield from _walk(node, runtime_only=runtime_only)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def sans_io_violations(source: str, *, module: str) -> list[str]:
    """Rule 1 for one ``_protocol`` module."""
    found: list[str] = []
    for name in imported_modules(source, module=module):
        parts = name.split(".")
        if parts[0] in IO_LIBRARIES:
            found.append(f"imports {name}")
        elif parts[0] == "trio_gateway" and (
            len(parts) == 1 or parts[1] not in PROTOCOL_MAY_IMPORT
        ):
            # A bare `import trio_gateway` reaches the whole public surface.
            found.append(f"imports {name}")
    found.extend(
        f"dynamic import at line {node.lineno}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and _is_dynamic_import(node.func)
    )
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def runtime_httpx_violations(source: str, *, module: str) -> list[str]:
    """Rule 2 for one module."""
    return [
        f"imports {name} at runtime"
        for name in imported_modules(source, module=module, runtime_only=True)
        if name.split(".")[0] in NOT_AT_RUNTIME
    ]


def async_timeout_violations(source: str) -> list[str]:
    """Rule 3 for one module: ``async def`` functions with a ``timeout`` parameter."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AsyncFunctionDef):
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            if any(arg.arg == "timeout" for arg in params):
                found.append(f"async def {node.name}(..., timeout) at line {node.lineno}")
    return found


def _resolution_name(path: Path) -> str:
    """The name relative imports in ``path`` resolve against (see ``imported_modules``)."""
    name = module_name(path)
    return f"{name}.__init__" if path.name == "__init__.py" else name


# --- the rules applied to the package ----------------------------------------------------


def test_the_walk_finds_the_modules() -> None:
    protocol = {module_name(path) for path in python_files(PROTOCOL_ROOT)}
    assert {"trio_gateway._protocol", "trio_gateway._protocol._sse"} <= protocol
    package = {module_name(path) for path in python_files(PACKAGE_ROOT)}
    assert {"trio_gateway._gateway", "trio_gateway._http1", "trio_gateway.testing"} <= package


@pytest.mark.parametrize(
    "path",
    python_files(PROTOCOL_ROOT) + python_files(PACKAGE_ROOT / "_translate"),
    ids=lambda p: str(p.relative_to(PACKAGE_ROOT)),
)
def test_protocol_is_sans_io(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert sans_io_violations(source, module=_resolution_name(path)) == []


@pytest.mark.parametrize(
    "path", python_files(PACKAGE_ROOT), ids=lambda p: str(p.relative_to(PACKAGE_ROOT))
)
def test_package_never_imports_httpx_at_runtime(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert runtime_httpx_violations(source, module=_resolution_name(path)) == []


@pytest.mark.parametrize(
    "path", python_files(PACKAGE_ROOT), ids=lambda p: str(p.relative_to(PACKAGE_ROOT))
)
def test_no_async_function_takes_a_timeout(path: Path) -> None:
    assert async_timeout_violations(path.read_text(encoding="utf-8")) == []


# --- each rule catches what it should -------------------------------------------------------

SSE: Final = "trio_gateway._protocol._sse"


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import trio.lowlevel",
        "from trio import sleep",
        "import h11 as http",
        "import socket, json",
        "from ssl import SSLContext",
        "from anyio import sleep",
        "import prometheus_client",
        "from hypercorn.config import Config",
        "from httpcore import Request",
        "if TYPE_CHECKING:\n    import httpx",
        "def f():\n    import trio",
        "from trio_gateway import _gateway",
        "from trio_gateway._relay import Relay",
        "from .. import _upstream",
        "from ..testing import AsgiClient",
        "from trio_gateway import *",
        "import trio_gateway",
        "import trio_gateway._config",
        "import importlib\nimportlib.import_module('trio')",
        "__import__('trio')",
    ],
)
def test_sans_io_rule_rejects(source: str) -> None:
    assert sans_io_violations(source, module=SSE) != []


@pytest.mark.parametrize(
    "source",
    [
        "import json",
        "from trio_gateway._errors import InvalidRequest",
        "from trio_gateway import _errors",
        "from trio_gateway._protocol._names import Protocol",
        "from ._usage import Usage",
        "from .. import _errors",
        "from .._errors import GatewayError as Error",
        "import email.utils",
    ],
)
def test_sans_io_rule_accepts(source: str) -> None:
    assert sans_io_violations(source, module=SSE) == []


def test_relative_imports_resolve_for_package_inits() -> None:
    init = "trio_gateway._protocol.__init__"
    assert "trio_gateway._protocol._sse" in set(imported_modules("from . import _sse", module=init))
    assert list(imported_modules("from .._gateway import G", module=init)) == [
        "trio_gateway._gateway.G"
    ]
    assert list(imported_modules("from .._gateway import G", module=SSE)) == [
        "trio_gateway._gateway.G"
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import httpx",
        "import httpx._client",
        "from httpx import AsyncClient",
        "from httpcore import Request",
        "def f():\n    import httpx",
        "if TYPE_CHECKING:\n    pass\nelse:\n    import httpx",
        "try:\n    import httpx\nexcept ImportError:\n    pass",
    ],
)
def test_httpx_rule_rejects(source: str) -> None:
    assert runtime_httpx_violations(source, module="trio_gateway._relay") != []


@pytest.mark.parametrize(
    "source",
    [
        "if TYPE_CHECKING:\n    import httpx",
        "if typing.TYPE_CHECKING:\n    from httpx import AsyncClient",
        "'''httpx is not used here'''",
        "import h11",
    ],
)
def test_httpx_rule_accepts(source: str) -> None:
    assert runtime_httpx_violations(source, module="trio_gateway._relay") == []


@pytest.mark.parametrize(
    "source",
    [
        "async def f(timeout): ...",
        "async def f(x, /, timeout=1.0): ...",
        "async def f(timeout, /): ...",
        "async def f(*, timeout: float): ...",
        "class C:\n    async def m(self, *, timeout: float = 1) -> None: ...",
        "def outer():\n    async def inner(timeout): ...",
    ],
)
def test_timeout_rule_rejects(source: str) -> None:
    assert async_timeout_violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "def f(timeout): ...",
        "async def f(*, connect_timeout: float): ...",
        "async def f(budget):\n    timeout = budget",
    ],
)
def test_timeout_rule_accepts(source: str) -> None:
    assert async_timeout_violations(source) == []
