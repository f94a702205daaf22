"""The README documents every command, and every command has help."""

from __future__ import annotations

import click
from click.testing import CliRunner

from memkit.cli import cli

from .conftest import REPO


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help, f"`memkit {name}` has no help text"
        assert f"memkit {name}" in readme or f"`{name}`" in readme, f"README lacks `memkit {name}`"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output


def test_every_command_has_json_output() -> None:
    missing = [
        name
        for name, command in cli.commands.items()
        if name not in ("mcp", "chat") and not any(p.name == "json_" for p in command.params)
    ]
    assert not missing, f"commands without --json: {missing}"
