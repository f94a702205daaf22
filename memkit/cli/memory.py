"""Memory: entity, expire, import, recall, context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from memkit.cli.group import (
    _date_option,
    _parse_date,
    cli,
    commit_option,
    dry_run_option,
    json_option,
    pass_vault,
    quoted,
    read_conversation,
)
from memkit.cli.output import emit_json, recall_text, warn
from memkit.errors import MemkitError
from memkit.records import RECORD_TYPES
from memkit.vault import Vault


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
@_date_option("--since", "Only records updated on or after DATE.")
@_date_option("--until", "Only records updated on or before DATE.")
@json_option
@pass_vault
def recall(
    vault: Vault,
    query: tuple[str, ...],
    k: int,
    types: tuple[str, ...],
    include_hidden: bool,
    since: str | None,
    until: str | None,
    json_: bool,
) -> None:
    """Recall memory relevant to QUERY (episodic hits are single messages)."""
    from memkit.memory import Memory

    after = _parse_date(since, "--since")
    before = _parse_date(until, "--until")
    memory = Memory(vault)
    try:
        hits = memory.recall(
            " ".join(query),
            k=k,
            types=types,
            include_hidden=include_hidden,
            since=after,
            until=before,
        )
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
