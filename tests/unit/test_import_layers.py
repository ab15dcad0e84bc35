"""clbench's import graph has no cycle and every import points down the layer table in
``clbench/__init__.py`` (issue 18). A static AST scan: nothing is imported, so it runs in
milliseconds and sees function-level imports too."""

from __future__ import annotations

import ast
import graphlib
import itertools
import re
from pathlib import Path

import clbench

PACKAGE_DIR = Path(clbench.__file__).resolve().parent
# The results views read run directories; these layers hold the runner and what it trains with.
TRAINING_LAYERS = ("runner", "strategy", "engine", "model, data")


# --------------------------------------------------------------------------- the checker
def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``package_dir``."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module, runtime: bool) -> list[ast.Import | ast.ImportFrom]:
    """``runtime``: every import that can execute (function-level included, ``if TYPE_CHECKING:``
    blocks excluded). Otherwise: the module-level imports, ``TYPE_CHECKING`` blocks included."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif runtime and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        elif not runtime and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules one import statement in module ``name`` loads by name."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: a package's own name counts as its first level
            anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        # ``from p import x`` loads module p.x when x is one, else p itself.
        candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    hits = set()
    for candidate in candidates:
        while candidate and candidate not in modules:  # ``import p.q.f`` where f is not a module
            candidate = candidate.rpartition(".")[0]
        if candidate and candidate != name:
            hits.add(candidate)
    return hits


def import_graph(package_dir: Path, runtime: bool = True) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see :func:`_imports` for ``runtime``)."""
    modules = module_names(package_dir)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set().union(*(_targets(n, name, is_package, set(modules)) for n in _imports(tree, runtime)))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]`` (each imports the next), or [] when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))  # graphlib lists it against the import direction
    return []


def describe(cycle: list[str]) -> str:
    edges = ", ".join(f"{a} -> {b}" for a, b in itertools.pairwise(cycle))
    return f"import cycle among {sorted(set(cycle))}: {edges}"


def declared_layers(doc: str, package: str) -> dict[str, tuple[int, str]]:
    """Module -> (rank, layer name) from the ``name: mod, mod`` lines of ``doc``'s layer table
    (rank 0 at the top). ``__init__`` is the package itself; a subpackage covers its modules."""
    layers = {}
    for rank, (layer, names) in enumerate(re.findall(r"^ {4}([a-z ,]+):\s+(.+)$", doc, flags=re.MULTILINE)):
        for short in names.split(","):
            short = short.strip()
            layers[package if short == "__init__" else f"{package}.{short}"] = (rank, layer)
    return layers


def layer_of(module: str, layers: dict[str, tuple[int, str]]) -> tuple[int, str] | None:
    while module:
        if module in layers:
            return layers[module]
        module = module.rpartition(".")[0]
    return None


def upward_imports(graph: dict[str, set[str]], layers: dict[str, tuple[int, str]]) -> list[str]:
    """``a (layer) -> b (layer)`` for every import of a module by one in a lower layer."""
    found = []
    for source, targets in sorted(graph.items()):
        here = layer_of(source, layers)
        for target in sorted(targets):
            there = layer_of(target, layers)
            if here and there and there[0] < here[0]:
                found.append(f"{source} ({here[1]}) -> {target} ({there[1]})")
    return found


# ------------------------------------------------------------------------ clbench itself
LAYERS = declared_layers(clbench.__doc__ or "", "clbench")


def test_the_runtime_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph(PACKAGE_DIR, runtime=True))
    assert not cycle, describe(cycle)


def test_the_module_level_import_graph_with_type_checking_imports_has_no_cycle():
    cycle = find_cycle(import_graph(PACKAGE_DIR, runtime=False))
    assert not cycle, describe(cycle)


def test_every_module_has_a_layer():
    assert len(LAYERS) > 30, "the layer table in clbench/__init__.py's docstring was not found"
    missing = [name for name in module_names(PACKAGE_DIR) if layer_of(name, LAYERS) is None]
    assert not missing, f"place these modules in the layer table of clbench/__init__.py: {missing}"
    stale = [name for name in LAYERS if name not in module_names(PACKAGE_DIR)]
    assert not stale, f"the layer table names modules that do not exist: {stale}"


def test_imports_go_to_the_same_layer_or_below():
    upward = upward_imports(import_graph(PACKAGE_DIR, runtime=True), LAYERS)
    assert not upward, "imports up the layer table (clbench/__init__.py):\n" + "\n".join(upward)


def test_results_views_never_import_the_training_machinery():
    graph = import_graph(PACKAGE_DIR, runtime=True)
    views = [name for name in graph if LAYERS.get(name, (0, ""))[1] == "views"]
    assert views
    found = [
        f"{v} -> {t}" for v in views for t in sorted(graph[v]) if (layer_of(t, LAYERS) or (0, ""))[1] in TRAINING_LAYERS
    ]
    assert not found, found


# --------------------------------------------------------------------- the checker itself
def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in {"__init__.py": "", **files}.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text)
    return package


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = _package(
        tmp_path,
        {
            "a.py": "from pkg import b\n",
            "b.py": "def f():\n    from pkg.sub.c import g\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..a import x\ndef g(): pass\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.sub.c"] == {"pkg.a"}
    cycle = find_cycle(graph)
    assert set(cycle) == {"pkg.a", "pkg.b", "pkg.sub.c"} and cycle[0] == cycle[-1]
    assert "pkg.a -> pkg.b" in describe(cycle) or "pkg.b -> pkg.sub.c" in describe(cycle)
    assert find_cycle(import_graph(package, runtime=False)) == []  # b's import is inside a function


def test_the_checker_tells_type_checking_imports_apart(tmp_path):
    package = _package(
        tmp_path,
        {
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "import pkg.a\nclass B: pass\n",
        },
    )
    assert find_cycle(import_graph(package, runtime=True)) == []
    assert set(find_cycle(import_graph(package, runtime=False))) == {"pkg.a", "pkg.b"}


def test_the_checker_finds_an_upward_import(tmp_path):
    package = _package(tmp_path, {"top.py": "", "low.py": "def f():\n    from pkg import top\n"})
    layers = declared_layers("Layers::\n\n    high: top\n    low: low, __init__\n", "pkg")
    assert upward_imports(import_graph(package), layers) == ["pkg.low (low) -> pkg.top (high)"]


def test_describe_names_modules_and_edges():
    assert describe(["a", "b", "a"]) == "import cycle among ['a', 'b']: a -> b, b -> a"
