"""The vault in a person's editor: entity file names, Obsidian links and properties, `memkit edit`,
shell completion, NO_COLOR, dry runs and safe suggestions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from memkit import Vault
from memkit.cli import cli
from memkit.entities import Entities
from memkit.ids import entity_stem
from memkit.links import LinkResolver, extract_links, vault_files
from memkit.memory import Memory

from .conftest import SAMPLE_VAULT, Runner

# --- entity file names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("Priya Raman", "Priya Raman"),
        ("Jürgen Müller", "Jürgen Müller"),
        ('AC/DC: "Back" <in> Black?|*', "AC-DC- -Back- -in- Black---"),
        ("C# [team] ^x", "C- -team- -x"),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("...hidden.", "hidden"),
        ("CON", "CON_"),
        ("lpt1.txt", "lpt1.txt_"),
        ("???", "---"),
        ("..", "entity"),
        ("x" * 300, "x" * 120),
    ],
)
def test_entity_stem_is_the_name_file_systems_accept(name: str, stem: str) -> None:
    assert entity_stem(name) == stem


def test_entity_files_are_named_after_the_entity_and_clashes_get_a_suffix(vault: Vault) -> None:
    entities = Entities(vault)
    first = entities.upsert("AC/DC", kind="band").record
    second = entities.upsert("AC-DC", kind="band").record  # another name, the same file name
    third = entities.upsert("ac-dc ", kind="band").record  # found by name: the same entity
    assert first.path == "memory/entities/AC-DC.md"
    assert second.path == "memory/entities/AC-DC 2.md"
    assert third.path == second.path
    # A case-insensitive file system would see `acme.md` and `ACME.md` as one file.
    (vault.root / "memory/entities/acme.md").write_text("not an entity\n")
    assert entities.upsert("ACME", kind="org").record.path == "memory/entities/ACME 2.md"


def test_a_link_to_a_new_entity_resolves(run: Runner, vault: Vault) -> None:
    Memory(vault).remember("Schema changes need [[Priya Raman]]'s sign-off")
    before = json.loads(run.run("check", "--json").stdout)
    assert [w["message"][:16] for w in before["warnings"]] == ["[[Priya Raman]] "]
    made = run.run("entity", "Priya Raman", "--kind", "person")
    assert made.exit_code == 0 and "memory/entities/Priya Raman.md" in made.stdout
    after = json.loads(run.run("check", "--json").stdout)
    assert after["ok"] and after["warnings"] == []


# --- links as Obsidian resolves them ----------------------------------------------------------


def test_sample_vault_has_no_dangling_link() -> None:
    resolver = LinkResolver.of_vault(Vault(SAMPLE_VAULT))
    links = [
        target
        for path in sorted(SAMPLE_VAULT.rglob("*.md"))
        for _line, target in extract_links(path.read_text("utf-8"))
    ]
    assert len(links) >= 60
    assert [t for t in links if not resolver.resolves(t)] == []


def test_check_of_sample_vault_is_clean(run_sample: Runner) -> None:
    result = run_sample.run("check", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert report["problems"] == [] and report["warnings"] == []


def test_link_forms_resolve_like_obsidian(vault: Vault) -> None:
    Entities(vault).upsert("Priya Raman", kind="person")
    (vault.root / "attachments").mkdir()
    (vault.root / "attachments/Diagram.png").write_bytes(b"png")
    (vault.root / ".obsidian").mkdir()
    (vault.root / ".obsidian/Hidden.md").write_text("x")
    resolver = LinkResolver(vault_files(vault))
    text = (
        "[[priya raman]] [[Priya Raman|Priya]] [[Priya Raman#Relations]] [[Priya Raman^b1]]\n"
        "![[Priya Raman]] [[Priya Raman.md]] [[entities/Priya Raman]] [[#Only a heading]]\n"
        "![[diagram.PNG]] | [[Priya Raman\\|in a table]] |\n"
        "`[[Inline Code]]` [[Nobody]] [[Hidden]] [[Diagram]]\n"
        "```\n[[Fenced]]\n```\n"
    )
    targets = extract_links(text)
    assert "Inline Code" not in [t for _l, t in targets]
    assert "Fenced" not in [t for _l, t in targets]
    dangling = [(line, t) for line, t in targets if not resolver.resolves(t)]
    assert dangling == [(3, "Nobody"), (3, "Hidden"), (3, "Diagram")]


def test_dangling_links_are_warnings_with_path_and_line(run: Runner, vault: Vault) -> None:
    record = Memory(vault).remember("Ask [[Nobody Yet]] first", title="Ask first")
    assert record.path is not None
    lines = (vault.root / record.path).read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "[[Nobody Yet]]" in text)
    text = run.run("check")
    assert text.exit_code == 0
    assert f"{record.path}:{line}: warning: [[Nobody Yet]] links to no file" in text.stdout
    assert "0 problems, 1 warnings" in text.stderr
    report = json.loads(run.run("check", "--json").stdout)
    assert report["ok"] is True
    assert report["warnings"][0]["path"] == record.path and report["warnings"][0]["line"] == line


# --- check --fix ------------------------------------------------------------------------------


def old_style_vault(tmp_path: Path) -> Path:
    """The sample vault as older memkit versions named its entity files (slugs)."""
    root = tmp_path / "old"
    shutil.copytree(SAMPLE_VAULT, root, ignore=shutil.ignore_patterns(".memkit"))
    for path in (root / "memory/entities").glob("*.md"):
        path.rename(path.with_name(path.stem.lower().replace(" ", "-") + ".md"))
    return root


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, env=env
    ).stdout


def test_check_fix_renames_entity_files_with_git_mv(tmp_path: Path) -> None:
    root = old_style_vault(tmp_path)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "old names")
    runner = Runner(root)
    before = runner.run("check")
    assert "[[Priya Raman]] links to no file" in before.stdout
    assert (
        "run `memkit check --fix` to rename it to memory/entities/Priya Raman.md" in before.stdout
    )

    fixed = runner.run("check", "--fix")

    assert fixed.exit_code == 0, fixed.output
    assert "git mv memory/entities/priya-raman.md -> memory/entities/Priya Raman.md" in fixed.stdout
    assert "0 problems, 0 warnings, 6 entity files renamed" in fixed.stderr
    staged = git(root, "status", "--porcelain")
    assert 'R  memory/entities/priya-raman.md -> "memory/entities/Priya Raman.md"' in staged
    assert sorted(p.name for p in (root / "memory/entities").iterdir()) == sorted(
        p.name for p in (SAMPLE_VAULT / "memory/entities").iterdir()
    )
    again = runner.run("check", "--fix", "--json")
    assert json.loads(again.stdout)["renamed"] == []


def test_check_fix_without_git_renames_files(tmp_path: Path) -> None:
    root = old_style_vault(tmp_path)
    (root / "memory/entities/Berlin.md").write_text("someone else's file\n")  # not a record
    report = json.loads(Runner(root).run("check", "--fix", "--json").stdout)
    renamed = {r["from"]: r["to"] for r in report["renamed"]}
    assert renamed["memory/entities/dana-okafor.md"] == "memory/entities/Dana Okafor.md"
    assert renamed["memory/entities/berlin.md"] == "memory/entities/Berlin 2.md"
    assert not any(r["git"] for r in report["renamed"])
    assert (root / "memory/entities/Berlin.md").read_text() == "someone else's file\n"


# --- Obsidian's properties --------------------------------------------------------------------

OBSIDIAN_ENTITY = """\
---
name: Berlin
aliases: Berlin, Germany
tags: city
id: 01M6EJ77Y0MC7VQVNP6REK7F3E
kind: place
cssclasses:
  - wide
