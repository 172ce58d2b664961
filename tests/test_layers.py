"""
The package's layers, read from its source: no import cycle, no import upwards, small modules.

Every module of ``wslocust/`` is parsed with :mod:`ast`. An import counts wherever it
is written (at module level, inside a function or class, under ``try``), and so does
``importlib.import_module("literal")``; only imports under ``if TYPE_CHECKING:`` do
not, since they never run. Relative imports are resolved against the importing module.
The self-checks at the end run the same reader on a small package written to a
temporary folder, so that a reader that missed imports could not pass silently.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "wslocust"

# The layers from the bottom up. A module may import modules of its own layer and of the
# layers below it, never above. "name.*" is a package with everything in it.
STACK: list[tuple[str, list[str]]] = [
    (
        "foundation",
        [
            "wslocust.exceptions",
            "wslocust.redaction",
            "wslocust.formatting",
            "wslocust.arguments",
            "wslocust.gc_freeze",
        ],
    ),
    ("codec", ["wslocust.codec.*"]),
    ("transport", ["wslocust.transport.*"]),
    # Every patch of a Locust internal: it imports only Locust, so each Locust-facing layer above may call it.
    ("locust seam", ["wslocust.locust_compat.*"]),
    ("run", ["wslocust.run.*"]),
    ("user", ["wslocust.user.*"]),
    ("integration", ["wslocust.integration.*"]),
    ("reporting", ["wslocust.reporting.*"]),
    ("wiring", ["wslocust.wiring"]),
    # The commands: `wslocust suite` runs Locust as subprocesses, `wslocust options` lists the run's options.
    ("top", ["wslocust.cli", "wslocust", "wslocust.__main__", "wslocust.suite.*", "wslocust.options_command"]),
]


@dataclass(frozen=True)
class Beside:
    """A layer outside the stack: what it may import, and who may import it."""

    modules: list[str]
    may_import: set[str]
    imported_by: set[str]


BESIDE: dict[str, Beside] = {
    # The reference server: the embedded server (integration), the wiring and the CLI start it.
    "server": Beside(["wslocust.server.*"], {"foundation", "codec"}, {"integration", "wiring", "top"}),
    # A plain HTTP client of a running master: `wslocust monitor`.
    "monitor": Beside(["wslocust.monitor", "wslocust.monitor_screen"], {"foundation"}, {"top"}),
}

# Modules from outside the package (by top-level name) that a layer must not import.
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {
    "foundation": {"locust", "gevent"},
    "codec": {"locust", "gevent", "socket"},  # sans-I/O
    "transport": {"locust"},
    "monitor": {"locust", "gevent"},
}
# Modules from outside the package that only these modules may import.
ONLY_IMPORTED_BY: dict[str, set[str]] = {
    "websocket": {"wslocust.transport.connection"},  # websocket-client: the benchmarks' baseline only
}

# A fresh interpreter importing one of these must not load Locust or gevent.
PURE_MODULES = ["wslocust.monitor", "wslocust.monitor_screen", *STACK[0][1]]
PURE_PACKAGES = ["wslocust.codec"]  # and each of its modules

MAX_LINES = 400
LONG_MODULES = {"wslocust/codec/frames.py", "wslocust/codec/protocol.py"}  # up to LONGEST
LONGEST = 650


# Reading the imports -------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import statement's target, seen from the module that runs it."""

    source: str
    """The importing module, e.g. ``wslocust.user.websocket_user``."""
    target: str
    """The imported module: a module of the package when one matches, else the name as written."""
    location: str
    """``path:line`` of the statement, the path relative to the package's parent folder."""


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (a folder in ``root``) by dotted name; a package is its ``__init__``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, str | None, int]]:
    """(module, name imported from it or None, line) of every import that runs, wherever it is written."""
    found: list[tuple[str, str | None, int]] = []
    own_package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the body runs only under a type checker
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = own_package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.extend((base, alias.name, node.lineno) for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.args[0].value, None, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def read_imports(root: Path, package: str) -> tuple[dict[str, Path], list[Import]]:
    """
    Every module of ``package`` and every import they run.

    ``from a.b import c`` imports the module ``a.b.c`` when there is one, else ``a.b``.
    """
    modules = module_files(root, package)
    imports = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for base, name, line in _imported_names(tree, module, path.name == "__init__.py"):
            submodule = f"{base}.{name}"
            target = submodule if name is not None and submodule in modules else base
            imports.append(Import(module, target, f"{path.relative_to(root)}:{line}"))
    return modules, imports


def internal_graph(modules: dict[str, Path], imports: list[Import]) -> dict[str, dict[str, Import]]:
    """Module -> the package's modules it imports (a module importing itself is left out)."""
    graph: dict[str, dict[str, Import]] = {module: {} for module in modules}
    for item in imports:
        if item.target in modules and item.target != item.source:
            graph[item.source].setdefault(item.target, item)
    return graph


def find_cycles(graph: dict[str, dict[str, Import]]) -> list[tuple[set[str], list[Import]]]:
    """
    Each group of modules that import each other (Tarjan's strongly connected components),
    with the shortest cycle through its first module.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [(component, _a_cycle_through(graph, component)) for component in components]


def _a_cycle_through(graph: dict[str, dict[str, Import]], component: set[str]) -> list[Import]:
    """The shortest cycle from the component's first module back to it, as the imports that close it."""
    start = min(component)
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target, item in sorted(graph[node].items()):
            if target == start:
                return [*paths[node], item]
            if target in component and target not in paths:
                paths[target] = [*paths[node], item]
                queue.append(target)
    raise AssertionError(f"no cycle in {component}")


def describe_cycle(component: set[str], cycle: list[Import]) -> str:
    path = " -> ".join([cycle[0].source, *(item.target for item in cycle)])
    where = ", ".join(item.location for item in cycle)
    return f"{len(component)} modules import each other: {', '.join(sorted(component))}\n  e.g. {path}  ({where})"


# Layers ----------------------------------------------------------------------------


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        package = pattern[:-2]
        return module == package or module.startswith(package + ".")
    return module == pattern


def layer_of(module: str, stack: list[tuple[str, list[str]]], beside: dict[str, Beside]) -> str | None:
    layers = [*stack, *((name, rule.modules) for name, rule in beside.items())]
    return next((name for name, patterns in layers if any(_matches(module, p) for p in patterns)), None)


def layer_violations(
    modules: dict[str, Path],
    imports: list[Import],
    stack: list[tuple[str, list[str]]],
    beside: dict[str, Beside],
) -> list[str]:
    """Each import that goes up the stack or breaks a beside layer's rule; each module without a layer."""
    rank = {name: position for position, (name, _) in enumerate(stack)}
    layers = {module: layer_of(module, stack, beside) for module in modules}
    problems = [f"{module} has no layer: add it to STACK or BESIDE" for module, layer in layers.items() if not layer]
    for item in imports:
        source, target = layers[item.source], layers.get(item.target)
        if not source or not target or source == target:
            continue
        if source in beside and target not in beside[source].may_import:
            allowed = ", ".join(sorted(beside[source].may_import))
            problems.append(f"{item.location}: {item.source} ({source}) imports {item.target} ({target}); "
                            f"{source} may import only {allowed}")  # fmt: skip
        elif target in beside and source not in beside[target].imported_by:
            allowed = ", ".join(sorted(beside[target].imported_by))
            problems.append(f"{item.location}: {item.source} ({source}) imports {item.target} ({target}); "
                            f"only {allowed} may import {target}")  # fmt: skip
        elif source in rank and target in rank and rank[target] > rank[source]:
            problems.append(
                f"{item.location}: {item.source} ({source}) imports {item.target} ({target}), a higher layer"
            )
    return problems


def external_violations(
    imports: list[Import],
    stack: list[tuple[str, list[str]]],
    beside: dict[str, Beside],
    forbidden: dict[str, set[str]],
    only_imported_by: dict[str, set[str]],
) -> list[str]:
    """Each import of a module from outside the package that the importing layer or module may not import."""
    problems = []
    for item in imports:
        top_level = item.target.partition(".")[0]
        layer = layer_of(item.source, stack, beside) or ""
        if top_level in forbidden.get(layer, ()):
            problems.append(f"{item.location}: {item.source} ({layer}) imports {item.target}")
        elif top_level in only_imported_by and item.source not in only_imported_by[top_level]:
            allowed = ", ".join(sorted(only_imported_by[top_level]))
            problems.append(f"{item.location}: {item.source} imports {item.target}; only {allowed} may")
    return problems


# The package -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def package() -> tuple[dict[str, Path], list[Import]]:
    return read_imports(ROOT, PACKAGE)


def test_no_import_cycle(package):
    modules, imports = package
    cycles = find_cycles(internal_graph(modules, imports))
    assert not cycles, "import cycles:\n" + "\n".join(describe_cycle(*found) for found in cycles)


def test_no_layer_imports_a_higher_one(package):
    modules, imports = package
    problems = layer_violations(modules, imports, STACK, BESIDE)
    assert not problems, f"{len(problems)} imports break the layers:\n" + "\n".join(problems)


def test_every_import_of_the_package_names_a_module_that_exists(package):
    modules, imports = package
    missing = [
        f"{item.location}: {item.target}"
        for item in imports
        if item.target.partition(".")[0] == PACKAGE and item.target not in modules
    ]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_low_layers_import_neither_locust_nor_gevent_and_only_the_connection_websocket_client(package):
    _, imports = package
    problems = external_violations(imports, STACK, BESIDE, FORBIDDEN_EXTERNAL, ONLY_IMPORTED_BY)
    assert not problems, "\n".join(problems)


def _pure_modules() -> list[str]:
    modules = module_files(ROOT, PACKAGE)
    return PURE_MODULES + [name for name in modules if any(_matches(name, f"{p}.*") for p in PURE_PACKAGES)]


def locust_and_gevent_loaded_by(module: str) -> list[str]:
    """The ``locust`` and ``gevent`` modules that a fresh interpreter holds after importing ``module``."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.partition('.')[0] in ('locust', 'gevent'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", _pure_modules())
def test_importing_a_pure_module_loads_neither_locust_nor_gevent(module):
    loaded = locust_and_gevent_loaded_by(module)
    assert not loaded, f"import {module} loads {', '.join(loaded[:8])}{' ...' if len(loaded) > 8 else ''}"


def test_modules_are_small():
    problems = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        limit = LONGEST if name in LONG_MODULES else MAX_LINES
        if lines > limit:
            problems.append(f"{name}: {lines} lines (at most {limit})")
    assert not problems, "\n".join(problems)


# Self-checks: the reader and the checks catch what they must -------------------------


@pytest.fixture
def tiny_package(tmp_path: Path) -> Path:
    """``pkg``: ``low`` imports ``high`` inside a function, ``high`` imports ``low`` back."""
    files = {
        "pkg/__init__.py": "",
        "pkg/low.py": "import json\n\n\ndef later():\n    from pkg import high\n",
        "pkg/high.py": "from . import low\n",
        "pkg/typed.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg import high\nelse:\n    from pkg.low import later\n"
        ),
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "import importlib\nfrom ..low import later\n\nimportlib.import_module('pkg.high')\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_reader_finds_imports_in_functions_relative_and_dynamic_ones_but_not_type_checking_ones(tiny_package):
    modules, imports = read_imports(tiny_package, "pkg")
    assert set(modules) == {"pkg", "pkg.low", "pkg.high", "pkg.typed", "pkg.sub", "pkg.sub.deep"}
    graph = internal_graph(modules, imports)
    assert {module: sorted(targets) for module, targets in graph.items() if targets} == {
        "pkg.low": ["pkg.high"],
        "pkg.high": ["pkg.low"],
        "pkg.typed": ["pkg.low"],  # the else branch runs; the TYPE_CHECKING body does not
        "pkg.sub.deep": ["pkg.high", "pkg.low"],
    }
    assert graph["pkg.low"]["pkg.high"].location == "pkg/low.py:5"
    assert any(item.target == "json" for item in imports)


def test_a_cycle_is_found_and_named(tiny_package):
    cycles = find_cycles(internal_graph(*read_imports(tiny_package, "pkg")))
    (component, cycle), *others = cycles
    assert not others
    assert describe_cycle(component, cycle) == (
        "2 modules import each other: pkg.high, pkg.low\n"
        "  e.g. pkg.high -> pkg.low -> pkg.high  (pkg/high.py:1, pkg/low.py:5)"
    )


def test_an_import_upwards_is_named_with_its_line(tiny_package):
    stack = [("bottom", ["pkg.low", "pkg.sub.*"]), ("top", ["pkg", "pkg.high", "pkg.typed"])]
    assert layer_violations(*read_imports(tiny_package, "pkg"), stack, {}) == [
        "pkg/low.py:5: pkg.low (bottom) imports pkg.high (top), a higher layer",
        "pkg/sub/deep.py:4: pkg.sub.deep (bottom) imports pkg.high (top), a higher layer",
    ]


def test_a_layer_beside_the_stack_imports_and_is_imported_only_as_allowed(tiny_package):
    stack = [("bottom", ["pkg.sub.*"]), ("top", ["pkg", "pkg.high"])]
    beside = {"aside": Beside(["pkg.low"], may_import={"top"}, imported_by={"top"})}
    assert layer_violations(*read_imports(tiny_package, "pkg"), stack, beside) == [
        "pkg.typed has no layer: add it to STACK or BESIDE",
        "pkg/sub/deep.py:2: pkg.sub.deep (bottom) imports pkg.low (aside); only top may import aside",
        "pkg/sub/deep.py:4: pkg.sub.deep (bottom) imports pkg.high (top), a higher layer",
    ]
    beside = {"aside": Beside(["pkg.low"], may_import={"bottom"}, imported_by={"top", "bottom"})}
    stack[1][1].append("pkg.typed")
    assert layer_violations(*read_imports(tiny_package, "pkg"), stack, beside) == [
        "pkg/low.py:5: pkg.low (aside) imports pkg.high (top); aside may import only bottom",
        "pkg/sub/deep.py:4: pkg.sub.deep (bottom) imports pkg.high (top), a higher layer",
    ]


def test_a_forbidden_outside_import_is_named_with_its_line(tiny_package):
    stack = [("bottom", ["pkg.low", "pkg.sub.*"]), ("top", ["pkg", "pkg.high", "pkg.typed"])]
    imports = read_imports(tiny_package, "pkg")[1]
    assert external_violations(imports, stack, {}, {"bottom": {"importlib"}}, {"json": {"pkg.high"}}) == [
        "pkg/low.py:1: pkg.low imports json; only pkg.high may",
        "pkg/sub/deep.py:1: pkg.sub.deep (bottom) imports importlib",
    ]


def test_the_import_probe_sees_gevent_loaded():
    assert "gevent" in locust_and_gevent_loaded_by("wslocust.transport.connection")
