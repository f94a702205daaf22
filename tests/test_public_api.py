"""memkit's public names: what `__all__` promises, the README uses, and `import memkit` costs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import memkit

from .conftest import REPO


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_every_name_in_all_resolves() -> None:
    for name in memkit.__all__:
        assert getattr(memkit, name) is not None, name


def test_all_has_no_duplicates_and_matches_the_lazy_table() -> None:
    assert len(set(memkit.__all__)) == len(memkit.__all__)
    assert set(memkit.__all__) - {"__version__"} == set(memkit._EXPORTS)


def test_the_readme_python_api_uses_only_exported_names() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    blocks = _python_blocks(readme)
    assert blocks, "the README has no Python examples"
    used: set[str] = set()
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memkit"):
                used.update(alias.name for alias in node.names)
    assert used, "the README's Python examples import nothing from memkit"
    missing = sorted(used - set(memkit.__all__))
    assert not missing, f"the README imports names memkit.__all__ does not export: {missing}"


def test_importing_memkit_loads_no_heavy_library() -> None:
    code = (
        "import sys, memkit; from memkit import Vault, Record, MemkitError; "
        "heavy = [m for m in ('openai', 'tantivy', 'watchdog', 'jsonschema', 'click', 'mcp') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == ""
