"""The Tantivy search index, against a real index on disk: writes, filters, ranking, locking."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memkit.index.storage as storage_module
from memkit.errors import LockTimeout, SearchIndexError
from memkit.index import (
    SCHEMA_VERSION,
    IndexDoc,
    RankWeights,
    SearchIndex,
    SearchRequest,
    prepare_document,
)

from .conftest import examples

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def doc(key: str, text: str = "", **fields: object) -> IndexDoc:
    path = key.split("#", 1)[0]
    values: dict[str, object] = {
        "key": key,
        "path": path,
        "record_id": path.rsplit("/", 1)[-1].removesuffix(".md"),
        "type": "long-term",
        "title": "",
        "text": text,
        "message_id": key.split("#", 1)[1] if "#" in key else "",
    }
    values.update(fields)
    return IndexDoc(**values)  # type: ignore[arg-type]


def keys(index: SearchIndex, query: str, **kwargs: object) -> list[str]:
    kwargs.setdefault("now", NOW)
    return [hit.key for hit in index.search(query, **kwargs).hits]  # type: ignore[arg-type]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SearchIndex]:
    opened = SearchIndex(tmp_path / "index")
    yield opened
    opened.close()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------- opening, rebuild


def test_a_new_index_asks_for_a_rebuild_and_a_built_one_does_not(tmp_path: Path) -> None:
    first = SearchIndex(tmp_path / "index")
    assert first.needs_rebuild
    assert first.replace_all([doc("a.md", "apples")]) == 1
    first.close()
    again = SearchIndex(tmp_path / "index")
    assert not again.needs_rebuild
    assert again.doc_count() == 1


def test_a_first_build_that_never_finished_still_asks_for_a_rebuild(tmp_path: Path) -> None:
    # Only replace_all marks an index complete; updates alone do not.
    first = SearchIndex(tmp_path / "index")
    first.update([doc("a.md", "apples")], [])
    first.close()
    assert SearchIndex(tmp_path / "index").needs_rebuild


def test_a_schema_version_change_rebuilds_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "index"
    old = SearchIndex(directory)
    old.replace_all([doc("a.md", "apples")])
    old.close()
    # Not ours: a rebuild must leave them alone.
    (directory / "notes.md").write_text("a note")
    (directory / "v99").mkdir()
    (directory / "v99" / "keep.md").write_text("a note")

    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    new = SearchIndex(directory)
    assert new.needs_rebuild
    assert new.doc_count() == 0
    assert not (directory / f"v{SCHEMA_VERSION}").exists()
    assert (directory / "notes.md").exists()
    assert (directory / "v99" / "keep.md").exists()
    new.replace_all([doc("b.md", "bananas")])
    assert keys(new, "bananas") == ["b.md"]


def test_an_unreadable_index_is_wiped_and_rebuilt(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    first = SearchIndex(directory)
    first.replace_all([doc("a.md", "apples")])
    first.close()
    (directory / f"v{SCHEMA_VERSION}" / "meta.json").write_text("{ not json")
    again = SearchIndex(directory)
    assert again.needs_rebuild
    assert again.doc_count() == 0
    again.update([doc("a.md", "apples")], [])
    assert keys(again, "apples") == ["a.md"]


def test_a_closed_index_says_so(index: SearchIndex) -> None:
    index.close()
    with pytest.raises(SearchIndexError, match="closed"):
        index.search("anything")


# --------------------------------------------------------------------- writing


def test_replace_all_then_search(index: SearchIndex) -> None:
    count = index.replace_all(
        doc(f"notes/{i}.md", f"note number {i} about {'cats' if i % 2 else 'dogs'}")
        for i in range(20)
    )
    assert count == 20
    assert index.doc_count() == 20
    result = index.search("cats", k=3, now=NOW)
    assert result.total == 10
    assert len(result.hits) == 3
    # Everything goes on replace: the old documents do not linger.
    index.replace_all([doc("only.md", "cats")])
    assert index.doc_count() == 1
    assert keys(index, "cats") == ["only.md"]


def test_update_adds_replaces_and_deletes_by_path(index: SearchIndex) -> None:
    index.update([doc("a.md", "red apples"), doc("b.md", "yellow bananas")], [])
    assert keys(index, "apples") == ["a.md"]  # read-your-writes, no polling delay

    index.update([doc("a.md", "green pears")], [])
    assert keys(index, "apples") == []
    assert keys(index, "pears") == ["a.md"]
    assert index.doc_count() == 2

    index.update([], ["b.md"])
    assert keys(index, "bananas") == []
    assert index.doc_count() == 1
    index.update([], [])  # nothing to do is not an error
    assert index.doc_count() == 1


def test_message_docs_go_with_their_path(index: SearchIndex) -> None:
    day = "episodic/2025-06-01.md"
    messages = [doc(f"{day}#m{i}", f"message {i} mentions kiwis") for i in range(3)]
    index.update([*messages, doc("other.md", "kiwis too")], [])
    assert sorted(keys(index, "kiwis")) == sorted([*(m.key for m in messages), "other.md"])

    # The day file was rewritten with two messages: the third must not linger.
    index.update(messages[:2], [])
    assert sorted(keys(index, "kiwis")) == sorted([f"{day}#m0", f"{day}#m1", "other.md"])

    index.update([], [day])
    assert keys(index, "kiwis") == ["other.md"]


def test_a_later_duplicate_key_wins(index: SearchIndex) -> None:
    assert index.replace_all([doc("a.md", "first version"), doc("a.md", "second version")]) == 1
    assert index.doc_count() == 1
    assert keys(index, "first") == []
    assert keys(index, "second") == ["a.md"]


def test_a_failing_batch_commits_nothing_and_frees_the_lock(index: SearchIndex) -> None:
    index.replace_all([doc("a.md", "apples")])

    def broken() -> Iterator[IndexDoc]:
        yield doc("b.md", "bananas")
        raise RuntimeError("parse error half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        index.replace_all(broken())
    assert keys(index, "apples") == ["a.md"]
    assert keys(index, "bananas") == []
    index.update([doc("c.md", "cherries")], [])  # the writer lock was released
    assert keys(index, "cherries") == ["c.md"]


def test_hit_fields_round_trip(index: SearchIndex) -> None:
    created = datetime(2025, 5, 1, 8, 30, tzinfo=timezone.utc)
    updated = datetime(2025, 5, 2, 9, 45, 12, 345678, tzinfo=timezone.utc)
    index.update(
        [
            doc(
                "episodic/day.md#m7",
                "The user said mangoes are best.",
                record_id="ep-1",
                type="episodic",
                title="Monday",
                tags=["Fruit", "food"],
                created=created,
                updated=updated,
                importance=0.8,
                line=42,
                session="s-9",
                speaker="user",
            )
        ],
        [],
    )
    [hit] = index.search("mangoes", now=NOW).hits
    assert (hit.key, hit.path, hit.record_id, hit.type, hit.title) == (
        "episodic/day.md#m7",
        "episodic/day.md",
        "ep-1",
        "episodic",
        "Monday",
    )
    assert (hit.message_id, hit.session, hit.speaker, hit.line) == ("m7", "s-9", "user", 42)
    assert hit.tags == ["Fruit", "food"]
    assert hit.importance == pytest.approx(0.8)
    assert hit.created == created
    assert hit.updated == updated
    assert not hit.fuzzy
    assert hit.bm25 > 0


# --------------------------------------------------------------------- filters and hiding


@pytest.fixture
def filtered(index: SearchIndex) -> SearchIndex:
    days = timedelta(days=1)
    index.replace_all(
        [
            doc("i1.md", "plans: trip", type="insight", tags=["Travel"], created=NOW - 40 * days),
            doc(
                "i2.md",
                "plans: dinner",
                type="insight",
                tags=["food", "travel"],
                created=NOW - 5 * days,
            ),
            doc(
                "e1.md",
                "plans: Paris",
                type="entity",
                tags=["travel"],
                created=NOW - 2 * days,
                updated=NOW - timedelta(hours=1),
            ),
            doc("d1.md", "plans without a date", type="decision"),
        ]
    )
    return index


def test_a_search_request_asks_what_the_keywords_ask(filtered: SearchIndex) -> None:
    request = SearchRequest("plans", k=5, types=["insight", "entity"], now=NOW)
    by_request = [hit.key for hit in filtered.search(request).hits]
    assert by_request == keys(filtered, "plans", k=5, types=["insight", "entity"])
    assert sorted(by_request) == ["e1.md", "i1.md", "i2.md"]
    assert request.types == ("insight", "entity")  # kept as a tuple: the request is hashable
    assert SearchRequest("x", types="entity").types == ("entity",)  # a lone string is one type
    with pytest.raises(AttributeError):
        request.k = 3  # type: ignore[misc]
    hash(request)


def test_type_filters(filtered: SearchIndex) -> None:
    assert sorted(keys(filtered, "plans", types=["insight"])) == ["i1.md", "i2.md"]
    assert sorted(keys(filtered, "plans", types=["insight", "entity"])) == [
        "e1.md",
        "i1.md",
        "i2.md",
    ]
    assert keys(filtered, "plans", types="entity") == ["e1.md"]  # a lone string is one type
    assert sorted(keys(filtered, "type:insight plans")) == ["i1.md", "i2.md"]
    assert keys(filtered, "plans type:Entity") == ["e1.md"]
    # Keyword and inline filters both apply.
    assert keys(filtered, "type:entity plans", types=["insight"]) == []


def test_tag_filters_are_case_insensitive_and_all_must_match(filtered: SearchIndex) -> None:
    assert sorted(keys(filtered, "plans", tags=["travel"])) == ["e1.md", "i1.md", "i2.md"]
    assert sorted(keys(filtered, "plans", tags=["#TRAVEL", "food"])) == ["i2.md"]
    assert keys(filtered, "tag:food plans") == ["i2.md"]
    assert sorted(keys(filtered, "tag:travel")) == ["e1.md", "i1.md", "i2.md"]


def test_unknown_field_prefixes_are_plain_text(filtered: SearchIndex) -> None:
    assert keys(filtered, "foo:paris") == ["e1.md"]


def test_since_and_until_use_updated_then_created(filtered: SearchIndex) -> None:
    week_ago = NOW - timedelta(days=7)
    assert sorted(keys(filtered, "plans", since=week_ago)) == ["e1.md", "i2.md"]
    assert keys(filtered, "plans", until=week_ago) == ["i1.md"]
    # e1 was created 2 days ago but updated 1 hour ago: `updated` decides.
    assert keys(filtered, "plans", since=NOW - timedelta(hours=2)) == ["e1.md"]
    assert (
        keys(filtered, "plans", since=NOW - timedelta(days=3), until=NOW - timedelta(days=1)) == []
    )
    assert filtered.search("plans", since=NOW, until=week_ago).total == 0
    # Naive datetimes are read as UTC.
    naive = (NOW - timedelta(hours=2)).replace(tzinfo=None)
    assert keys(filtered, "plans", since=naive) == ["e1.md"]


def test_expired_and_superseded_are_hidden_unless_asked(index: SearchIndex) -> None:
    index.replace_all(
        [
            doc("live.md", "olive oil"),
            doc("expired.md", "olive tree", expires=NOW - timedelta(days=1)),
            doc("later.md", "olive branch", expires=NOW + timedelta(days=1)),
            doc("old.md", "olive green", superseded=True),
        ]
    )
    result = index.search("olive", now=NOW)
    assert sorted(h.key for h in result.hits) == ["later.md", "live.md"]
    assert result.total == 2
    everything = index.search("olive", now=NOW, include_hidden=True)
    assert everything.total == 4
    # `now` decides what has expired.
    assert "later.md" not in keys(index, "olive", now=NOW + timedelta(days=2))
    # Browsing with an empty query hides the same documents.
    assert sorted(keys(index, "")) == ["later.md", "live.md"]


# --------------------------------------------------------------------- ranking


def test_importance_orders_equal_text(index: SearchIndex) -> None:
    index.replace_all(
        [
            doc("low.md", "walnut cake", importance=0.1),
            doc("high.md", "walnut cake", importance=0.9),
        ]
    )
    assert keys(index, "walnut") == ["high.md", "low.md"]
    assert keys(index, "walnut", weights=RankWeights(importance=-1.0)) == ["low.md", "high.md"]


def test_recency_orders_equal_text(index: SearchIndex) -> None:
    index.replace_all(
        [
            doc("old.md", "hazelnut", created=NOW - timedelta(days=90)),
            doc("new.md", "hazelnut", created=NOW - timedelta(days=1)),
        ]
    )
    result = index.search("hazelnut", now=NOW)
    assert [h.key for h in result.hits] == ["new.md", "old.md"]
    new, old = result.hits
    assert new.bm25 == pytest.approx(old.bm25)
    # score = bm25/top + 0.3 * importance + 0.2 * 2^(-age/30)
    assert new.score == pytest.approx(1 + 0.3 * 0.5 + 0.2 * 2 ** (-1 / 30))
    assert old.score == pytest.approx(1 + 0.3 * 0.5 + 0.2 * 2 ** (-90 / 30))


def test_text_relevance_beats_small_importance_differences(index: SearchIndex) -> None:
    index.replace_all(
        [
            doc("title.md", "something else", title="Pistachio", importance=0.4),
            doc(
                "passing.md",
                "a note that mentions pistachio once " + "filler " * 50,
                importance=0.6,
            ),
        ]
    )
    assert keys(index, "pistachio") == ["title.md", "passing.md"]


def test_exact_hits_suppress_the_fuzzy_fallback(index: SearchIndex) -> None:
    index.replace_all([doc("coffee.md", "coffee beans"), doc("toffee.md", "toffee sweets")])
    result = index.search("coffee", now=NOW)
    assert [h.key for h in result.hits] == ["coffee.md"]  # toffee is one edit away, not shown
    assert not result.hits[0].fuzzy


def test_the_fuzzy_fallback_finds_a_typo_and_says_so(index: SearchIndex) -> None:
    index.replace_all(
        [doc("coffee.md", "Café noir: strong coffee beans"), doc("tea.md", "green tea")]
    )
    result = index.search("cofee", now=NOW)
    assert [h.key for h in result.hits] == ["coffee.md"]
    hit = result.hits[0]
    assert hit.fuzzy
    assert "coffee" in [hit.snippet[s:e] for s, e in hit.highlights]
    # The last word is matched as a prefix: a half-typed word finds the note.
    assert keys(index, "strong cof") == ["coffee.md"]


def test_k_limits_hits_but_total_counts_all(index: SearchIndex) -> None:
    index.replace_all(doc(f"{i}.md", "almond") for i in range(30))
    result = index.search("almond", k=5, now=NOW)
    assert len(result.hits) == 5
    assert result.total == 30
    assert index.search("almond", k=0, now=NOW).hits == []


def test_an_empty_query_lists_by_importance_and_recency(index: SearchIndex) -> None:
    index.replace_all(
        [
            doc("dull.md", "x", importance=0.1, created=NOW - timedelta(days=300)),
            doc("key.md", "y", importance=1.0, created=NOW - timedelta(days=300)),
            doc("fresh.md", "z", importance=0.1, created=NOW),
            doc("insight.md", "w", type="insight", importance=0.1),
        ]
    )
    result = index.search("", now=NOW)
    assert [h.key for h in result.hits][:2] == ["key.md", "fresh.md"]
    assert result.total == 4
    assert all(h.bm25 == 0 for h in result.hits)
    assert keys(index, "type:insight") == ["insight.md"]
    assert keys(index, "  ", k=1) == ["key.md"]


# --------------------------------------------------------------------- query text

SPECIAL_QUERIES = [
    "",
    " ",
    '"',
    '""',
    '"unbalanced',
    'balanced "phrase here" and "another',
    "it's",
    "don't stop",
    "a:b",
    "type:",
    "tag:",
    ":",
    "::",
    "type:insight:extra",
    "-",
    "--",
    "-x",
    "x -",
    "OR",
    "AND",
    "NOT",
    "x OR",
    "OR x AND",
    "a AND NOT b",
    "(",
    ")",
    "(a OR b",
    "[",
    "]",
    "[1 TO 5]",
    "importance:[0.5 TO 1]",
    "{x}",
    "*",
    "a*",
    "*a",
    "?",
    "~",
    "a~2",
    "^",
    "a^3",
    "\\",
    "\\\\",
    'a\\"b',
    "+",
    "+a -b",
    "!",
    "&&",
    "||",
    "/regex/",
    "title:x",
    "text:",
    "key:a.md",
    "path:/etc/passwd",
    "😀",
    "😀😀 coffee 😀",
    "日本",
    "日本語のテキスト",
    "中文 搜索",
    "한국어",
    "Ελληνικά",
    "العربية",
    "עברית",
    "é",
    "e\u0301",
    "naïve café",
    "\u200b",
    "\u0000",
    "\t\n\r",
    "x" * 500,
    "word " * 200,
    "“smart quotes”",
    "„low quote",
    "«guillemets»",
    "'single quotes'",
    "`backticks`",
    "<script>alert(1)</script>",
    "SELECT * FROM notes; --",
    "%s %d {0}",
    "$HOME",
    "@user #tag",
    "1e9",
    "-1",
    "3.14",
    "2025-06-01",
    "2025-06-01T12:00:00Z",
    "\ud800",
    "coffee \udcff",
    '"\ud800 phrase"',
    "tag:\ud800 type:\udcff",
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    opened = SearchIndex(tmp_path_factory.mktemp("shared") / "index")
    opened.replace_all(
        [
            doc("a.md", "It's a naïve café in 日本 😀 serving coffee", title="Café", tags=["food"]),
            doc("b.md", "Phrase here and another phrase; OR AND NOT words", type="insight"),
            doc("c.md", "x " * 100),
        ]
    )
    yield opened
    opened.close()


@pytest.mark.parametrize("query", SPECIAL_QUERIES)
def test_any_query_text_is_accepted(shared: SearchIndex, query: str) -> None:
    result = shared.search(query, now=NOW)
    assert result.total >= len(result.hits)
    for hit in result.hits:
        for start, end in hit.highlights:
            assert 0 <= start < end <= len(hit.snippet)


@settings(max_examples=examples(150), deadline=None)
@given(st.text())
def test_random_query_text_is_accepted(shared: SearchIndex, query: str) -> None:
    shared.search(query, k=3, now=NOW)


def test_quoted_text_is_a_stemmed_phrase(index: SearchIndex) -> None:
    index.replace_all(
        [
            doc("phrase.md", "She drinks black coffee daily"),
            doc("apart.md", "Coffee that is black and drinks"),
        ]
    )
    assert sorted(keys(index, "black coffee")) == ["apart.md", "phrase.md"]
    assert keys(index, '"black coffee"') == ["phrase.md"]
    # Stemmed like the field: "drinking" finds "drinks".
    assert keys(index, '"drinking black coffee"') == ["phrase.md"]
    assert keys(index, "“drinking black coffee”") == ["phrase.md"]
    # A phrase must match; the other words only rank.
    assert keys(index, '"black coffee" unrelated') == ["phrase.md"]


def test_a_phrase_in_the_neighbouring_turns_needs_its_words_not_their_order(
    index: SearchIndex,
) -> None:
    # The context fields keep no positions (cheaper to build): there a phrase's words must all
    # be present; in the text and title, as a phrase.
    index.replace_all(
        [
            doc("day.md#m1", "sounds good", context="Dana: coffee, black, please"),
            doc("day.md#m2", "coffee please, and the black one", title="Dana"),
            doc("day.md#m3", "sounds good", context="Dana: black tea please"),
            doc("day.md#m4", "a black coffee please", title="Dana"),
        ]
    )
    # Not the message whose own text has the words apart, nor one with a single word nearby.
    assert sorted(keys(index, '"black coffee"')) == ["day.md#m1", "day.md#m4"]
    assert len(keys(index, "black coffee")) == 4  # unquoted, every word only ranks


def test_lone_surrogates_in_documents_and_filters_are_replaced(index: SearchIndex) -> None:
    index.update([doc("odd\udcff.md", "broken \ud800 bytes", tags=["\udcff"])], [])
    [hit] = index.search("broken \ud800", tags=["\udcff"], now=NOW).hits
    assert hit.path == "odd\ufffd.md"
    index.update([], ["odd\udcff.md"])
    assert index.doc_count() == 0


def test_accents_fold_both_ways(index: SearchIndex) -> None:
    index.replace_all([doc("cafe.md", "a small café"), doc("naive.md", "a naive plan")])
    assert keys(index, "cafe") == ["cafe.md"]
    assert keys(index, "naïve") == ["naive.md"]


# --------------------------------------------------------------------- snippets


@pytest.mark.parametrize(
    "prefix",
    ["é", "日本", "😀", "Café 日本語 😀👍🏽 naïve — ", "ü" * 150 + " ", "日本 " * 120],
)
def test_highlights_are_str_offsets_after_multibyte_text(index: SearchIndex, prefix: str) -> None:
    text = f"{prefix} the user loves espresso in the morning"
    index.update([doc("a.md", text)], [])
    [hit] = index.search("espresso", now=NOW).hits
    assert [hit.snippet[s:e] for s, e in hit.highlights] == ["espresso"]
    assert hit.snippet in text
    assert len(hit.snippet) <= 220


def test_highlights_mark_every_matched_word(index: SearchIndex) -> None:
    index.update([doc("a.md", "日本 😀 Espresso beans, espressos and more espresso")], [])
    [hit] = index.search("espresso", now=NOW).hits
    assert [hit.snippet[s:e] for s, e in hit.highlights] == ["Espresso", "espressos", "espresso"]


def test_snippet_falls_back_to_the_start_of_the_text(index: SearchIndex) -> None:
    body = "\n  First words of a long body. " + "more text " * 60
    index.update([doc("a.md", body, title="Macadamia")], [])
    [hit] = index.search("macadamia", now=NOW).hits
    assert hit.snippet.startswith("First words")
    assert len(hit.snippet) <= 200
    assert hit.highlights == []


def test_hit_line_points_at_the_snippet(index: SearchIndex) -> None:
    body = "\n".join(["intro"] * 5 + ["filler " * 40] * 5 + ["the answer is pecan"])
    index.update([doc("a.md", body, line=4)], [])
    [hit] = index.search("pecan", now=NOW).hits
    assert "pecan" in hit.snippet
    start = body.index(hit.snippet)  # unique: the snippet holds the only "pecan"
    assert start > 0
    assert hit.line == 4 + body.count("\n", 0, start)
    assert hit.line > 4 + 5


# --------------------------------------------------------------------- locking, processes

WRITER_SCRIPT = """
import sys
from pathlib import Path
from memkit.index import IndexDoc, SearchIndex

