"""The package's shape (issues #17, #27): geolab's modules import each other at module level without
cycles, so that the dependency graph a reader sees is the real one; nothing runs back up between
subpackages taken as units (course/, viz/, sources/, world/, dense/); no module grows past about
600 lines (one job per module) and no function past 100 lines (one job per function)."""

from __future__ import annotations

import ast
from pathlib import Path

import geolab

ROOT = Path(geolab.__file__).parent
MAX_LINES = 620  # "about 600": a module this long does more than one job; split it by job
MAX_FUNCTION_LINES = 100  # a function this long does more than one job; split it into named helpers
#: Subpackages taken each as one unit: no import cycle between them and the top-level modules.
UNITS = ("course", "viz", "sources", "world", "dense")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The geolab modules that ``path`` imports when it is imported (``TYPE_CHECKING`` blocks excluded)."""
    module, tree = _module(path), ast.parse(path.read_text())
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []),
                              *[h.body for h in getattr(node, "handlers", [])]):
                    visit(block)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from geolab import io`

    visit(tree.body)
    return {m for m in found if m in modules and m != module}


def _graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {_module(p) for p in files}
    return {_module(p): _runtime_imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package importing its own submodules is how packages work
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt) and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (found := dfs(node)):
            return found
    return None


def _unit(module: str) -> str:
    """``module``'s unit: its subpackage when it sits in one of :data:`UNITS`, else the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in UNITS else module


def _unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` with each unit's modules merged into one node (imports inside a unit dropped)."""
    units: dict[str, set[str]] = {}
    for module, imports in graph.items():
        node = _unit(module)
        units.setdefault(node, set()).update(u for u in map(_unit, imports) if u != node)
    return units


def test_no_import_cycle_between_geolab_modules():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    """The check itself can fail: a made-up graph with a cycle is caught."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_over_about_600_lines():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_no_import_cycle_between_units():
    """Taking course/, viz/, sources/, world/ and dense/ each as one unit (top-level modules alone), no
    arrow runs back up: e.g. the statistics sit below both the course and the plots that use them
    (``geolab.stats``), and the official-checkpoint reader sits beside the other weight readers
    (``geolab.official_weights``), so real data (``sources/``) does not depend on the model."""
    graph = _graph()
    cycle = _cycle(_unit_graph(graph))
    if cycle:
        arrows = [f"{a} -> {b} (" + ", ".join(f"{m} imports {n}" for m in sorted(graph) if _unit(m) == a
                                          for n in sorted(graph[m]) if _unit(n) == b) + ")"
                  for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle between units: " + "; ".join(arrows))


def test_the_unit_check_merges_a_subpackage():
    """The unit graph merges a subpackage's modules, so a cycle through two of its modules is caught."""
    graph = {"geolab.viz.curves": {"geolab.course.stats"}, "geolab.course.stats": set(),
             "geolab.course.invariance": {"geolab.viz"}, "geolab.viz": set(), "geolab.io": set()}
    units = _unit_graph(graph)
    assert units == {"geolab.viz": {"geolab.course"}, "geolab.course": {"geolab.viz"}, "geolab.io": set()}
    assert _cycle(units) is not None


def _function_lines(source: str) -> dict[str, int]:
    """Each function's length in lines, from its ``def`` to its last line (methods and nested functions too)."""
    return {node.name: (node.end_lineno or node.lineno) - node.lineno + 1 for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _long_functions() -> dict[str, int]:
    """``{"path:name": lines}`` of geolab's functions over :data:`MAX_FUNCTION_LINES`."""
    return {f"{path.relative_to(ROOT.parent)}:{name}": n for path in sorted(ROOT.rglob("*.py"))
            for name, n in _function_lines(path.read_text()).items() if n > MAX_FUNCTION_LINES}


def test_the_function_check_counts_def_to_last_line():
    """The check itself can fail: a made-up function of 101 lines is over, one of 100 is not."""
    source = "def long():\n" + "    x = 1\n" * 100 + "class C:\n    def ok(self):\n" + "        x = 1\n" * 99
    assert _function_lines(source) == {"long": 101, "ok": 100}


def test_no_function_is_over_100_lines():
    long = _long_functions()
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them by job into named helpers): {long}"


def test_user_facing_errors_derive_from_user_error():
    """The errors whose message is the whole story derive from ``geolab.errors.UserError`` (the CLI shows them
    without a traceback) and keep their old base, so ``except ValueError`` / ``RuntimeError`` callers still work."""
    import importlib  # noqa: PLC0415 - only this test needs it

    from geolab.errors import UserError  # noqa: PLC0415

    expected = {
        "geolab.manifest.ManifestError": ValueError, "geolab.official_weights.OfficialCheckpointError": ValueError,
        "geolab.weights.WeightsError": ValueError, "geolab.sources.fmow.FmowMetadataError": ValueError,
        "geolab.sources.s3.S3Error": RuntimeError, "geolab.sources.s3.ListingError": RuntimeError,
        "geolab.sources.s3.UnsafeKeyError": ValueError, "geolab.sources.s3.DownloadError": RuntimeError,
        "geolab.sources.prepare.PrepareError": RuntimeError, "geolab.viz.assets.AssetError": RuntimeError,
        "geolab.viz.folium_map.OfflineMapError": RuntimeError,
    }
    for name, old_base in expected.items():
        module, _, cls = name.rpartition(".")
        error = getattr(importlib.import_module(module), cls)
        assert issubclass(error, UserError) and issubclass(error, old_base), name
