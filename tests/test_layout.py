"""The code's shape, as README's "How the code is laid out" promises it: subpackages that name
the layers, each importing only the layers below it (imports inside functions count); no import
cycles; no module named like one of the standard library's; a core and a config with no click
and no TensorFlow at import; short functions, thin commands, a test file per module; the cli
package's commands each in a module of its own, loaded only when it runs; one door to a model
file (stages/handle.py); each name imported from the module that defines it (no re-exports);
imports at a module's top, but the heavy ones, deferred on purpose to the functions that need
them."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnn_mnist"
# Bottom to top; a module outside these (__main__, the package itself) is on top of them.
LAYERS = ["core", "config", "analysis", "stages", "training", "tools", "cli"]
TOP = len(LAYERS)
# No click anywhere in these, and TensorFlow or Keras only inside a function (runtime's import).
PLAIN = ["core", "config"]
CLI = PACKAGE / "cli"
# The modules; cli/__init__.py too, which holds the `cnn` group and main().
MODULES = sorted(
    [*(p for p in PACKAGE.rglob("*.py") if not p.name.startswith("__")), CLI / "__init__.py"]
)
CLI_MODULES = sorted(CLI.glob("*.py"))
# The cli modules that are no command's: the group, the shell, the shared options.
CLI_SHELL = ["cli", "cli.shell", "cli.options"]


def _name(path: Path) -> str:
    """`tools.serve` for cnn_mnist/tools/serve.py, `cli` for cnn_mnist/cli/__init__.py."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rank(module: str) -> int:
    layer = module.split(".")[0]
    return LAYERS.index(layer) if layer in LAYERS else TOP


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _functions(tree: ast.Module):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _is_command(function) -> bool:
    """Decorated with @command() or @group() (the shell's), or @click.group(...),
    @runs.command(...) and the like."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("command", "group"):
            return True
    return False


def _body_lines(function) -> int:
    body = function.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring is the command's --help, not its body
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_function_is_longer_than_60_lines(path):
    long = [
        (f.name, f.end_lineno - f.lineno + 1)
        for f in _functions(_tree(path))
        if f.end_lineno - f.lineno + 1 > 60
    ]
    assert not long, f"{_name(path)}: {long}"


def test_every_command_body_fits_in_30_lines():
    commands = [
        (_name(path), f) for path in CLI_MODULES for f in _functions(_tree(path)) if _is_command(f)
    ]
    assert len(commands) >= 18  # cnn, its 11 commands, runs' 4 and config's 2 subcommands
    long = [(module, f.name, _body_lines(f)) for module, f in commands if _body_lines(f) > 30]
    assert not long, long


@pytest.mark.parametrize("path", CLI_MODULES, ids=_name)
def test_no_cli_module_is_longer_than_300_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 300, f"{_name(path)}: {lines} lines"


def _imports(path: Path, known: set[str]) -> dict[str, int]:
    """The package modules `path` imports, anywhere in it (functions included), with the line
    of the first import of each."""
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        if name in known and name != _name(path):
            found.setdefault(name, line)

    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "cnn_mnist" or node.module.startswith("cnn_mnist."):
                base = node.module.removeprefix("cnn_mnist").lstrip(".")
                for alias in node.names:  # `from cnn_mnist.core import errors` names a module
                    add(f"{base}.{alias.name}".lstrip("."), node.lineno)
                add(base, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cnn_mnist."):
                    add(alias.name.removeprefix("cnn_mnist."), node.lineno)
    return found


def _graph() -> dict[str, dict[str, int]]:
    known = {_name(p) for p in MODULES}
    return {_name(path): _imports(path, known) for path in MODULES}


def test_the_layers_are_the_packages():
    found = {
        p.relative_to(PACKAGE).parts[0] for p in MODULES if len(p.relative_to(PACKAGE).parts) > 1
    }
    assert found <= set(LAYERS), f"subpackages not in LAYERS: {sorted(found - set(LAYERS))}"
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), f"cnn_mnist/{layer}/ has no __init__.py"


def test_each_layer_imports_only_the_layers_below_it():
    upward = [
        f"{module} (layer {LAYERS[_rank(module)] if _rank(module) < TOP else 'top'}) "
        f"imports {target} (layer {LAYERS[_rank(target)] if _rank(target) < TOP else 'top'})"
        f" at line {line}"
        for module, imports in _graph().items()
        for target, line in imports.items()
        if _rank(target) > _rank(module)
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {m: set(imports) for m, imports in _graph().items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_no_module_is_named_like_the_standard_librarys():
    shadows = [_name(p) for p in MODULES if p.stem in sys.stdlib_module_names]
    shadows += [
        d.name for d in PACKAGE.iterdir() if d.is_dir() and d.name in sys.stdlib_module_names
    ]
    assert not shadows, f"named like a standard library module: {shadows}"


@pytest.mark.parametrize("layer", PLAIN)
def test_the_plain_layers_import_no_click_and_no_tensorflow_at_import(layer):
    found = []
    for path in sorted((PACKAGE / layer).glob("*.py")):
        tree = _tree(path)
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for name in names:
                    root = name.split(".")[0]
                    if root == "click" or (
                        root in ("tensorflow", "keras") and id(node) in top_level
                    ):
                        found.append(f"{_name(path)}:{node.lineno} imports {name}")
    assert not found, found


def _cli_commands() -> dict[str, str]:
    """cli/__init__.py's COMMANDS: each command's name and "module:attribute"."""
    for node in _tree(CLI / "__init__.py").body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMANDS":
            return ast.literal_eval(node.value)
    raise AssertionError("cli/__init__.py has no COMMANDS")


def test_every_module_has_its_test_file():
    """tests/test_<module>.py; in the cli package, tests/test_cli.py for the group, the shell
    and the shared options, and for each command's module a test that runs its command."""
    tests = Path(__file__).resolve().parent
    missing = [
        _name(p) for p in MODULES if p.parent != CLI and not (tests / f"test_{p.stem}.py").is_file()
    ]
    assert not missing, f"no tests/test_<module>.py for {missing}"
    assert (tests / "test_cli.py").is_file()
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(tests.glob("test_*.py")))
    run = {where.split(":")[0] for name, where in _cli_commands().items() if f'["{name}"' in text}
    untested = [
        m for m in map(_name, CLI_MODULES) if m not in CLI_SHELL and f"cnn_mnist.{m}" not in run
    ]
    assert not untested, f"no test runs the command in {untested}"


