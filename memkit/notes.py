"""A person's own notes (`notes/` and memkit.yaml's `notes.folders`): finding the ones memkit
cannot read yet and adopting them (the only code importing python-frontmatter)."""

from __future__ import annotations

import importlib
import os
import re
import stat as stat_module
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from memkit import ids, schema
from memkit.errors import InvalidRecord, UsageError
from memkit.records import dump_key, parse_record
from memkit.timeutil import format_time
from memkit.vault import Vault, is_record_path, is_temporary_name

_HEADING = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# What parse_record says about a Markdown file that has no memkit front-matter yet.
NOT_ADOPTED = (
    "no front-matter",
    "front-matter is empty",
    "front-matter is missing required field",
    "front-matter is not a mapping",
)


@dataclass
class Skipped:
    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class AdoptReport:
    adopted: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    already: int = 0  # files that were memkit records already

    def to_json(self) -> dict[str, Any]:
        return {
            "adopted": self.adopted,
            "skipped": [s.to_json() for s in self.skipped],
            "already": self.already,
        }


def in_notes_folder(vault: Vault, relpath: str) -> bool:
    return any(relpath.startswith(folder + "/") for folder in vault.notes_folders)


def is_unadopted_problem(vault: Vault, relpath: str, message: str) -> bool:
    """Whether a parse problem only says a note has no memkit front-matter yet."""
    return in_notes_folder(vault, relpath) and message.startswith(NOT_ADOPTED)


def unadopted(vault: Vault) -> list[str]:
    """Markdown files in the notes folders that are not memkit records yet, sorted."""
    found: list[str] = []
    for relpath in vault.record_paths(["note"]):
        try:
            vault.read_record(relpath)
        except InvalidRecord as error:
            if is_unadopted_problem(vault, relpath, error.reason):
                found.append(relpath)
        except OSError:
            continue
    return sorted(found)


# --- reading a person's front-matter (python-frontmatter) -------------------------------------


def _handlers() -> list[Any]:
    import frontmatter
    from frontmatter.default_handlers import BaseHandler, JSONHandler, YAMLHandler

    handlers: list[Any] = [YAMLHandler(), JSONHandler()]
    try:
        tomllib = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10: python-frontmatter's own handler, if `toml` is installed
        handlers += [h for h in frontmatter.handlers if type(h).__name__ == "TOMLHandler"]
    else:

        class TOMLHandler(BaseHandler):
            """`+++` front-matter (Hugo, Zola) read with the standard library's tomllib."""

            FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
            START_DELIMITER = END_DELIMITER = "+++"

            def load(self, fm: str, **kwargs: object) -> Any:
                return tomllib.loads(fm)

        handlers.append(TOMLHandler())
    return handlers


_HANDLERS: list[Any] | None = None


def read_front_matter(text: str) -> tuple[str, dict[str, Any] | None, str, str]:
    """(format, metadata, front-matter text, body) of a note; format '' and metadata None when
    it has no front-matter. The body is the text after the closing delimiter, byte for byte."""
    global _HANDLERS
    if not text.startswith(("---", "+++", "{")):
        return "", None, "", text  # the common case, without importing anything
    if _HANDLERS is None:
        _HANDLERS = _handlers()
    for handler in _HANDLERS:
        if not handler.detect(text):
            continue
        kind = handler.START_DELIMITER or "json"
        if kind == "---" and text.split("\n", 1)[0].rstrip() != "---":
            return "", None, "", text  # `----`: a horizontal rule, as memkit and Obsidian read it
        boundaries = list(handler.FM_BOUNDARY.finditer(text))
        if len(boundaries) < 2:
            return "", None, "", text  # an opening line never closed: not front-matter
        closing = boundaries[1]
        # The boundary pattern's `\s*` may run over the blank lines after it: the body starts
        # right after the closing line's own newline, so that it stays byte for byte.
        line_end = text.find("\n", closing.start())
        end = len(text) if line_end < 0 else line_end + 1
        if kind == "json":
            fm_text = text[: text.find("\n", closing.start()) if line_end >= 0 else len(text)]
        else:
            fm_text = text[text.find("\n") + 1 : closing.start()]
        # python-frontmatter's own split and load: the same reading as any tool built on it.
        metadata = handler.load(handler.split(text)[0])
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise ValueError("its front-matter is not a mapping of keys to values")
        return kind, metadata, fm_text, text[end:]
    return "", None, "", text


def first_heading(body: str) -> str | None:
    """The text of the first `# heading` outside code blocks."""
    fence: str | None = None
    for line in body.splitlines():
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0]:
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        match = _HEADING.match(line)
        if match:
            return match.group(1).strip()
    return None