index = SearchIndex(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[2])):
    key = f"child/{i}.md"
    index.update([IndexDoc(key=key, path=key, record_id=key, type="long-term",
                           title="", text=f"shared word {i}")], [])
"""


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    parent = SearchIndex(directory)
    parent.replace_all([])
    n = 25
    with subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(directory), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("go\n")
        child.stdin.flush()
        for i in range(n):
            parent.update([doc(f"parent/{i}.md", f"shared word {i}")], [])
        assert child.wait(timeout=30) == 0
    assert parent.doc_count() == 2 * n  # sees the child's commits without reopening
    assert parent.search("shared", now=NOW).total == 2 * n


def test_a_busy_writer_lock_times_out_with_a_message(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    holder = SearchIndex(directory)
    waiter = SearchIndex(directory, lock_timeout=0.3)
    started, release = threading.Event(), threading.Event()

    def slow_docs() -> Iterator[IndexDoc]:
        started.set()
        release.wait(10)
        yield doc("slow.md", "slow")

    thread = threading.Thread(target=holder.replace_all, args=(slow_docs(),))
    thread.start()
    try:
        assert started.wait(10)
        begun = time.monotonic()
        with pytest.raises(LockTimeout, match="try again"):
            waiter.update([doc("fast.md", "fast")], [])
        assert 0.25 < time.monotonic() - begun < 3
    finally:
        release.set()
        thread.join(10)
    waiter.update([doc("fast.md", "fast")], [])  # free again once the holder committed
    assert sorted(h.key for h in waiter.search("slow fast", now=NOW).hits) == ["fast.md", "slow.md"]


def test_threads_share_one_index(index: SearchIndex) -> None:
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for i in range(15):
                index.update([doc(f"{prefix}/{i}.md", f"threaded note {i}")], [])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def read() -> None:
        try:
            for _ in range(60):
                index.search("threaded note", now=NOW)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(p,)) for p in ("x", "y")]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert index.search("threaded", now=NOW).total == 30


KILLED_SCRIPT = """
import sys
from pathlib import Path
from memkit.index import IndexDoc, SearchIndex

