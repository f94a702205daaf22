"""Agents: the chat REPL and the MCP server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from memkit.cli.group import cli, open_vault, pass_vault
from memkit.cli.output import recall_text, warn
from memkit.errors import MemkitError, UsageError
from memkit.vault import Vault

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
