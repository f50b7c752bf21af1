"""The package layout's rules, checked on the source with `ast` (nothing is imported).

(a) no import cycle inside `harness` or `mock_orders_api`, counting imports under
    `if TYPE_CHECKING:` and inside functions (Python tolerates those; a reader does not);
(b) `harness.core` is pure: no event loop, HTTP client, dataframe, plotting or web framework;
(c) `harness.load` (Locust, gevent) never pulls in the asyncio drivers `harness.live` / `harness.sim`;
(d) `mock_orders_api` never imports `harness` (the dependency is one-way).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "mock_orders_api")
CORE_FORBIDDEN = ("asyncio", "httpx", "pandas", "numpy", "matplotlib", "gevent", "fastapi", "starlette", "locust")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in the file (top level, functions, TYPE_CHECKING blocks)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            # `from pkg import mod` imports the submodule pkg.mod when there is one.
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def _graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (a package counts as its __init__)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {m for m in _imports(name, path) if m in modules}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: edges to those packages too
        # (a module's own parent packages are already running when it is imported).
        targets |= {p for m in targets for p in _parents(m) if p in modules}
        graph[name] = targets - {name} - _parents(name)
    return graph


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def _imports_under(prefix: str) -> dict[str, set[str]]:
    package = prefix.split(".")[0]
    return {n: _imports(n, p) for n, p in _modules(package).items() if n == prefix or n.startswith(prefix + ".")}


def _hits(imported: set[str], forbidden: tuple[str, ...]) -> set[str]:
    return {m for m in imported if any(m == f or m.startswith(f + ".") for f in forbidden)}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    cycle = _find_cycle(_graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_reports_the_path() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_harness_core_is_pure() -> None:
    bad = {n: _hits(i, CORE_FORBIDDEN) for n, i in _imports_under("harness.core").items()}
    assert bad and not {n: h for n, h in bad.items() if h}


def test_harness_load_never_imports_the_asyncio_drivers() -> None:
    if not (ROOT / "harness" / "load").is_dir():
        pytest.skip("harness.load does not exist yet")
    bad = {n: _hits(i, ("harness.live", "harness.sim")) for n, i in _imports_under("harness.load").items()}
    assert not {n: h for n, h in bad.items() if h}


def test_mock_orders_api_never_imports_harness() -> None:
    bad = {n: _hits(i, ("harness",)) for n, i in _imports_under("mock_orders_api").items()}
    assert bad and not {n: h for n, h in bad.items() if h}