def test_each_command_is_loaded_only_when_it_runs():
    """`cnn`'s group names each command's module (COMMANDS) and imports none of them; a
    command's module imports no other's, and at its top only the standard library, click,
    cnn_mnist's core and the cli's shell and options: what the command needs (TensorFlow,
    the pipeline, any layer above core) is imported inside it, so `cnn --help` stays instant."""
    graph = _graph()
    commands = {_name(p) for p in CLI_MODULES} - set(CLI_SHELL)
    named = {where.split(":")[0].removeprefix("cnn_mnist.") for where in _cli_commands().values()}
    assert named == commands, (
        f"modules not in COMMANDS: {commands - named}; not modules: {named - commands}"
    )
    for module in [*CLI_SHELL, *sorted(commands)]:
        cli_imports = {target for target in graph[module] if _rank(target) == LAYERS.index("cli")}
        assert cli_imports <= {"cli.shell", "cli.options"} - {module}, (module, cli_imports)
    allowed = {*sys.stdlib_module_names, "__future__", "click"}
    found = []
    for path in CLI_MODULES:
        for node in _tree(path).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                inside = name.removeprefix("cnn_mnist.")
                ours = name.startswith("cnn_mnist.") and inside.split(".")[0] in ("core", "cli")
                if not (name.split(".")[0] in allowed or ours or name == "cnn_mnist.__version__"):
                    found.append(f"{_name(path)}:{node.lineno} imports {name}")
    assert not found, found


# What reads a model file (.h5, .keras, .tflite, .onnx, a SavedModel folder): the libraries that
# open one, imported anywhere, and the loaders called on one. Only the model's handle reads a
# model file; the writers, each function named here, use them on the file they are writing.
READING_LIBRARIES = (
    "h5py",
    "zipfile",
    "onnx",
    "onnxruntime",
    "flatbuffers",
    "ai_edge_litert",
    "tensorflow.lite",
)
READING_CALLS = ("load_model", "saved_model.load", "TFSMLayer")
THE_HANDLE = "stages.handle"
WRITERS = {
    "stages.save": {"write_card"},
    "stages.formats": {"embed_litert_card", "_onnx", "_embed_onnx_card", "float_ops"},
}


def _dotted(node: ast.expr) -> str:
    """`keras.models.load_model` for that call's function; "" for anything but names."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _reads(node: ast.AST) -> str | None:
    """What `node` reads a model file with, if it imports a reading library or calls a loader."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and not node.level:
        names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
    elif isinstance(node, ast.Call):
        call = _dotted(node.func)
        if any(call == c or call.endswith(f".{c}") for c in READING_CALLS):
            return f"a call of {call}"
        return None
    else:
        return None
    for name in names:
        if any(name == lib or name.startswith(f"{lib}.") for lib in READING_LIBRARIES):
            return f"an import of {name}"
    return None


