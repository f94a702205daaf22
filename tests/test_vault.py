"""The vault on disk: layout, finding it, writing safely, refusing to lose anything."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from memkit import Memory, Vault, find_vault_root
from memkit.errors import (
    ConflictError,
    InvalidRecord,
    PathOutsideVault,
    RecordNotFound,
    SecretRefused,
    SettingsError,
    UsageError,
    VaultNotFound,
)
from memkit.records import TYPE_FOLDERS


def test_init_creates_the_layout(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    for folder in TYPE_FOLDERS.values():
        assert (vault.root / folder).is_dir()
    assert (vault.root / "learning/rejected").is_dir()
    assert ".memkit/" in (vault.root / ".gitignore").read_text()
    settings_text = (vault.root / "memkit.yaml").read_text()
    assert "#" in settings_text and "retention_days: 90" in settings_text
    assert vault.settings.memory.short_term.capacity == 50
    # Idempotent, and never touches an edited settings file.
    (vault.root / "memkit.yaml").write_text("version: 1\n# mine\n")
    Vault.init(vault.root)
    assert (vault.root / "memkit.yaml").read_text() == "version: 1\n# mine\n"


def test_find_vault_root_walks_up(vault: Vault, tmp_path: Path) -> None:
    deep = vault.root / "memory" / "long-term"
    assert find_vault_root(deep) == vault.root
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(VaultNotFound, match="memkit init"):
        find_vault_root(elsewhere)


def test_create_get_update_delete(vault: Vault) -> None:
    memory = Memory(vault)
    record = memory.remember(
        "Dana prefers espresso", title="Coffee", tags=["coffee", "dana"], importance=0.8
    )
    assert record.path is not None and record.path.startswith("memory/long-term/coffee-")
    assert record.path.endswith(f"-{record.id[-6:].lower()}.md")
    again = vault.get(record.id)
    assert again.meta == record.meta and again.body == "Dana prefers espresso\n"
    assert vault.get(record.path).id == record.id
    again.meta["importance"] = 0.9
    updated = vault.update(again)
    assert updated.importance == 0.9
    assert updated.meta["created"] == record.meta["created"]
    vault.delete(record.id)
    with pytest.raises(RecordNotFound):
        vault.get(record.id)


def test_update_refuses_to_overwrite_a_persons_edit(vault: Vault) -> None:
    record = Memory(vault).remember("fact one")
    assert record.path is not None
    full = vault.root / record.path
    full.write_text(full.read_text() + "A line Dana added by hand.\n")
    record.meta["importance"] = 1.0
    with pytest.raises(ConflictError, match="changed on disk"):
        vault.update(record)
    assert "Dana added by hand" in full.read_text()
    with pytest.raises(ConflictError):
        vault.delete(record)
    assert full.exists()


def test_update_keeps_a_persons_comments_and_key_order(vault: Vault) -> None:
    record = Memory(vault).remember("fact", tags=["a"])
    assert record.path is not None
    full = vault.root / record.path
    text = full.read_text().replace("tags: [a]", "# my note on tags\ntags: [a]  # keep")
    lines = text.split("\n")
    lines.insert(1, "zeta: last-added-first")
    full.write_text("\n".join(lines))
    fresh = vault.get(record.id)
    fresh.meta["importance"] = 0.1
    vault.update(fresh)
    out = full.read_text()
    assert out.split("\n")[1] == "zeta: last-added-first"
    assert "# my note on tags\ntags: [a]  # keep" in out
    assert "importance: 0.1" in out


def test_secrets_are_refused_unless_allowed(vault: Vault) -> None:
    memory = Memory(vault)
    key = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"
    with pytest.raises(SecretRefused, match="holds a credential"):
        memory.remember(f"the key is {key}")
    with pytest.raises(SecretRefused):
        memory.remember("db login: password=hunter2butlonger")
    assert not list(vault.record_paths())
    record = memory.remember(f"the key is {key}", allow_secrets=True)
    assert key in record.body


@pytest.mark.parametrize("ref", ["../outside.md", "/etc/passwd", "memory/../../x.md"])
def test_paths_never_escape_the_vault(vault: Vault, ref: str) -> None:
    with pytest.raises((PathOutsideVault, RecordNotFound)):
        vault.get(ref)
    with pytest.raises(PathOutsideVault):
        vault.safe_path(ref)


def test_symlink_leading_outside_is_refused(vault: Vault, tmp_path: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text(
        "---\nid: X1\ntype: long-term\ncreated: 2026-01-01\nupdated: 2026-01-01\n---\n"
    )
    (vault.root / "memory/long-term/link.md").symlink_to(outside)
    with pytest.raises(PathOutsideVault):
        vault.get("memory/long-term/link.md")
    assert vault.scan().records == []


def test_scan_skips_bad_files_and_reports_them(vault: Vault) -> None:
    good = Memory(vault).remember("good fact")
    folder = vault.root / "memory/long-term"
    (folder / "bad-yaml.md").write_text("---\ntitle: Re: x\n---\n")
    (folder / "latin1.md").write_bytes(b"---\ntitle: caf\xe9\n---\n")
    (folder / "empty.md").write_text("")
    (folder / ".hidden.md").write_text("ignored")
    (folder / "draft.md~").write_text("ignored")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = vault.scan()
    assert [r.id for r in result.records] == [good.id]
    assert sorted(str(p) for p in result.problems) == [
        "memory/long-term/bad-yaml.md:2: invalid YAML in front-matter: mapping values are not "
        "allowed in this context (a value containing ': ' must be quoted)",
        "memory/long-term/empty.md:1: empty file: a record starts with '---', YAML "
        "front-matter, '---'",
        "memory/long-term/latin1.md:2: not UTF-8 text (byte 0xe9 at offset 14); save the file "
        "as UTF-8",
    ]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_check_reports_schema_placement_and_duplicate_ids(vault: Vault) -> None:
    record = Memory(vault).remember("a fact")
    assert record.path is not None
    text = (vault.root / record.path).read_text()
    (vault.root / "memory/long-term/copy.md").write_text(text)
    (vault.root / "learning/persona/wrong.md").write_text(
        text.replace("type: long-term", "type: insight").replace(
            record.id, "01JD0000000000000000000001"
        )
    )
    (vault.root / "memory/long-term/types.md").write_text(
        "---\nid: 01JD0000000000000000000002\ntype: long-term\ncreated: 2026-13-45\n"
        "updated: 2026-01-01T00:00:00Z\ntags: [no]\nimportance: 3\n---\n"
    )
    problems = [str(p) for p in vault.check().problems]
    assert any("copy.md" in p and "is also used by" in p for p in problems), problems
    assert any(
        p.startswith("learning/persona/wrong.md:3: type 'insight' does not belong")
        for p in problems
    )
    assert (
        "memory/long-term/types.md:6: tags.0: False is not of type 'string' (YAML reads "
        "yes/no/on/off/true/false as booleans: quote the value)" in problems
    )
    assert any(p.startswith("memory/long-term/types.md:7: importance: 3") for p in problems)
    assert any(p.startswith("memory/long-term/types.md:4: created") for p in problems)


def test_unknown_type_and_empty_text_are_usage_errors(vault: Vault) -> None:
    with pytest.raises(UsageError, match="choose one of"):
        Memory(vault).remember("x", type="memo")
    with pytest.raises(UsageError, match="empty"):
        Memory(vault).remember("   ")


def test_bad_settings_name_file_and_line(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    (vault.root / "memkit.yaml").write_text("version: 1\nmemory:\n  short_term:\n    capcity: 5\n")
    with pytest.raises(
        SettingsError, match=r"memkit.yaml:4: unknown setting .* did you mean 'capacity'"
    ):
        Vault(vault.root)
    (vault.root / "memkit.yaml").write_text("learning:\n  mode: sometimes\n")
    with pytest.raises(SettingsError, match=r"memkit.yaml:2: learning.mode must be one of"):
        Vault(vault.root)
    (vault.root / "memkit.yaml").write_text("memory:\n  episodic: {retention_days: lots}\n")
    with pytest.raises(SettingsError, match=r":2: memory.episodic.retention_days must be a number"):
        Vault(vault.root)


def _write_same_title(root: str, count: int) -> list[str]:
    # The vault layer itself (no deduplication): only file naming is under test here.
    vault = Vault(Path(root))
    return [str(vault.create("long-term", "same text", title="Same title").path) for _ in range(count)]


def test_two_processes_writing_the_same_title_never_collide(vault: Vault) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_write_same_title, [(str(vault.root), 25), (str(vault.root), 25)])
    paths = [p for batch in results for p in batch]
    assert len(set(paths)) == 50
    assert len(list(vault.record_paths())) == 50
    assert not vault.check().problems


def test_write_is_atomic_no_temp_files_left(vault: Vault) -> None:
    Memory(vault).remember("fact")
    leftovers = [n for n in os.listdir(vault.root / "memory/long-term") if n.endswith(".tmp")]
    assert leftovers == []


def test_invalid_record_is_not_written(vault: Vault) -> None:
    with pytest.raises(InvalidRecord, match="refused to write"):
        vault.create("long-term", "x", importance=2.0)
    assert not list(vault.record_paths())
