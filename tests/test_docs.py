"""The README documents every command and is true: its runnable blocks run; every command has
help."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from memkit.cli import cli

from .conftest import REPO
from .llm_server import ScriptedLLMServer


def all_commands() -> dict[str, click.Command]:
    """Every `memkit` command, as help lists them (which imports every command family)."""
    ctx = click.Context(cli)
    commands = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    return {name: command for name, command in commands.items() if command is not None}


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in all_commands().items():
        assert command.help, f"`memkit {name}` has no help text"
        assert f"memkit {name}" in readme or f"`{name}`" in readme, f"README lacks `memkit {name}`"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output


def test_every_command_has_json_output() -> None:
    missing = [
        name
        for name, command in all_commands().items()
        if name not in ("mcp", "chat") and not any(p.name == "json_" for p in command.params)
    ]
    assert not missing, f"commands without --json: {missing}"


# --- the README is true: its runnable shell blocks and all its Python blocks run ---------------

RUNNABLE = re.compile(r"<!-- runnable[^>]*-->\n```bash\n(.*?)```", re.DOTALL)
PYTHON = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_blocks(pattern: re.Pattern[str]) -> list[str]:
    return pattern.findall((REPO / "README.md").read_text("utf-8"))


def fresh_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder holding the README's example files, and an environment with `memkit` on PATH
    and HOME inside tmp_path (the README writes to ~/agent-vault)."""
    folder = tmp_path / "work"
    shutil.copytree(REPO / "examples", folder / "examples")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MEMKIT_", "OPENAI_")) and key != "NO_COLOR"
    }
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        MEMKIT_HOME=str(tmp_path / "vaults"),
    )
    return folder, env


def test_the_readme_marks_runnable_blocks() -> None:
    blocks = readme_blocks(RUNNABLE)
    assert len(blocks) >= 2
    assert any("memkit import examples/chat.jsonl" in block for block in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(readme_blocks(RUNNABLE))))
def test_runnable_readme_shell_block(number: int, tmp_path: Path) -> None:
    block = readme_blocks(RUNNABLE)[number]
    folder, env = fresh_folder(tmp_path)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        f"README block {number} failed:\n{block}\n{done.stdout}\n{done.stderr}"
    )


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path: Path, llm_server: ScriptedLLMServer) -> None:
    """Every Python block, in order, in one interpreter (later blocks use earlier names),
    against a fresh folder and the scripted model server on 127.0.0.1."""
    blocks = readme_blocks(PYTHON)
    assert blocks
    for _ in range(200):
        llm_server.reply_text('{"entries": []}')
    folder, env = fresh_folder(tmp_path)
    env.update(OPENAI_BASE_URL=llm_server.base_url, OPENAI_API_KEY="test-key")
    script = "\n\n".join(blocks)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"README Python blocks failed:\n{done.stdout}\n{done.stderr}"
    assert llm_server.requests, "the Agent blocks never reached the model"
