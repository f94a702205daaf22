"""The `memkit` command: a thin click layer over the library; the one place errors become exits."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from memkit import __version__
from memkit.errors import MemkitError, SecretRefused, UsageError, storage_error
from memkit.records import RECORD_TYPES, Record
from memkit.vault import Problem, Vault, find_vault_root

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


class MemkitGroup(click.Group):
    """Translates library errors into one clear line on stderr and exit status 1."""

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


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def warn_problems(problems: Iterable[Problem]) -> None:
    from memkit.notes import NOT_ADOPTED

    waiting = 0
    for problem in problems:
        # A person's note without memkit front-matter is not broken: it waits for `adopt`.
        if problem.path.split("/", 1)[0] not in ("memory", "learning") and (
            problem.message.startswith(NOT_ADOPTED)
        ):
            waiting += 1
            continue
        warn(f"skipped {problem}")
    if waiting:
        warn(f"{waiting} notes are not adopted yet (not searchable): run `memkit adopt`")


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
    """A title for a commit message: one line, at most `limit` characters, in quotes."""
    line = " ".join(text.split())
    return '"' + (line if len(line) <= limit else line[: limit - 3].rstrip() + "...") + '"'


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
    if os.environ.get("NO_COLOR"):  # https://no-color.org: set and not empty means no colour
        ctx.color = False


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


def dry_run_option(function: F) -> F:
    return click.option(
        "--dry-run", is_flag=True, help="Print what would change and change nothing."
    )(function)


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


# --- a person's editor and notes: edit, adopt, completion --------------------------------------


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


def read_conversation(file: Any) -> tuple[str, str]:
    """(name, text) of a conversation file or stdin opened in binary mode."""
    from memkit.conversations import decode_conversation

    name = str(getattr(file, "name", "-"))
    return name, decode_conversation(file.read(), name)


# --- memory: entity, expire, import, recall, context ---------------------------------------


@cli.command()
@click.argument("name")
@click.option("--kind", help="person, place, org, project, pet, ...")
@click.option("--set", "attributes", multiple=True, metavar="KEY=VALUE", help="Set an attribute.")
@click.option("--alias", "aliases", multiple=True, help="Another name it goes by.")
@click.option(
    "--relate",
    "relations",
    multiple=True,
    metavar="RELATION=OTHER",
    help="A relation to another entity, written as a [[OTHER]] link.",
)
@click.option("--note", help="A dated observation to append.")
@click.option("--allow-secrets", is_flag=True, help="Write it even if it looks like a credential.")
@json_option
@commit_option
@pass_vault
def entity(
    vault: Vault,
    name: str,
    kind: str | None,
    attributes: tuple[str, ...],
    aliases: tuple[str, ...],
    relations: tuple[str, ...],
    note: str | None,
    allow_secrets: bool,
    json_: bool,
) -> str | None:
    """Show an entity, or create/update it when options are given."""
    from memkit.entities import Entities, parse_value, split_pair

    entities = Entities(vault)
    if not (kind or attributes or aliases or relations or note):
        found = entities.find(name)
        if found is None:
            raise MemkitError(
                f"no entity named {name!r} (create it with `memkit entity {name!r} --kind person`)"
            )
        if json_:
            emit_json(found.to_json())
        else:
            assert found.path is not None
            click.echo(vault.safe_path(found.path).read_text("utf-8"), nl=False)
        return None
    pairs = [split_pair(a, "--set") for a in attributes]
    change = entities.upsert(
        name,
        kind=kind,
        attributes={k: parse_value(v) for k, v in pairs},
        aliases=aliases,
        relations=[split_pair(r, "--relate") for r in relations],
        note=note,
        allow_secrets=allow_secrets,
    )
    if json_:
        emit_json(
            {**change.record.to_json(), "created_now": change.created, "changes": change.changes}
        )
    elif change.changes:
        verb = "Created" if change.created else "Updated"
        click.echo(f"{verb} {change.record.path}: " + "; ".join(change.changes))
    else:
        click.echo(f"No change to {change.record.path}")
    verb = "create" if change.created else "update"
    return f"memkit: {verb} entity {quoted(change.record.title)}"


@cli.command()
@dry_run_option
@json_option
@commit_option
@pass_vault
def expire(vault: Vault, dry_run: bool, json_: bool) -> str | None:
    """Drop expired short-term items (promoting important ones) and old episodic days."""
    from memkit.memory import Memory

    memory = Memory(vault)
    try:
        report = memory.expire(dry_run=dry_run)
    finally:
        memory.close()
    if dry_run:
        if json_:
            emit_json({**report.to_json(), "dry_run": True})
            return None
        promoted = {old for old, _new in report.promoted}
        for record_id in report.expired:
            verb = "promote to long-term" if record_id in promoted else "expire"
            click.echo(f"would {verb}: {record_id}")
        for path in report.episodic_removed:
            click.echo(f"would remove: {path}")
        click.echo(
            f"Would expire {len(report.expired)} short-term items ({len(report.promoted)} "
            f"promoted) and remove {len(report.episodic_removed)} episodic days; nothing was "
            "changed.",
        )
        return None
    message = (
        f"memkit: expire {len(report.expired)} short-term items "
        f"({len(report.promoted)} promoted), {len(report.episodic_removed)} episodic days"
    )
    if json_:
        emit_json(report.to_json())
        return message
    click.echo(
        f"Expired {len(report.expired)} short-term items "
        f"({len(report.promoted)} promoted to long-term); "
        f"removed {len(report.episodic_removed)} episodic days past retention."
    )
    return message


@cli.command(name="import")
@click.argument("file", type=click.File("rb"))
@click.option("--session", help="Session id for messages that have none (default: file name).")
@click.option(
    "--short-term",
    "short_term",
    is_flag=True,
    help="Also put the latest session's messages in short-term memory.",
)
@click.option("--allow-secrets", is_flag=True, help="Keep credentials instead of redacting them.")
@json_option
@commit_option
@pass_vault
def import_(
    vault: Vault,
    file: Any,
    session: str | None,
    short_term: bool,
    allow_secrets: bool,
    json_: bool,
) -> str:
    """Record a conversation (JSONL or a JSON array of messages) in episodic memory."""
    from memkit.conversations import Episodes, session_default
    from memkit.memory import Memory

    name, text = read_conversation(file)
    episodes = Episodes(vault)
    report = episodes.import_text(
        text, name, session=session or session_default(name), allow_secrets=allow_secrets
    )
    if short_term and report.added:
        memory = Memory(vault)
        try:
            for message in episodes.session_messages(report.latest_session)[
                -vault.settings.memory.short_term.capacity :
            ]:
                memory.remember(
                    f"{message.speaker}: {message.text}",
                    type="short-term",
                    source={"session": report.latest_session, "messages": [message.message_id]},
                    allow_secrets=allow_secrets,
                )
        finally:
            memory.close()
    if report.redacted:
        warn(
            f"{report.redacted} messages contained credentials; they were replaced by "
            "[REDACTED:...] (use --allow-secrets to keep them)"
        )
    if json_:
        emit_json(report.to_json())
    else:
        click.echo(
            f"Imported {report.added} messages ({report.skipped} already recorded) "
            f"into {len(report.days)} day files."
        )
    return f"memkit: import {report.added} messages from {Path(name).name}"


def recall_text(item: Any) -> None:
    hit = item.hit
    where = click.style(f"{hit.path}:{hit.line}", fg="cyan")
    if hit.message_id:
        day = hit.created.date().isoformat() if hit.created else ""
        click.echo(f"{where}  {day} session {hit.session}  [{hit.score:.3f}]")
        for message_id, speaker, text in item.before:
            click.echo(
                click.style(f"    {speaker} [{message_id}]: {' '.join(text.split())}", dim=True)
            )
        click.echo(f"  > {hit.speaker} [{hit.message_id}]: {' '.join(hit.snippet.split())}")
        for message_id, speaker, text in item.after:
            click.echo(
                click.style(f"    {speaker} [{message_id}]: {' '.join(text.split())}", dim=True)
            )
    else:
        click.echo(f"{where}  {hit.type}  {hit.title}  [{hit.score:.3f}]")
        click.echo(f"    {' '.join(highlight(hit.snippet, hit.highlights).split())}")


@cli.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(RECORD_TYPES),
    help="Only this type (default: the memory types); repeat for more.",
)
@click.option(
    "--all", "include_hidden", is_flag=True, help="Include expired and superseded records."
)
@json_option
@pass_vault
def recall(
    vault: Vault,
    query: tuple[str, ...],
    k: int,
    types: tuple[str, ...],
    include_hidden: bool,
    json_: bool,
) -> None:
    """Recall memory relevant to QUERY (episodic hits are single messages)."""
    from memkit.memory import Memory

    memory = Memory(vault)
    try:
        hits = memory.recall(" ".join(query), k=k, types=types, include_hidden=include_hidden)
    finally:
        memory.close()
    if json_:
        emit_json({"query": " ".join(query), "hits": [h.to_json() for h in hits]})
        return
    if not hits:
        click.echo("Nothing recalled.", err=True)
    for item in hits:
        recall_text(item)


@cli.command()
@click.argument("query", nargs=-1, required=True)
@click.option(
    "--budget",
    type=click.IntRange(20, 100_000),
    default=800,
    show_default=True,
    help="Token budget for the block.",
)
@json_option
@pass_vault
def context(vault: Vault, query: tuple[str, ...], budget: int, json_: bool) -> None:
    """Print a Markdown block of relevant memory for a system prompt."""
    from memkit.context import build_context

    block = build_context(vault, " ".join(query), budget=budget)
    if json_:
        emit_json(
            {
                "query": " ".join(query),
                "budget": budget,
                "tokens": block.tokens,
                "used": block.used,
                "text": block.text,
            }
        )
    else:
        click.echo(block.text, nl=False)


# --- learning: learn, proposals, approve, reject ----------------------------------------------


def make_llm(vault: Vault) -> Any:
    """The LLM client for this vault; only the CLI (a composition root) reads the environment."""
    from memkit.llm import LLMClient, resolve_llm_config

    return LLMClient(resolve_llm_config(vault.settings.llm, os.environ, vault_root=vault.root))


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--mode",
    type=click.Choice(["agentic", "propose", "disabled"]),
    help="Override memkit.yaml's learning.mode for this run.",
)
@click.option(
    "--store",
    "stores",
    multiple=True,
    type=click.Choice(
        ["persona", "insights", "threads", "patterns", "decisions", "feedback", "improvements"]
    ),
    help="Learn into this store only (repeat for more); default: those enabled.",
)
@click.option("--session", help="Session id for messages that have none (default: file name).")
@click.option(
    "--no-record", is_flag=True, help="Do not also record the conversation in episodic memory."
)
@json_option
@commit_option
@pass_vault
def learn(
    vault: Vault,
    file: Any,
    mode: str | None,
    stores: tuple[str, ...],
    session: str | None,
    no_record: bool,
    json_: bool,
) -> str:
    """Extract learnings from a conversation (import format, or - for stdin)."""
    from memkit.conversations import Episodes, parse_conversation, session_default
    from memkit.learning import Learning

    name, text = read_conversation(file)
    messages = parse_conversation(text, name)
    session_id = session or session_default(name)
    effective = mode or vault.settings.learning.mode
    episodes = Episodes(vault)
    prepared = episodes.prepare(messages, session=session_id)
    if not no_record:
        episodes.record(prepared)
    llm = make_llm(vault) if effective != "disabled" else None
    learning = Learning(vault, llm=llm)
    try:
        report = learning.learn(
            prepared, mode=effective, stores=stores or None, session=prepared[-1].session
        )
    finally:
        learning.close()
        if llm is not None:
            llm.close()
    message = (
        f"memkit: learn from {Path(name).name}: {len(report.written)} entries written, "
        f"{len(report.proposed)} proposed"
    )
    if json_:
        emit_json(report.to_json())
        return message
    if report.mode == "disabled":
        click.echo("Learning is disabled: nothing was asked or written.")
    for item in report.written:
        click.echo(f"{item['op']:<9} {item['store']:<12} {item['path']}")
    for item in report.proposed:
        click.echo(f"proposed  {item['store']:<12} {item['path']}")
    for refusal in report.refused:
        warn(f"refused {refusal.store} entry {refusal.title!r}: {refusal.reason}")
    for title in report.duplicates:
        click.echo(f"duplicate dropped: {title}", err=True)
    for warning in report.warnings:
        warn(warning)
    if report.chunks > 1:
        click.echo(
            f"The conversation was learned in {report.chunks} parts to fit the model's context "
            f"({report.context_tokens} tokens).",
            err=True,
        )
    for fallback in report.fallbacks:
        refused, _, used = fallback.partition("->")
        click.echo(f"structured output: the server refused {refused}; used {used}", err=True)
    if report.mode != "disabled" and not (report.written or report.proposed):
        click.echo("Nothing new to learn.", err=True)
    return message


@cli.command()
@json_option
@pass_vault
def proposals(vault: Vault, json_: bool) -> None:
    """List pending proposals."""
    from memkit.learning import Learning

    pending = Learning(vault).proposals()
    if json_:
        emit_json([{k: v for k, v in r.to_json().items()} for r in pending])
        return
    if not pending:
        click.echo("No pending proposals.", err=True)
    for record in pending:
        target = f" -> {record.meta['target']}" if record.meta.get("target") else ""
        click.echo(
            f"{record.id}  {record.meta.get('op', 'add')} {record.meta.get('store')}{target}"
            f"  {record.path}  {record.title}"
        )


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@click.option("--force", is_flag=True, help="Apply even if the target changed since the proposal.")
@json_option
@commit_option
@pass_vault
def approve(vault: Vault, ref: str, force: bool, json_: bool) -> str:
    """Approve a proposal: move it into its store and apply it."""
    from memkit.learning import Learning

    relpath = str(vault.resolve(ref, cwd=Path.cwd()))
    proposal = vault.read_record(relpath)
    record = Learning(vault).approve(relpath, force=force)
    if json_:
        emit_json(record.to_json())
    else:
        click.echo(f"Approved: {record.path}")
    return f"memkit: approve {proposal.meta.get('store', record.type)} {quoted(proposal.title)}"


@cli.command()
@click.argument("ref", metavar="ID_OR_PATH")
@click.option("--reason", help="Why (kept in the file for audit).")
@json_option
@commit_option
@pass_vault
def reject(vault: Vault, ref: str, reason: str | None, json_: bool) -> str:
    """Reject a proposal: move it to learning/rejected/ (it will not be proposed again)."""
    from memkit.learning import Learning

    record = Learning(vault).reject(str(vault.resolve(ref, cwd=Path.cwd())), reason=reason or "")
    if json_:
        emit_json(record.to_json())
    else:
        click.echo(f"Rejected: {record.path}")
    return f"memkit: reject {record.meta.get('store', 'proposal')} {quoted(record.title)}"


# --- the index: sync, reindex, watch, search, status -------------------------------------------


def open_index(vault: Vault) -> Any:
    from memkit.sync import VaultIndex

    return VaultIndex(vault)


class ProgressBar:
    """A progress bar on stderr when it is a terminal; silent when piped."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def report_sync(report: Any, json_: bool) -> None:
    warn_problems(report.problems)
    if json_:
        emit_json(report.to_json())
        return
    verb = "Rebuilt" if report.rebuilt else "Synced"
    click.echo(
        f"{verb} index: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.deleted)} deleted, {report.unchanged} unchanged "
        f"({report.seconds:.2f} s)"
    )
    for old, new in report.moved:
        click.echo(f"moved: {old} -> {new}")


