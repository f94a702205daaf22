"""Retrieval quality on LoCoMo: does `Memory.recall` find the turn that answers a question?

Each LoCoMo conversation (Maharana et al., ACL 2024; CC BY-NC 4.0, read from ../shared, never
copied into this repository) is converted to memkit's JSONL import format, imported into a fresh
vault through the library (`Episodes.import_text`), and every question of categories 1-4 is asked
through `Memory.recall(question, k=20, types=["episodic"])`. A question counts as found at k when
any of its evidence turns is among the first k hits (`recall_any@k`).

The same run scores a plain BM25 baseline: SQLite FTS5 with its default tokenizer over the raw
turn texts only (no stemming, no stop words, no neighbouring turns, no dates, no speakers), every
word of the question OR-ed. It finds an evidence turn in the top 10 for ~0.56 of the category 1-4
questions (~0.59 when the adversarial category 5 is counted too, the figure ../shared quotes).

Images: a LoCoMo turn that shared a photo carries a `blip_caption` (a description of the photo).
The caption is part of what the conversation showed, so it is imported as part of the message
text, in brackets after the words (`[shared a photo: ...]`); `--no-captions` leaves it out. The
baseline indexes exactly the same message texts, so the comparison stays fair.

    python benchmarks/locomo.py [--data PATH] [--conversations 0,1,2] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from memkit.conversations import Episodes
from memkit.memory import Memory
from memkit.vault import Vault

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "bench" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 20)
# Seconds between consecutive turns of a session: keeps their order in the day file.
TURN_SECONDS = 5
_EVIDENCE = re.compile(r"D:?(\d+):0*(\d+)")
_FTS_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Question:
    text: str
    category: int
    evidence: set[str]


@dataclass
class Conversation:
    sample_id: str
    turns: list[dict[str, Any]]  # import-format messages, in order
    questions: list[Question]


@dataclass
class Ranked:
    """The ranked message ids one system returned for each question of a conversation."""

    sample_id: str
    questions: list[Question]
    ranked: list[list[str]] = field(default_factory=list)


def clean_evidence(values: Iterable[Any]) -> set[str]:
    """Evidence turn ids as `D<session>:<turn>`: splits "D8:6; D9:17", repairs "D:11:26" and
    "D30:05", drops what names no turn at all (a bare "D")."""
    found: set[str] = set()
    for value in values:
        for session, turn in _EVIDENCE.findall(str(value)):
            found.add(f"D{int(session)}:{int(turn)}")
    return found


def parse_session_time(text: str) -> datetime:
    """LoCoMo's "1:56 pm on 8 May, 2023" as a naive datetime (read as UTC by memkit)."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")


def message_text(turn: dict[str, Any], captions: bool) -> str:
    text = str(turn.get("text", "")).strip()
    caption = str(turn.get("blip_caption") or "").strip()
    if captions and caption:
        text = f"{text} [shared a photo: {caption}]".strip()
    return text


def load(path: Path, picked: Sequence[int] | None, captions: bool) -> list[Conversation]:
    data = json.loads(path.read_text("utf-8"))
    conversations: list[Conversation] = []
    for position, item in enumerate(data):
        if picked is not None and position not in picked:
            continue
        sample_id = str(item["sample_id"])
        conv = item["conversation"]
        numbers = sorted(
            int(m.group(1))
            for key in conv
            if (m := re.fullmatch(r"session_(\d+)", key)) and isinstance(conv[key], list)
        )
        turns: list[dict[str, Any]] = []
        for number in numbers:
            start = parse_session_time(conv[f"session_{number}_date_time"])
            for ordinal, turn in enumerate(conv[f"session_{number}"]):
                text = message_text(turn, captions)
                if not text:
                    continue
                moment = start + timedelta(seconds=TURN_SECONDS * ordinal)
                turns.append(
                    {
                        "text": text,
                        "id": turn["dia_id"],
                        "session": f"{sample_id}-session-{number}",
                        "time": moment.isoformat(),
                        "speaker": turn["speaker"],
                    }
                )
        known = {t["id"] for t in turns}
        questions = []
        for qa in item["qa"]:
            category = int(qa.get("category", 0))
            if category not in CATEGORIES:
                continue  # 5 (adversarial) has no answer in the conversation
            evidence = clean_evidence(qa.get("evidence", [])) & known
            if evidence:
                questions.append(Question(str(qa["question"]), category, evidence))
        conversations.append(Conversation(sample_id, turns, questions))
    return conversations


def run_memkit(conversation: Conversation, k: int) -> Ranked:
    result = Ranked(conversation.sample_id, conversation.questions)
    with tempfile.TemporaryDirectory(prefix="memkit-locomo-") as folder:
        vault = Vault.init(Path(folder) / "vault")
        jsonl = "\n".join(json.dumps(t, ensure_ascii=False) for t in conversation.turns)
        Episodes(vault).import_text(jsonl, f"{conversation.sample_id}.jsonl")
        memory = Memory(vault)
        try:
            for question in conversation.questions:
                hits = memory.recall(question.text, k=k, types=["episodic"])
                result.ranked.append([h.hit.message_id for h in hits])
        finally:
            memory.close()
    return result


