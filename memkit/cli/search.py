"""The index: sync (and `sync --remote`), reindex, watch, search, status."""

from __future__ import annotations

import json
from typing import Any

import click

from memkit.cli.group import _date_option, _parse_date, cli, json_option, pass_vault
from memkit.cli.output import ProgressBar, emit_json, highlight, warn, warn_problems
from memkit.records import RECORD_TYPES
from memkit.vault import Vault


def open_index(vault: Vault) -> Any:
    from memkit.sync import VaultIndex

    return VaultIndex(vault)


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


def sync_with_remote(vault: Vault, remote: str | None, json_: bool) -> None:
    """Commit, pull, sync the index and finalise approvals that came with the pull, push."""
    from memkit import maintenance

    bar = ProgressBar("Indexing")
    try:
        result = maintenance.sync_with_remote(vault, remote, progress=bar)
    finally:
        bar.close()
    git_report, index_report = result.git, result.index
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
        emit_json(result.to_json())
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
        elif report.files_changed > 20:
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

    import signal  # (here: only `watch` handles signals)

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
    from memkit.index import SearchRequest

    request = SearchRequest(
        " ".join(query),
        k=k,
        types=types,
        tags=tags,
        since=_parse_date(since, "--since"),
        until=_parse_date(until, "--until"),
        include_hidden=include_hidden,
    )
    index = open_index(vault)
    try:
        result, stale = index.search(request, sync=not no_sync)
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
                "query": request.query,
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
    click.echo(
        f"index: {index['documents']} documents, {freshness} (checked by {index['checked_by']})"
    )
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
