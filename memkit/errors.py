"""Every error memkit raises on purpose, written for the person who will read it.

MemkitError
 +-- VaultNotFound        no vault at or above a folder
 +-- VaultError           the vault is not usable (layout, settings, path outside it)
 |    +-- PathOutsideVault
 |    +-- SettingsError   memkit.yaml is not valid (path:line)
 +-- RecordNotFound       no record with that id or path
 |    +-- NoRecordNamed   no record with that id, path, title or entity name
 +-- AmbiguousRef         a title or name that several records share (lists them)
 +-- InvalidRecord        a file is not a valid record (path:line: why)
 +-- ConflictError        a file changed on disk since memkit read it
 +-- SecretRefused        text to remember holds a credential
 +-- UsageError           the caller asked for something that cannot be (unknown type, ...)
 +-- SearchIndexError     the search index cannot be used
 +-- LockTimeout          another process held the vault's write lock for too long
 +-- StorageError         the file system refused (disk full, read-only, permission denied)
 +-- LLMError             the language model could not be reached or replied badly
 +-- ImportFormatError    a conversation file has bad lines (path:line: why)
 +-- GitError             a git command failed, or git is missing (names the command and why)
"""

from __future__ import annotations

import errno
from pathlib import Path


class MemkitError(Exception):
    """Base class: the CLI prints the message and exits 1."""


class VaultNotFound(MemkitError):
    def __init__(self, start: Path) -> None:
        super().__init__(
            f"no memkit vault at or above {start} (no memkit.yaml found). "
            "Create one with `memkit init PATH`, or point at one with --vault PATH "
            "or the MEMKIT_VAULT environment variable."
        )
        self.start = start


class VaultError(MemkitError):
    """The vault itself cannot be used as asked."""


class PathOutsideVault(VaultError):
    def __init__(self, path: str | Path, root: Path) -> None:
        super().__init__(
            f"{path}: path is outside the vault {root}; memkit only touches files inside it"
        )
        self.path = path


class SettingsError(VaultError):
    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.reason = message


class RecordNotFound(MemkitError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no record with id or path {ref!r} in this vault (see `memkit list`)")
        self.ref = ref


class NoRecordNamed(RecordNotFound):
    """A reference that may also be a title or an entity name or alias, and matched nothing."""

    def __init__(self, ref: str) -> None:
        MemkitError.__init__(
            self,
            f"no record with id, path, title or entity name {ref!r} in this vault "
            "(see `memkit list`, or `memkit search` for words in it)",
        )
        self.ref = ref


class AmbiguousRef(MemkitError):
    """A title or name several records share; `candidates` are (id, path, title)."""

    def __init__(self, ref: str, candidates: list[tuple[str, str, str]]) -> None:
        shown = "; ".join(f"{id_} {path} ({title})" for id_, path, title in candidates[:10])
        more = f"; and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        super().__init__(
            f"{ref!r} names {len(candidates)} records; give one of their ids or paths: "
            f"{shown}{more}"
        )
        self.ref = ref
        self.candidates = candidates


class InvalidRecord(MemkitError):
    """A file that is not a valid record; carries the vault-relative path and 1-based line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.reason = message


class ConflictError(MemkitError):
    """`kept` names a conflict copy when both versions were kept; `written` says whether
    memkit's own version is in place anyway (then a retry would write it twice)."""

    def __init__(
        self, path: str, detail: str = "", *, kept: str | None = None, written: bool = False
    ) -> None:
        extra = f" ({detail})" if detail else ""
        if written and kept:
            message = (
                f"{path}: the file changed on disk while memkit wrote it{extra}; memkit's version "
                f"is in place and the other version is kept in {kept}. Copy what you want "
                "from it into the file, then delete it."
            )
        elif kept:
            message = (
                f"{path}: the file changed on disk while memkit wrote it{extra}; nothing of "
                f"memkit's was written, the newer file is in place and the version before it is "
                f"kept in {kept}. Check the file, delete the copy, and retry."
            )
        else:
            message = (
                f"{path}: the file changed on disk since memkit read it{extra}; "
                "nothing was written. Read it again and retry, so that the newer edit is not lost."
            )
        super().__init__(message)
        self.path = path
        self.kept = kept
        self.written = written


class SecretRefused(MemkitError):
    """Nothing was written. The message never holds the secret itself, only a masked excerpt;
    the CLI adds its --allow-secrets hint, an MCP host's model only reads what to rewrite."""

    def __init__(self, findings: list[str], where: str = "") -> None:
        what = "; ".join(findings)
        super().__init__(
            f"{where + ': ' if where else ''}refused: this holds a credential ({what}). "
            "Rewrite it without the credential: secrets are never written into the vault, "
            "which may be pushed to git."
        )
        self.findings = findings
        self.where = where


class UsageError(MemkitError):
    """The request itself is wrong (unknown type or store, bad value)."""


class SearchIndexError(MemkitError):
    """The search index could not be opened or written."""


class LockTimeout(MemkitError):
    """Another process kept the vault's write lock for longer than we wait."""


class StorageError(MemkitError):
    """The operating system refused to read or write a file: disk full, read-only, no permission."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


# By name: EDQUOT and some others do not exist on every platform.
_OS_REASONS = {
    getattr(errno, name): reason
    for name, reason in (
        ("ENOSPC", "the disk is full; free some space and try again"),
        ("EDQUOT", "the disk quota is used up; free some space and try again"),
        ("EFBIG", "the file would be larger than the file system or a limit (ulimit -f) allows"),
        ("EROFS", "the file system is read-only; memkit needs to write here"),
        ("EACCES", "permission denied; check the owner and mode of the vault's folders and files"),
        ("EPERM", "operation not permitted; check the owner and mode of the vault's files"),
        ("EIO", "input/output error from the disk"),
        ("EMLINK", "too many links to this file"),
    )
    if hasattr(errno, name)
}


def storage_error(error: OSError, action: str = "") -> StorageError:
    """An OSError (disk full, read-only, permission) as one line for people naming the file."""
    reason = _OS_REASONS.get(error.errno or 0) or (error.strerror or str(error))
    where = error.filename if error.filename is not None else ""
    doing = f"cannot {action}" if action else ""
    prefix = " ".join(part for part in (doing, str(where)) if part)
    prefix = f"{prefix}: " if prefix else ""
    code = errno.errorcode.get(error.errno or 0, "OSError")
    return StorageError(f"{prefix}{reason} ({code})", error.errno)


class LLMError(MemkitError):
    """The language model server could not be reached or replied with something unusable."""


class GitError(MemkitError):
    """A git command failed (the message names the command and git's own words), or git is
    not installed, or the vault is not in a git repository."""


class ImportFormatError(MemkitError):
    def __init__(self, problems: list[str]) -> None:
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"nothing was imported; fix these lines first:\n{shown}{more}")
        self.problems = problems
