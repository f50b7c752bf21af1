"""The shipped scenarios (the top-level `scenarios/*.toml`), found by name from any directory.

Contract: `find_scenario(ref)` returns a readable scenario file for `ref`, which is either a
path to a TOML file (relative to the working directory, as always) or the name of a built-in
scenario (`ticket-1348894`, with or without `.toml`). An existing path wins over a built-in of
the same name. Anything else raises `ScenarioError` listing the built-in names.

Where the built-ins live: the packaging (setup.py) ships the top-level `scenarios/` folder as
the package data of `harness.scenarios` (the folder itself, not a copy), so an editable and a
regular wheel install both find them as that package's folder. A source checkout put
on `sys.path` without installing (PYTHONPATH) has no such package: then the checkout's own
`scenarios/` folder, next to `harness/`, is used.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from harness.errors import ScenarioError

DEFAULT_SCENARIO = "ticket-1348894"
_SUFFIX = ".toml"


def _folder() -> Path:
    # The package's search locations, not importlib.resources.files(): in an editable install
    # this namespace package's path also holds the editable finder's placeholder entry, which
    # resources.files() rejects (NotADirectoryError). The first real directory is the folder.
    spec = importlib.util.find_spec("harness.scenarios")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    return Path(__file__).resolve().parent.parent / "scenarios"


def _builtins() -> dict[str, Path]:
    folder = _folder()
    if not folder.is_dir():
        return {}
    return {f.name[: -len(_SUFFIX)]: f for f in folder.iterdir() if f.name.endswith(_SUFFIX) and f.is_file()}


def builtin_names() -> list[str]:
    """Names of the shipped scenarios, sorted."""
    return sorted(_builtins())


def builtin_purposes() -> list[tuple[str, str]]:
    """(name, one-line purpose) of every shipped scenario: its `description` field."""
    rows = []
    for name, f in sorted(_builtins().items()):
        try:
            description = tomllib.loads(f.read_text(encoding="utf-8")).get("description", "")
        except tomllib.TOMLDecodeError as exc:
            description = f"(not valid TOML: {exc})"
        rows.append((name, str(description)))
    return rows


def find_scenario(ref: str | Path) -> Path:
    """The scenario file a CLI argument or fixture argument names (see the module docstring)."""
    path = Path(ref)
    if path.exists():
        return path
    builtins = _builtins()
    name = str(ref)
    if name.endswith(_SUFFIX):
        name = name[: -len(_SUFFIX)]
    if name in builtins:
        return builtins[name]
    raise ScenarioError(f"{ref}: no such scenario file, nor a built-in scenario "
                        f"(built-in: {', '.join(sorted(builtins)) or 'none found'})")
