"""The layering docs/ARCHITECTURE.md ("Layout") promises, read from the source.

Every module under the packages below is parsed (never imported: nothing runs) and every import
it states is collected, at module level, inside functions and under ``TYPE_CHECKING`` alike: a
deferred import is still a dependency, it is only paid later. From that graph: no import circle
between modules, each package imports only the packages the table allows, and each heavy
third-party library has exactly the importers the page names.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("albatross", "searcher", "indexer", "protos", "deploy")

# docs/ARCHITECTURE.md, "Layout": the first-party packages each package may import.
MAY_IMPORT = {
    "albatross": {"albatross", "searcher", "indexer"},
    "searcher": {"searcher", "indexer", "protos"},
    "indexer": {"indexer"},
    "protos": {"protos"},
    "deploy": {"deploy", "albatross"},
}
# Third-party libraries a package never imports ("never grpc or the stubs").
NEVER_IMPORTS = {"indexer": {"grpc", "grpc_health", "grpc_reflection", "aiohttp"}}
# The only importers of each library that is wrapped behind one seam.
ONLY_IMPORTERS = {
    "faiss": {"indexer.index"},
    "tantivy": {"indexer.lexical"},
    "sqlalchemy": {
        "indexer.schema",
        "indexer.engine",
        "indexer.store",
        "indexer.store_errors",
        "indexer.filters",
        "indexer.filter_indexes",
        "indexer.migrations",
    },
}
# The training pipeline builds the shipped model; nothing outside it may depend on it, so the
# teacher's dependencies (the optional ``train`` extra) are never needed to serve or evaluate.
TRAINING = "albatross.training"


@dataclass(frozen=True)
class Import:
    """One imported name as written, where ``module`` imported it."""

    module: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path) -> list[Import]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path, node)
            found.append(Import(module, source, node.lineno))
            # ``from package import submodule`` imports the submodule too.
            found += [
                Import(module, f"{source}.{alias.name}", node.lineno)
                for alias in node.names
                if f"{source}.{alias.name}" in MODULES
            ]
    return found


IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _where(imported: Import) -> str:
    return f"{MODULES[imported.module].relative_to(ROOT)}:{imported.line} imports {imported.target}"


def _top(name: str) -> str:
    return name.split(".")[0]


def _edges() -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (a package's ``__init__`` counts as a module)."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, imports in IMPORTS.items():
        for imported in imports:
            if imported.target in MODULES and imported.target != module:
                graph[module].add(imported.target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as the list of modules along it (first repeated last), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for step in sorted(graph[module]):
            circle = visit(step, path + [module])
            if circle is not None:
                return circle
        done.add(module)
        return None

    for start in sorted(graph):
        circle = visit(start, [])
        if circle is not None:
            return circle
    return None


def test_the_walk_sees_every_package_and_deferred_imports() -> None:
    assert {_top(module) for module in MODULES} == set(PACKAGES)
    # searcher.server opens the indexes inside functions: those imports must be in the graph.
    assert "indexer.sync" in _edges()["searcher.server"]


def test_the_cycle_finder_reports_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_between_modules() -> None:
    circle = _cycle(_edges())

    assert circle is None, "import circle: " + " -> ".join(circle or [])


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_packages_below_it(package: str) -> None:
    first_party = set(MAY_IMPORT)
    wrong = [
        _where(imported)
        for module, imports in IMPORTS.items()
        if _top(module) == package
        for imported in imports
        if _top(imported.target) in first_party - MAY_IMPORT[package]
        or _top(imported.target) in NEVER_IMPORTS.get(package, set())
    ]

    assert wrong == [], f"{package} may import only {sorted(MAY_IMPORT[package])}: " + "; ".join(wrong)


@pytest.mark.parametrize("library", sorted(ONLY_IMPORTERS))
def test_a_wrapped_library_has_exactly_its_named_importers(library: str) -> None:
    named = ONLY_IMPORTERS[library]
    by = [(_named_as(module, named), imported) for module, imports in IMPORTS.items() for imported in imports]
    by = [(name, imported) for name, imported in by if _top(imported.target) == library]
    wrong = [_where(imported) for name, imported in by if name not in named]

    assert wrong == [], f"only {sorted(named)} may import {library}: " + "; ".join(wrong)
    # The page names exactly the importers: one that stopped importing it leaves the list.
    assert {name for name, _ in by} == named


def _named_as(module: str, named: set[str]) -> str:
    """``module``, or the package in ``named`` it lies in (the migrations count as one)."""
    return next((package for package in named if module.startswith(package + ".")), module)


def test_nothing_outside_training_imports_training() -> None:
    wrong = [
        _where(imported)
        for module, imports in IMPORTS.items()
        if module != TRAINING and not module.startswith(TRAINING + ".")
        for imported in imports
        if imported.target == TRAINING or imported.target.startswith(TRAINING + ".")
    ]

    assert wrong == [], "; ".join(wrong)


def test_the_command_and_the_ray_job_enter_through_the_shell() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    targets = {imported.target for imported in IMPORTS["deploy.ray.ingest_job"]}

    assert scripts == {"albatross": "albatross.cli:main"}
    assert "albatross.cli" in targets
