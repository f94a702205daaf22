"""Prompt context: the most relevant memory and learned entries as Markdown within a token budget."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from memkit.index import Hit
from memkit.memory import Memory, estimate_tokens
from memkit.records import LEARNING_TYPES, MEMORY_TYPES
from memkit.vault import Vault

DEFAULT_BUDGET = 800


@dataclass
class ContextBlock:
    text: str
    used: list[str] = field(default_factory=list)  # record ids (or id#message) cited
    tokens: int = 0


def _one_line(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _hit_line(hit: Hit, assistants: frozenset[str] = frozenset()) -> tuple[str, str]:
    own = " (the assistant's own earlier words, not a fact)" if _said_by(hit, assistants) else ""
    if hit.message_id:
        day = hit.created.date().isoformat() if hit.created else ""
        cite = f"{hit.record_id}#{hit.message_id}"
        return f"- {day} {hit.speaker}: {_one_line(hit.snippet)}{own} ({cite})", cite
    text = hit.title
    return f"- {_one_line(hit.snippet or text)}{own} ({hit.record_id})", hit.record_id


_SPEAKER_PREFIX = re.compile(r"\A\s*([\w .@-]{1,40}):\s")


def _said_by(hit: Hit, assistants: frozenset[str]) -> bool:
    """Whether the assistant said this (a day-file message, or a short-term "name: text")."""
    if not assistants:
        return False
    speaker = hit.speaker
    if not speaker and hit.type == "short-term":
        match = _SPEAKER_PREFIX.match(hit.snippet or hit.title)
        speaker = match.group(1) if match else ""
    return speaker.strip().lower() in assistants


def _said(hit: Hit) -> str:
    """What a memory line says, without its speaker: the key that finds one message twice
    (its short-term copy and its day-file line)."""
    text = hit.snippet or hit.title
    if hit.type == "short-term" or not hit.message_id:
        text = _SPEAKER_PREFIX.sub("", text, count=1)
    return " ".join(re.findall(r"\w+", text.lower().replace("…", " ")))


def _dedupe_memory(hits: Iterable[Hit], assistants: frozenset[str], exclude: set[str]) -> list[Hit]:
    """Each message once (and none already in the prompt), what the user said before what the
    assistant said (the assistant's own claims are not evidence of anything)."""
    kept: list[Hit] = []
    seen: set[str] = set(exclude)
    for hit in hits:
        key = _said(hit)
        if key and (key in seen or any(key in s or s in key for s in seen if len(s) > 20)):
            continue
        seen.add(key)
        kept.append(hit)
    return sorted(kept, key=lambda h: _said_by(h, assistants))  # stable: user first


def build_context(
    vault: Vault,
    query: str,
    *,
    budget: int = DEFAULT_BUDGET,
    memory: bool = True,
    learning: bool = True,
    memory_obj: Memory | None = None,
    assistant_names: Sequence[str] = ("assistant",),
    exclude: Iterable[str] = (),
) -> ContextBlock:
    """Markdown ready for a system prompt; every line cites the record it came from.

    Persona entries come first (they shape every answer), then learned entries relevant to the
    query, then relevant memory; lines are added while they fit the token budget. A message
    appears once (texts in `exclude`, e.g. the turns already in the prompt, not at all); what
    the assistant (`assistant_names`) said is labelled as such and ranked below the user.
    """
    mem = memory_obj or Memory(vault)
    with mem.index.operation():  # one freshness check for the three searches
        return _build_context(mem, query, budget, memory, learning, assistant_names, exclude)


def _build_context(
    mem: Memory,
    query: str,
    budget: int,
    memory: bool,
    learning: bool,
    assistant_names: Sequence[str],
    exclude: Iterable[str],
) -> ContextBlock:
    assistants = frozenset(name.strip().lower() for name in assistant_names if name.strip())
    excluded = {" ".join(re.findall(r"\w+", text.lower())) for text in exclude if text.strip()}
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    if learning:
        persona = mem.index.search("", k=20, types=["persona"])[0].hits
        persona_lines = [_hit_line(h) for h in sorted(persona, key=lambda h: -h.importance)]
        if persona_lines:
            sections.append(("### About the user", persona_lines))
        others = [t for t in LEARNING_TYPES if t != "persona"]
        learned = mem.index.search(query, k=10, types=others)[0].hits if query.strip() else []
        if learned:
            sections.append(("### Learned", [_hit_line(h) for h in learned]))
    if memory:
        recalled = (
            mem.index.search(query, k=15, types=list(MEMORY_TYPES))[0].hits if query.strip() else []
        )
        recalled = _dedupe_memory(recalled, assistants, excluded)
        if recalled:
            sections.append(("### Memory", [_hit_line(h, assistants) for h in recalled]))
    header = "## Relevant memory (memkit)"
    tokens = estimate_tokens(header)
    # Each section may take its share first, so that persona and learned entries cannot crowd
    # out memory; what a section leaves unused goes to the others in a second pass.
    shares = {"### About the user": 0.3, "### Learned": 0.3, "### Memory": 1.0}
    chosen: dict[str, list[tuple[str, str]]] = {heading: [] for heading, _ in sections}
    used: list[str] = []
    for second_pass in (False, True):
        for heading, entries in sections:
            cap = budget if second_pass else int(budget * shares.get(heading, 1.0))
            spent = sum(estimate_tokens(line) for line, _ in chosen[heading])
            for line, cite in entries:
                if cite in used:
                    continue
                cost = estimate_tokens(line) + (0 if chosen[heading] else estimate_tokens(heading))
                if tokens + cost > budget or spent + cost > cap:
                    continue
                chosen[heading].append((line, cite))
                used.append(cite)
                tokens += cost
                spent += cost
    lines = [header]
    for heading, entries in sections:
        picked = {cite for _, cite in chosen[heading]}
        if picked:
            lines.append(heading)
            lines += [line for line, cite in entries if cite in picked]
    if not used:
        return ContextBlock("", [], 0)
    return ContextBlock("\n".join(lines) + "\n", used, tokens)