def fts_query(text: str) -> str:
    """Every word of the question as an OR of quoted FTS5 terms (quotes make any word safe)."""
    words = dict.fromkeys(w.lower() for w in _FTS_WORD.findall(text))
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def run_baseline(conversation: Conversation, k: int) -> Ranked:
    result = Ranked(conversation.sample_id, conversation.questions)
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE turns USING fts5(id UNINDEXED, text)")
        db.executemany(
            "INSERT INTO turns (id, text) VALUES (?, ?)",
            [(t["id"], t["text"]) for t in conversation.turns],
        )
        for question in conversation.questions:
            match = fts_query(question.text)
            rows = (
                db.execute(
                    "SELECT id FROM turns WHERE turns MATCH ? ORDER BY bm25(turns) LIMIT ?",
                    (match, k),
                ).fetchall()
                if match
                else []
            )
            result.ranked.append([row[0] for row in rows])
    finally:
        db.close()
    return result


def found_at(ranked: Ranked, k: int) -> list[tuple[int, bool]]:
    """(category, evidence among the first k) per question."""
    return [
        (q.category, bool(q.evidence & set(ids[:k])))
        for q, ids in zip(ranked.questions, ranked.ranked, strict=True)
    ]


def share(values: Sequence[bool]) -> float | None:
    """The share of true values; None when there is nothing to count."""
    return sum(values) / len(values) if values else None


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def scores(runs: Sequence[Ranked]) -> dict[str, dict[int, float | None]]:
    """{"overall" or category name: {k: recall_any@k}}."""
    table: dict[str, dict[int, float | None]] = {}
    for k in KS:
        pairs = [pair for run in runs for pair in found_at(run, k)]
        for category, name in CATEGORIES.items():
            table.setdefault(name, {})[k] = share([hit for c, hit in pairs if c == category])
        table.setdefault("overall", {})[k] = share([hit for _, hit in pairs])
    return table


def count_by_category(runs: Sequence[Ranked]) -> dict[str, int]:
    counts = {name: 0 for name in CATEGORIES.values()}
    for run in runs:
        for question in run.questions:
            counts[CATEGORIES[question.category]] += 1
    counts["overall"] = sum(counts.values())
    return counts


def markdown_table(memkit: Sequence[Ranked], baseline: Sequence[Ranked]) -> str:
    ours, base = scores(memkit), scores(baseline)
    counts = count_by_category(memkit)
    head = ["category", "n"] + [f"memkit@{k}" for k in KS] + [f"bm25@{k}" for k in KS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [*CATEGORIES.values(), "overall"]:
        cells = [name, str(counts[name])]
        cells += [cell(ours[name][k]) for k in KS] + [cell(base[name][k]) for k in KS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_conversation_table(
    memkit: Sequence[Ranked], baseline: Sequence[Ranked], positions: Sequence[int]
) -> str:
    lines = ["| # | conversation | n | memkit@10 | bm25@10 |", "|---|---|---|---|---|"]
    for position, ours, base in zip(positions, memkit, baseline, strict=True):
        ours_10 = share([hit for _, hit in found_at(ours, 10)])
        base_10 = share([hit for _, hit in found_at(base, 10)])
        lines.append(
            f"| {position} | {ours.sample_id} | {len(ours.questions)} | {cell(ours_10)} | "
            f"{cell(base_10)} |"
        )
    return "\n".join(lines)


def parse_picked(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SystemExit(f"--conversations takes positions like 0,1,2; got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo JSON file")
    parser.add_argument("--conversations", help="positions to run, e.g. 0,1,2 (default: all)")
    parser.add_argument(
        "--no-captions", action="store_true", help="leave image captions out of the messages"
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"no LoCoMo data at {args.data}; give its path with --data")
    picked = parse_picked(args.conversations)
    available = len(json.loads(args.data.read_text("utf-8")))
    if picked is not None and any(p >= available for p in picked):
        raise SystemExit(f"--conversations: {args.data} holds positions 0 to {available - 1}")
    conversations = load(args.data, picked, captions=not args.no_captions)
    positions = picked if picked is not None else list(range(len(conversations)))
    started = time.monotonic()
    ours, base = [], []
    for conversation in conversations:
        ours.append(run_memkit(conversation, max(KS)))
        base.append(run_baseline(conversation, max(KS)))
        print(f"{conversation.sample_id}: done", file=sys.stderr)
    seconds = time.monotonic() - started
    if args.json:
        report = {
            "memkit": scores(ours),
            "baseline": scores(base),
            "questions": count_by_category(ours),
            "per_conversation": {
                o.sample_id: {
                    "memkit@10": share([h for _, h in found_at(o, 10)]),
                    "bm25@10": share([h for _, h in found_at(b, 10)]),
                }
                for o, b in zip(ours, base, strict=True)
            },
            "seconds": round(seconds, 1),
        }
        print(json.dumps(report, indent=2))
        return 0
    print("recall_any@k: share of questions with an evidence turn in the top k\n")
    print(markdown_table(ours, base))
    print()
    print(per_conversation_table(ours, base, positions))
    print(f"\n{seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