def run_sync(vault: Vault, *, full: bool) -> Any:
    from memkit.maintenance import refresh

    bar = ProgressBar("Indexing")
    try:
        return refresh(vault, full=full, progress=bar)
    finally:
        bar.close()


@cli.command()
@click.option(
    "--remote",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[NAME]",
    help="Also pull from and push to this git remote (no NAME: the branch's upstream, else origin).",
)
@json_option
@pass_vault
def sync(vault: Vault, remote: str | None, json_: bool) -> None:
    """Bring the search index up to date with the files (new, changed, deleted, moved)."""
    if remote is None:
        report_sync(run_sync(vault, full=False), json_)
    else:
        sync_with_remote(vault, remote or None, json_)


def approvals_message(vault: Vault, paths: Iterable[str]) -> str | None:
    """The commit message for proposals finalised after a pull (moved into a store in git)."""
    finalised = []
    for path in sorted(paths):
        if path.endswith(".md") and vault.safe_path(path).is_file():
            record = vault.read_record(path)
            finalised.append(f"{record.type} {quoted(record.title)}")
    if not finalised:
        return None
    if len(finalised) == 1:
        return f"memkit: approve {finalised[0]} (moved into its store in git)"
    return f"memkit: approve {len(finalised)} proposals moved into their stores in git"


