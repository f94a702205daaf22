"""Files under a vault's root: the safe walk, reading only regular files, durable writes, taking aside."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat as stat_module
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from memkit.errors import (
    ConflictError,
    InvalidRecord,
    MemkitError,
    PathOutsideVault,
    VaultError,
    storage_error,
)
from memkit.records import NOTES_FOLDER, Record, parse_record

RECORD_ROOTS = ("memory", "learning")
# `<file>.conflict-<tag>`: the other version of a file changed twice at once, kept by
# `memkit sync --remote` (the other machine's; tag: its commit) or by a write that a person's
# save raced (tag: the copy's hash). Not a `.md` name, so it is never indexed as a second record.
CONFLICT_COPY = re.compile(r"^(?P<original>.+)\.conflict-(?P<tag>[0-9a-f]{4,40})(?:-\d+)?$")


def conflict_copy_of(relpath: str) -> str | None:
    """The file a conflict copy belongs to (vault-relative), or None when it is not one."""
    match = CONFLICT_COPY.match(relpath)
    return match.group("original") if match else None


def is_temporary_name(name: str) -> bool:
    """Editor and tool scratch files that are never records (vim, JetBrains, atomic saves)."""
    return (
        name.startswith((".", "#", "~"))
        or name.endswith(("~", ".tmp", ".swp", ".swx", ".bak"))
        or "___jb_" in name
        or name == "4913"
    )


def is_record_path(relpath: str, notes_folders: Iterable[str] = (NOTES_FOLDER,)) -> bool:
    """Whether a vault-relative path is where a record file may live."""
    parts = PurePosixPath(relpath).parts
    if not relpath.endswith(".md") or any(is_temporary_name(part) for part in parts):
        return False
    if len(parts) >= 3 and parts[0] in RECORD_ROOTS:
        return True
    # A person's notes may sit at the top of a notes folder.
    return any(relpath.startswith(folder + "/") for folder in notes_folders)


def _sync_file_system(root: Path, paths: list[str]) -> None:
    """Make what was written under `root` durable: one `syncfs` of its file system where the C
    library has it (Linux), else an fsync of each of `paths` (files or folders)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        syncfs = None
    if syncfs is not None:
        fd = os.open(root, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _reported(action: str, relpath: str) -> Iterator[None]:
    """Disk full, read-only, permission denied: one line for people naming the file."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = relpath
        raise storage_error(error, action) from None


def _fsync_folder(folder: Path) -> None:
    """Make a rename or link durable (not possible, and not needed, on every platform)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _same_file(now: os.stat_result, checked: os.stat_result) -> bool:
    """The same inode with the same size and mtime (a rename moves ctime, not mtime)."""
    return (now.st_ino, now.st_size, now.st_mtime_ns) == (
        checked.st_ino,
        checked.st_size,
        checked.st_mtime_ns,
    )


def _read_regular(path: Path) -> tuple[bytes, os.stat_result]:
    """A file's bytes and stat, read through one descriptor; never opens a FIFO, socket,
    device or symlink that took a record's place (the write path's reads)."""
    try:
        return read_regular(path.parent, str(path))
    except NotRegularFile as error:
        raise VaultError(f"{path}: {error}; memkit leaves it alone") from None


def fingerprint_bytes(data: bytes, stat: os.stat_result) -> tuple[int, int, str]:
    return (stat.st_mtime_ns, stat.st_size, hashlib.sha256(data).hexdigest())


def written_record(data: bytes, relpath: str, stat: os.stat_result) -> Record:
    """The record just written, from the bytes in hand (not read back: a person's save right
    after ours must not become the version the caller thinks it wrote)."""
    record = parse_record(data, relpath)
    record.fingerprint = fingerprint_bytes(data, stat)
    return record


# The stat a walk keeps of each file: (mtime_ns, size, ctime_ns, inode). ctime and inode too, as
# git does: `cp -p`, `rsync -t`, `touch -r` and tar restore size and mtime, never ctime and inode.
FileStat = tuple[int, int, int, int]


class NotRegularFile(Exception):
    """A path that is not a regular file memkit may open (FIFO, socket, device, symlink,
    folder) or that cannot be read; the message says which, for a per-file problem."""


def _special_kind(root: Path, full: str, mode: int) -> str:
    if stat_module.S_ISLNK(mode):
        try:
            target = Path(os.path.realpath(full, strict=True))
        except FileNotFoundError:
            return "is a symlink to a missing file; memkit reads only regular files"
        except (OSError, RuntimeError):
            return "is a symlink loop; memkit reads only regular files"
        if target != root and root not in target.parents:
            return "is a symlink leading out of the vault; memkit never reads it"
        return "is a symlink; memkit reads only regular files (the file it points to is read at its own path)"
    if stat_module.S_ISDIR(mode):
        return "is a folder, not a record file"
    if stat_module.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a record file; memkit never opens it"
    if stat_module.S_ISSOCK(mode):
        return "is a socket, not a record file; memkit never opens it"
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return "is a device, not a record file; memkit never opens it"
    return "is not a regular file; memkit never opens it"


def read_regular(root: Path, full: str) -> tuple[bytes, os.stat_result]:
    """The bytes and stat of a regular file, opening nothing else (lstat first; O_NOFOLLOW and
    O_NONBLOCK close the race with a swap to a symlink or FIFO). Raises NotRegularFile, or
    FileNotFoundError / NotADirectoryError when the file is gone."""
    first = os.lstat(full)
    if not stat_module.S_ISREG(first.st_mode):
        raise NotRegularFile(_special_kind(root, full, first.st_mode))
    try:
        fd = os.open(
            full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        )
    except PermissionError:
        raise NotRegularFile("cannot be read: permission denied") from None
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a symlink since the lstat
            raise NotRegularFile(_special_kind(root, full, stat_module.S_IFLNK)) from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise
        raise NotRegularFile(f"cannot be read: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat_module.S_ISREG(info.st_mode):
            raise NotRegularFile(_special_kind(root, full, info.st_mode))
        chunks = []
        while chunk := os.read(fd, max(info.st_size + 1, 65536)):
            chunks.append(chunk)
    except PermissionError:
        raise NotRegularFile("cannot be read: permission denied") from None
    except NotRegularFile:
        raise
    except OSError as error:
        raise NotRegularFile(f"cannot be read: {error.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks), info


def walk_record_files(
    root: Path, tops: Iterable[str] = RECORD_ROOTS, notes_folders: Iterable[str] = ()
) -> dict[str, FileStat]:
    """The one walk of the vault's record folders: vault-relative path -> lstat as FileStat of
    every entry that may be a record file (`is_record_path`), special files (FIFOs, symlinks,
    sockets, devices) included so that they become per-file problems. Never follows a symlink
    and never opens a file."""
    found: dict[str, FileStat] = {}
    lstat = os.stat

    # The same rule as is_record_path, checked one name at a time as the walk goes down (that
    # function builds a PurePosixPath per file: 10x the cost of the stat). Each folder is
    # opened once and its files stat-ed relative to it (`dir_fd`): the kernel then looks up
    # one name, not the whole path (30% off a walk of 100k files).
    def walk(directory: str, relative: str, depth: int) -> None:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return  # gone, not a folder (a symlink to one), not ours to read
        try:
            try:
                entries = list(os.scandir(fd))
            except OSError:
                return
            for entry in entries:
                name = entry.name
                try:
                    # For a name ending in .md, is_temporary_name is this test (checked by
                    # tests/test_sync.py): the common case, without a call.
                    if (
                        depth
                        and name.endswith(".md")
                        and not name.startswith((".", "#", "~"))
                        and "___jb_" not in name
                    ):
                        if entry.is_dir(follow_symlinks=False):
                            walk(f"{directory}/{name}", f"{relative}{name}/", depth + 1)
                        else:
                            info = lstat(name, dir_fd=fd, follow_symlinks=False)
                            found[relative + name] = (
                                info.st_mtime_ns,
                                info.st_size,
                                info.st_ctime_ns,
                                info.st_ino,
                            )
                    elif not is_temporary_name(name) and entry.is_dir(follow_symlinks=False):
                        walk(f"{directory}/{name}", f"{relative}{name}/", depth + 1)
                except OSError:
                    continue  # vanished while walking: the next sync sees it gone
        finally:
            os.close(fd)

    base = str(root)
    for top in tops:
        walk(os.path.join(base, top), f"{top}/", top.count("/"))
    for top in notes_folders:
        walk(os.path.join(base, top), f"{top}/", 1)  # a person's notes may sit at the top
    return found


class TouchedPaths(set[str]):
    """The paths a Vault wrote (a set, for autocommit), also kept in the order written, so that
    each index holding the vault takes exactly the writes it has not indexed yet (write-through:
    memkit never walks the vault to rediscover its own writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        # How much of `log` is in the index (on disk, so shared by every index of this vault).
        self.indexed = 0

    def add(self, path: str) -> None:
        super().add(path)
        self.log.append(path)

    def update(self, *groups: Iterable[str]) -> None:
        for group in groups:
            for path in group:
                self.add(path)


@dataclass
class PendingWrites:
    """The writes of a `Vault.batch()` that are not in place yet: new files written beside
    their names (not synced, not linked) and files to delete once those are durable."""

    # relpath -> (the name, the temp file holding its bytes), in the order written
    creates: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    # relpath -> (the record as read, checked again when it is taken aside; its file), in order
    deletes: dict[str, tuple[Record, Path]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.creates or self.deletes)

    def holds(self, relpath: str) -> bool:
        return relpath in self.creates or relpath in self.deletes


class VaultFiles:
    """The files under a vault's root as memkit writes them: safe paths, atomic writes, and the
    take-aside dance that never loses a person's save (`Vault` builds on it)."""

    root: Path
    # Vault-relative paths written (see `Vault.__init__`).
    touched: TouchedPaths
    # Inside `Vault.batch()`: the writes waiting for the batch's durability barrier.
    _pending: PendingWrites | None = None

    def write_lock(self, timeout: float = 30.0) -> contextlib.AbstractContextManager[None]:
        """One memkit writer at a time (`Vault.write_lock`)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside are made durable together, at the end, instead of one file at a time
        (expire's promotions): `create` writes its file beside its name, `delete` checks its
        file and waits; at the end every new file's bytes are synced (one `syncfs` on Linux),
        the names put in place and synced, then the files deleted and synced. So a promoted
        record is durable before its original is deleted, and all of it before the batch
        returns; a person's save is never overwritten (every check is as in a single write).
        Anything that reads or changes a waiting path, walks the folders, or updates or moves
        a file puts the waiting writes in place first (`flush`). Holds the write lock
        throughout; nested batches belong to the outermost."""
        with self.write_lock():
            if self._pending is not None:
                yield
                return
            self._pending = PendingWrites()
            try:
                yield
            finally:
                try:
                    self._flush_pending()
                finally:
                    self._pending = None

    def flush(self, relpath: str | None = None) -> None:
        """Inside a batch: put its waiting writes in place now (all of them, or only when
        `relpath` is one of them). Outside a batch: nothing to do."""
        pending = self._pending
        if pending and (relpath is None or pending.holds(relpath)):
            with self.write_lock():
                self._flush_pending()

    def safe_path(self, relpath: str) -> Path:
        """An absolute path for a vault-relative one, refusing anything that leaves the vault."""
        pure = PurePosixPath(relpath.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise PathOutsideVault(relpath, self.root)
        full = self.root.joinpath(*pure.parts)
        try:
            resolved = full.resolve()  # follows symlinks: one leading outside is refused too
        except (RuntimeError, OSError):
            raise InvalidRecord(
                relpath, 1, "is a symlink loop; memkit reads only regular files"
            ) from None
        if resolved != self.root and self.root not in resolved.parents:
            raise PathOutsideVault(relpath, self.root)
        return full

    def relpath_fast(self, path: Path) -> str:
        """relpath for paths already known to be under the root (no symlink resolution)."""
        return path.relative_to(self.root).as_posix()

    # How a write never loses a person's save (docs/ARCHITECTURE.md, "Writes"):
    # an update renames the current file aside to a private temp name first. rename() is atomic,
    # so from then on memkit owns exactly the inode that was there, and an editor's save (which
    # renames its own temp file over the name, or creates the name anew) lands on a *new* file at
    # the name instead of on memkit's. memkit then compares the aside file with what it read
    # (size and SHA-256); a difference means a save landed before the rename: the file goes back
    # and ConflictError is raised. Otherwise memkit link()s its new file to the name: link() fails
    # when the name exists, i.e. when a save landed in the short gap, and the person's file stays
    # in place. Last, the aside file is compared once more before it is deleted, which catches an
    # in-place append (`>>`, an editor that rewrites the same inode) that landed on the old inode
    # meanwhile: then it is kept as a conflict copy next to the file. Whenever both versions exist
    # both are kept; a conflict is reported, never resolved by dropping bytes.
    #
    # The cost: for the few microseconds between the rename and the link the name does not exist.
    # A reader opening it then sees "no such file": the watcher coalesces the delete and create
    # events into one sync of the final file; sync and search re-stat before they trust a
    # missing file; an editor checking the file on focus sees it again a moment later. That is
    # the price of never swapping a file under someone (POSIX has no compare-and-swap rename).
    # What remains: an append that opened the old file before the rename and writes after the
    # last comparison goes to a file nobody will see again (see README, "Safety").

    def _new_temp(
        self, full: Path, data: bytes, mode: int | None = None, *, durable: bool = True
    ) -> tuple[Path, os.stat_result]:
        """A temp file beside `full` holding `data`, and its stat (what a record written from
        it is fingerprinted with: a link keeps the inode, size and mtime). fsync'd unless
        `durable` is False (a batch syncs all its temp files at once before any is linked).
        Created with mode 0666 so the umask applies as to any new file; an update passes the
        file's own mode to keep it."""
        full.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        while True:
            temp = full.parent / f".{full.name}.{os.urandom(6).hex()}.tmp"
            try:
                fd = os.open(temp, flags, 0o666)
                break
            except FileExistsError:
                continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if mode is not None:
                    os.chmod(temp, mode)
                if durable:
                    os.fsync(handle.fileno())
                stat = os.fstat(handle.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return temp, stat

    def _write_bytes(self, full: Path, data: bytes, *, exclusive: bool) -> os.stat_result:
        """Write a file atomically: temp file in the same folder, fsync, then link (exclusive:
        fails with FileExistsError instead of overwriting) or replace. Returns its stat."""
        mode = None
        if not exclusive:
            with contextlib.suppress(FileNotFoundError):
                mode = stat_module.S_IMODE(os.stat(full).st_mode)
        temp, stat = self._new_temp(full, data, mode)
        try:
            if exclusive:
                os.link(temp, full)
                os.unlink(temp)
            else:
                os.replace(temp, full)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_folder(full.parent)
        return stat

    def _aside_name(self, full: Path) -> Path:
        return full.parent / f".{full.name}.{os.urandom(6).hex()}.aside.tmp"

    def _rename_aside(self, record: Record, full: Path) -> Path:
        """Rename the record's file to a private name: memkit then owns that inode."""
        assert record.path is not None
        aside = self._aside_name(full)
        try:
            os.rename(full, aside)
        except FileNotFoundError:
            raise ConflictError(record.path, "it was deleted") from None
        return aside

    def _take_aside(self, record: Record, full: Path) -> tuple[Path, os.stat_result]:
        """Rename the record's file to a private name and check it is what was read; when it
        is not, put it back and raise ConflictError. Returns the aside path and its stat."""
        assert record.path is not None and record.fingerprint is not None
        aside = self._rename_aside(record, full)
        data, stat = _read_regular(aside)
        if fingerprint_bytes(data, stat)[1:] != record.fingerprint[1:]:
            # A save landed between memkit's read and the rename: it goes back untouched.
            kept = self._put_back(aside, full, record.path)
            raise ConflictError(record.path, kept=kept)
        return aside, stat

    def _put_back(self, aside: Path, full: Path, relpath: str) -> str | None:
        """Return an aside file to its name; if a new file took the name meanwhile, keep the
        aside one as a conflict copy (returned) rather than drop either."""
        try:
            os.link(aside, full)
        except FileExistsError:
            return self._keep_aside(aside, relpath)
        os.unlink(aside)
        return None

    def _keep_aside(self, aside: Path, relpath: str) -> str:
        """Keep an aside file as `<relpath>.conflict-<hash>`, which `check` and `status` report."""
        data = aside.read_bytes()
        tag = hashlib.sha256(data).hexdigest()[:12]
        for attempt in range(1, 100):
            copy = f"{relpath}.conflict-{tag}" + (f"-{attempt}" if attempt > 1 else "")
            target = self.safe_path(copy)
            try:
                os.link(aside, target)
            except FileExistsError:
                if target.read_bytes() != data:
                    continue
            os.unlink(aside)
            self.touched.add(copy)
            return copy
        return self.relpath_fast(aside)  # 99 copies already: leave it under its private name

    def _release_aside(
        self,
        aside: Path,
        before: os.stat_result,
        relpath: str,
        expected: tuple[int, int, str] | None = None,
    ) -> str | None:
        """Delete an aside file unless it changed after it was checked (an in-place append to
        the old inode; or, with `expected`, content other than what was read): then keep it as
        a conflict copy and return the copy's path."""
        try:
            if expected is None:  # the stat says it all: no need to read the bytes again
                data, stat = b"", os.lstat(aside)
            else:
                data, stat = _read_regular(aside)
        except FileNotFoundError:
            return None
        # Any write to the inode moves its ctime (which a person cannot set back, unlike mtime).
        changed = _stat_key(stat) != _stat_key(before)
        if changed or (expected and fingerprint_bytes(data, stat)[1:] != expected[1:]):
            return self._keep_aside(aside, relpath)
        os.unlink(aside)
        return None

    def _swap_in(
        self, relpath: str, full: Path, expected: bytes, temp: Path
    ) -> ConflictError | None:
        """Put `temp` at `full` if `full` still holds `expected`; else the ConflictError."""
        aside = self._aside_name(full)
        try:
            os.rename(full, aside)
        except FileNotFoundError:
            return ConflictError(relpath, "it was deleted")
        data, before = _read_regular(aside)
        if data != expected:
            return ConflictError(relpath, kept=self._put_back(aside, full, relpath))
        try:
            os.link(temp, full)
        except FileExistsError:
            return ConflictError(relpath, kept=self._keep_aside(aside, relpath))
        except BaseException:
            self._put_back(aside, full, relpath)
            raise
        kept = self._release_aside(aside, before, relpath)
        if kept is not None:
            return ConflictError(relpath, "an append to the old file", kept=kept, written=True)
        return None

    # How a batch is as durable as a write at a time, with three file-system syncs instead of
    # three fsyncs per file (docs/ARCHITECTURE.md, "Batches of writes"): (1) every new file's
    # bytes are on disk before any name points at them (a name never leads to an empty file
    # after a crash); (2) the new names are on disk before any file is deleted (a promoted
    # record is durable before its short-term original goes); (3) the deletions are on disk
    # before the batch returns. The caller holds the vault's write lock.

    def _flush_pending(self) -> None:
        """Put a batch's pending writes in place, durably, in that order. Raises the first
        failure (a name taken meanwhile, a file a person changed) once the rest is done; when
        a new file could not be put in place, no file of the batch is deleted."""
        pending = self._pending
        if not pending:
            return
        creates, deletes = dict(pending.creates), dict(pending.deletes)
        pending.creates.clear()
        pending.deletes.clear()
        failures: list[MemkitError] = []
        try:
            if creates:
                with _reported("sync", str(self.root)):
                    _sync_file_system(self.root, [str(t) for _full, t in creates.values()])
                folders: set[Path] = set()
                for relpath, (full, temp) in creates.items():
                    with _reported("write", relpath):
                        try:
                            os.link(temp, full)
                        except FileExistsError:
                            failures.append(
                                VaultError(f"{relpath}: a file with this name already exists")
                            )
                            continue
                    self.touched.add(relpath)
                    folders.add(full.parent)
                if folders:
                    with _reported("sync", str(self.root)):
                        _sync_file_system(self.root, [str(folder) for folder in folders])
        finally:
            for _full, temp in creates.values():
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        if failures:
            # Which deletion waited for which new file is not known here: keep them all (an
            # expire run again promotes them into the facts already written, as duplicates).
            raise failures[0]
        folders = set()
        for relpath, (record, full) in deletes.items():
            try:
                with _reported("delete", relpath):
                    aside, before = self._take_aside(record, full)
                    kept = self._release_aside(aside, before, relpath)
                    folders.add(full.parent)
                    self.touched.add(relpath)
                    if kept is not None:
                        raise ConflictError(
                            relpath, "an append while it was deleted", kept=kept, written=True
                        )
            except MemkitError as error:
                failures.append(error)
        if folders:
            with _reported("sync", str(self.root)):
                _sync_file_system(self.root, [str(folder) for folder in folders])
        if failures:
            raise failures[0]
