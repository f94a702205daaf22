"""Searching the index: the query language, BM25 blended with importance and recency, snippets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import tantivy

from memkit.index.model import (
    DEFAULT_WEIGHTS,
    Hit,
    RankWeights,
    SearchRequest,
    SearchResult,
    as_request,
)
from memkit.index.storage import (
    IndexStorage,
    build_analyzer,
    clean_text,
    from_us,
    tag_key,
    to_us,
)

_Clause = tuple[tantivy.Occur, tantivy.Query]

_US_PER_DAY = 86_400_000_000
# Searched fields and their weights. `context` holds what surrounds a record (for a message:
# its speaker, its day in words and the turns right before and after it), `surround` the
# turns a little further away: answers often sit a few turns from the words of a question.
_TEXT_FIELDS = (("title", 2.0), ("text", 1.0), ("context", 0.7), ("surround", 0.35))
# The fields that keep positions (see storage._schema): a quoted phrase matches there as a
# phrase; in the others (the neighbouring turns), all of its words must be present.
_PHRASE_FIELDS = frozenset({"title", "text"})
# A word counts once, in the field where it scores best, plus this share of its other fields'
# scores: a word found in a message and again in its neighbours is not twice the evidence.
_TIE_BREAKER = 0.3
# A query word that is a speaker's name ("what did Dana say about...") prefers that speaker's
# messages over ones that merely mention the name ("thanks, Dana!"): it also matches the
# speaker field, at this weight.
_SPEAKER_WEIGHT = 4.0
_SNIPPET_CHARS = 200
# Term queries read frequencies only: BM25 needs nothing more, and skipping the positions
# (the default) makes a word's postings cheaper to open and walk. Same scores.
_FREQ = "freq"
# Words dropped from queries (never from the index, so quoted phrases still match them): the
# English function words, question words included. "When did Dana go to the park?" asks
# about Dana and a park; "when" and "did" only say what kind of answer is wanted, and as
# people rarely write them in notes, BM25 would take them for rare, telling words. The list
# is NLTK's English one (with the pieces the tokenizer makes of "don't", all forms of "do",
# and the modal verbs), minus words that are often content: "won", "may" (a month).
_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could d did do does doing don done down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just ll m me might more most must my myself no nor not now o of off on once only or other
our ours ourselves out over own re s same shall she should so some such t than that the their
theirs them themselves then there these they this those through to too under until up ve very
was we were what when where which while who whom why will with would y you your yours yourself
yourselves aren couldn didn doesn hadn hasn haven isn mightn mustn needn shan shouldn wasn weren
wouldn
"""
QUERY_STOP_WORDS = frozenset(_STOP_WORDS.split())
_FILTER = re.compile(r"(?<!\S)(type|tags?):(\S+)", re.IGNORECASE)
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"'})


@dataclass
class _ParsedQuery:
    words: list[str]  # analysed terms, stop words dropped when anything else is left
    phrases: list[list[tuple[int, str]]]  # analysed (position, term) lists
    fuzzy_terms: list[str]
    types: list[str]
    tags: list[str]

    @property
    def has_text(self) -> bool:
        return bool(self.words or self.phrases)


