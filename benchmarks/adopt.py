"""Speed of `memkit adopt` on a folder of hand-written notes, against a plain baseline.

A fresh vault in a temporary folder gets N notes (default 1,000) written the way people write
them, with a fixed seed: most plain Markdown with a `# heading`, some with Obsidian properties
(`tags: ops` as one string, `aliases`, comments, keys memkit does not know), some without a
heading, a few with TOML (`+++`) or JSON front-matter, some with CRLF line endings, in nested
folders. Each note holds one unique word, so that "every note is searchable" can be checked.

| measure | what |
|---|---|
| baseline: rewrite every file | read each file, write it back atomically (temp file, fsync, rename): the floor for any tool that rewrites the files |
| adopt | `memkit.notes.adopt(vault)`: read, parse, add front-matter, validate, write atomically |
| index | `VaultIndex.sync(paths=adopted)`, what `memkit adopt` runs after adopting |
| adopt + index | the target: <= 5 s for 1,000 notes |

Then it checks that every body is byte for byte what it was and that searching each note's
unique word finds that note, and prints a Markdown table.

    python benchmarks/adopt.py [--notes 1000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from memkit.notes import adopt, read_front_matter
from memkit.sync import VaultIndex
from memkit.vault import Vault

SEED = 20261129
WORDS = [
    *(
        [
            "invoice",
            "ledger",
            "deploy",
            "rollback",
            "worker",
            "queue",
            "postgres",
            "lock",
            "retry",
            "flag",
            "customer",
        ]
    ),
    *(
        [
            "chunk",
            "memory",
            "limit",
            "plan",
            "review",
            "schema",
            "migration",
            "release",
            "runbook",
            "alert",
            "metric",
        ]
    ),
    *(
        [
            "latency",
            "error",
            "budget",
            "timeout",
            "cache",
            "replica",
            "backup",
            "restore",
            "tuesday",
            "thursday",
        ]
    ),
    *(["berlin", "team", "standup", "sprint"]),
]
FOLDERS = ["", "ops", "ops/incidents", "projects/ledger", "journal/2026", "reading"]


def note_text(rng: random.Random, number: int) -> tuple[str, str]:
    """(file name, text) of one note, and its unique word inside."""
    token = f"zq{number:05d}tok"
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))).capitalize()
    paragraphs = []
    for _ in range(rng.randint(1, 5)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(20, 80))]
        paragraphs.append(" ".join(words).capitalize() + ".")
    paragraphs.insert(rng.randint(0, len(paragraphs)), f"Remember {token} and [[Dana Okafor]].")
    if rng.random() < 0.3:
        paragraphs.append("```python\n# not a heading\nprint('x')\n```")
    body = "\n\n".join(paragraphs) + "\n"
    kind = rng.random()
    # Without a heading (10%), the title comes from the file name.
    text = body if kind < 0.1 else f"# {title}\n\n{body}"
    if 0.1 <= kind < 0.4:
        tags = rng.choice(["ops", "ledger, ops", "[reading, notes]", "[journal]"])
        text = (
            f"---\ntags: {tags}\naliases: {title.split()[0]}\n# written in Obsidian\n"
            f"rating: {rng.randint(1, 5)}\npublish: false\n---\n{text}"
        )
    elif 0.4 <= kind < 0.45:
        text = f'+++\ntitle = "{title}"\ndate = 2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}\n+++\n{text}'
    elif 0.45 <= kind < 0.5:
        text = f'{{\n"title": "{title}",\n"stars": {rng.randint(1, 5)}\n}}\n{text}'
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n")
    name = f"{title[:40].strip()} {number}.md"
    return name, text


def make_notes(root: Path, count: int) -> dict[str, tuple[bytes, str]]:
    """relpath -> (body bytes after any front-matter, unique word)."""
    rng = random.Random(SEED)
    made: dict[str, tuple[bytes, str]] = {}
    for number in range(count):
        name, text = note_text(rng, number)
        relpath = "/".join(part for part in ("notes", rng.choice(FOLDERS), name) if part)
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        body = read_front_matter(text)[3]
        made[relpath] = (body.encode("utf-8"), f"zq{number:05d}tok")
    return made


def rewrite_all(folder: Path) -> None:
    """The baseline: every file read and written back atomically, as adopt must at least do."""
    for directory, _subdirs, files in os.walk(folder):
        for name in files:
            path = Path(directory) / name
            data = path.read_bytes()
            temporary = path.with_name(f".{name}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary vaults")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="memkit-adopt-bench-"))
    try:
        baseline_root = base / "baseline"
        baseline_root.mkdir()
        make_notes(baseline_root, args.notes)
        started = time.perf_counter()
        rewrite_all(baseline_root / "notes")
        baseline = time.perf_counter() - started

        vault = Vault.init(base / "vault")
        made = make_notes(vault.root, args.notes)
        started = time.perf_counter()
        cpu_started = time.process_time()
        report = adopt(vault)
        adopted_at = time.perf_counter()
        adopt_cpu = time.process_time() - cpu_started
        index = VaultIndex(vault)
        try:
            index.sync(paths=report.adopted)
            indexed_at = time.perf_counter()
            identical = 0
            for relpath, (body, _token) in made.items():
                text = (vault.root / relpath).read_bytes().decode("utf-8")
                identical += read_front_matter(text)[3].encode("utf-8") == body
            searchable = 0
            for relpath, (_body, token) in made.items():
                hits = index.search(token, k=3, sync=False)[0].hits
                searchable += any(hit.path == relpath for hit in hits)
        finally:
            index.close()
        adopt_seconds = adopted_at - started
        index_seconds = indexed_at - adopted_at
        total = indexed_at - started
        rows = [
            ("baseline: rewrite every file (read, temp, fsync, rename)", f"{baseline:.2f} s"),
            ("adopt", f"{adopt_seconds:.2f} s ({adopt_seconds / args.notes * 1000:.2f} ms/note)"),
            ("adopt, CPU time of this process", f"{adopt_cpu:.2f} s"),
            ("index the adopted notes", f"{index_seconds:.2f} s"),
            ("adopt + index (target <= 5 s for 1,000)", f"{total:.2f} s"),
            ("adopted / skipped", f"{len(report.adopted)} / {len(report.skipped)}"),
            ("bodies byte-identical", f"{identical} / {len(made)}"),
            ("searchable by their unique word", f"{searchable} / {len(made)}"),
        ]
        load = os.getloadavg()[0]
        print(
            f"memkit adopt: {args.notes} hand-written notes (Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs, 1-minute load average {load:.1f})\n"
        )
        print("| measure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        for skipped in report.skipped[:5]:
            print(f"skipped: {skipped.path}: {skipped.reason}", file=sys.stderr)
        ok = identical == searchable == len(made) == len(report.adopted)
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"\nkept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
