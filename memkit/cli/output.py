"""What commands print: JSON on stdout, warnings on stderr, record lines, highlighted
snippets, recalled messages, a progress bar."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import click

from memkit.records import Record
from memkit.vault import Problem


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def warn_problems(problems: Iterable[Problem]) -> None:
    problems = list(problems)
    if not problems:
        return
    from memkit.notes import NOT_ADOPTED  # (here: most runs have no problem to name)

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


def record_line(record: Record) -> str:
    return f"{record.id}  {record.type:<12} {record.path}  {record.title}"


def highlight(snippet: str, ranges: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in sorted(ranges):
        out.append(snippet[last:start])
        out.append(click.style(snippet[start:end], bold=True, fg="yellow"))
        last = end
    out.append(snippet[last:])
    return "".join(out)


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
        if self.bar is not None and done < self.shown:
            # A new pass (`sync --remote` syncs again after a push the remote refused): a new bar.
            self.close()
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar, self.shown = None, 0
