"""`[[Wiki links]]` as Obsidian resolves them (by file name), dangling-link warnings, and naming
entity files after their entity (`check --fix`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from memkit import ids
from memkit.entities import ENTITY_FOLDER, Entities
from memkit.errors import MemkitError
from memkit.records import Record
from memkit.vault import Problem, Vault, is_temporary_name

# `[[target]]`, `[[target|shown]]`, `[[target#heading]]`, `[[target^block]]`, `![[embed]]`.
_LINK = re.compile(r"!?\[\[([^\[\]\n]+?)\]\]")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def link_target(inner: str) -> str:
    """The file a link's inside names: without `|shown`, `#heading`, `^block`, `.md`."""
    target = inner.split("|", 1)[0].rstrip("\\")  # `\|` escapes the pipe inside a table
    target = re.split(r"[#^]", target, maxsplit=1)[0].strip()
    if target.lower().endswith(".md"):
        target = target[:-3]
    return target


def extract_links(text: str) -> list[tuple[int, str]]:
    """(0-based line, target) of every wiki link outside code; a link to a heading of the same
    note (`[[#Heading]]`) has target ''."""
    found: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.split("\n")):
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        if "[[" not in line:
            continue
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            found.append((number, link_target(match.group(1))))
    return found


class LinkResolver:
    """Every file of the vault, the way Obsidian finds a link's target: by file name
    (case-insensitive, `.md` left out), or by a path when the link holds a `/`."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.names: set[str] = set()
        self.paths: set[str] = set()
        for path in paths:
            key = path[:-3] if path.lower().endswith(".md") else path
            key = ids.name_key(key)
            self.paths.add(key)
            self.names.add(key.rsplit("/", 1)[-1])

    @classmethod
    def of_vault(cls, vault: Vault) -> LinkResolver:
        return cls(vault_files(vault))

    def resolves(self, target: str) -> bool:
        if not target:
            return True  # a heading or block of the same note
        key = ids.name_key(target.replace("\\", "/").strip("/"))
        if "/" not in key:
            return key in self.names
        return key in self.paths or any(path.endswith("/" + key) for path in self.paths)

    def add(self, path: str) -> None:
        key = ids.name_key(path[:-3] if path.lower().endswith(".md") else path)
        self.paths.add(key)
        self.names.add(key.rsplit("/", 1)[-1])


def vault_files(vault: Vault) -> list[str]:
    """Vault-relative paths of every file a link may point at (not hidden, not memkit's state)."""
    found: list[str] = []
    root = str(vault.root)
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        relative = os.path.relpath(directory, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        found += [prefix + name for name in files if not is_temporary_name(name)]
    return found


def _front_matter_lines(record: Record) -> int:
    text = record.front_matter_text or ""
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


def dangling_links(records: Iterable[Record], resolver: LinkResolver) -> list[Problem]:
    """A warning per `[[link]]` (in the body or a front-matter value) that names no file."""
    warnings: list[Problem] = []
    for record in records:
        assert record.path is not None
        # Front-matter line i is file line line_offset + i; the body starts after the closing '---'.
        body_start = record.line_offset + _front_matter_lines(record) + 2
        places = [
            (record.line_offset + 1 + line, target)
            for line, target in extract_links(record.front_matter_text or "")
        ] + [(body_start + line, target) for line, target in extract_links(record.body)]
        for line, target in places:
            if not resolver.resolves(target):
                warnings.append(
                    Problem(
                        record.path,
                        line,
                        f"[[{target}]] links to no file (Obsidian links by file name); create "
                        f'it with `memkit entity "{target}" --kind ...` or fix the link',
                    )
                )
    return warnings


# --- naming entity files after their entity ---------------------------------------------------


@dataclass
class Rename:
    old: str
    new: str
    git: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"from": self.old, "to": self.new, "git": self.git}


def _stem_fits(stem: str, wanted: str) -> bool:
    """Whether a file stem is the entity's own name, or that name with a clash suffix."""
    return stem == wanted or re.fullmatch(re.escape(wanted) + r" \d+", stem) is not None


def planned_renames(vault: Vault) -> list[tuple[Record, str]]:
    """(entity, new vault-relative path) for each entity file still named as older memkit
    versions named them (a slug of the name), not after its entity."""
    entities = Entities(vault)
    planned: list[tuple[Record, str]] = []
    for record in vault.scan(["entity"]).records:
        assert record.path is not None
        name = record.meta.get("name")
        if not isinstance(name, str) or not name.strip():
            continue
        if PurePosixPath(record.path).parent.as_posix() != ENTITY_FOLDER:
            continue
        wanted = ids.entity_stem(name)
        stem = PurePosixPath(record.path).stem
        if _stem_fits(stem, wanted):
            continue
        # Only the slug names older memkit versions gave (`priya-raman.md`, `priya-raman-2.md`):
        # a file a person renamed on purpose (and Obsidian re-linked) stays as it is.
        slug = ids.slugify(name)
        if stem != slug and re.fullmatch(re.escape(slug) + r"-\d+", stem) is None:
            continue
        new = f"{ENTITY_FOLDER}/{entities.free_stem(wanted, exclude=record.path)}.md"
        # Two old files wanting the same new name: the second gets the next free suffix.
        while any(ids.name_key(new) == ids.name_key(p) for _r, p in planned):
            stem = PurePosixPath(new).stem
            new = f"{ENTITY_FOLDER}/{entities.free_stem(stem + ' 2', exclude=record.path)}.md"
        planned.append((record, new))
    return planned


def rename_entity_files(vault: Vault, *, dry_run: bool = False) -> list[Rename]:
    """Name every entity file after its entity; `git mv` the files git tracks."""
    from memkit.gitvault import GitVault

    git: GitVault | None = GitVault(vault)
    try:
        if git is None or not git.is_repo():
            git = None
    except MemkitError:  # no git program: plain renames are still right
        git = None
    done: list[Rename] = []
    with vault.write_lock():
        for record, new in planned_renames(vault):
            assert record.path is not None
            tracked = git is not None and bool(
                git.run("ls-files", "--", record.path, check=False).stdout.strip()
            )
            rename = Rename(record.path, new, git=tracked)
            if not dry_run:
                if tracked and git is not None:
                    git.run("mv", "--", record.path, new)
                    vault.touched.update((record.path, new))
                elif ids.name_key(record.path) == ids.name_key(new):
                    # Only the case changes: on a case-insensitive file system the new name
                    # "exists" already, so step through a name that is not a record.
                    step = vault.move(record, new + ".renaming")
                    vault.safe_path(step.path or "").rename(vault.safe_path(new))
                    vault.touched.discard(new + ".renaming")
                    vault.touched.add(new)
                else:
                    vault.move(record, new)
            done.append(rename)
    return done
