"""The public surface: ``__all__`` is complete, sorted and resolvable (httpx's
``test_exported_members.py``; STYLE.md §1.6).

"Complete" means: every name a public module binds that does not start with ``_`` is in
``__all__``, and nothing is in ``__all__`` that the module does not bind. Submodules (which
Python binds on the package as a side effect of importing them) and the ``annotations``
feature of ``from __future__ import annotations`` are not exports. ``__version__`` is the one
dunder the package exports on purpose.

"Sorted" means the order ruff's RUF022 keeps (isort style): SCREAMING_SNAKE_CASE names, then
CamelCase names, then the rest, each group in natural order; for the names in use this is also
plain ``sorted()``.
"""

from __future__ import annotations
import __future__

import inspect
import re
import types
from typing import Final

import pytest

import trio_gateway
import trio_gateway.app
import trio_gateway.testing

PUBLIC_MODULES: Final = (trio_gateway, trio_gateway.testing)
#: Dunder names a module exports on purpose.
EXPORTED_DUNDERS: Final = frozenset({"__version__"})
_DIGITS: Final = re.compile(r"(\d+)")


def public_names(module: types.ModuleType) -> set[str]:
    """The names ``module`` binds that ought to be in its ``__all__``."""
    return {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name in EXPORTED_DUNDERS)
        and not isinstance(value, types.ModuleType)
        and value is not __future__.annotations
    }


def ruff_sort_key(name: str) -> tuple[int, list[tuple[int, int | str]]]:
    """RUF022's isort-style key: constants, then classes, then the rest; natural order."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts: list[tuple[int, int | str]] = [
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(name) if part
    ]
    return group, parts


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_lists_every_public_name(module: types.ModuleType) -> None:
    exported: list[str] = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    bound = public_names(module)
    assert sorted(bound - set(exported)) == [], "public but not in __all__"
    assert sorted(set(exported) - bound) == [], "in __all__ but not bound by the module"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted(module: types.ModuleType) -> None:
    exported: list[str] = list(module.__all__)
    assert exported == sorted(exported, key=ruff_sort_key)


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_exported_name_resolves(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    # A star import fails outright on a listed name the module lacks.
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(module.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(trio_gateway.__version__, str)
    assert trio_gateway.__version__


def test_create_app_is_the_hypercorn_entry_point() -> None:
    # hypercorn calls 'trio_gateway.app:create_app()' with no arguments.
    assert trio_gateway.app.__all__ == ["create_app"]
    create_app = trio_gateway.app.create_app
    assert callable(create_app)
    required = [
        p
        for p in inspect.signature(create_app).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}
    ]
    assert required == []


# --- the checks themselves can fail ------------------------------------------------------


def test_public_names_sees_functions_classes_and_reexports_but_not_modules() -> None:
    module = types.ModuleType("fake")
    exec(
        "from __future__ import annotations\n"
        "import json\n"
        "from os.path import join\n"
        "__version__ = '1'\n"
        "_private = 1\n"
        "class Thing: ...\n"
        "def helper() -> None: ...\n",
        vars(module),
    )
    assert public_names(module) == {"Thing", "__version__", "helper", "join"}


def test_ruff_sort_key_matches_ruf022_order() -> None:
    # The order `ruff check --select RUF022 --fix` produces for these names.
    expected = ["A_B", "XYZ", "Ab", "Abc", "ClientError", "Item", "__version__", "item", "item2"]
    shuffled = ["item2", "Item", "__version__", "XYZ", "Abc", "item", "ClientError", "A_B", "Ab"]
    assert sorted(shuffled, key=ruff_sort_key) == expected
    assert sorted(["item10", "item2"], key=ruff_sort_key) == ["item2", "item10"]
