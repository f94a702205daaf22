"""The `memkit` command: a thin click layer over the library, one module per command family.

`group` holds the root group (the one place errors become exit codes), the vault and the shared
options; `output` what commands print; `records`, `editor`, `memory`, `learning`, `search` and
`agents` the commands, which register themselves on the group when imported. A command's family
is imported when that command runs (see `group.COMMAND_FAMILIES`), so `memkit sync` does not pay
for the chat REPL's imports.
"""

from __future__ import annotations

from memkit.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="memkit")
