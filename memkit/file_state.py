"""What the manifest keeps of one file (its row, its state), and comparing a file or a walk with it."""

from __future__ import annotations

import functools
import hashlib
import os
import stat as stat_module
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zlib import crc32

from memkit.files import FileStat, NotRegularFile, read_regular
from memkit.records import Record, type_for_folder

# The manifest's columns after the path, in this order (a Row holds them in the same order).
COLUMNS = ("mtime_ns", "size", "sha256", "record_id", "type", "problem", "line", "ctime_ns", "ino")
# One file's manifest entry, as kept in memory: the columns above, in that order.
Row = tuple[int, int, str, str, str, str, int, int, int]


@dataclass
class FileState:
    """What the manifest remembers of one file."""

    mtime_ns: int
    size: int
    sha256: str
    record_id: str = ""
    type: str = ""
    problem: str = ""  # "line: message" when the file is not a valid record
    line: int = 0
    ctime_ns: int = 0
    ino: int = 0

    def to_row(self) -> Row:
        """The manifest's form: the fields in declaration order (what `from_row` reads back)."""
        return (
            self.mtime_ns,
            self.size,
            self.sha256,
            self.record_id,
            self.type,
            self.problem,
            self.line,
            self.ctime_ns,
            self.ino,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> FileState:
        return cls(*row)


@functools.cache
def _folder_type(folder: str) -> str | None:
    return type_for_folder(folder)


def misplaced(relpath: str, record_type: str) -> bool:
    """Whether a record of this type sits in a layout folder that holds another type (say, a
    proposal a person moved into a store folder)."""
    expected = _folder_type(relpath.rpartition("/")[0])
    return expected is not None and expected != record_type


def state_of_record(root: str, relpath: str, record: Record) -> FileState | None:
    """A file's state from a record read (or written and read back) through the vault, without
    parsing it again; None when the file is not the one read (then it is read like any other)."""
    if record.fingerprint is None:
        return None
    mtime_ns, size, sha256 = record.fingerprint
    try:
        info = os.lstat(os.path.join(root, relpath))
    except OSError:
        return None
    if not stat_module.S_ISREG(info.st_mode) or (info.st_mtime_ns, info.st_size) != (
        mtime_ns,
        size,
    ):
        return None
    return FileState(
        mtime_ns, size, sha256, record.id, record.type, ctime_ns=info.st_ctime_ns, ino=info.st_ino
    )


def same_content(root: str, relpath: str, sha256: str) -> bool:
    """Whether the file still hashes as the manifest says (False when it is gone)."""
    try:
        data, _stat = read_regular(Path(root), os.path.join(root, relpath))
    except NotRegularFile:
        return sha256 == f"!{relpath}"
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == sha256


# Manifest entry of a path whose documents may be in the index after a killed sync: matches no
# file, so the next sync reads the file again or, when it is gone, deletes its documents.
UNKNOWN_ROW: Row = (-1, -1, "", "", "", "", 0, -1, -1)
DIGEST_BITS = (1 << 64) - 1


def stat_digest(stats: Iterable[tuple[str, FileStat]]) -> int:
    """An order-free fingerprint of (path, stat) pairs: the sum of their hashes, so a save
    updates it by what it changed and a walk compares with it without reading 100k rows.
    (CPython's hash of a tuple of ints is the same in every process: only str hashes are
    salted, so the path goes in as its CRC.)"""
    total = 0
    for path, (mtime, size, ctime, ino) in stats:
        total += hash((crc32(path.encode("utf-8", "surrogateescape")), mtime, size, ctime, ino))
    return total & DIGEST_BITS


def row_stat(row: Sequence[Any]) -> FileStat:
    return (int(row[0]), int(row[1]), int(row[7]), int(row[8]))
