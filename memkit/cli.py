"""The `memkit` command: a thin click layer over the library; the one place errors become exits."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from memkit import __version__
from memkit.errors import MemkitError, UsageError
from memkit.records import RECORD_TYPES, Record
from memkit.vault import Problem, Vault, find_vault_root

F = TypeVar("F", bound=Callable[..., Any])


class MemkitGroup(click.Group):
    """Translates library errors into one clear line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as error:
            raise click.UsageError(str(error)) from None
        except MemkitError as error:
            raise click.ClickException(str(error)) from None
        except BrokenPipeError:
            # `memkit list | head`: the reader left; that is not an error.
            sys.stderr.close()
            return None


def json_option(function: F) -> F:
    return click.option("--json", "json_", is_flag=True, help="Print JSON instead of text.")(
        function
    )


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def warn_problems(problems: Iterable[Problem]) -> None:
    for problem in problems:
        warn(f"skipped {problem}")


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


def record_line(record: Record) -> str:
    return f"{record.id}  {record.type:<12} {record.path}  {record.title}"


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


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@json_option
@click.pass_context
def init(ctx: click.Context, path: Path | None, json_: bool) -> None:
    """Create a vault at PATH (default: --vault, else the current folder)."""
    target = path or ctx.find_root().obj.get("vault_path") or Path.cwd()
    vault = Vault.init(target)
    if json_:
        emit_json({"root": str(vault.root), "settings": str(vault.root / "memkit.yaml")})
    else:
        click.echo(f"Initialised memkit vault in {vault.root}")


@cli.command()
@click.argument("text")
@click.option(
    "--type", "type_", default="long-term", show_default=True,
    type=click.Choice([t for t in RECORD_TYPES if t not in ("proposal", "episodic")]),
    help="The kind of memory.",
)
@click.option("--title", help="A short title (also names the file).")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for more.")
@click.option("--importance", type=click.FloatRange(0, 1), help="How much it matters, 0..1.")
@click.option("--allow-secrets", is_flag=True, help="Write it even if it looks like a credential.")
@json_option
@pass_vault
def remember(
    vault: Vault, text: str, type_: str, title: str | None, tags: tuple[str, ...],
    importance: float | None, allow_secrets: bool, json_: bool,
) -> None:
    """Remember TEXT (use - to read it from stdin)."""
    from memkit.memory import Memory

    if text == "-":
        text = click.get_text_stream("stdin").read()
    record = Memory(vault).remember(
        text, type=type_, title=title, tags=tags, importance=importance,
        source={"tool": "cli"}, allow_secrets=allow_secrets,
    )
    if json_:
        emit_json(record.to_json())
    else:
        click.echo(f"Remembered {record.id} in {record.path}")


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@json_option
@pass_vault
def show(vault: Vault, ref: str, json_: bool) -> None:
    """Show one record."""
    record = vault.get(ref, cwd=Path.cwd())
    if json_:
        emit_json(record.to_json())
        return
    assert record.path is not None
    click.echo(click.style(f"# {record.path}", dim=True), err=True)
    click.echo(vault.safe_path(record.path).read_text("utf-8-sig"), nl=False)


@cli.command(name="list")
@click.option("--type", "types", multiple=True, type=click.Choice(RECORD_TYPES),
              help="Only this type; repeat for more.")
@json_option
@pass_vault
def list_(vault: Vault, types: tuple[str, ...], json_: bool) -> None:
    """List records (newest first)."""
    result = vault.scan(types or None)
    warn_problems(result.problems)
    records = sorted(result.records, key=lambda r: str(r.meta.get("created", "")), reverse=True)
    if json_:
        emit_json([{k: v for k, v in r.to_json().items() if k != "body"} for r in records])
        return
    for record in records:
        click.echo(record_line(record))


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@json_option
@pass_vault
def forget(vault: Vault, ref: str, json_: bool) -> None:
    """Delete a record (git keeps its history)."""
    from memkit.memory import Memory

    record = Memory(vault).forget(vault.resolve(ref, cwd=Path.cwd()))
    if json_:
        emit_json({"forgotten": record.id, "path": record.path})
    else:
        click.echo(f"Forgot {record.id} ({record.path})")


@cli.command()
@click.argument("paths", nargs=-1)
@json_option
@pass_vault
def check(vault: Vault, paths: tuple[str, ...], json_: bool) -> None:
    """Validate record files; print each problem as path:line: message."""
    result = vault.check(paths or None, cwd=Path.cwd())
    checked = len(result.records) + len({p.path for p in result.problems} - {
        r.path for r in result.records})
    if json_:
        emit_json({"ok": not result.problems, "checked": checked,
                   "problems": [p.to_json() for p in result.problems]})
    else:
        for problem in result.problems:
            click.echo(str(problem))
        summary = f"{checked} files checked, {len(result.problems)} problems"
        click.echo(summary, err=True)
    if result.problems:
        sys.exit(1)


def main() -> None:
    cli(prog_name="memkit")