index = SearchIndex(Path(sys.argv[1]))
docs = [IndexDoc(key=f"{i}.md", path=f"{i}.md", record_id=str(i), type="long-term",
                 title="", text="killed while writing " * 20) for i in range(3000)]
print("ready", flush=True)
while True:
    index.replace_all(docs)
"""


def test_a_writer_killed_mid_commit_leaves_an_index_that_opens(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    first = SearchIndex(directory)
    first.replace_all([doc("keep.md", "survivor")])
    first.close()
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.6)
        child.kill()
        child.wait(10)

    after = SearchIndex(directory, lock_timeout=5)
    assert not after.needs_rebuild
    assert after.doc_count() in (1, 3000)  # the last completed commit, never half of one
    after.update([doc("new.md", "written after the crash")], [])  # the stale lock file is fine
    assert keys(after, "crash") == ["new.md"]


def test_a_rebuild_finished_by_another_handle_is_seen(tmp_path: Path) -> None:
    # A search process that opened the index while a watcher was rebuilding it must not ask
    # for a second rebuild once the watcher is done.
    early = SearchIndex(tmp_path / "index")
    assert early.needs_rebuild
    builder = SearchIndex(tmp_path / "index")
    builder.replace_all([doc("a.md", "alpha")])
    assert not builder.needs_rebuild
    assert not early.needs_rebuild
    assert [h.key for h in early.search("alpha", now=NOW).hits] == ["a.md"]
    early.close()
    builder.close()


# --------------------------------------------------------------------- a commit killed half-way


def seeded(directory: Path, count: int = 20) -> SearchIndex:
    """An index with one segment of `count` notes, so that replacing one writes a `.del`."""
    index = SearchIndex(directory)
    index.replace_all([])
    index.update([doc(f"n{i}.md", f"common note {i}") for i in range(count)], [])
    return index


def killed_commit(directory: Path, index: SearchIndex, *, managed_too: bool) -> None:
    """Leave the files of one commit that never finished: commit, then put back the meta.json
    (and with `managed_too` the .managed.json) of before, as a kill -9 between writing the
    commit's files and renaming its meta.json into place does."""
    version = directory / f"v{SCHEMA_VERSION}"
    names = ["meta.json", ".managed.json"] if managed_too else ["meta.json"]
    before = {name: (version / name).read_bytes() for name in names}
    index.update([doc("n1.md", "changed note")], [])
    index.close()
    assert list(version.glob("*.del")), "the commit deleted from the old segment"
    for name, data in before.items():
        (version / name).write_bytes(data)


