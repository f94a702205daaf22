"""The `memkit` command: a thin click layer over the library, one module per command family.

`group` holds the root group (the one place errors become exit codes), the vault and the shared
options; `output` what commands print; `records`, `editor`, `memory`, `learning`, `search` and
`agents` the commands, which register themselves on the group when imported here.
"""

from __future__ import annotations

from memkit.cli import agents, editor, learning, memory, records, search
from memkit.cli.group import cli

__all__ = ["cli", "main"]

# The command modules are imported for their side effect: each adds its commands to `cli`.
COMMAND_FAMILIES = (records, editor, memory, learning, search, agents)


def main() -> None:
    cli(prog_name="memkit")