class SearchIndex(IndexStorage):
    """The search index: storage (memkit.index.storage) plus the query language and ranking."""

    def __init__(self, directory: Path, *, lock_timeout: float = 30.0) -> None:
        super().__init__(directory, lock_timeout=lock_timeout)
        self._query_analyzer = build_analyzer(QUERY_STOP_WORDS)

    def search(
        self,
        query: str | SearchRequest,
        *,
        k: int = 10,
        types: Sequence[str] = (),
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        include_hidden: bool = False,
        now: datetime | None = None,
        weights: RankWeights = DEFAULT_WEIGHTS,
    ) -> SearchResult:
        """Rank documents for free text; never raises on what a person or an agent types.

        Takes a `SearchRequest` (then no other arguments), or the same fields as keywords.
        Quoted text is a phrase that must match; other words are optional and rank by how
        many match. `type:X` and `tag:X` in the text act like `types`/`tags`. Several types
        match any of them; several tags must all be present. With no searchable words left
        (an empty query, only filters, only punctuation) the filtered documents come back
        ranked by importance and recency alone. When the exact words match nothing, a fuzzy
        pass (one typo per word, the last word as a prefix) runs and marks its hits.
        """
        request = as_request(
            query,
            k=k,
            types=types,
            tags=tags,
            since=since,
            until=until,
            include_hidden=include_hidden,
            now=now,
            weights=weights,
        )
        return self._search(request)

    def _search(self, request: SearchRequest) -> SearchResult:
        k = request.k
        weights = request.weights if request.weights is not None else DEFAULT_WEIGHTS
        now_us = to_us(request.now if request.now is not None else datetime.now(timezone.utc))
        parsed = self._parse(clean_text(request.query))
        type_sets = [[clean_text(t).lower() for t in request.types]] if request.types else []
        if parsed.types:
            type_sets.append(parsed.types)
        tag_keys = sorted({tag_key(clean_text(t)) for t in [*request.tags, *parsed.tags]} - {""})
        since_us = to_us(request.since) if request.since is not None else None
        until_us = to_us(request.until) if request.until is not None else None
        if since_us is not None and until_us is not None and since_us > until_us:
            return SearchResult(hits=[], total=0)
        filters = self._filters(
            type_sets, tag_keys, since_us, until_us, request.include_hidden, now_us
        )
        searcher = self._searcher()
        limit = max(k * 5, 50)
        try:
            if not parsed.has_text:
                return self._browse(searcher, filters, k, limit, now_us, weights)
            text_query = self._text_query(parsed, searcher)
            result = self._ranked(searcher, text_query, filters, k, limit, now_us, weights)
            if result.total == 0 and parsed.fuzzy_terms:
                fuzzy_query = self._fuzzy_query(parsed.fuzzy_terms)
                result = self._ranked(
                    searcher, fuzzy_query, filters, k, limit, now_us, weights, parsed.fuzzy_terms
                )
            return result
        except ValueError as e:
            raise self._damaged(e) from e

    def word_rarity(self, text: str) -> dict[str, int]:
        """How many documents hold each word of `text` (lowercased, in their order, stop words
        left out); empty when the index cannot say (damaged: the search that follows says so)."""
        rarity: dict[str, int] = {}
        try:
            searcher = self._searcher()
            for word in dict.fromkeys(re.findall(r"\w+", text.lower())):
                terms = self._query_analyzer.analyze(word)
                if terms:
                    rarity[word] = min(searcher.doc_freq("text", term) for term in terms)
        except ValueError:
            return {}
        return rarity

    def rarest_words(self, text: str, count: int, rarity: dict[str, int] | None = None) -> str:
        """The `count` words of `text` that the fewest documents hold (stop words left out),
        as query text, in their order: enough to find a near-duplicate of `text` (which holds
        most of them) at a fraction of the cost of a search by every word, whose common words'
        long posting lists are most of that cost. `rarity`: `word_rarity(text)`, when known."""
        rarity = self.word_rarity(text) if rarity is None else rarity
        if len(rarity) <= count:
            return " ".join(rarity) or text
        kept = set(sorted(rarity, key=rarity.__getitem__)[:count])
        return " ".join(word for word in rarity if word in kept)

    def _parse(self, query: str) -> _ParsedQuery:
        text = query.translate(_SMART_QUOTES)
        phrase_texts = re.findall(r'"([^"]*)"', text)
        # Balanced quotes became phrases; a stray quote is just removed.
        rest = re.sub(r'"[^"]*"', " ", text).replace('"', " ")
        types: list[str] = []
        tags: list[str] = []

        def take_filter(match: re.Match[str]) -> str:
            value = match.group(2).rstrip(",;.!?)")
            if not value:
                return match.group(0)
            (types if match.group(1).lower() == "type" else tags).append(value.lower())
            return " "

        rest = _FILTER.sub(take_filter, rest)
        words = _unique(self._query_analyzer.analyze(rest)) or _unique(
            self._field_analyzer.analyze(rest)
        )
        phrases: list[list[tuple[int, str]]] = []
        for phrase_text in phrase_texts:
            tokens = self._field_analyzer.pre_tokenize(phrase_text).tokens
            if tokens:
                first = tokens[0].position
                phrases.append([(t.position - first, t.text) for t in tokens])
        fuzzy = _unique(self._query_analyzer.analyze(" ".join([*phrase_texts, rest])))
        return _ParsedQuery(
            words=words,
            phrases=phrases,
            fuzzy_terms=[t for t in fuzzy if len(t) >= 3],
            types=types,
            tags=tags,
        )

    def _text_query(self, parsed: _ParsedQuery, searcher: tantivy.Searcher) -> tantivy.Query:
        q = tantivy.Query
        clauses: list[_Clause] = []
        for phrase in parsed.phrases:
            # Positions keep the gap of a dropped over-long word, as in the indexed text.
            words: list[str | tuple[int, str]] = [*phrase]
            per_field = [
                q.boost_query(self._phrase_in(name, phrase, words), boost)
                for name, boost in _TEXT_FIELDS
            ]
            clauses.append((tantivy.Occur.Must, q.boolean_query(_should(per_field))))
        topic: list[tantivy.Query] = []  # words that say what the query is about
        names: list[tantivy.Query] = []  # words that name someone who speaks in messages
        for word in parsed.words:
            per_field = [
                q.boost_query(q.term_query(self._schema, name, word, _FREQ), boost)
                for name, boost in _TEXT_FIELDS
            ]
            found = q.disjunction_max_query(per_field, _TIE_BREAKER)
            clauses.append((tantivy.Occur.Should, found))
            if searcher.doc_freq("speaker_words", word) > 0:
                names.append(found)
                spoken = q.term_query(self._schema, "speaker_words", word, _FREQ)
                clauses.append((tantivy.Occur.Should, q.boost_query(spoken, _SPEAKER_WEIGHT)))
            else:
                topic.append(found)
        if names and topic and not parsed.phrases:
            # A speaker's name ranks messages but does not find them: "Dana garden" lists the
            # messages about a garden, Dana's first, not every message Dana wrote. Other
            # records (an entity note about Dana) still match by the name alone.
            message = q.term_query(self._schema, "type", "episodic")
            elsewhere = [
                q.boolean_query([(tantivy.Occur.Must, n), (tantivy.Occur.MustNot, message)])
                for n in names
            ]
            wanted = q.boolean_query(_should([*topic, *elsewhere]))
            clauses.append((tantivy.Occur.Must, q.const_score_query(wanted, 0.0)))
        return q.boolean_query(clauses)

    def _phrase_in(
        self, name: str, phrase: list[tuple[int, str]], words: list[str | tuple[int, str]]
    ) -> tantivy.Query:
        q = tantivy.Query
        if len(phrase) == 1:
            return q.term_query(self._schema, name, phrase[0][1], _FREQ)
        if name in _PHRASE_FIELDS:
            return q.phrase_query(self._schema, name, words)
        # No positions kept: a question naming a book ("Becoming Nicole") still finds the
        # answer whose neighbouring turn names it, as the phrase's words all present.
        every = [
            (tantivy.Occur.Must, q.term_query(self._schema, name, t, _FREQ)) for _, t in phrase
        ]
        return q.boolean_query(every)

    def _fuzzy_query(self, terms: list[str]) -> tantivy.Query:
        q = tantivy.Query
        clauses = []
        for i, term in enumerate(terms):
            # Prefix on the last word: it is often the one still being typed.
            prefix = i == len(terms) - 1
            for name, boost in _TEXT_FIELDS:
                fuzzy = q.fuzzy_term_query(self._schema, name, term, 1, True, prefix)
                clauses.append(q.boost_query(fuzzy, boost))
        return q.boolean_query(_should(clauses))

    def _filters(
        self,
        type_sets: list[list[str]],
        tag_keys: list[str],
        since_us: int | None,
        until_us: int | None,
        include_hidden: bool,
        now_us: int,
    ) -> list[_Clause]:
        q = tantivy.Query
        must, must_not = tantivy.Occur.Must, tantivy.Occur.MustNot
        clauses: list[_Clause] = []
        for type_set in type_sets:
            clauses.append((must, q.term_set_query(self._schema, "type", type_set)))
        for tag in tag_keys:
            clauses.append((must, q.term_query(self._schema, "tag_keys", tag)))
        if since_us is not None or until_us is not None:
            span = q.range_query(
                self._schema, "when_us", tantivy.FieldType.Integer, since_us, until_us
            )
            clauses.append((must, span))
        if not include_hidden:
            expired = q.range_query(
                self._schema, "expires_us", tantivy.FieldType.Integer, None, now_us, True, False
            )
            clauses.append((must_not, expired))
            clauses.append((must_not, q.term_query(self._schema, "superseded", True)))
        return clauses

    def _ranked(
        self,
        searcher: tantivy.Searcher,
        text_query: tantivy.Query,
        filters: list[_Clause],
        k: int,
        limit: int,
        now_us: int,
        weights: RankWeights,
        fuzzy_terms: Sequence[str] = (),
    ) -> SearchResult:
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, text_query), *filters])
        found = searcher.search(query, limit=limit, count=True)
        scored = [(float(score), address) for score, address in found.hits]
        top_bm25 = max((s for s, _ in scored), default=0.0)
        top = self._blend(searcher, scored, top_bm25, now_us, weights)[: max(k, 0)]
        docs = [searcher.doc(address) for _, _, address in top]
        if fuzzy_terms:
            highlight_query = self._fuzzy_highlight_query(docs, fuzzy_terms)
        else:
            highlight_query = text_query
        snippets = _snippet_generator(searcher, highlight_query, self._schema)
        fuzzy = bool(fuzzy_terms)
        hits = [self._hit(d, s, b, snippets, fuzzy) for d, (s, b, _) in zip(docs, top, strict=True)]
        return SearchResult(hits=hits, total=_count(found))

    def _fuzzy_highlight_query(
        self, docs: list[tantivy.Document], terms: Sequence[str]
    ) -> tantivy.Query:
        # Fuzzy queries give the snippet generator no terms to mark, so find the words
        # of the shown texts that the fuzzy terms matched and highlight those exactly.
        last = len(terms) - 1
        matched: set[str] = set()
        for doc in docs:
            for token in set(self._field_analyzer.analyze(str(doc.get_first("text") or ""))):
                if any(_near(t, token, prefix=i == last) for i, t in enumerate(terms)):
                    matched.add(token)
        clauses = [tantivy.Query.term_query(self._schema, "text", t) for t in sorted(matched)]
        return tantivy.Query.boolean_query(_should(clauses))

    def _browse(
        self,
        searcher: tantivy.Searcher,
        filters: list[_Clause],
        k: int,
        limit: int,
        now_us: int,
        weights: RankWeights,
    ) -> SearchResult:
        # No words to score: the most recent and the most important candidates, blended
        # with bm25 = 0. The union can in theory miss a doc that is second-best on both
        # counts, which is fine for "show me what is there".
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, tantivy.Query.all_query()), *filters]
        )
        candidates: dict[tuple[int, int], tantivy.DocAddress] = {}
        total = 0
        for order_field in ("when_us", "importance"):
            found = searcher.search(query, limit=limit, count=True, order_by_field=order_field)
            total = _count(found)
            for _, address in found.hits:
                candidates[(address.segment_ord, address.doc)] = address
        scored = [(0.0, address) for address in candidates.values()]
        blended = self._blend(searcher, scored, 0.0, now_us, weights)
        hits = [self._hit(searcher.doc(a), s, b, None, False) for s, b, a in blended[: max(k, 0)]]
        return SearchResult(hits=hits, total=total)

    def _blend(
        self,
        searcher: tantivy.Searcher,
        scored: list[tuple[float, tantivy.DocAddress]],
        top_bm25: float,
        now_us: int,
        weights: RankWeights,
    ) -> list[tuple[float, float, tantivy.DocAddress]]:
        if not scored:
            return []
        addresses = [address for _, address in scored]
        importances = searcher.fast_field_values("importance", addresses)
        whens = searcher.fast_field_values("when_us", addresses)
        keys: list[tuple[float, int, int]] = []
        out: list[tuple[float, float, tantivy.DocAddress]] = []
        for (bm25, address), importance, when in zip(scored, importances, whens, strict=True):
            norm = bm25 / top_bm25 if top_bm25 > 0 else 0.0
            imp = 0.5 if importance is None else min(max(float(importance), 0.0), 1.0)
            recency = 0.0
            if when is not None and weights.recency_half_life_days > 0:
                age_days = max(now_us - int(when), 0) / _US_PER_DAY
                recency = 2.0 ** (-age_days / weights.recency_half_life_days)
            score = weights.bm25 * norm + weights.importance * imp + weights.recency * recency
            keys.append((-score, address.segment_ord, address.doc))
            out.append((score, bm25, address))
        # Ties fall back to index order, which is stable between identical searches.
        order = sorted(range(len(out)), key=keys.__getitem__)
        return [out[i] for i in order]

    def _hit(
        self,
        doc: tantivy.Document,
        score: float,
        bm25: float,
        snippets: tantivy.SnippetGenerator | None,
        fuzzy: bool,
    ) -> Hit:
        def text_of(name: str) -> str:
            value = doc.get_first(name)
            return "" if value is None else str(value)

        body = text_of("text")
        snippet, highlights, offset = _snippet(snippets, doc, body)
        line_value = doc.get_first("line")
        line = (1 if line_value is None else int(line_value)) + body.count("\n", 0, offset)
        importance = doc.get_first("importance")
        return Hit(
            key=text_of("key"),
            path=text_of("path"),
            record_id=text_of("record_id"),
            type=text_of("type"),
            title=text_of("title"),
            score=score,
            bm25=bm25,
            snippet=snippet,
            highlights=highlights,
            line=line,
            message_id=text_of("message_id"),
            session=text_of("session"),
            speaker=text_of("speaker"),
            tags=[str(t) for t in doc.get_all("tags")],
            importance=0.5 if importance is None else float(importance),
            created=from_us(doc.get_first("created_us")),
            updated=from_us(doc.get_first("updated_us")),
            fuzzy=fuzzy,
        )


