"""Records: init, remember, show, list, update, forget, check, history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from memkit.cli.group import (
    _parse_date,
    cli,
    commit_option,
    dry_run_option,
    json_option,
    pass_vault,
    quoted,
)
from memkit.cli.output import emit_json, record_line, warn_problems
from memkit.errors import UsageError
from memkit.records import RECORD_TYPES
from memkit.vault import Problem, Vault


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--git",
    "git_",
    is_flag=True,
    help="Make the vault a git repository (or use the one it is in), set up to merge well.",
)
@click.option(
    "--hooks",
    is_flag=True,
    help="Also install a git pre-commit hook running `memkit check` (implies --git).",
)
@json_option
@click.pass_context
def init(ctx: click.Context, path: Path | None, git_: bool, hooks: bool, json_: bool) -> None:
    """Create a vault at PATH (default: --vault, else the current folder)."""
    target = path or ctx.find_root().obj.get("vault_path") or Path.cwd()
    vault = Vault.init(target)
    git_report = None
    if git_ or hooks:
        from memkit.gitvault import GitVault

        git_report = GitVault(vault).init(hooks=hooks)
    if json_:
        data: dict[str, Any] = {
            "root": str(vault.root),
            "settings": str(vault.root / "memkit.yaml"),
        }
        if git_report is not None:
            data["git"] = git_report.to_json()
        emit_json(data)
        return
    click.echo(f"Initialised memkit vault in {vault.root}")
    if git_report is not None:
        how = "new git repository" if git_report.created else "existing git repository"
        click.echo(f"Git: {how} at {git_report.top}")
        for name in git_report.changed:
            click.echo(f"wrote {name}")
        if git_report.hook:
            click.echo(f"pre-commit hook: {git_report.hook}")


@cli.command()
@click.argument("text")
@click.option(
    "--type",
    "type_",
    default="long-term",
    show_default=True,
    type=click.Choice([t for t in RECORD_TYPES if t not in ("proposal", "episodic")]),
    help="The kind of memory.",
)
@click.option("--title", help="A short title (also names the file).")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for more.")
@click.option("--importance", type=click.FloatRange(0, 1), help="How much it matters, 0..1.")
@click.option("--supersedes", metavar="ID", help="This fact replaces the long-term fact ID.")
@click.option(
    "--subject",
    help="What the fact is about; a newer fact on the same subject supersedes the older one.",
)
@click.option("--allow-secrets", is_flag=True, help="Write it even if it looks like a credential.")
@json_option
@commit_option
@pass_vault
def remember(
    vault: Vault,
    text: str,
    type_: str,
    title: str | None,
    tags: tuple[str, ...],
    importance: float | None,
    supersedes: str | None,
    subject: str | None,
    allow_secrets: bool,
    json_: bool,
) -> str:
    """Remember TEXT (use - to read it from stdin)."""
    from memkit.memory import Memory

    if text == "-":
        text = sys.stdin.read()
    if (supersedes or subject) and type_ != "long-term":
        raise UsageError("--supersedes and --subject apply to long-term facts only")
    memory = Memory(vault)
    try:
        record = memory.remember(
            text,
            type=type_,
            title=title,
            tags=tags,
            importance=importance,
            source={"tool": "cli"},
            supersedes=supersedes,
            subject=subject,
            allow_secrets=allow_secrets,
        )
    finally:
        memory.close()
    if json_:
        emit_json(record.to_json())
    else:
        click.echo(f"Remembered {record.id} in {record.path}")
    return f"memkit: remember {record.type} {quoted(record.title)}"


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@json_option
@pass_vault
def show(vault: Vault, ref: str, json_: bool) -> None:
    """Show one record."""
    from memkit.browse import find_record

    record = find_record(vault, ref, cwd=Path.cwd())
    if json_:
        emit_json(record.to_json())
        return
    assert record.path is not None
    click.echo(click.style(f"# {record.path}", dim=True), err=True)
    click.echo(vault.safe_path(record.path).read_text("utf-8-sig"), nl=False)


@cli.command(name="list")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(RECORD_TYPES),
    help="Only this type; repeat for more.",
)
@click.option("--tag", "tags", multiple=True, help="Only records with this tag; repeat for more.")
@click.option(
    "--since", metavar="WHEN", help="Only records updated on or after WHEN (2026-11-01, 7d)."
)
@click.option("--until", metavar="WHEN", help="Only records updated on or before WHEN.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N records.")
@json_option
@pass_vault
def list_(
    vault: Vault,
    types: tuple[str, ...],
    tags: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    json_: bool,
) -> None:
    """List records, most recently updated first."""
    from memkit.browse import ListRequest, list_records

    request = ListRequest(
        types=types,
        tags=tags,
        since=_parse_date(since, "--since"),
        until=_parse_date(until, "--until"),
        limit=limit,
    )
    listing = list_records(vault, request)
    warn_problems(listing.problems)
    if json_:
        emit_json([{k: v for k, v in r.to_json().items() if k != "body"} for r in listing.records])
        return
    for record in listing.records:
        click.echo(record_line(record))


@cli.command()
@click.argument("ref", metavar="REF")
@click.option("--append", metavar="TEXT", help="Text to add after the body, as its own paragraph.")
@click.option(
    "--body", metavar="TEXT", help="A new body replacing the old one; - reads it from stdin."
)
@click.option(
    "--set",
    "fields",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a front-matter field (VALUE read as YAML: 0.8, [a, b]); KEY= removes it. Repeat for more.",
)
@click.option("--title", help="A new title (the file keeps its name).")
@click.option(
    "--expected-updated",
    metavar="TIME",
    help="Refuse unless the record's `updated` is still TIME (nobody edited it since you read it).",
)
@click.option("--allow-secrets", is_flag=True, help="Write it even if it looks like a credential.")
@json_option
@commit_option
@pass_vault
def update(
    vault: Vault,
    ref: str,
    append: str | None,
    body: str | None,
    fields: tuple[str, ...],
    title: str | None,
    expected_updated: str | None,
    allow_secrets: bool,
    json_: bool,
) -> str:
    """Edit a record in place (REF: an id, a path, a title or an entity name)."""
    from memkit.editing import RecordEdit, parse_assignment, update_record

    if body == "-":
        body = sys.stdin.read()
    edit = RecordEdit(
        append=append,
        body=body,
        fields=dict(parse_assignment(item) for item in fields),
        title=title,
        expected_updated=expected_updated,
    )
    record = update_record(vault, ref, edit, cwd=Path.cwd(), allow_secrets=allow_secrets)
    if json_:
        emit_json(record.to_json())
    else:
        click.echo(f"Updated {record.id} in {record.path}")
    return f"memkit: update {record.type} {quoted(record.title)}"


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@dry_run_option
@json_option
@commit_option
@pass_vault
def forget(vault: Vault, ref: str, dry_run: bool, json_: bool) -> str | None:
    """Delete a record (git keeps its history)."""
    from memkit.memory import Memory

    if dry_run:
        record = vault.get(ref, cwd=Path.cwd())
        if json_:
            emit_json({"forgotten": record.id, "path": record.path, "dry_run": True})
        else:
            click.echo(f"Would forget {record.id} ({record.path}); nothing was changed")
        return None
    record = Memory(vault).forget(vault.resolve(ref, cwd=Path.cwd()))
    if json_:
        emit_json({"forgotten": record.id, "path": record.path})
    else:
        click.echo(f"Forgot {record.id} ({record.path})")
    return f"memkit: forget {record.type} {quoted(record.title)}"


def check_warnings(vault: Vault, result: Any) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of a check: notes waiting for `adopt`, tags Obsidian refuses,
    `[[links]]` to no file and entity files not named after their entity are warnings."""
    from memkit.links import LinkResolver, dangling_links, planned_renames
    from memkit.notes import is_unadopted_problem
    from memkit.records import tag_warnings

    problems: list[Problem] = []
    warnings: list[Problem] = []
    for problem in result.problems:
        if is_unadopted_problem(vault, problem.path, problem.message):
            warnings.append(
                Problem(
                    problem.path,
                    problem.line,
                    "not adopted yet: run `memkit adopt` to "
                    "give it memkit front-matter (and make it searchable)",
                )
            )
        else:
            problems.append(problem)
    for record in result.records:
        warnings += [Problem(record.path, line, m) for line, m in tag_warnings(record)]
    warnings += dangling_links(result.records, LinkResolver.of_vault(vault))
    checked = {r.path for r in result.records}
    for record, new in planned_renames(vault):
        if record.path in checked:
            warnings.append(
                Problem(
                    str(record.path),
                    1,
                    f"Obsidian resolves [[{record.meta['name']}]] by "
                    f"file name: run `memkit check --fix` to rename it to {new}",
                )
            )
    return problems, sorted(warnings, key=lambda w: (w.path, w.line))


