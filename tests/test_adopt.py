"""A person's own notes: `memkit adopt`, notes folders, and files any front-matter parser reads."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import cast

import frontmatter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memkit import Vault
from memkit.errors import SettingsError
from memkit.notes import adopt, adopted_text, first_heading, read_front_matter, unadopted
from memkit.records import parse_record
from memkit.settings import load_settings

from .conftest import SAMPLE_VAULT, Runner, examples

PLAIN = (
    "# Rollout checklist\n\nFlag off first, then the big customer.\n\n```\n# not a heading\n```\n"
)
OBSIDIAN = (
    "---\n"
    "tags: ops\n"
    "aliases: Rollout\n"
    "# reviewed by Priya\n"
    "cssclasses: [wide]\n"
    "---\n"
    "\n\nBody after two blank lines, [[Priya Raman]].\n"
)
TOML = '+++\ntitle = "Hugo post"\ndate = 2024-01-05\ntags = ["hugo", "toml"]\n+++\nToml body.\n'
JSON_NOTE = '{\n"title": "Json note",\n"rating": 4\n}\nJson body.\n'


def body_after_front_matter(data: bytes) -> bytes:
    record = parse_record(data, "x.md")
    return record.body.encode("utf-8")


def write(vault: Vault, relpath: str, text: str | bytes) -> Path:
    path = vault.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_adopt_gives_front_matter_and_keeps_every_body_byte(vault: Vault) -> None:
    write(vault, "notes/rollout.md", PLAIN)
    write(vault, "notes/ops/obsidian.md", OBSIDIAN)
    write(vault, "notes/hugo.md", TOML)
    write(vault, "notes/data.md", JSON_NOTE)
    write(vault, "notes/windows.md", PLAIN.replace("\n", "\r\n"))
    os.utime(vault.root / "notes/rollout.md", (1_700_000_000, 1_700_000_000))

    report = adopt(vault)

    assert sorted(report.adopted) == [
        "notes/data.md",
        "notes/hugo.md",
        "notes/ops/obsidian.md",
        "notes/rollout.md",
        "notes/windows.md",
    ]
    assert report.skipped == []
    rollout = vault.read_record("notes/rollout.md")
    assert rollout.type == "note" and rollout.title == "Rollout checklist"
    assert rollout.meta["created"] == rollout.meta["updated"] == "2023-11-14T22:13:20Z"
    assert rollout.body == PLAIN
    # The person's own front-matter lines stay as written, comment included, after memkit's keys.
    obsidian = (vault.root / "notes/ops/obsidian.md").read_text()
    assert obsidian.endswith(OBSIDIAN[4:])
    assert obsidian.startswith("---\nid: ")
    record = vault.read_record("notes/ops/obsidian.md")
    assert record.title == "obsidian" and record.tags == ["ops"] and record.aliases == ["Rollout"]
    hugo = vault.read_record("notes/hugo.md")
    assert hugo.title == "Hugo post"
    assert hugo.meta["date"] == "2024-01-05" and hugo.meta["tags"] == ["hugo", "toml"]
    assert hugo.body == "Toml body.\n"
    data = vault.read_record("notes/data.md")
    assert (data.title, data.meta["rating"], data.body) == ("Json note", 4, "Json body.\n")
    windows = (vault.root / "notes/windows.md").read_bytes()
    assert windows.endswith(PLAIN.replace("\n", "\r\n").encode())
    assert b"\r\nid: " in windows and b"\nid" not in windows.replace(b"\r\n", b"")
    assert vault.check().problems == []


def test_adopt_is_idempotent_and_leaves_records_alone(vault: Vault) -> None:
    write(vault, "notes/a.md", PLAIN)
    assert adopt(vault).adopted == ["notes/a.md"]
    before = (vault.root / "notes/a.md").read_bytes()
    again = adopt(vault)
    assert again.adopted == [] and again.already == 1
    assert (vault.root / "notes/a.md").read_bytes() == before


def test_adopt_skips_what_it_cannot_adopt_and_says_why(vault: Vault) -> None:
    write(vault, "notes/book.md", "---\ntype: book\nauthor: Le Guin\n---\nText\n")
    write(vault, "notes/broken.md", "---\ntags: [unclosed\n---\nText\n")
    write(vault, "notes/latin1.md", "caf\xe9\n".encode("latin-1"))
    write(vault, "notes/.obsidian/workspace.md", PLAIN)
    write(vault, "notes/.trash/old.md", PLAIN)
    write(vault, "notes/readme.txt", PLAIN)

    report = adopt(vault)

    reasons = {s.path: s.reason for s in report.skipped}
    assert report.adopted == []
    assert (
        "type: book" in reasons["notes/book.md"]
        and "rename that property" in reasons["notes/book.md"]
    )
    assert reasons["notes/broken.md"].startswith("line ")
    assert "UTF-8" in reasons["notes/latin1.md"]
    assert set(reasons) == {"notes/book.md", "notes/broken.md", "notes/latin1.md"}
    assert (
        vault.root / "notes/book.md"
    ).read_text() == "---\ntype: book\nauthor: Le Guin\n---\nText\n"


def test_dry_run_changes_nothing(run: Runner, vault: Vault) -> None:
    write(vault, "notes/a.md", PLAIN)
    result = run.run("adopt", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["adopted"] == ["notes/a.md"]
    assert (vault.root / "notes/a.md").read_text() == PLAIN


def test_notes_folders_from_memkit_yaml(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    settings_file = vault.root / "memkit.yaml"
    settings_file.write_text(
        settings_file.read_text().replace("  folders: []", "  folders: [Projects, Journal/2026]")
    )
    vault = Vault(vault.root)
    assert vault.notes_folders == ("notes", "Projects", "Journal/2026")
    write(vault, "Projects/ledger.md", PLAIN)
    write(vault, "Journal/2026/day.md", "Just text.\n")
    write(vault, "Elsewhere/x.md", PLAIN)
    assert unadopted(vault) == ["Journal/2026/day.md", "Projects/ledger.md"]
    report = adopt(vault)
    assert report.adopted == ["Journal/2026/day.md", "Projects/ledger.md"]
    assert vault.check().problems == []
    assert vault.read_record("Journal/2026/day.md").title == "day"


@pytest.mark.parametrize(
    ("folders", "message"),
    [
        ("[memory]", "one of memkit's own folders"),
        ("[.obsidian]", "not hidden"),
        ("['../outside']", "inside the vault"),
        ("[3]", "list of folder names"),
    ],
)
def test_bad_notes_folders_are_refused_with_their_line(
    tmp_path: Path, folders: str, message: str
) -> None:
    root = tmp_path / "v"
    Vault.init(root)
    settings_file = root / "memkit.yaml"
    settings_file.write_text(
        settings_file.read_text().replace("  folders: []", f"  folders: {folders}")
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(root)
    assert message in str(caught.value)
    lines = settings_file.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith(f"  folders: {folders}"))
    assert f"memkit.yaml:{line}:" in str(caught.value)


def test_adopt_outside_a_notes_folder_is_a_usage_error(run: Runner, vault: Vault) -> None:
    write(vault, "Elsewhere/x.md", PLAIN)
    result = run.run("adopt", str(vault.root / "Elsewhere"))
    assert result.exit_code == 2
    assert "is not in a notes folder" in result.output
    assert (vault.root / "Elsewhere/x.md").read_text() == PLAIN


def test_adopted_notes_are_searched_recalled_and_in_context(run: Runner, vault: Vault) -> None:
    write(vault, "notes/rollout.md", PLAIN.replace("big customer", "zanzibar customer"))
    status = json.loads(run.run("status", "--json").stdout)
    assert status["unadopted"] == ["notes/rollout.md"] and status["problems"] == []
    text = run.run("status").stdout
    assert "notes not adopted yet: 1" in text and "memkit adopt" in text
    assert run.run("search", "zanzibar", "--json").stdout.count("notes/rollout.md") == 0
    checked = run.run("check")
    assert checked.exit_code == 0 and "warning: not adopted yet" in checked.stdout

    adopted = run.run("adopt")
    assert adopted.exit_code == 0 and "adopted notes/rollout.md" in adopted.stdout

    assert json.loads(run.run("status", "--json").stdout)["unadopted"] == []
    hits = json.loads(run.run("search", "zanzibar", "--json").stdout)["hits"]
    assert [h["path"] for h in hits] == ["notes/rollout.md"]
    recalled = json.loads(run.run("recall", "zanzibar", "--json").stdout)["hits"]
    assert [h["path"] for h in recalled] == ["notes/rollout.md"]
    assert "zanzibar" in run.run("context", "zanzibar customer").stdout


def test_helpers_read_headings_and_front_matter() -> None:
    assert first_heading("```\n# code\n```\n## two\n# One #\n") == "One"
    assert first_heading("no heading\n") is None
    assert read_front_matter("----\nnot front matter\n----\n")[1] is None
    kind, meta, _text, body = read_front_matter("---\na: 1\n---\n\n\nbody\n")
    assert (kind, meta, body) == ("---", {"a": 1}, "\n\nbody\n")
    with pytest.raises(ValueError, match="type: book"):
        adopted_text("---\ntype: book\n---\n", "x.md", 0)


# --- every file memkit writes reads the same with python-frontmatter -------------------------


def assert_same_reading(path: Path, relpath: str) -> None:
    ours = parse_record(path.read_bytes(), relpath)
    theirs = frontmatter.load(str(path))
    assert theirs.metadata["id"] == ours.id
    assert theirs.metadata["type"] == ours.type
    assert theirs.metadata.get("title") == ours.meta.get("title")


def test_sample_vault_reads_the_same_with_python_frontmatter() -> None:
    files = sorted(SAMPLE_VAULT.rglob("*.md"))
    assert len(files) > 40
    for path in files:
        assert_same_reading(path, path.relative_to(SAMPLE_VAULT).as_posix())


def test_adopted_notes_read_the_same_with_python_frontmatter(vault: Vault) -> None:
    for name, text in [("a", PLAIN), ("b", OBSIDIAN), ("c", TOML), ("d", JSON_NOTE)]:
        write(vault, f"notes/{name}.md", text)
    adopt(vault)
    for name in "abcd":
        assert_same_reading(vault.root / f"notes/{name}.md", f"notes/{name}.md")


TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(
    lambda t: t.strip() and "\x00" not in t
)


@pytest.mark.slow
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    record_type=st.sampled_from(["long-term", "short-term", "persona", "insight", "note"]),
    title=TEXT,
    body=TEXT,
    tags=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), max_size=3),
)
def test_records_memkit_writes_read_the_same_with_python_frontmatter(
    tmp_path_factory: pytest.TempPathFactory,
    record_type: str,
    title: str,
    body: str,
    tags: list[str],
) -> None:
    vault = Vault.init(tmp_path_factory.mktemp("fm") / "v")
    record = vault.create(record_type, body, title=title, tags=tags, allow_secrets=True)
    assert record.path is not None
    theirs = frontmatter.load(str(vault.root / record.path))
    assert theirs.metadata["id"] == record.id
    assert theirs.metadata["type"] == record_type
    assert theirs.metadata["title"] == title
    assert list(cast("list[str]", theirs.metadata.get("tags") or [])) == sorted(set(tags))


def test_replace_files_refuses_a_file_that_changed_and_keeps_permissions(vault: Vault) -> None:
    changed = write(vault, "notes/changed.md", "a person's newer text\n")
    kept = write(vault, "notes/kept.md", "old\n")
    kept.chmod(0o640)
    refused = vault.replace_files(
        [
            ("notes/changed.md", b"what memkit read\n", b"new\n"),
            ("notes/kept.md", b"old\n", b"new\n"),
        ]
    )
    assert [c.path for c in refused] == ["notes/changed.md"]
    assert "changed on disk since memkit read it" in str(refused[0])
    assert changed.read_text() == "a person's newer text\n"
    assert kept.read_bytes() == b"new\n" and (kept.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in (vault.root / "notes").iterdir()) == ["changed.md", "kept.md"]
    assert vault.touched == {"notes/kept.md"}


def test_adopt_commit_commits_the_adopted_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "v"
    runner = Runner(root)
    assert runner.run("init", str(root), "--git", vault=False).exit_code == 0
    write(Vault(root), "notes/a.md", PLAIN)
    for name in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{name}_NAME", "t")
        monkeypatch.setenv(f"{name}_EMAIL", "t@example.com")
    result = runner.run("adopt", "--commit")
    assert result.exit_code == 0, result.output
    log = subprocess.run(
        ["git", "-C", str(root), "log", "--format=%s", "--name-only", "-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.split() == ["memkit:", "adopt", "1", "notes", "notes/a.md"]


def test_adopt_never_writes_through_a_symlink(tmp_path: Path, vault: Vault) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text(PLAIN)
    (vault.root / "notes").mkdir(exist_ok=True)
    (vault.root / "notes/link.md").symlink_to(outside)
    report = adopt(vault)
    assert report.adopted == []
    assert [(s.path, s.reason) for s in report.skipped] == [("notes/link.md", "not a regular file")]
    assert outside.read_text() == PLAIN


def test_the_watcher_indexes_notes_in_every_notes_folder(tmp_path: Path) -> None:
    from .test_sync import write_record
    from .test_watcher import start_watching, stop_watching

    root = tmp_path / "v"
    Vault.init(root)
    settings_file = root / "memkit.yaml"
    settings_file.write_text(
        settings_file.read_text().replace("  folders: []", "  folders: [Projects]")
    )
    watching = start_watching(Vault(root))
    try:
        write_record(watching.vault, "notes/one.md", "Note one", type_="note")
        write_record(watching.vault, "Projects/deep/two.md", "Note two", type_="note")
        write(watching.vault, "Projects/plain.md", "not adopted yet\n")
        watching.until_titles(
            {"notes/one.md": "Note one", "Projects/deep/two.md": "Note two"}, "notes indexed"
        )
    finally:
        stop_watching(watching)
