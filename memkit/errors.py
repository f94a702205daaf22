"""Every error memkit raises on purpose, written for the person who will read it.

MemkitError
 +-- VaultNotFound        no vault at or above a folder
 +-- VaultError           the vault is not usable (layout, settings, path outside it)
 |    +-- PathOutsideVault
 |    +-- SettingsError   memkit.yaml is not valid (path:line)
 +-- RecordNotFound       no record with that id or path
 +-- InvalidRecord        a file is not a valid record (path:line: why)
 +-- ConflictError        a file changed on disk since memkit read it
 +-- SecretRefused        text to remember holds a credential
 +-- UsageError           the caller asked for something that cannot be (unknown type, ...)
 +-- IndexError_          the search index cannot be used
 +-- LockTimeout          another process held the vault's write lock for too long
 +-- LLMError             the language model could not be reached or replied badly
 +-- ImportFormatError    a conversation file has bad lines (path:line: why)
 +-- GitError             a git command failed, or git is missing (names the command and why)
"""

from __future__ import annotations

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


class InvalidRecord(MemkitError):
    """A file that is not a valid record; carries the vault-relative path and 1-based line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.reason = message


class ConflictError(MemkitError):
    def __init__(self, path: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{path}: the file changed on disk since memkit read it{extra}; "
            "nothing was written. Read it again and retry, so that the newer edit is not lost."
        )
        self.path = path


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


class IndexError_(MemkitError):
    """The search index could not be opened or written."""


class LockTimeout(MemkitError):
    """Another process kept the vault's write lock for longer than we wait."""


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