@cli.command()
@click.argument("paths", nargs=-1)
@click.option(
    "--fix",
    is_flag=True,
    help="Rename entity files after their entity (with `git mv` in a git vault).",
)
@json_option
@pass_vault
def check(vault: Vault, paths: tuple[str, ...], fix: bool, json_: bool) -> None:
    """Validate record files; print each problem as path:line: message (warnings too)."""
    renames: list[Any] = []
    if fix:
        from memkit.links import rename_entity_files

        renames = rename_entity_files(vault)
    result = vault.check(paths or None, cwd=Path.cwd())
    checked = len(result.records) + len(
        {p.path for p in result.problems} - {r.path for r in result.records}
    )
    problems, warnings = check_warnings(vault, result)
    if json_:
        emit_json(
            {
                "ok": not problems,
                "checked": checked,
                "problems": [p.to_json() for p in problems],
                "warnings": [w.to_json() for w in warnings],
                "renamed": [r.to_json() for r in renames],
            }
        )
    else:
        for rename in renames:
            how = "git mv" if rename.git else "renamed"
            click.echo(f"{how} {rename.old} -> {rename.new}")
        for problem in problems:
            click.echo(str(problem))
        for warning in warnings:
            click.echo(f"{warning.path}:{warning.line}: warning: {warning.message}")
        summary = f"{checked} files checked, {len(problems)} problems, {len(warnings)} warnings"
        if renames:
            summary += f", {len(renames)} entity files renamed"
        click.echo(summary, err=True)
    if problems:
        sys.exit(1)


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@json_option
@pass_vault
def history(vault: Vault, ref: str, json_: bool) -> None:
    """Show how a record changed in git, following moves (e.g. a proposal approved)."""
    from memkit.gitvault import GitVault

    git = GitVault(vault)
    relpath = git.locate(ref, cwd=Path.cwd())
    entries = git.history(relpath)
    if json_:
        emit_json({"path": relpath, "history": [entry.to_json() for entry in entries]})
        return
    if not entries:
        click.echo(f"{relpath}: no commits yet", err=True)
    for entry in entries:
        where = f"{entry.from_path} -> {entry.path}" if entry.from_path else entry.path
        click.echo(
            f"{click.style(entry.commit[:8], fg='yellow')}  {entry.date[:10]}  "
            f"{entry.change:<8}  {where}  ({entry.author})"
        )
        click.echo(f"    {entry.message}")