def _model_file_reads(tree: ast.Module, module: str) -> list[str]:
    """Where `module` (its `tree`) reads a model file outside the functions allowed to."""
    allowed = WRITERS.get(module, set())
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and function is None:
            function = node.name  # a writer's nested functions are the writer's
        what = _reads(node)
        if what and function not in allowed:
            found.append(f"{module}:{node.lineno} ({function or 'module'}): {what}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def test_only_the_handle_reads_a_model_file():
    """Every command asks the model's handle (open_saved) what a model is: no other module opens
    a model file by its path (h5py.File, zipfile, keras.models.load_model, onnx.load, LiteRT's
    interpreter, a flatbuffer read), except the writers, on the file they write."""
    reads = [
        read
        for path in MODULES
        if _name(path) != THE_HANDLE
        for read in _model_file_reads(_tree(path), _name(path))
    ]
    assert not reads, "reads of a model file outside stages/handle.py:\n" + "\n".join(reads)


PEEK = """
import h5py
from ai_edge_litert.interpreter import Interpreter

def write_card(path):
    import zipfile

def peek(path):
    from tensorflow.lite.tools import flatbuffer_utils
    keras.models.load_model(path)
    return tf.saved_model.load(path), json.load(path), Path(path).read_bytes()
"""


def test_the_model_file_check_sees_each_reader():
    """The check above finds each way of reading, at the top of a module or in a function, and
    lets a writer's own function be."""
    assert _model_file_reads(ast.parse(PEEK), "tools.peek") == [
        "tools.peek:2 (module): an import of h5py",
        "tools.peek:3 (module): an import of ai_edge_litert.interpreter",
        "tools.peek:6 (write_card): an import of zipfile",
        "tools.peek:9 (peek): an import of tensorflow.lite.tools",
        "tools.peek:10 (peek): a call of keras.models.load_model",
        "tools.peek:11 (peek): a call of tf.saved_model.load",
    ]
    assert [r.split(" (")[1] for r in _model_file_reads(ast.parse(PEEK), "stages.save")] == [
        "module): an import of h5py",
        "module): an import of ai_edge_litert.interpreter",
        "peek): an import of tensorflow.lite.tools",
        "peek): a call of keras.models.load_model",
        "peek): a call of tf.saved_model.load",
    ]


# --- no re-export shims: each name is imported from the module that defines it ----------------

REPO = PACKAGE.parent
# Every module of the package (__init__.py included), by its dotted name.
PACKAGE_MODULES = {
    ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
    for p in sorted(PACKAGE.rglob("*.py"))
}
# What imports from the package: itself, the tests, the measurements, the docs' scripts.
CALLERS = sorted(
    {*PACKAGE.rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")}
    | {*(REPO / "docs").rglob("*.py")}
)


def _defined(tree: ast.Module) -> set[str]:
    """The names a module binds at its top (in its top-level if and try blocks too) other than
    by importing them: its functions, classes and assignments."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With)):
                names.update(
                    n.id
                    for n in ast.walk(node)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                )
            elif isinstance(node, ast.If):
                visit(node.body), visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body), visit(node.orelse), visit(node.finalbody)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return names


def _package_names(node: ast.ImportFrom) -> list[tuple[str, ast.alias]]:
    """(module, alias) for each name `node` imports from a package module, not a module itself
    (`from cnn_mnist.tools import runs` imports a module)."""
    module = node.module or ""
    if node.level or module not in PACKAGE_MODULES:
        return []
    return [(module, a) for a in node.names if f"{module}.{a.name}" not in PACKAGE_MODULES]


def _used(tree: ast.Module) -> set[str]:
    """The names a module reads, in its code and its annotations, quoted ones too."""
    annotations = [
        node.annotation if isinstance(node, (ast.arg, ast.AnnAssign)) else node.returns
        for node in ast.walk(tree)
        if isinstance(node, (ast.arg, ast.AnnAssign, ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    quoted = [
        ast.parse(a.value, mode="eval")
        for a in annotations
        if isinstance(a, ast.Constant) and isinstance(a.value, str)
    ]
    return {n.id for t in [tree, *quoted] for n in ast.walk(t) if isinstance(n, ast.Name)}


def _unused_imports(tree: ast.Module, lines: list[str]) -> list[str]:
    """Names a module imports from the package and never uses (a re-export: callers were meant
    to find them there), and package names imported under `# noqa: F401`."""
    used = _used(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        for module, alias in _package_names(node):
            name = alias.asname or alias.name
            noqa = "noqa: F401" in " ".join(lines[node.lineno - 1 : node.end_lineno])
            if name not in used or noqa:
                found.append(f"{node.lineno}: {name} from {module}" + (" (noqa)" if noqa else ""))
    return found


def _re_exported_uses(tree: ast.Module, defined: dict[str, set[str]]) -> list[str]:
    """Where a file takes a name from a package module that does not define it (that module
    only imports it): `from cnn_mnist.tools.runs import new_run_id`, or `runs.new_run_id`
    where `runs` is the module (a name bound only by that import)."""
    found = [
        f"{node.lineno}: {alias.name} from {module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for module, alias in _package_names(node)
        if alias.name not in defined[module]
    ]
    modules: dict[str, set[str]] = {}  # the package modules each name is bound to by imports
    rebound: set[str] = set()  # names also bound otherwise (a variable, an argument, a def)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in PACKAGE_MODULES:
                    modules.setdefault(a.asname or a.name, set()).add(f"{node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in PACKAGE_MODULES:
                    modules.setdefault(a.asname, set()).add(a.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            rebound.add(node.id)
        elif isinstance(node, ast.arg):
            rebound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            rebound.add(node.name)
    # One module per name, in the whole file: a name bound to two (in two functions) is left.
    unique = {name: next(iter(m)) for name, m in modules.items() if len(m) == 1}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = unique.get(node.value.id)
            if module is not None and node.value.id not in rebound:
                whole = f"{module}.{node.attr}"
                if node.attr not in defined[module] and whole not in PACKAGE_MODULES:
                    found.append(f"{node.lineno}: {node.value.id}.{node.attr} ({module})")
    return sorted(found, key=lambda where: int(where.split(":")[0]))


def test_no_module_re_exports_names_it_does_not_use():
    """A name imported from another package module is used where it is imported: no module
    keeps names for callers that once found them there (a shim)."""
    found = []
    for module, path in PACKAGE_MODULES.items():
        text = path.read_text(encoding="utf-8")
        found += [f"{module}:{f}" for f in _unused_imports(ast.parse(text), text.splitlines())]
    assert not found, "package names imported and not used (re-exports):\n" + "\n".join(found)


def test_each_name_is_imported_from_the_module_that_defines_it():
    """The package, the tests, bench/ and the docs' scripts take each name of the package from
    the module that defines it, never through one that imports it."""
    defined = {m: _defined(_tree(p)) for m, p in PACKAGE_MODULES.items()}
    found = [
        f"{path.relative_to(REPO)}:{use}"
        for path in CALLERS
        for use in _re_exported_uses(_tree(path), defined)
    ]
    assert not found, "names taken from a module that only imports them:\n" + "\n".join(found)


SHIM = """
from cnn_mnist.analysis.network import tile, to_rgb8
from cnn_mnist.stages.handle import LiteRTModel  # noqa: F401 - where callers found it
from cnn_mnist.stages import data
from cnn_mnist.tools import inspection as look

def picture(maps):
    return to_rgb8(maps), look.tile(maps), look.inspect_model, data.load_mnist
"""


def test_the_re_export_checks_see_a_shim():
    """The checks above find a name kept only for callers, one under noqa, and a caller that
    takes a name through a module that imports it; a module imported is no re-export."""
    tree = ast.parse(SHIM)
    assert _unused_imports(tree, SHIM.splitlines()) == [
        "2: tile from cnn_mnist.analysis.network",
        "3: LiteRTModel from cnn_mnist.stages.handle (noqa)",
    ]
    defined = {m: _defined(_tree(p)) for m, p in PACKAGE_MODULES.items()}
    defined["cnn_mnist.tools.inspection"] |= {"tile"}  # as if it still kept network's names
    assert _re_exported_uses(tree, defined) == []
    defined["cnn_mnist.tools.inspection"] -= {"tile"}
    assert _re_exported_uses(tree, defined) == ["8: look.tile (cnn_mnist.tools.inspection)"]


# --- imports at a module's top, but the heavy ones deferred on purpose ------------------------

# What is imported inside a function on purpose: the heavy libraries (seconds, or a large share
# of a command's start), and `resource`, which not every system has. A function may import one,
# or a package module that imports one at its top, where its module does not import that
# library already. The libraries that open a model file are imported only where one is read or
# written (READING_LIBRARIES, above).
HEAVY = (
    "tensorflow",
    "keras",
    "absl",  # TensorFlow's logging
    "tensorboard",
    "onnxruntime",
    "onnx",
    "tf2onnx",
    "ai_edge_litert",
    "h5py",
    "scipy",
    "optuna",
    "sqlalchemy",  # optuna's storage
    "matplotlib",
    "resource",  # POSIX only
    "webbrowser",  # 7 ms of `cnn --help`'s 70, for `cnn serve --open` alone
    "numpy",  # 0.1 s: `cnn runs` and `cnn config` need none
    "PIL",  # `cnn predict --index` needs none
    "pydantic",  # the config's schema: 0.05 s
)


# The libraries that open a model file stay inside the functions that read or write one
# (test_only_the_handle_reads_a_model_file).
READING_ROOTS = {name.split(".")[0] for name in READING_LIBRARIES}


def _import_targets(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """What an import statement imports: `cnn_mnist.stages.data` for `from cnn_mnist.stages
    import data`, `cnn_mnist.stages.data` for `from cnn_mnist.stages.data import prepare`."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [
        f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else str(node.module)
        for a in node.names
    ]


def _top_imports(tree: ast.Module, known: set[str]) -> list[str]:
    """The module's imports when it is imported: its top, `try` and `if` blocks, not those
    under `if TYPE_CHECKING:` (annotations alone)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(inner, (ast.Import, ast.ImportFrom)) and not getattr(inner, "level", 0):
                found += _import_targets(inner, known)
    return found


def _heavy_libraries(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """The heavy libraries each package module imports at its top, itself or through the
    package modules it imports there."""
    known = set(trees)
    tops = {name: _top_imports(tree, known) for name, tree in trees.items()}
    libraries: dict[str, set[str]] = {name: set() for name in trees}
    grew = True
    while grew:
        grew = False
        for name, targets in tops.items():
            found = set().union(*(_brings(t, libraries) for t in targets))
            if not found <= libraries[name]:
                libraries[name] |= found
                grew = True
    return libraries


def _brings(target: str, libraries: dict[str, set[str]]) -> set[str]:
    """The heavy libraries importing `target` imports."""
    root = target.split(".")[0]
    return {root} if root in HEAVY else libraries.get(target, set())


def _imports_in_functions(name: str, tree: ast.Module, libraries: dict[str, set[str]]):
    """`line: target` for each import inside a function that may as well be at the top: one
    that would bring no heavy library the module does not import already, and, in a command's
    module (cnn_mnist/cli: its top stays light for `cnn --help`), no package module."""
    found = []
    for function in _functions(tree):
        for node in ast.walk(function):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _import_targets(node, set(libraries)):
                if _brings(target, libraries) - libraries.get(name, set()):
                    continue
                if target.split(".")[0] in READING_ROOTS:  # only where a model file is read
                    continue
                if name.startswith("cnn_mnist.cli") and target.startswith("cnn_mnist."):
                    continue
                found.append(f"{node.lineno}: {target}")
    return found


def _package_trees() -> dict[str, ast.Module]:
    return {f"cnn_mnist.{_name(p)}": _tree(p) for p in MODULES}


def test_imports_are_at_the_top_but_the_heavy_ones():
    """A module imports what it needs at its top; inside a function only what is deferred on
    purpose (docs/layout.md): an import that would make the module import a heavy library
    (HEAVY) it does not import already, and in a command's module the package modules the
    command runs."""
    trees = _package_trees()
    libraries = _heavy_libraries(trees)
    found = [
        f"{name}:{where}"
        for name, tree in trees.items()
        for where in _imports_in_functions(name, tree, libraries)
    ]
    assert not found, "imports inside a function that belong at the top:\n" + "\n".join(found)


DEFERRED = """
import numpy as np

def train():
    import tensorflow as tf
    from cnn_mnist.stages import fit, data
    from cnn_mnist.core.paths import LOG_DIR
    import json
"""


def test_the_deferred_import_check_sees_a_light_import_in_a_function():
    libraries = _heavy_libraries(_package_trees())
    assert {"tensorflow", "numpy"} <= libraries["cnn_mnist.stages.fit"]
    assert libraries["cnn_mnist.core.paths"] == set()
    tree = ast.parse(DEFERRED)
    libraries["cnn_mnist.training.x"] = {"numpy"}  # as its top, `import numpy`, says
    assert _imports_in_functions("cnn_mnist.training.x", tree, libraries) == [
        "6: cnn_mnist.stages.data",
        "7: cnn_mnist.core.paths",
        "8: json",
    ]
    libraries["cnn_mnist.training.x"] = set()  # no numpy yet: stages.data would bring it
    assert _imports_in_functions("cnn_mnist.training.x", tree, libraries) == [
        "7: cnn_mnist.core.paths",
        "8: json",
    ]
    libraries["cnn_mnist.cli.x"] = {"numpy"}
    assert _imports_in_functions("cnn_mnist.cli.x", tree, libraries) == ["8: json"]
