"""Record identities: ULIDs (time-sortable, unique), and readable file names built from them."""

from __future__ import annotations

import os
import re
import threading
import time
import unicodedata

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")
SUFFIX_LENGTH = 6
MAX_SLUG_LENGTH = 60

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(now_ms: int | None = None) -> str:
    """A new ULID. Within one process ids are strictly increasing, even in the same millisecond."""
    global _last_ms, _last_random
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or a clock step back): increment the random part so ids stay sorted.
            ms = _last_ms
            random_part = (_last_random + 1) & ((1 << 80) - 1)
        else:
            random_part = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = ms, random_part
    return _encode(ms, 10) + _encode(random_part, 16)


def encode_ulid(ms: int, random_part: int) -> str:
    return _encode(ms, 10) + _encode(random_part & ((1 << 80) - 1), 16)


def is_ulid(value: object) -> bool:
    return isinstance(value, str) and ULID_PATTERN.match(value) is not None


def slugify(text: str, max_length: int = MAX_SLUG_LENGTH) -> str:
    """Lowercase ASCII words joined by '-', cut at a word boundary; 'note' when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_length:
        cut = slug[: max_length + 1]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:max_length]
    return slug.strip("-") or "note"


def id_suffix(record_id: str) -> str:
    """The short suffix that makes a file name unique: the id's last random characters."""
    return record_id[-SUFFIX_LENGTH:].lower()


def file_stem(title_or_text: str, record_id: str) -> str:
    first_line = title_or_text.strip().splitlines()[0] if title_or_text.strip() else ""
    return f"{slugify(first_line)}-{id_suffix(record_id)}"


# Characters Windows, macOS or Obsidian refuse in a file name, or that break a `[[link]]`
# (`#` starts a heading, `^` a block, `|` an alias, `[ ]` end the link).
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*#^\[\]]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?\Z", re.IGNORECASE)
MAX_NAME_LENGTH = 120


def entity_stem(name: str) -> str:
    """A file name (without `.md`) for an entity, as close to its name as every file system
    allows: Obsidian resolves `[[Priya Raman]]` to `Priya Raman.md` by file name."""
    stem = " ".join(unicodedata.normalize("NFC", name).split())  # tabs, newlines: one space
    stem = _UNSAFE_IN_NAME.sub("-", stem)
    if len(stem) > MAX_NAME_LENGTH:
        cut = stem[: MAX_NAME_LENGTH + 1]
        stem = cut.rsplit(" ", 1)[0] if " " in cut else stem[:MAX_NAME_LENGTH]
    # Windows drops trailing dots and spaces; a leading dot hides the file (and memkit skips it).
    stem = stem.strip(" .").lstrip(".")
    if _WINDOWS_RESERVED.match(stem):
        stem += "_"
    return stem or "entity"


def name_key(file_name: str) -> str:
    """How a case-insensitive, normalising file system (macOS, Windows) compares two names."""
    return unicodedata.normalize("NFC", file_name).casefold()