def _count(found: tantivy.SearchResult) -> int:
    # tantivy's stub omits `count`, which search(count=True) fills in.
    return int(found.count)  # type: ignore[attr-defined]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _should(queries: list[tantivy.Query]) -> list[_Clause]:
    return [(tantivy.Occur.Should, query) for query in queries]


def _near(term: str, token: str, *, prefix: bool) -> bool:
    """Whether `token` is within one edit (a swap counts as one) of `term`, as tantivy's
    fuzzy_term_query(distance=1, transposition_cost_one=True) decides; with `prefix`,
    whether some prefix of `token` is."""
    if not prefix:
        return _within_one(term, token)
    return any(_within_one(term, token[:n]) for n in range(len(term) - 1, len(term) + 2))


def _within_one(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i]
        return a[i + 1 :] == b[i + 1 :] or (swapped and a[i + 2 :] == b[i + 2 :])
    return a[i:] == b[i + 1 :]


def _snippet_generator(
    searcher: tantivy.Searcher, query: tantivy.Query, schema: tantivy.Schema
) -> tantivy.SnippetGenerator:
    generator = tantivy.SnippetGenerator.create(searcher, query, schema, "text")
    generator.set_max_num_chars(_SNIPPET_CHARS)
    return generator


def _snippet(
    generator: tantivy.SnippetGenerator | None, doc: tantivy.Document, body: str
) -> tuple[str, list[tuple[int, int]], int]:
    """Return (snippet, str-offset highlights, str offset of the snippet in `body`)."""
    if generator is not None:
        found = generator.snippet_from_doc(doc)
        fragment = str(found.fragment())
        if fragment and found.highlighted():
            encoded = fragment.encode("utf-8")

            def char_at(byte_offset: int) -> int:
                # Tantivy reports UTF-8 byte offsets; Python slices by code point.
                return len(encoded[:byte_offset].decode("utf-8", errors="ignore"))

            highlights = [(char_at(r.start), char_at(r.end)) for r in found.highlighted()]
            return fragment, highlights, _fragment_offset(found, body, fragment)
    start = len(body) - len(body.lstrip())
    head = body[start : start + _SNIPPET_CHARS]
    if len(body) - start > _SNIPPET_CHARS and " " in head[_SNIPPET_CHARS // 2 :]:
        head = head[: head.rindex(" ")]  # end on a word boundary
    return head.rstrip(), [], start


def _fragment_offset(found: tantivy.Snippet, body: str, fragment: str) -> int:
    # The fragment range is in bytes of the *trimmed* text; check it, else search.
    lead = len(body) - len(body.lstrip())
    start_byte = int(found.fragment_range().start)
    guess = lead + len(body[lead:].encode("utf-8")[:start_byte].decode("utf-8", errors="ignore"))
    if body.startswith(fragment, guess):
        return guess
    position = body.find(fragment)
    return max(position, 0)
