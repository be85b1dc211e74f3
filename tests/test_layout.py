"""The layout the README draws is the one the imports have: layers, no cycles, no product code on tests.

`edge` is what runs in the clinic and imports no other package of this repository; `lab` is the
offline tools' shared core; `trainer` and `quantize` sit on both; `fleet` on the trainer; the
benchmarks on everything. A package imports only packages below it, so there is no cycle, and
nothing but the tests imports `tests`. Read from the source (every import statement, function-level
ones too), so a lazy import inside a function cannot hide a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Each product package and the layer it sits on: a package may import only lower layers.
LAYERS = {"edge": 0, "lab": 1, "trainer": 2, "quantize": 2, "fleet": 3, "benchmarks": 4}
#: Top-level names that mean this repository (anything else is a third-party or standard module).
OURS = {*LAYERS, "tests", "firmware_scripts"}


def imported_packages(path: Path) -> set[str]:
    """The repository's top-level packages that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


def package_imports() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the files that import it (the package's own imports left out)."""
    graph: dict[str, dict[str, list[str]]] = {}
    for package in LAYERS:
        edges: dict[str, list[str]] = {}
        for path in sorted((REPO / package).rglob("*.py")):
            for other in imported_packages(path) - {package}:
                edges.setdefault(other, []).append(str(path.relative_to(REPO)))
        graph[package] = edges
    return graph


def test_edge_imports_no_other_package_of_the_repository() -> None:
    assert package_imports()["edge"] == {}


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    upward = {
        other: files
        for other, files in package_imports()[package].items()
        if other not in LAYERS or LAYERS[other] >= LAYERS[package]
    }
    assert upward == {}, f"{package} imports a package beside or above it (or tests): {upward}"


def test_product_code_never_imports_tests() -> None:
    product = [*LAYERS, "firmware_scripts"]
    offenders = [
        str(path.relative_to(REPO))
        for package in product
        for path in sorted((REPO / package).rglob("*.py"))
        if "tests" in imported_packages(path)
    ]
    assert offenders == []


def test_no_entry_module_is_used_as_a_library() -> None:
    """A tool's `__main__` is its command line only: shared options live in modules of their own."""
    offenders = []
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("__main__"):
                    offenders.append(f"{path.relative_to(REPO)}: {node.module}")
    assert offenders == []


#: The kiosk app's concerns: edge/webapp keeps only its app factory at the top, every other module
#: sits in one of these (docs/kiosk.md, "Code").
WEBAPP_PACKAGES = {"access", "display", "intake", "records", "views"}


def test_the_kiosk_app_has_no_flat_module_beside_its_factory() -> None:
    webapp = REPO / "edge" / "webapp"
    assert sorted(path.name for path in webapp.glob("*.py")) == ["__init__.py"]
    packages = {path.parent.name for path in webapp.glob("*/__init__.py")}
    assert packages == WEBAPP_PACKAGES
    for package in sorted(packages):
        body = ast.parse((webapp / package / "__init__.py").read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{package}/__init__.py: a docstring only"
        assert list((webapp / package).glob("*/*.py")) == [], f"{package} has no deeper packages"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_there_is_no_import_cycle_between_packages() -> None:
    graph = {package: set(edges) for package, edges in package_imports().items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"trainer": {"edge", "fleet"}, "fleet": {"trainer"}, "edge": set()}) == [
        "fleet",
        "trainer",
        "fleet",
    ]


def test_running_the_kiosk_loads_nothing_offline() -> None:
    """What the import statements cannot show (importlib, a package's __init__): the modules loaded."""
    code = (
        "import sys\n"
        "import edge.__main__, edge.webapp\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(OURS - {'edge'})!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