def _plain(value: Any) -> Any:
    """A TOML/JSON value as YAML can carry it (dates become ISO strings)."""
    if isinstance(value, datetime):
        return format_time(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def adopted_text(text: str, file_name: str, mtime: float) -> str:
    """The note's text with memkit's front-matter: id, type, title, created, updated added
    before the person's own keys (kept as written); the body unchanged. ValueError when it
    cannot be adopted, saying why."""
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    newline = "\r\n" if "\r\n" in text.split("\n", 1)[0] + "\n" else "\n"
    kind, meta, fm_text, body = read_front_matter(text)
    meta = meta or {}
    if "type" in meta and meta["type"] != "note":
        raise ValueError(
            f"its own `type: {meta['type']}` property is in the way of memkit's `type: note`; "
            "rename that property (for example to `kind`) and adopt it again"
        )
    stamp = format_time(datetime.fromtimestamp(mtime, timezone.utc))
    title = meta.get("title")
    if not (isinstance(title, str) and title.strip()):
        title = first_heading(body) or PurePosixPath(file_name).stem
    added: dict[str, Any] = {
        "id": ids.new_id(),
        "type": "note",
        "title": title,
        "created": stamp,
        "updated": stamp,
    }
    lines: list[str] = []
    for key, value in added.items():
        if key not in meta:
            lines += dump_key(key, value)
    if kind == "---":
        person = fm_text.replace("\r\n", "\n")
    elif kind:
        # TOML and JSON front-matter become YAML (a record's front-matter is YAML): same keys,
        # same values, in the same order.
        person = "".join(
            line + "\n" for key, value in meta.items() for line in dump_key(str(key), _plain(value))
        )
    else:
        person = ""
    front = "---\n" + "\n".join(lines) + "\n" + person + "---\n"
    if newline != "\n":
        front = front.replace("\n", newline)
    return ("\ufeff" if bom else "") + front + body


# --- adopting ---------------------------------------------------------------------------------


def _markdown_files(vault: Vault, given: Path) -> Iterator[str]:
    """Vault-relative paths of the Markdown files at or under `given` (dot-folders skipped)."""
    if given.is_dir():
        for directory, subdirs, files in os.walk(given):
            subdirs[:] = sorted(d for d in subdirs if not is_temporary_name(d))
            for name in sorted(files):
                if name.endswith(".md") and not is_temporary_name(name):
                    yield vault.relpath_fast(Path(directory) / name)
    else:
        yield vault.relpath(given)


def _targets(vault: Vault, paths: Iterable[str], cwd: Path) -> list[str]:
    given = list(paths)
    if not given:
        folders = [vault.root / folder for folder in vault.notes_folders]
        return sorted(
            p for folder in folders if folder.is_dir() for p in _markdown_files(vault, folder)
        )
    found: list[str] = []
    for item in given:
        path = Path(item)
        path = path if path.is_absolute() else cwd / path
        relpath = vault.relpath(path)
        if not path.exists():
            raise UsageError(f"{item}: no such file or folder")
        inside = relpath == "." or any(
            relpath == folder
            or relpath.startswith(folder + "/")
            or folder.startswith(relpath + "/")
            for folder in vault.notes_folders
        )
        if not inside:
            raise UsageError(
                f"{item} is not in a notes folder ({', '.join(vault.notes_folders)}); move it "
                "into notes/ or list its folder under `notes: {folders: [...]}` in memkit.yaml"
            )
        found += [p for p in _markdown_files(vault, path) if in_notes_folder(vault, p)]
    return sorted(dict.fromkeys(found))


# Files written per batch: one sync of the file system for all of them (Vault.replace_files).
_BATCH = 500


def _write(vault: Vault, changes: list[tuple[str, bytes, bytes]], report: AdoptReport) -> None:
    for conflict in vault.replace_files(changes):
        report.adopted.remove(conflict.path)
        report.skipped.append(Skipped(conflict.path, str(conflict)))
    changes.clear()


def adopt(
    vault: Vault, paths: Iterable[str] = (), *, cwd: Path | None = None, dry_run: bool = False
) -> AdoptReport:
    """Give each Markdown file in the notes folders (or under `paths`) without memkit
    front-matter an id, type, title, created and updated, keeping its own front-matter keys and
    its body byte for byte. Files that are records already are left alone."""
    report = AdoptReport()
    changes: list[tuple[str, bytes, bytes]] = []
    for relpath in _targets(vault, paths, cwd or Path.cwd()):
        if not is_record_path(relpath, vault.notes_folders):
            continue
        # The walk followed no symlink and `_targets` resolved given paths inside the vault;
        # lstat below refuses a symlinked file. The writer checks the path again.
        full = vault.root / relpath
        try:
            info = full.lstat()
            if not stat_module.S_ISREG(info.st_mode):
                report.skipped.append(Skipped(relpath, "not a regular file"))
                continue
            data = full.read_bytes()
        except OSError as error:
            report.skipped.append(Skipped(relpath, f"cannot read it: {error.strerror}"))
            continue
        try:
            parse_record(data, relpath)
        except InvalidRecord as error:
            if not error.reason.startswith(NOT_ADOPTED):
                report.skipped.append(Skipped(relpath, f"line {error.line}: {error.reason}"))
                continue
        else:
            report.already += 1
            continue
        try:
            text = data.decode("utf-8")
            new = adopted_text(text, full.name, info.st_mtime).encode("utf-8")
            # Only a person's own keys can break the schema: memkit's are valid as written.
            person_keys = text.lstrip("\ufeff").startswith(("---", "+++", "{"))
        except UnicodeDecodeError:
            report.skipped.append(Skipped(relpath, "not UTF-8 text; save it as UTF-8"))
            continue
        except Exception as error:  # a person's front-matter that YAML, TOML or JSON refuses
            report.skipped.append(Skipped(relpath, f"cannot read its front-matter: {error}"))
            continue
        try:
            record = parse_record(new, relpath)
            found = schema.problems(record) if person_keys else []
        except InvalidRecord as error:
            found = [(error.line, error.reason)]
        if found:
            line, message = found[0]
            report.skipped.append(Skipped(relpath, f"line {line}: {message}"))
            continue
        report.adopted.append(relpath)
        if not dry_run:
            changes.append((relpath, data, new))
            if len(changes) >= _BATCH:
                _write(vault, changes, report)
    _write(vault, changes, report)
    return report
