"""What a model is asked when learning: compact transcripts, per-call schemas, chunks that fit."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from memkit.conversations import ConversationMessage
from memkit.errors import LLMError
from memkit.llm import ContextOverflowError, LLMClient, LLMTimeoutError, OutputCutError
from memkit.records import STORE_TYPES, TYPE_FOLDERS, Record
from memkit.schema import load_schema
from memkit.secret_guard import redact_secrets
from memkit.timeutil import format_time, utcnow

STORE_FOLDERS = {store: TYPE_FOLDERS[entry_type] for store, entry_type in STORE_TYPES.items()}
FOLDER_STORES = {folder: store for store, folder in STORE_FOLDERS.items()}
# Output characters per token when a small model writes JSON: the bound that keeps a
# grammar-enforced reply inside llm.max_output_tokens even when every string is filled
# (SmolLM2 writes ~2.5; its pretty-printing whitespace is counted in the keys below).
_OUTPUT_CHARS_PER_TOKEN = 2.5
_JSON_KEYS_CHARS = 250  # the keys, punctuation and indentation of one entry
# Tokens kept free beside the estimate: the chat template, and estimates that run short.
_PROMPT_MARGIN = 0.12
_MIN_CHUNK_TOKENS = 120
_OVERFLOW_RETRIES = 2

STORE_DESCRIPTIONS = {
    "persona": "the user's preferences, communication style, background (stable facts about them)",
    "insights": "observations and lessons learned from the conversation",
    "threads": "the running summary of this session: topic, state, open questions (one per session)",
    "patterns": "reusable knowledge patterns: how to do something that worked",
    "decisions": "decisions made, with rationale, alternatives and trade-offs",
    "feedback": "outcome signals and corrections from the user about the assistant's answers",
    "improvements": "self-improvement proposals for the assistant: area, what to change, why",
}


def _relative(start: datetime | None, when: datetime | None) -> str:
    """Time since the session began, short: +0m, +12m, +1h05, +2d3h."""
    if start is None or when is None:
        return ""
    minutes = max(0, int((when - start).total_seconds() // 60))
    if minutes < 60:
        return f"+{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"+{hours}h{minutes:02d}"
    days, hours = divmod(hours, 24)
    return f"+{days}d{hours}h"


@dataclass(frozen=True)
class TranscriptLine:
    """One message as the model sees it: a short id (m1, m2, ...) and one compact line."""

    short_id: str
    message_id: str
    text: str


def transcript_lines(messages: Sequence[ConversationMessage]) -> list[TranscriptLine]:
    """Compact lines: short ids and times relative to the first message (ids and ISO
    timestamps cost many tokens and tell the model nothing)."""
    start = next((m.time for m in messages if m.time), None)
    lines = []
    for number, message in enumerate(messages, 1):
        stamp = _relative(start, message.time)
        # The model needs no credentials to learn from a conversation: never send them.
        text = " ".join(redact_secrets(message.text).split())
        short = f"m{number}"
        head = f"[{short}]" + (f" {stamp}" if stamp else "")
        lines.append(TranscriptLine(short, message.message_id, f"{head} {message.speaker}: {text}"))
    return lines


def _transcript(messages: Sequence[ConversationMessage]) -> str:
    return "\n".join(line.text for line in transcript_lines(messages))


def _entry_chars(schema: dict[str, Any]) -> int:
    """The most characters one entry of `schema` can take when every string is filled."""
    props = schema["properties"]["entries"]["items"]["properties"]
    tags, evidence = props["tags"], props["evidence"]
    return int(
        _JSON_KEYS_CHARS
        + props["title"].get("maxLength", 80)
        + props["text"].get("maxLength", 400)
        + props["rationale"].get("maxLength", 160)
        + props["target"].get("maxLength", 40)
        + tags.get("maxItems", 4) * (tags["items"].get("maxLength", 32) + 3)
        + evidence.get("maxItems", 4) * (evidence["items"].get("maxLength", 40) + 3)
        + 16  # store, op, importance
    )


def extraction_schema(
    stores: Sequence[str],
    targets: Sequence[str],
    message_ids: Sequence[str],
    max_output_tokens: int,
) -> dict[str, Any]:
    """schemas/extraction.schema.json narrowed for one call, so a grammar-enforcing server
    cannot run away: only the enabled stores, only targets and messages that were shown, and
    no more entries than fit the output cap even with every string at its maximum length."""
    schema = copy.deepcopy(load_schema("extraction"))
    for key in ("$schema", "$id", "title"):
        schema.pop(key, None)
    entries = schema["properties"]["entries"]
    entries.pop("description", None)
    props = entries["items"]["properties"]
    props["store"]["enum"] = list(stores)
    props["op"]["enum"] = ["add", "update", "supersede"] if targets else ["add"]
    props["target"] = (
        {"enum": [*targets, None], "description": props["target"].get("description", "")}
        if targets
        else {"type": "null"}
    )
    width = max([len(m) for m in message_ids] or [4])
    props["evidence"]["items"] = {"type": "string", "enum": list(message_ids), "maxLength": width}
    per_entry = math.ceil(_entry_chars(schema) / _OUTPUT_CHARS_PER_TOKEN)
    if per_entry > max_output_tokens - 20:
        # Not even one full entry fits the cap: shorten the long strings until one does.
        over = (per_entry - (max_output_tokens - 20)) * _OUTPUT_CHARS_PER_TOKEN
        for key, floor in (("rationale", 20), ("text", 60), ("title", 30)):
            length = props[key].get("maxLength", 80)
            cut = min(length - floor, math.ceil(over))
            if cut > 0:
                props[key]["maxLength"] = length - cut
                over -= cut
        per_entry = math.ceil(_entry_chars(schema) / _OUTPUT_CHARS_PER_TOKEN)
    room = max(1, (max_output_tokens - 20) // per_entry)
    entries["maxItems"] = max(1, min(int(entries.get("maxItems", 5)), room))
    return schema


def _system_prompt(stores: list[str], today: str) -> str:
    described = "\n".join(f"- {s}: {STORE_DESCRIPTIONS[s]}" for s in stores)
    return f"""You maintain the long-lived learning of an AI assistant, stored as short Markdown entries.