def sync_with_remote(vault: Vault, remote: str | None, json_: bool) -> None:
    """Commit, pull, sync the index and finalise approvals that came with the pull, push."""
    from memkit.gitvault import GitVault, RemoteSyncReport

    synced: list[Any] = []

    def after_pull(_report: RemoteSyncReport) -> str | None:
        before = set(vault.touched)
        synced.append(run_sync(vault, full=False))
        return approvals_message(vault, vault.touched - before)

    git_report = GitVault(vault).sync_remote(remote, after_pull=after_pull)
    index_report = synced[-1]
    for conflict in git_report.conflicts:
        warn(
            f"{conflict.path} was changed on both machines: this machine's version stays in "
            f"place and the other is in {conflict.copy}. Copy what you want to keep into "
            f"{conflict.path}, delete the copy, then run `memkit sync --remote` again"
        )
    for path in git_report.kept:
        warn(f"{path} was deleted on one machine and edited on the other: the edit was kept")
    if json_:
        warn_problems(index_report.problems)
        emit_json({**index_report.to_json(), "git": git_report.to_json()})
        return
    where = f"{git_report.remote}/{git_report.branch}"
    click.echo(f"Pulled {where}: {git_report.merged}, {len(git_report.changed)} files changed")
    report_sync(index_report, False)
    click.echo(f"Pushed to {where}" if git_report.pushed else "Nothing to push")


