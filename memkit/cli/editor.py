"""A person's editor, notes and shell: edit, adopt, completion."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from memkit.cli.group import cli, commit_option, dry_run_option, json_option, pass_vault
from memkit.cli.output import emit_json, warn
from memkit.cli.records import check_warnings
from memkit.vault import Vault


def resolve_ref(vault: Vault, ref: str) -> str:
    """A record by id or path, else an entity by name or alias."""
    from memkit.errors import RecordNotFound

    try:
        return vault.resolve(ref, cwd=Path.cwd())
    except RecordNotFound:
        from memkit.entities import Entities

        found = Entities(vault).find(ref)
        if found is None or found.path is None:
            raise
        return found.path


@cli.command()
@click.argument("ref", metavar="ID_PATH_OR_NAME")
@json_option
@pass_vault
def edit(vault: Vault, ref: str, json_: bool) -> None:
    """Open a record in $VISUAL or $EDITOR, then check it and update the index."""
    from memkit.sync import VaultIndex

    relpath = resolve_ref(vault, ref)
    full = vault.safe_path(relpath)
    before = full.read_bytes()
    # click runs "$VISUAL" (else "$EDITOR", else vi) through the shell, so `code --wait` works.
    click.edit(filename=str(full))
    changed = full.exists() and full.read_bytes() != before
    result = vault.check([str(full)])
    problems, warnings = check_warnings(vault, result)
    warnings = [w for w in warnings if w.path == relpath]
    index = VaultIndex(vault)
    try:
        report = index.sync(paths=[relpath])
    finally:
        index.close()
    indexed = relpath in (*report.added, *report.changed)
    if json_:
        emit_json(
            {
                "path": relpath,
                "changed": changed,
                "ok": not problems,
                "indexed": indexed,
                "problems": [p.to_json() for p in problems],
                "warnings": [w.to_json() for w in warnings],
            }
        )
    else:
        for problem in problems:
            click.echo(str(problem), err=True)
        for warning in warnings:
            click.echo(f"{warning.path}:{warning.line}: warning: {warning.message}", err=True)
        state = "saved" if changed else "unchanged"
        verdict = f"{len(problems)} problems" if problems else "ok"
        click.echo(f"{relpath}: {state}, {verdict}" + (", indexed" if indexed else ""))
    if problems:
        sys.exit(1)


@cli.command()
@click.argument("paths", nargs=-1)
@dry_run_option
@json_option
@commit_option
@pass_vault
def adopt(vault: Vault, paths: tuple[str, ...], dry_run: bool, json_: bool) -> str | None:
    """Give your own Markdown notes memkit front-matter (id, type, title, dates), keeping
    their text and properties; no PATHS: every notes folder."""
    from memkit.notes import adopt as adopt_notes
    from memkit.sync import VaultIndex

    report = adopt_notes(vault, paths, cwd=Path.cwd(), dry_run=dry_run)
    if report.adopted and not dry_run:
        index = VaultIndex(vault)
        try:
            index.sync(paths=report.adopted)
        finally:
            index.close()
    if json_:
        emit_json({**report.to_json(), "dry_run": dry_run})
    else:
        verb = "would adopt" if dry_run else "adopted"
        for path in report.adopted:
            click.echo(f"{verb} {path}")
        for skipped in report.skipped:
            warn(f"not adopted: {skipped.path}: {skipped.reason}")
        click.echo(
            f"{len(report.adopted)} notes {verb}, {len(report.skipped)} skipped, "
            f"{report.already} already memkit records"
            + ("; nothing was changed" if dry_run else ""),
            err=True,
        )
    if dry_run or not report.adopted:
        return None
    return f"memkit: adopt {len(report.adopted)} notes"


COMPLETION_INSTALL = {
    "bash": 'add to ~/.bashrc:  eval "$(memkit completion bash)"',
    "zsh": 'add to ~/.zshrc:  eval "$(memkit completion zsh)"',
    "fish": "memkit completion fish > ~/.config/fish/completions/memkit.fish",
}


@cli.command()
@click.argument("shell", type=click.Choice(sorted(COMPLETION_INSTALL)))
@json_option
def completion(shell: str, json_: bool) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    script = completer(cli, {}, "memkit", "_MEMKIT_COMPLETE").source()
    if json_:
        emit_json({"shell": shell, "script": script, "install": COMPLETION_INSTALL[shell]})
    else:
        click.echo(script)