def test_the_leftovers_of_a_killed_commit_do_not_block_the_next(tmp_path: Path) -> None:
    # The same operations after the restart reach the same opstamp, so the next commit wants the
    # very `<segment>.<opstamp>.del` name the killed one left (tantivy: FileAlreadyExists).
    directory = tmp_path / "index"
    killed_commit(directory, seeded(directory), managed_too=False)
    again = SearchIndex(directory)
    assert again.search("changed", now=NOW).total == 0  # the killed commit never happened
    again.update([doc("n1.md", "changed note")], [])
    assert keys(again, "changed") == ["n1.md"]
    assert again.search("common", k=50, now=NOW).total == 19
    assert not again.needs_rebuild


def test_a_leftover_the_index_does_not_know_asks_for_a_rebuild(tmp_path: Path) -> None:
    # With .managed.json lost too, garbage collection cannot know the leftover: the commit
    # fails, and the index asks for a rebuild instead of failing every later command.
    directory = tmp_path / "index"
    killed_commit(directory, seeded(directory), managed_too=True)
    again = SearchIndex(directory)
    again.update([doc("n1.md", "changed note")], [])  # no error
    assert again.needs_rebuild
    assert SearchIndex(directory).needs_rebuild  # for every process
    again.replace_all([doc(f"n{i}.md", f"common note {i}") for i in range(20)])
    assert not again.needs_rebuild
    again.update([doc("n1.md", "changed note")], [])
    assert keys(again, "changed") == ["n1.md"]