@cli.command()
@json_option
@pass_vault
def reindex(vault: Vault, json_: bool) -> None:
    """Rebuild the search index from scratch."""
    report_sync(run_sync(vault, full=True), json_)


@cli.command()
@click.option("--polling", is_flag=True, help="Poll the files instead of using inotify.")
@click.option(
    "--reconcile",
    "reconcile_seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds between full reconciles with the files.",
)
@json_option
@pass_vault
def watch(vault: Vault, polling: bool, reconcile_seconds: float, json_: bool) -> None:
    """Keep the index fresh as files change, until Ctrl-C."""
    from memkit.maintenance import watch_vault

    def on_sync(report: Any) -> None:
        if json_:
            click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        elif report.touched > 20:
            # A first start or a `git checkout`: one summary line, not a line per file.
            click.echo(
                f"indexed {len(report.added)} new, {len(report.changed)} changed, "
                f"removed {len(report.deleted)} ({report.seconds:.2f} s)",
                err=True,
            )
        else:
            for path in report.added + report.changed:
                click.echo(f"indexed {path}", err=True)
            for path in report.deleted:
                click.echo(f"removed {path}", err=True)
        touched = set(report.added) | set(report.changed)
        warn_problems(p for p in report.problems if p.path in touched)

    def on_error(error: Exception) -> None:
        warn(str(error))

    def stop_on_sigterm(_signum: int, _frame: Any) -> None:
        # `kill PID` and service managers send SIGTERM: stop as cleanly as on Ctrl-C.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    click.echo(f"Watching {vault.root} (Ctrl-C to stop)", err=True)
    watch_vault(
        vault,
        polling=polling,
        reconcile_seconds=reconcile_seconds,
        on_sync=on_sync,
        on_error=on_error,
    )
    click.echo("Stopped.", err=True)


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


