"""Prompt context: the most relevant memory and learned entries as Markdown within a token budget."""

from __future__ import annotations

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


def _hit_line(hit: Hit) -> tuple[str, str]:
    if hit.message_id:
        day = hit.created.date().isoformat() if hit.created else ""
        cite = f"{hit.record_id}#{hit.message_id}"
        return f"- {day} {hit.speaker}: {_one_line(hit.snippet)} ({cite})", cite
    text = hit.title
    return f"- {_one_line(hit.snippet or text)} ({hit.record_id})", hit.record_id


def build_context(
    vault: Vault,
    query: str,
    *,
    budget: int = DEFAULT_BUDGET,
    memory: bool = True,
    learning: bool = True,
    memory_obj: Memory | None = None,
) -> ContextBlock:
    """Markdown ready for a system prompt; every line cites the record it came from.

    Persona entries come first (they shape every answer), then learned entries relevant to the
    query, then relevant memory; lines are added while they fit the token budget.
    """
    mem = memory_obj or Memory(vault)
    with mem.index.operation():  # one freshness check for the three searches
        return _build_context(mem, query, budget, memory, learning)


def _build_context(
    mem: Memory, query: str, budget: int, memory: bool, learning: bool
) -> ContextBlock:
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
        if recalled:
            sections.append(("### Memory", [_hit_line(h) for h in recalled]))
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