UPDATING_SCRIPT = """
import os, random, sys
from pathlib import Path
from memkit.index import IndexDoc, SearchIndex

def batch(step):
    numbers = random.Random(step).sample(range(2000), 5)
    return [IndexDoc(key=f"n{n}.md", path=f"n{n}.md", record_id=str(n), type="long-term",
                     title="", text=f"common note {n} version {step}") for n in numbers]

directory, step = Path(sys.argv[1]), int(sys.argv[2])
index = SearchIndex(directory)
if sys.argv[3] == "child":
    print("ready", flush=True)
    while True:
        # Before the commit (the parent repeats it); written aside and renamed, so a kill can
        # never leave the parent an empty file to read.
        (directory / "step.tmp").write_text(str(step))
        os.replace(directory / "step.tmp", directory / "step")
        index.update(batch(step), [])
        step += 1
else:
    index.update(batch(step), [])  # the killed commit's operations again: the same opstamps
    index.update(batch(step + 1), [])
    print(index.doc_count(), index.search("common", k=1).total, index.needs_rebuild, flush=True)
"""


@pytest.mark.slow
def test_kill_9_of_a_writer_at_random_moments_never_breaks_the_next_one(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    first = SearchIndex(directory)
    first.replace_all([doc(f"n{n}.md", f"common note {n}") for n in range(2000)])
    first.close()
    rng = random.Random(3)
    step = 1
    for _kill in range(8):
        with subprocess.Popen(
            [sys.executable, "-c", UPDATING_SCRIPT, str(directory), str(step), "child"],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
            child.kill()
            child.wait(10)
        step = int((directory / "step").read_text())
        after = subprocess.run(
            [sys.executable, "-c", UPDATING_SCRIPT, str(directory), str(step), "parent"],
            capture_output=True,
            text=True,
            env=child_env(),
            check=False,
        )
        assert after.returncode == 0, after.stderr[-2000:]
        # Every note once, searchable, and no rebuild needed: the leftovers were collected.
        assert after.stdout.split() == ["2000", "2000", "False"]
        step += 2


EXITING_SCRIPT = """
import sys
from pathlib import Path
from memkit.index import IndexDoc, SearchIndex

index = SearchIndex(Path(sys.argv[1]))
for i in range(40):
    index.update([IndexDoc(key=f"e{i}.md", path=f"e{i}.md", record_id=str(i), type="long-term",
                           title="", text=f"zebrafish {i}")], [])
# No close(): the process ends while the last commits' merges may still run on their thread.
"""


@pytest.mark.slow
def test_merges_left_running_by_an_exiting_process_harm_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    first = SearchIndex(directory)
    first.replace_all([doc("keep.md", "survivor")])
    first.close()
    subprocess.run(
        [sys.executable, "-c", EXITING_SCRIPT, str(directory)], check=True, env=child_env()
    )
    after = SearchIndex(directory, lock_timeout=10)
    after.update([doc("new.md", "written after the exit")], [])
    assert after.search("zebrafish", k=50, now=NOW).total == 40
    assert keys(after, "survivor") == ["keep.md"]
    assert keys(after, "after the exit") == ["new.md"]
    after.close()


@pytest.mark.slow
def test_small_commits_in_a_row_then_another_handle_writes(tmp_path: Path) -> None:
    # Each update returns before its merges end; the next writer (this handle or another one
    # in the same process) waits for them instead of failing.
    one = SearchIndex(tmp_path / "index")
    one.replace_all([])
    for i in range(30):
        one.update([doc(f"r{i}.md", f"in a row {i}")], [])
    two = SearchIndex(tmp_path / "index", lock_timeout=10)
    two.update([doc("other.md", "from the other handle")], [])
    assert one.search("row", k=50, now=NOW).total == 30
    assert keys(one, "other handle") == ["other.md"]
    one.close()
    two.close()


def test_work_alongside_a_rebuilds_commit_ends_after_it_and_its_error_fails_the_rebuild(
    tmp_path: Path,
) -> None:
    # What a rebuild writes its manifest in: entered after the last document, left after the
    # commit (so the manifest is never saved before the index holds what it says).
    folder = tmp_path / "index"
    index = SearchIndex(folder)
    seen: dict[str, int] = {}

    @contextlib.contextmanager
    def alongside() -> Iterator[None]:
        yield
        other = SearchIndex(folder)  # another process's view: what is on disk
        try:
            seen["on disk when it ends"] = other.doc_count()
        finally:
            other.close()

    docs = [doc("a.md", "apples"), doc("b.md", "bananas"), doc("a.md", "apricots")]
    assert index.replace_all_prepared(map(prepare_document, docs), alongside) == 2
    assert seen == {"on disk when it ends": 2}
    assert not index.needs_rebuild
    assert [h.key for h in index.search("apricots").hits] == ["a.md"]

    @contextlib.contextmanager
    def failing() -> Iterator[None]:
        raise OSError("disk full")
        yield  # (unreachable: a generator)

    fresh = SearchIndex(tmp_path / "fresh")
    with pytest.raises(OSError, match="disk full"):
        fresh.replace_all_prepared(map(prepare_document, docs), failing)
    assert fresh.needs_rebuild  # never marked complete
    fresh.close()
    index.close()
