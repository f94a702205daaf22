"""The index's values: what goes in (IndexDoc), what a search asks (SearchRequest) and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class IndexDoc:
    """One searchable unit: a whole record file, or one message of an episodic day file."""

    key: str
    path: str
    record_id: str
    type: str
    title: str
    text: str
    context: str = ""
    tags: list[str] = field(default_factory=list)
    created: datetime | None = None
    updated: datetime | None = None
    importance: float = 0.5
    expires: datetime | None = None
    superseded: bool = False
    line: int = 1
    message_id: str = ""
    session: str = ""
    speaker: str = ""
    surround: str = ""  # wider context than `context`, searched at a lower weight


@dataclass
class Hit:
    """One ranked result; `line` is the file line where `snippet` starts."""

    key: str
    path: str
    record_id: str
    type: str
    title: str
    score: float
    bm25: float
    snippet: str
    highlights: list[tuple[int, int]]
    line: int
    message_id: str
    session: str
    speaker: str
    tags: list[str]
    importance: float
    created: datetime | None
    updated: datetime | None
    fuzzy: bool

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape of a hit (search, recall, MCP): vault-relative paths, UTC."""
        data: dict[str, Any] = {
            "id": self.record_id,
            "type": self.type,
            "path": self.path,
            "title": self.title,
            "score": round(self.score, 4),
            "snippet": self.snippet,
            "line": self.line,
            "tags": self.tags,
            "importance": self.importance,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "fuzzy": self.fuzzy,
        }
        if self.message_id:
            data["message_id"] = self.message_id
            data["session"] = self.session
            data["speaker"] = self.speaker
            data["date"] = self.created.date().isoformat() if self.created else None
        return data


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


@dataclass(frozen=True)
class RankWeights:
    bm25: float = 1.0
    importance: float = 0.3
    recency: float = 0.2
    recency_half_life_days: float = 30.0


DEFAULT_WEIGHTS = RankWeights()


@dataclass
class SearchResult:
    hits: list[Hit]
    total: int


@dataclass(frozen=True)
class SearchRequest:
    """One search, as every layer passes it on (index, VaultIndex, CLI, MCP).

    Quoted text is a phrase that must match; other words are optional and rank by how many
    match. `type:X` and `tag:X` in the text act like `types`/`tags`. Several types match any of
    them; several tags must all be present. `weights` None means the caller's default (the
    vault's settings in VaultIndex, DEFAULT_WEIGHTS in SearchIndex); `now` None means now.
    """

    query: str = ""
    k: int = 10
    types: Sequence[str] = ()  # stored as a tuple
    tags: Sequence[str] = ()  # stored as a tuple
    since: datetime | None = None
    until: datetime | None = None
    include_hidden: bool = False
    now: datetime | None = None
    weights: RankWeights | None = None

    def __post_init__(self) -> None:
        # Accept any sequence (a list from the CLI), and a lone string as one value, not a
        # sequence of letters; stored as tuples so that the request stays hashable.
        object.__setattr__(self, "types", _as_tuple(self.types))
        object.__setattr__(self, "tags", _as_tuple(self.tags))


def as_request(query: str | SearchRequest, **fields: Any) -> SearchRequest:
    """`query` itself when it is a request already, else a request of it and the keyword
    `fields` (the two ways SearchIndex.search and VaultIndex.search are called)."""
    return query if isinstance(query, SearchRequest) else SearchRequest(query, **fields)


def _as_tuple(values: Sequence[str]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)
