"""Learning: learn, proposals, approve, reject."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from memkit.cli.group import cli, commit_option, json_option, pass_vault, quoted, read_conversation
from memkit.cli.output import emit_json, warn
from memkit.vault import Vault


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
    from memkit.sync import VaultIndex

    relpath = str(vault.resolve(ref, cwd=Path.cwd()))
    proposal = vault.read_record(relpath)
    learning = Learning(vault, index=VaultIndex(vault))  # indexes the entry as it writes it
    try:
        record = learning.approve(proposal, force=force)  # as read: not read again
    finally:
        learning.close()
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