Read the conversation and return what is worth knowing going forward, as JSON:
{{"entries": [{{"store", "op", "target", "title", "text", "importance", "tags", "evidence", "rationale"}}]}}

Stores (use only these names):
{described}

Rules:
- op "add" is a new entry; "update" revises an existing entry (target: its id, text: the full new
  text); "supersede" replaces an entry that is no longer true. Targets are ids from EXISTING
  ENTRIES only; otherwise target is null. Never repeat an existing entry.
- evidence: ids of the messages (m1, m2, ...) that support the entry.
- title: a few words saying what it is about. text: 1-3 full sentences, dates absolute (today is
  {today}). importance: 0..1.
- Never copy passwords, API keys or tokens into an entry.
- If nothing is worth keeping, return {{"entries": []}}."""


def _user_prompt(
    transcript: str,
    existing: list[tuple[str, Record]],
    session: str,
    *,
    started: str = "",
    learned: Sequence[str] = (),
    part: tuple[int, int] = (1, 1),
) -> str:
    shown = (
        "\n".join(
            f"- id {short} [{FOLDER_STORES.get(str(PurePosixPath(r.path or '').parent), r.type)}] "
            f"{r.title}: {' '.join(r.body.split())[:300]}"
            for short, r in existing
        )
        or "(none)"
    )
    header = f"SESSION: {session}" + (f" (started {started})" if started else "")
    if part[1] > 1:
        header += f"\nPART {part[0]} of {part[1]} of the conversation."
    earlier = ""
    if learned:
        earlier = "\n\nALREADY LEARNED FROM EARLIER PARTS (do not repeat them):\n" + "\n".join(
            f"- {line}" for line in learned
        )
    return f"{header}\n\nEXISTING ENTRIES:\n{shown}{earlier}\n\nCONVERSATION:\n{transcript}\n"


def _fitting(lines: Sequence[str], chars: int) -> list[str]:
    """The latest of `lines` that fit in `chars` characters (in their order)."""
    kept: list[str] = []
    for line in reversed(lines):
        chars -= len(line) + 3
        if chars < 0:
            break
        kept.insert(0, line)
    return kept


def plan_chunks(
    lines: Sequence[TranscriptLine], budget_tokens: int, chars_per_token: float
) -> list[list[TranscriptLine]]:
    """Whole messages in order, grouped so each group's estimated tokens fit the budget (a
    single message longer than the budget is cut to fit, keeping its beginning)."""
    limit_chars = max(1, int(budget_tokens * chars_per_token))
    chunks: list[list[TranscriptLine]] = []
    current: list[TranscriptLine] = []
    used = 0
    for line in lines:
        size = len(line.text) + 1
        if size > limit_chars:
            line = TranscriptLine(
                line.short_id, line.message_id, line.text[: limit_chars - 2].rstrip() + "…"
            )
            size = len(line.text) + 1
        if current and used + size > limit_chars:
            chunks.append(current)
            current, used = [], 0
        current.append(line)
        used += size
    if current:
        chunks.append(current)
    return chunks


def extract_in_chunks(
    llm: LLMClient,
    lines: list[TranscriptLine],
    messages: Sequence[ConversationMessage],
    existing: list[Record],
    enabled: list[str],
    session: str,
) -> tuple[list[Any], int, int, list[str]]:
    """Ask the model chunk by chunk; each chunk sees what the earlier ones found.

    Returns the entries as the model wrote them (short ids mapped back to record and message
    ids), the number of chunks, the context size the chunks were sized for, and warnings about
    parts skipped because the model looped on them.
    """
    shown = [(f"e{n}", record) for n, record in enumerate(existing, 1)]
    short_to_id = {short: record.id for short, record in shown}
    system = _system_prompt(enabled, utcnow().date().isoformat())
    started = next((format_time(m.time) for m in messages if m.time), "")
    ratio = llm.chars_per_token("\n".join(line.text for line in lines))
    context = llm.context_tokens()
    collected: list[Any] = []
    learned: list[str] = []
    queue: list[list[TranscriptLine]] | None = None
    overflows = 0
    halvings = 0  # after a timeout: ask for half the output (fewer, shorter entries)
    timed_out: LLMTimeoutError | None = None
    cut_retried: int | None = None  # the chunk asked again after its reply was cut at the cap
    skipped: list[str] = []
    done = 0
    while queue is None or done < len(queue):
        cap = min(llm.config.max_output_tokens, max(128, context // 3)) >> halvings
        probe_schema = extraction_schema(enabled, list(short_to_id), ["m1"], cap)
        fixed = llm.count_tokens(system) + llm.count_tokens(
            _user_prompt("", shown, session, started=started, part=(9, 9))
        )
        if llm.structured_output_mode() != "json_schema":
            fixed += llm.count_tokens(json.dumps(probe_schema, separators=(",", ":")))
        learned_room = min(200, context // 10)
        budget = int((context - cap - fixed - learned_room) * (1 - _PROMPT_MARGIN))
        if budget < _MIN_CHUNK_TOKENS:
            raise LLMError(
                f"the model's context ({context} tokens) leaves no room for the conversation "
                f"after the instructions (~{fixed} tokens) and the reply ({cap} tokens); "
                "use a model or server setting with a larger context (llm.context_tokens), "
                "or lower llm.max_output_tokens"
            )
        if queue is None:
            queue = plan_chunks(lines, budget, ratio)
        part = queue[done]
        schema = extraction_schema(enabled, list(short_to_id), [x.short_id for x in part], cap)
        prompt = _user_prompt(
            "\n".join(x.text for x in part),
            shown,
            session,
            started=started,
            learned=_fitting(learned, int(learned_room * ratio)),
            part=(done + 1, len(queue)),
        )
        try:
            reply = llm.complete_json(system, prompt, schema=schema, max_tokens=cap)
        except LLMTimeoutError as error:
            # Never the same request again (a local server may still be generating it): once,
            # a smaller one, with half the output cap and so fewer entries; else the timeout.
            if timed_out is not None or cap < 256:
                raise (timed_out or error) from None
            timed_out = error
            halvings += 1
            continue
        except OutputCutError as error:
            # A small model can loop inside the JSON (whitespace the grammar allows, a text
            # repeated up to its maxLength) until the cap. Once per chunk it is asked again with
            # half the cap: a narrower schema, so another path through the grammar. A chunk that
            # loops again is skipped, and said, when other chunks carry the conversation; alone,
            # or when every chunk looped, it is the error.
            if cut_retried != done and cap >= 256:
                cut_retried = done
                halvings += 1
                continue
            if len(queue) == 1 or len(skipped) + 1 >= len(queue):
                raise
            skipped.append(
                f"part {done + 1} of {len(queue)} (messages {part[0].message_id} to "
                f"{part[-1].message_id}) was skipped: {error}"
            )
            done += 1
            continue
        except ContextOverflowError as error:
            # The server's count beat our estimate: re-plan what is left with the context it
            # reported (or a smaller share), up to twice; then say so.
            overflows += 1
            if overflows > _OVERFLOW_RETRIES:
                raise
            shrunk = context * 3 // 4
            context = min(shrunk, error.context_tokens) if error.context_tokens else shrunk
            ratio *= 0.8
            remaining = [line for chunk in queue[done:] for line in chunk]
            queue = queue[:done] + plan_chunks(
                remaining, max(_MIN_CHUNK_TOKENS, budget // 2), ratio
            )
            continue
        done += 1
        entries = reply.get("entries")
        if not isinstance(entries, list):
            raise LLMError(
                f"the model's reply has no 'entries' list: {json.dumps(reply)[:200]}; "
                "nothing was written"
            )
        by_short = {x.short_id: x.message_id for x in part}
        for raw in entries:
            if isinstance(raw, dict):
                raw = dict(raw)
                target = raw.get("target")
                if isinstance(target, str) and target in short_to_id:
                    raw["target"] = short_to_id[target]
                raw["evidence"] = [by_short.get(str(e), str(e)) for e in raw.get("evidence") or []]
                title = str(raw.get("title") or "")
                learned.append(f"[{raw.get('store')}] {title}: {str(raw.get('text'))[:120]}")
            collected.append(raw)
    return collected, len(queue), context, skipped