def highlight(snippet: str, ranges: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in sorted(ranges):
        out.append(snippet[last:start])
        out.append(click.style(snippet[start:end], bold=True, fg="yellow"))
        last = end
    out.append(snippet[last:])
    return "".join(out)


@cli.command()
@click.argument("query", nargs=-1, required=True)
@click.option(
    "-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many results."
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(RECORD_TYPES),
    help="Only this type; repeat for more.",
)
@click.option("--tag", "tags", multiple=True, help="Only records with this tag; repeat for more.")
@_date_option("--since", "Only records updated on or after DATE.")
@_date_option("--until", "Only records updated on or before DATE.")
@click.option(
    "--all", "include_hidden", is_flag=True, help="Include expired and superseded records."
)
@click.option("--no-sync", is_flag=True, help="Do not sync first, even if files changed.")
@json_option
@pass_vault
def search(
    vault: Vault,
    query: tuple[str, ...],
    k: int,
    types: tuple[str, ...],
    tags: tuple[str, ...],
    since: str | None,
    until: str | None,
    include_hidden: bool,
    no_sync: bool,
    json_: bool,
) -> None:
    """Search the vault (free text, "phrases", type:T, tag:T)."""
    text = " ".join(query)
    since_at, until_at = _parse_date(since, "--since"), _parse_date(until, "--until")
    index = open_index(vault)
    try:
        result, stale = index.search(
            text,
            k=k,
            types=types,
            tags=tags,
            since=since_at,
            until=until_at,
            include_hidden=include_hidden,
            sync=not no_sync,
        )
        if no_sync:
            stale = index.is_stale()
    finally:
        index.close()
    if stale:
        warn(
            "the index is out of date with the files (another process is updating it); "
            "results may miss recent changes: run `memkit sync`"
        )
    if json_:
        emit_json(
            {
                "query": text,
                "total": result.total,
                "stale": stale,
                "hits": [hit.to_json() for hit in result.hits],
            }
        )
        return
    if not result.hits:
        click.echo("No matches.", err=True)
    for hit in result.hits:
        where = f"{hit.path}:{hit.line}"
        fuzzy = " (fuzzy)" if hit.fuzzy else ""
        click.echo(
            f"{click.style(where, fg='cyan')}  {hit.type}  {hit.title}{fuzzy}  [{hit.score:.3f}]"
        )
        snippet = " ".join(highlight(hit.snippet, hit.highlights).split())
        click.echo(f"    {snippet}")


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


@cli.command()
@json_option
@pass_vault
def status(vault: Vault, json_: bool) -> None:
    """Record counts, index freshness, files that failed to parse, watcher."""
    from memkit.maintenance import vault_status
    from memkit.notes import unadopted

    info = vault_status(vault)
    # Notes without memkit front-matter are not broken files: they wait for `memkit adopt`.
    # Read from the files, not the last sync, so a note just saved is listed at once.
    info["unadopted"] = unadopted(vault)
    info["problems"] = [p for p in info["problems"] if p["path"] not in info["unadopted"]]
    if json_:
        emit_json(info)
        return
    click.echo(f"vault: {info['vault']}")
    counts = ", ".join(f"{n} {t}" for t, n in info["counts"].items()) or "none"
    click.echo(f"records: {info['records']} ({counts})")
    index = info["index"]
    freshness = (
        "up to date"
        if index["fresh"]
        else (f"stale: {index['changed']} changed, {index['deleted']} deleted since the last sync")
    )
    click.echo(f"index: {index['documents']} documents, {freshness} (checked by {index['checked_by']})")
    watcher = info["watcher"]
    click.echo(
        "watcher: " + (f"running (pid {watcher['pid']})" if watcher["running"] else "not running")
    )
    for problem in info["problems"]:
        click.echo(f"problem: {problem['path']}:{problem['line']}: {problem['message']}")
    if info["unadopted"]:
        click.echo(
            f"notes not adopted yet: {len(info['unadopted'])} (not searchable until you run "
            "`memkit adopt`)"
        )
        for path in info["unadopted"][:20]:
            click.echo(f"  {path}")
        if len(info["unadopted"]) > 20:
            click.echo(f"  ... and {len(info['unadopted']) - 20} more")


# --- agents: chat, mcp --------------------------------------------------------------------------

CHAT_COMMANDS = """\
/remember TEXT   remember a long-term fact
/recall QUERY    memory relevant to QUERY
/proposals       learnings waiting for review
/approve ID      approve a proposal
/reject ID       reject a proposal
/help            this list
/quit            end the session (what is left is learned) and leave"""


def show_turn(reply: Any) -> None:
    """What memory did around a reply: on stderr, so stdout holds replies only (learning is
    reported when it finishes, by `chat`)."""
    if reply.memories_used:
        click.echo(f"memory used: {', '.join(reply.memories_used)}", err=True)
    for error in reply.errors:
        if not error.startswith("learning failed: "):
            warn(error)


def show_extraction(extraction: Any, *, errors: bool = True) -> None:
    for item in extraction.written:
        click.echo(f"learned: {item['op']} {item['store']} {item['path']}", err=True)
    for item in extraction.proposed:
        click.echo(f"proposed: {item['store']} {item['path']}", err=True)
    for refusal in extraction.refused:
        click.echo(f"not learned: {refusal}", err=True)
    for error in extraction.errors if errors else ():
        warn(error)


def chat_command(agent: Any, line: str) -> bool:
    """Run one /command of `memkit chat`; False when the chat should end."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/help":
        click.echo(CHAT_COMMANDS, err=True)
    elif name in ("/remember", "/recall", "/approve", "/reject") and not argument:
        raise UsageError(f"{name} needs an argument; /help lists the commands")
    elif name == "/remember":
        record = agent.memory.remember(argument, source={"tool": "chat", "session": agent.session})
        click.echo(f"Remembered {record.id} in {record.path}")
    elif name == "/recall":
        hits = agent.memory.recall(argument, k=5)
        if not hits:
            click.echo("Nothing recalled.", err=True)
        for item in hits:
            recall_text(item)
    elif name == "/proposals":
        pending = agent.learning.proposals()
        if not pending:
            click.echo("No pending proposals.", err=True)
        for record in pending:
            click.echo(f"{record.id}  {record.meta.get('store')}  {record.path}  {record.title}")
    elif name == "/approve":
        record = agent.learning.approve(agent.vault.resolve(argument))
        click.echo(f"Approved: {record.path}")
    elif name == "/reject":
        ref, _, reason = argument.partition(" ")
        record = agent.learning.reject(agent.vault.resolve(ref), reason=reason.strip())
        click.echo(f"Rejected: {record.path}")
    else:
        raise UsageError(f"unknown command {name}; /help lists the commands")
    return True


@cli.command()
@click.option(
    "--memory/--no-memory",
    default=True,
    show_default=True,
    help="Record each interaction and put relevant memory into the prompt.",
)
@click.option(
    "--learn",
    "learn_mode",
    type=click.Choice(["agentic", "propose", "disabled"]),
    help="Learning mode for this chat (default: learning.mode in memkit.yaml).",
)
@click.option("--instructions", default="", help="The agent's instructions (its system prompt).")
@click.option("--model", help="The model (default: llm.model in memkit.yaml, or MEMKIT_MODEL).")
@click.option("--session", help="Session id (default: a new one).")
@click.option(
    "--stream/--no-stream",
    default=None,
    help="Show each reply as the model writes it (default: on when stdout is a terminal).",
)
@pass_vault
def chat(
    vault: Vault,
    memory: bool,
    learn_mode: str | None,
    instructions: str,
    model: str | None,
    session: str | None,
    stream: bool | None,
) -> None:
    """Chat with an agent that remembers and learns in the vault (lines from stdin; /help).

    Each reply is shown as soon as it comes; learning from it runs afterwards, in the
    background, and reports on stderr.
    """
    from memkit.agent import Agent, LearnConfig

    agent = Agent(
        instructions,
        vault=vault,
        memory=memory,
        learn=LearnConfig(mode=learn_mode, background=True),
        llm=model,
        session=session,
    )
    stdin = sys.stdin
    interactive = stdin.isatty()
    streaming = sys.stdout.isatty() if stream is None else stream
    failed = False
    shown = 0  # extractions reported so far

    def report_learning(*, wait: bool = False) -> None:
        nonlocal shown
        while shown < len(agent.extractions):
            extraction = agent.extractions[shown]
            if not (wait and extraction.wait()) and not extraction.done:
                return  # later ones finish after this one: report in order
            show_extraction(extraction)
            shown += 1

    if interactive:
        click.echo(f"memkit chat in {vault.root}; /help lists commands, /quit leaves", err=True)
    try:
        while True:
            report_learning()
            if interactive:
                click.echo("you> ", nl=False, err=True)
            line = stdin.readline()
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/"):
                    if not chat_command(agent, text):
                        break
                    continue
                if streaming:
                    for piece in agent.stream(text):
                        click.echo(piece, nl=False)
                        sys.stdout.flush()
                    click.echo("")
                    reply = agent.last_reply
                else:
                    reply = agent.run(text)
                    click.echo(reply.text)
            except MemkitError as error:
                # One failed turn or command does not end the conversation; the exit status
                # still tells a script that something failed.
                click.echo(f"error: {error}", err=True)
                failed = True
                continue
            if reply is not None:
                show_turn(reply)
    finally:
        last = agent.close()
        for warning in agent.llm_warnings:
            warn(warning)
        report_learning(wait=True)
        if last not in agent.extractions:
            show_extraction(last)
    attempted = [e for e in agent.extractions if e.ran or e.errors]
    if failed or (attempted and all(e.failed for e in attempted)):
        sys.exit(1)


@cli.command()
@click.option(
    "--vault",
    "vault_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="The vault folder (the same as `memkit --vault PATH mcp`).",
)
@click.pass_context
def mcp(ctx: click.Context, vault_path: Path | None) -> None:
    """Serve the vault to MCP hosts over stdio (needs `pip install 'memkit[mcp]'`)."""
    from memkit.mcp_server import serve

    if vault_path is not None:
        ctx.find_root().obj["vault_path"] = vault_path
    serve(open_vault(ctx))


def main() -> None:
    cli(prog_name="memkit")
