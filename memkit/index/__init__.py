"""The Tantivy full-text index (the only code importing tantivy): derived, disposable search state.

`storage` keeps the index on disk (schema, writer, lock, commits, recovery), `query` searches it
(query language, ranking, snippets), `model` holds the values that cross the package's border.
"""

from __future__ import annotations

from memkit.index.model import (
    DEFAULT_WEIGHTS,
    Hit,
    IndexDoc,
    RankWeights,
    SearchRequest,
    SearchResult,
    as_request,
)
from memkit.index.query import QUERY_STOP_WORDS, SearchIndex
from memkit.index.storage import SCHEMA_VERSION, PreparedDoc, prepare_document

__all__ = [
    "DEFAULT_WEIGHTS",
    "QUERY_STOP_WORDS",
    "SCHEMA_VERSION",
    "Hit",
    "IndexDoc",
    "PreparedDoc",
    "RankWeights",
    "SearchIndex",
    "SearchRequest",
    "SearchResult",
    "as_request",
    "prepare_document",
]
