"""The code's shape, as docs/layout.md promises it: short functions, thin
commands, no import cycles (imports inside functions count), a test file per module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnn_mnist"
MODULES = sorted(p for p in PACKAGE.glob("*.py") if not p.name.startswith("__"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _functions(tree: ast.Module):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _is_command(function) -> bool:
    """Decorated with @cli.command() (or @group.command(...))."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "command":
            return True
    return False


def _body_lines(function) -> int:
    body = function.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring is the command's --help, not its body
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_function_is_longer_than_60_lines(path):
    long = [(f.name, f.end_lineno - f.lineno + 1) for f in _functions(_tree(path))
            if f.end_lineno - f.lineno + 1 > 60]
    assert not long, f"{path.name}: {long}"


def test_every_command_body_fits_in_30_lines():
    tree = _tree(PACKAGE / "cli.py")
    commands = [f for f in _functions(tree) if _is_command(f)]
    assert len(commands) >= 5  # train, summary, tensorboard, predict, evaluate at least
    long = [(f.name, _body_lines(f)) for f in commands if _body_lines(f) > 30]
    assert not long, long


def _imports(path: Path) -> set[str]:
    """The package modules `path` imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "cnn_mnist":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("cnn_mnist."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cnn_mnist.")}
    return found - {path.stem}


def test_no_import_cycles():
    graph = {path.stem: _imports(path) for path in MODULES}
    graph = {m: {i for i in imports if i in graph} for m, imports in graph.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_every_module_has_its_test_file():
    tests = Path(__file__).resolve().parent
    missing = [p.name for p in MODULES if not (tests / f"test_{p.stem}.py").is_file()]
    assert not missing, f"no tests/test_<module>.py for {missing}"
