"""The `memkit` group: errors become exit codes here, the vault is opened here, and the
options and input parsing every command family shares."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from memkit import __version__
from memkit.cli.output import warn
from memkit.errors import MemkitError, SecretRefused, UsageError, storage_error
from memkit.vault import Vault, find_vault_root

F = TypeVar("F", bound=Callable[..., Any])


# Never offered as "did you mean": a typo must not lead anyone to a command that deletes.
DESTRUCTIVE_COMMANDS = frozenset({"forget", "expire", "reject"})
# Words people type from other tools, and the memkit command that does that.
COMMAND_HINTS = {
    "get": "show",
    "cat": "show",
    "view": "show",
    "open": "edit",
    "ls": "list",
    "export": "list --json",
    "find": "search",
    "query": "recall",
    "add": "remember",
    "new": "remember",
}


# Which module of memkit.cli defines each command. A module is imported when one of its commands
# is asked for (a command starts without the imports of the other families); listing the
# commands (help, completion, "did you mean") imports them all. A test keeps this in step.
COMMAND_FAMILIES = {
    "adopt": "editor",
    "approve": "learning",
    "chat": "agents",
    "check": "records",
    "completion": "editor",
    "context": "memory",
    "edit": "editor",
    "entity": "memory",
    "expire": "memory",
    "forget": "records",
    "history": "records",
    "import": "memory",
    "init": "records",
    "learn": "learning",
    "list": "records",
    "mcp": "agents",
    "proposals": "learning",
    "recall": "memory",
    "reindex": "search",
    "reject": "learning",
    "remember": "records",
    "search": "search",
    "show": "records",
    "status": "search",
    "sync": "search",
    "update": "records",
    "watch": "search",
}


def load_commands(names: Iterable[str] | None = None) -> None:
    """Import the command modules that define `names` (all of them when None)."""
    wanted = (
        COMMAND_FAMILIES.values()
        if names is None
        else [COMMAND_FAMILIES[name] for name in names if name in COMMAND_FAMILIES]
    )
    for family in sorted(set(wanted)):
        importlib.import_module(f"memkit.cli.{family}")


class MemkitGroup(click.Group):
    """Translates library errors into one clear line on stderr and exit status 1."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            load_commands([cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_commands()
        return super().list_commands(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as error:
            name = error.command_name
            if name in COMMAND_HINTS:
                raise click.UsageError(
                    f"No such command {name!r}. Did you mean `memkit {COMMAND_HINTS[name]}`?", ctx
                ) from None
            load_commands()
            safe = [n for n in self.commands if n not in DESTRUCTIVE_COMMANDS]
            raise click.exceptions.NoSuchCommand(name, possibilities=safe, ctx=ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as error:
            raise click.UsageError(str(error)) from None
        except MemkitError as error:
            message = str(error)
            # Only the CLI offers the override; an MCP host's model reads the guard's own words.
            command = self.commands.get(ctx.invoked_subcommand or "")
            params = command.params if command is not None else []
            if isinstance(error, SecretRefused) and any(p.name == "allow_secrets" for p in params):
                message += " If you are sure it must be kept, run again with --allow-secrets."
            raise click.ClickException(message) from None
        except BrokenPipeError:
            # `memkit list | head`: the reader left; that is not an error.
            sys.stderr.close()
            return None
        except OSError as error:
            # Disk full, read-only vault, no permission, wherever it surfaced: one line, exit 1.
            raise click.ClickException(str(storage_error(error))) from None


def json_option(function: F) -> F:
    return click.option("--json", "json_", is_flag=True, help="Print JSON instead of text.")(
        function
    )


def open_vault(ctx: click.Context) -> Vault:
    """The vault named by --vault, else $MEMKIT_VAULT, else found by walking up from here."""
    root_obj = ctx.find_root().obj or {}
    cached = root_obj.get("vault")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    given = root_obj.get("vault_path") or os.environ.get("MEMKIT_VAULT")
    root = Path(given).expanduser() if given else find_vault_root(Path.cwd())
    vault = Vault(root)
    root_obj["vault"] = vault
    return vault


def pass_vault(function: F) -> F:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(open_vault(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def quoted(text: str, limit: int = 60) -> str:
    """A title for a commit message (`gitvault.quoted`, imported here when a command needs it,
    so read-only commands start without git's module)."""
    from memkit.gitvault import quoted as commit_title

    return commit_title(text, limit)


def commit_option(function: F) -> F:
    """`--commit/--no-commit` for a write command, which returns its commit message.

    Everything the command wrote through the vault (its `touched` paths, nothing else) becomes
    one commit when `--commit` is given or memkit.yaml says `git: {autocommit: true}`.
    """

    @click.option(
        "--commit/--no-commit",
        "commit",
        default=None,
        help="Commit what this command writes to git (default: git.autocommit in memkit.yaml).",
    )
    @functools.wraps(function)
    def wrapper(*args: Any, commit: bool | None, **kwargs: Any) -> Any:
        from memkit.gitvault import GitVault

        ctx = click.get_current_context()
        vault = open_vault(ctx)
        git: GitVault | None = None
        if commit or (commit is None and vault.settings.git.autocommit):
            git = GitVault(vault)
            if commit:
                git.require_repo()  # asked for by name: refuse before anything is written
            elif not git.is_repo():
                warn(
                    "git.autocommit is on in memkit.yaml but the vault is not in a git "
                    "repository, so nothing is committed; run `memkit init --git`"
                )
                git = None
        message = function(*args, **kwargs)
        from memkit.maintenance import index_own_writes

        index_own_writes(vault)  # write-through: what the command wrote is searchable now
        if git is not None and vault.touched:
            message = message or f"memkit: {ctx.info_name}"
            sha = git.commit(vault.touched, message)
            if sha:
                click.echo(f"Committed {sha[:8]}: {message}", err=True)
        return message

    return wrapper  # type: ignore[return-value]


@click.group(cls=MemkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="memkit")
@click.option(
    "--vault",
    "vault_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="The vault folder (default: $MEMKIT_VAULT, else the nearest folder with memkit.yaml).",
)
@click.pass_context
def cli(ctx: click.Context, vault_path: Path | None) -> None:
    """memkit: memory and learning for AI agents, kept as Markdown files in a vault."""
    ctx.obj = {"vault_path": vault_path}
    if os.environ.get("NO_COLOR"):  # https://no-color.org: set and not empty means no colour
        ctx.color = False


def dry_run_option(function: F) -> F:
    return click.option(
        "--dry-run", is_flag=True, help="Print what would change and change nothing."
    )(function)


def _date_option(name: str, help_text: str) -> Callable[[F], F]:
    return click.option(name, metavar="DATE", help=help_text)


def _parse_date(value: str | None, option: str) -> Any:
    from memkit.timeutil import parse_when

    if value is None:
        return None
    moment = parse_when(value)
    if moment is None:
        raise click.BadParameter(
            f"{value!r} is not a date (try 2026-11-01, 2026-11-01T09:00Z, today, 7d)",
            param_hint=option,
        )
    return moment


def read_conversation(file: Any) -> tuple[str, str]:
    """(name, text) of a conversation file or stdin opened in binary mode."""
    from memkit.conversations import decode_conversation

    name = str(getattr(file, "name", "-"))
    return name, decode_conversation(file.read(), name)
