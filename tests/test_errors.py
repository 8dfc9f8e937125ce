"""Errors: gathered in one module per package, exported, under one base, each refining a built-in; exit codes beside them."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import robovid
import robovid.errors
import robovid_watch
import robovid_watch.errors
from robovid.errors import RobovidError

ERROR_MODULES = (robovid.errors, robovid_watch.errors)
GENERIC = {BaseException, Exception, object}


def _modules(package: ModuleType) -> list[ModuleType]:
    names = [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]
    return [importlib.import_module(name) for name in names]


def _errors_defined_in(module: ModuleType) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
    ]


def test_every_library_error_is_exported_by_robovid() -> None:
    names = {error.__name__ for error in _errors_defined_in(robovid.errors)}
    assert "MetadataError" in names and "InfoJsonError" in names
    assert names <= set(robovid.__all__), sorted(names - set(robovid.__all__))
    assert all(getattr(robovid, name) is getattr(robovid.errors, name) for name in names)


@pytest.mark.parametrize("module", ERROR_MODULES, ids=lambda m: m.__name__)
def test_every_error_is_a_robovid_error_that_also_derives_from_the_builtin_it_refines(module: ModuleType) -> None:
    for error in _errors_defined_in(module):
        assert issubclass(error, RobovidError), error
        if error is RobovidError:
            continue
        refined = [base for base in error.__mro__ if base.__module__ == "builtins" and base not in GENERIC]
        assert refined, f"{error.__name__} derives from no built-in exception but Exception"


@pytest.mark.parametrize("package", [robovid, robovid_watch], ids=lambda p: p.__name__)
def test_no_module_but_the_errors_module_defines_an_error(package: ModuleType) -> None:
    strays = [
        f"{module.__name__}.{error.__name__}"
        for module in _modules(package)
        if module not in ERROR_MODULES
        for error in _errors_defined_in(module)
    ]
    assert strays == []


def test_exit_codes_are_defined_only_beside_the_service_errors() -> None:
    sources = [Path(m.__file__ or "") for p in (robovid, robovid_watch) for m in _modules(p)]
    assigned = [
        f"{path.name}:{node.lineno} {target.id}"
        for path in sources
        if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.startswith("EXIT_")
    ]
    assert assigned == []
    codes = {name: value for name, value in vars(robovid_watch.errors).items() if name.startswith("EXIT_")}
    assert codes == {
        "EXIT_OK": 0,
        "EXIT_FAILURE": 1,
        "EXIT_USAGE": 64,
        "EXIT_DATA": 65,
        "EXIT_LOCKED": 75,
        "EXIT_CONFIG": 78,
    }
