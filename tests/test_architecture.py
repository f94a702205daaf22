"""The module map in docs/ARCHITECTURE.md is the truth: imports only point down its layers."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import memkit

from .conftest import REPO

THIRD_PARTY_OWNERS = {
    "click": "cli",
    "tantivy": "index",
    "watchdog": "watcher",
    "openai": "llm",
    "mcp": "mcp_server",
    "frontmatter": "notes",
}


def documented_layers() -> dict[str, int]:
    """Layer of each room: a module (`memkit/x.py`) or a package (`memkit/x/`), named `x`."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\|\s*`memkit/(\w+)(?:\.py|/)`\s*\|\s*(\d+)\s*\|", text, re.MULTILINE)
    return {name: int(layer) for name, layer in rows}


def memkit_modules() -> dict[str, list[ast.Module]]:
    """Each room's parsed source: a module's file, or every file of a package (a package is one
    room: its files import one another freely and share its third-party library)."""
    rooms: dict[str, list[ast.Module]] = {}
    for path in sorted((REPO / "memkit").glob("*.py")):
        rooms[path.stem] = [ast.parse(path.read_text(), str(path))]
    for init in sorted((REPO / "memkit").glob("*/__init__.py")):
        files = sorted(init.parent.rglob("*.py"))
        rooms[init.parent.name] = [ast.parse(f.read_text(), str(f)) for f in files]
    return rooms


def imports_of(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "memkit":
                found.update(f"memkit.{alias.name}" for alias in node.names)
    return found


def test_every_module_is_documented() -> None:
    layers = documented_layers()
    missing = set(memkit_modules()) - set(layers)
    assert not missing, f"add these to docs/ARCHITECTURE.md: {sorted(missing)}"
    stale = set(layers) - set(memkit_modules())
    assert not stale, f"docs/ARCHITECTURE.md lists modules that are gone: {sorted(stale)}"


def test_a_package_is_one_room() -> None:
    rooms = memkit_modules()
    # The index package's files together are the one home of tantivy (storage and query both
    # use it), documented by one row.
    assert len(rooms["index"]) > 1
    assert "index" in documented_layers()
    assert any("tantivy" in imports_of(tree) for tree in rooms["index"])


def test_imports_point_down_the_layers() -> None:
    layers = documented_layers()
    wrong = []
    for name, trees in memkit_modules().items():
        for imported in set().union(*map(imports_of, trees)):
            if not imported.startswith("memkit."):
                continue
            target = imported.split(".")[1]
            if target in layers and target != name and layers[target] >= layers[name]:
                wrong.append(
                    f"{name} (layer {layers[name]}) imports {target} (layer {layers[target]})"
                )
    assert not wrong


def test_each_third_party_library_has_one_home() -> None:
    wrong = []
    for name, trees in memkit_modules().items():
        for imported in set().union(*map(imports_of, trees)):
            top = imported.split(".")[0]
            owner = THIRD_PARTY_OWNERS.get(top)
            if owner is not None and owner != name:
                wrong.append(f"{name} imports {top}, which only {owner} may import")
    assert not wrong


MAX_MODULE_LINES = 700


def test_no_module_is_over_700_lines() -> None:
    lengths = {
        path.relative_to(REPO).as_posix(): len(path.read_text("utf-8").splitlines())
        for path in (REPO / "memkit").rglob("*.py")
    }
    too_long = sorted(f"{path} ({n} lines)" for path, n in lengths.items() if n > MAX_MODULE_LINES)
    assert not too_long, (
        f"split these by what they hold (at most {MAX_MODULE_LINES} lines): {too_long}"
    )


def test_public_names_resolve() -> None:
    for name in memkit.__all__:
        assert getattr(memkit, name) is not None


def test_import_memkit_stays_light() -> None:
    code = (
        "import sys, memkit, memkit.cli.group\n"
        "memkit.cli.group.load_commands()\n"
        "heavy = [m for m in ('openai', 'tantivy', 'watchdog', 'jsonschema', 'yaml')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_wheel_carries_the_schemas() -> None:
    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"]["memkit.schemas"] == "schemas"
    assert "memkit.schemas" in setuptools["packages"]
    assert setuptools["package-data"]["memkit.schemas"] == ["*.json"]
    names = {p.stem.removesuffix(".schema") for p in (REPO / "schemas").glob("*.schema.json")}
    from memkit.records import RECORD_TYPES

    assert set(RECORD_TYPES) | {"common", "extraction"} == names