type: entity
# edited in Obsidian
created: 2026-11-02T16:42:00Z
updated: 2026-11-02T16:42:00Z
publish: false
---
Dana lives here.
"""


def test_obsidian_edited_front_matter_passes_and_keeps_its_formatting(
    run: Runner, vault: Vault
) -> None:
    path = vault.root / "memory/entities/Berlin.md"
    path.write_text(OBSIDIAN_ENTITY)
    checked = run.run("check")
    assert checked.exit_code == 0 and "0 problems, 0 warnings" in checked.stderr
    # Found by its string alias, and updated: only `updated` and the new `attributes` change.
    result = run.run("entity", "Berlin, Germany", "--set", "population=3.7M")
    assert result.exit_code == 0 and "Updated memory/entities/Berlin.md" in result.stdout
    after = path.read_text().splitlines()
    before = OBSIDIAN_ENTITY.splitlines()
    changed = [line for line in after if line not in before]
    assert [line.split(":")[0] for line in changed] == ["updated", "attributes"]
    assert [line for line in before if line not in after] == [before[11]]  # the old `updated`
    assert run.run("check").exit_code == 0


def test_empty_properties_obsidian_keeps_pass(run: Runner, vault: Vault) -> None:
    record = Memory(vault).remember("A fact", title="A fact")
    assert record.path is not None
    path = vault.root / record.path
    path.write_text(path.read_text().replace("title: A fact", "title: A fact\ntags:\naliases:"))
    result = run.run("check")
    assert result.exit_code == 0 and "0 problems, 0 warnings" in result.stderr
    assert vault.read_record(record.path).tags == []


def test_a_string_tag_is_a_tag_to_search(run: Runner, vault: Vault) -> None:
    record = Memory(vault).remember("Deploys need a rollback plan", tags=["ops"])
    assert record.path is not None
    path = vault.root / record.path
    path.write_text(path.read_text().replace("tags: [ops]", "tags: ops, deploys"))
    hits = json.loads(run.run("search", "rollback", "--tag", "deploys", "--json").stdout)["hits"]
    assert [h["path"] for h in hits] == [record.path]
    assert hits[0]["tags"] == ["ops", "deploys"]


def test_tags_obsidian_refuses_are_warnings(run: Runner, vault: Vault) -> None:
    Memory(vault).remember("Tagged fact", tags=["ok-tag", "nested/tag"])
    record = Memory(vault).remember("Badly tagged fact", tags=["two words", "2026", "fine_1"])
    report = json.loads(run.run("check", "--json").stdout)
    assert report["ok"] is True
    messages = [w["message"] for w in report["warnings"]]
    assert len(messages) == 2
    assert messages[0].startswith("tag '2026': Obsidian needs a letter")
    assert messages[1].startswith("tag 'two words': Obsidian does not accept spaces")
    assert {w["path"] for w in report["warnings"]} == {record.path}


# --- memkit edit ------------------------------------------------------------------------------


def editor_script(tmp_path: Path, python_code: str) -> str:
    """A real editor command: a script that changes the file it is given."""
    script = tmp_path / "editor.py"
    script.write_text(f"import sys\npath = sys.argv[1]\n{python_code}\n")
    wrapper = tmp_path / "fake-editor"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper)


def test_edit_opens_the_editor_then_checks_and_indexes(tmp_path: Path, vault: Vault) -> None:
    record = Memory(vault).remember("Ledger deploys on Tuesdays", title="Deploy days")
    editor = editor_script(
        tmp_path,
        "text = open(path).read().replace('Tuesdays', 'Wednesdays and zanzibar days')\n"
        "open(path, 'w').write(text)",
    )
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--vault", str(vault.root), "edit", record.id], env={"VISUAL": editor}
    )
    assert result.exit_code == 0, result.output
    assert f"{record.path}: saved, ok, indexed" in result.stdout
    hits = json.loads(
        runner.invoke(cli, ["--vault", str(vault.root), "search", "zanzibar", "--json"]).stdout
    )["hits"]
    assert [h["path"] for h in hits] == [record.path]


def test_edit_reports_problems_with_path_and_line(tmp_path: Path, vault: Vault) -> None:
    record = Memory(vault).remember("A fact", title="A fact", importance=0.5)
    editor = editor_script(
        tmp_path,
        "text = open(path).read().replace('importance: 0.5', 'importance: high')\n"
        "open(path, 'w').write(text)",
    )
    assert record.path is not None
    line = next(
        n
        for n, text in enumerate((vault.root / record.path).read_text().splitlines(), 1)
        if text.startswith("importance")
    )
    result = CliRunner().invoke(
        cli,
        ["--vault", str(vault.root), "edit", record.path, "--json"],
        env={"EDITOR": editor, "VISUAL": None},
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["changed"] is True and report["ok"] is False
    assert report["problems"][0]["line"] == line
    assert "importance: 'high' is not of type 'number'" in report["problems"][0]["message"]


def test_edit_finds_an_entity_by_name(tmp_path: Path, vault: Vault) -> None:
    Entities(vault).upsert("Priya Raman", kind="person")
    editor = editor_script(tmp_path, "open(path, 'a').write('Leads [[Nobody]].\\n')")
    result = CliRunner().invoke(
        cli, ["--vault", str(vault.root), "edit", "priya raman"], env={"VISUAL": editor}
    )
    assert result.exit_code == 0, result.output
    assert "memory/entities/Priya Raman.md: saved, ok, indexed" in result.stdout
    assert "warning: [[Nobody]] links to no file" in result.stderr


def test_edit_of_an_unknown_record_is_an_error(run: Runner) -> None:
    result = run.run("edit", "01JD0000000000000000000000")
    assert result.exit_code == 1 and "01JD0000000000000000000000" in result.output


# --- completion, NO_COLOR, dry runs, suggestions ----------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0
    assert "_MEMKIT_COMPLETE" in result.stdout
    report = json.loads(CliRunner().invoke(cli, ["completion", shell, "--json"]).stdout)
    assert report["shell"] == shell and "memkit completion" in report["install"]


def test_completion_completes_commands_through_the_memkit_program() -> None:
    memkit = Path(sys.executable).parent / "memkit"
    env = {**os.environ, "_MEMKIT_COMPLETE": "bash_complete", "COMP_WORDS": "memkit ado"}
    env["COMP_CWORD"] = "1"
    done = subprocess.run([str(memkit)], env=env, capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["plain,adopt"]


def test_no_color_turns_colour_off(run: Runner, vault: Vault) -> None:
    record = Memory(vault).remember("A fact")
    args = ["--vault", str(vault.root), "show", record.id]
    coloured = CliRunner().invoke(cli, args, color=True)
    plain = CliRunner().invoke(cli, args, color=True, env={"NO_COLOR": "1"})
    assert "\x1b[" in coloured.stderr
    assert "\x1b[" not in plain.stderr and plain.stderr.startswith(f"# {record.path}")


def test_forget_dry_run_changes_nothing(run: Runner, vault: Vault) -> None:
    record = Memory(vault).remember("Keep me")
    assert record.path is not None
    text = run.run("forget", record.id, "--dry-run")
    assert text.exit_code == 0
    assert f"Would forget {record.id} ({record.path}); nothing was changed" in text.stdout
    report = json.loads(run.run("forget", record.id, "--dry-run", "--json").stdout)
    assert report == {"forgotten": record.id, "path": record.path, "dry_run": True}
    assert (vault.root / record.path).exists()


def test_expire_dry_run_changes_nothing(run: Runner, vault: Vault) -> None:
    memory = Memory(vault)
    gone = memory.remember("Short-lived", type="short-term", importance=0.1)
    kept = memory.remember("Important", type="short-term", importance=0.9)
    for record in (gone, kept):
        assert record.path is not None
        path = vault.root / record.path
        path.write_text(path.read_text().replace("expires: ", "expires: 2000-01-01T00:00:00Z\nx: "))
    files = sorted(p.read_bytes() for p in vault.root.rglob("*.md"))
    report = json.loads(run.run("expire", "--dry-run", "--json").stdout)
    assert sorted(report["expired"]) == sorted([gone.id, kept.id])
    assert report["promoted"] == [{"from": kept.id, "to": ""}] and report["dry_run"] is True
    text = run.run("expire", "--dry-run").stdout
    assert f"would promote to long-term: {kept.id}" in text and "nothing was changed" in text
    assert sorted(p.read_bytes() for p in vault.root.rglob("*.md")) == files
    real = json.loads(run.run("expire", "--json").stdout)
    assert sorted(real["expired"]) == sorted([gone.id, kept.id])


@pytest.mark.parametrize("typed", ["export", "get", "forgt", "expir", "rejct", "delete", "remove"])
def test_unknown_commands_never_suggest_a_destructive_one(typed: str) -> None:
    result = CliRunner().invoke(cli, [typed])
    assert result.exit_code == 2
    for destructive in ("forget", "expire", "reject"):
        assert destructive not in result.output
    assert f"No such command {typed!r}" in result.output


def test_unknown_commands_get_a_safe_hint() -> None:
    assert "Did you mean `memkit show`?" in CliRunner().invoke(cli, ["get"]).output
    assert "Did you mean `memkit list --json`?" in CliRunner().invoke(cli, ["export"]).output
    assert "'adopt'" in CliRunner().invoke(cli, ["adopr"]).output


def test_check_fix_leaves_a_file_a_person_renamed(run: Runner, vault: Vault) -> None:
    record = Entities(vault).upsert("Priya Raman", kind="person").record
    (vault.root / "memory/entities/Priya Raman.md").rename(vault.root / "memory/entities/PR.md")
    report = json.loads(run.run("check", "--fix", "--json").stdout)
    assert report["renamed"] == [] and report["warnings"] == []
    assert vault.read_record("memory/entities/PR.md").id == record.id
