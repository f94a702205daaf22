"""The vault on disk: layout, finding it, writing safely, refusing to lose anything."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memkit import Memory, Vault, find_vault_root, locking
from memkit.errors import (
    ConflictError,
    InvalidRecord,
    LockTimeout,
    PathOutsideVault,
    RecordNotFound,
    SecretRefused,
    SettingsError,
    StorageError,
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
    return [
        str(vault.create("long-term", "same text", title="Same title").path) for _ in range(count)
    ]


@pytest.mark.slow
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


# --- the write path: modes, locks, full disks --------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_new_files_follow_the_umask_and_updates_keep_the_mode(
    vault: Vault, umask_022: None
) -> None:
    record = vault.create("long-term", "a fact", title="modes")
    assert record.path is not None
    full = vault.root / record.path
    assert stat.S_IMODE(full.stat().st_mode) == 0o644
    full.chmod(0o640)  # a person's choice
    record = vault.get(record.id)
    record.meta["importance"] = 0.9
    vault.update(record)
    assert stat.S_IMODE(full.stat().st_mode) == 0o640
    os.umask(0o077)
    other = vault.create("long-term", "another fact", title="private")
    assert other.path is not None
    assert stat.S_IMODE((vault.root / other.path).stat().st_mode) == 0o600


def test_write_lock_times_out_and_is_usable_again(vault: Vault) -> None:
    # Another holder (a separate open file: flock treats it like another process).
    held = locking.acquire(vault.root / ".memkit/locks/write.lock", 1.0)
    assert held is not None
    with pytest.raises(LockTimeout, match=r"locked for 0\.2 s"), vault.write_lock(timeout=0.2):
        pass
    held.release()
    # The abandoned waiters let go as soon as they got the lock: the next writer gets it.
    with vault.write_lock(timeout=10):
        vault.create("long-term", "written after the holder left", title="after")
    assert len(list(vault.record_paths())) == 1


def test_index_lock_times_out(vault: Vault) -> None:
    from memkit.sync import VaultIndex

    indexer = VaultIndex(vault)
    held = locking.acquire(vault.root / ".memkit/locks/index.lock", 1.0)
    assert held is not None
    try:
        with pytest.raises(LockTimeout, match="updating the index"), indexer.lock(timeout=0.1):
            pass
    finally:
        held.release()
        indexer.close()
    with indexer.lock(timeout=10):
        pass


def _hold_and_write(root: str, writes: int, hold: float) -> int:
    """A writer that holds the lock a while each time; returns how many writes were refused."""
    vault = Vault(Path(root))
    refused = 0
    for number in range(writes):
        try:
            with vault.write_lock(timeout=5.0):
                vault.create("long-term", f"write {number} of {os.getpid()}", title=f"w{number}")
                time.sleep(hold)
        except LockTimeout:
            refused += 1
    return refused


@pytest.mark.slow
def test_ten_concurrent_writers_are_never_refused(vault: Vault) -> None:
    # Each holds the lock 40 ms per write: a waiter queued in the kernel gets its turn within
    # 9 x 40 ms; a polling waiter can lose the hand-over again and again.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(10) as pool:
        refused = pool.starmap(_hold_and_write, [(str(vault.root), 8, 0.04)] * 10)
    assert sum(refused) == 0
    assert len(list(vault.record_paths())) == 80


@contextlib.contextmanager
def file_size_limit() -> Iterator[int]:
    """Writes past 64 KiB fail with EFBIG, as on a full disk (unprivileged; SIGXFSZ ignored)."""
    limit = 64 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _temp_files(vault: Vault) -> list[str]:
    return [p.name for p in vault.root.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(vault: Vault) -> None:
    record = vault.create("long-term", "small", title="grows")
    with file_size_limit() as limit:
        with pytest.raises(StorageError, match=r"cannot write memory/.*too-big.*\(EFBIG\)"):
            vault.create("long-term", "x" * (2 * limit), title="too big")
        record.body = "y" * (2 * limit)
        with pytest.raises(StorageError, match=r"grows.*EFBIG"):
            vault.update(record)
    assert _temp_files(vault) == []
    assert vault.get(record.id).body.strip() == "small"  # the old version stays whole
    assert len(list(vault.record_paths())) == 1


def test_a_vault_is_readable_where_fcntl_does_not_exist(vault: Vault) -> None:
    Memory(vault).remember("a fact about otters")
    script = (
        "import sys; sys.modules['fcntl'] = None\n"  # as on a system without it
        "import memkit\n"
        f"vault = memkit.Vault({str(vault.root)!r})\n"
        "print([r.body.strip() for r in vault.scan().records], len(vault.check().problems))\n"
        "try:\n"
        "    vault.create('long-term', 'x', title='y')\n"
        "except memkit.MemkitError as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "['a fact about otters'] 0"
    assert lines[1].startswith("StorageError cannot lock the vault") and "ENOSYS" in lines[1]


def test_an_edit_that_keeps_size_and_mtime_is_still_never_overwritten(vault: Vault) -> None:
    record = vault.create("long-term", "the cat is black", title="cat")
    assert record.path is not None
    full = vault.root / record.path
    before = full.stat()
    # In place, same size, mtime put back (`cp -p`, `rsync -t`, `touch -r`).
    with full.open("r+b") as handle:
        data = handle.read()
        handle.seek(0)
        handle.write(data.replace(b"black", b"white"))
    os.utime(full, ns=(before.st_atime_ns, before.st_mtime_ns))
    record.meta["importance"] = 0.9
    with pytest.raises(ConflictError, match="nothing was written"):
        vault.update(record)
    assert "the cat is white" in full.read_text()
    assert vault.conflict_copies() == []


def test_move_refuses_a_changed_file_and_leaves_it_in_place(vault: Vault) -> None:
    record = vault.create("long-term", "to be moved", title="mover")
    assert record.path is not None
    full = vault.root / record.path
    full.write_text(full.read_text() + "a person's line\n")
    with pytest.raises(ConflictError):
        vault.move(record, "memory/long-term/moved.md")
    assert "a person's line" in full.read_text()
    assert not (vault.root / "memory/long-term/moved.md").exists()
    fresh = vault.get(record.id)
    moved = vault.move(fresh, "memory/long-term/moved.md")
    assert "a person's line" in moved.body and not full.exists()
    assert [n for n in os.listdir(full.parent) if n.endswith(".tmp")] == []
