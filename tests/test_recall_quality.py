"""Recall quality: the general mechanisms that find the right message of a conversation
(question words dropped, neighbouring turns, speakers, day words, stemming)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memkit import Memory, Vault
from memkit.conversations import ConversationMessage, Episodes
from memkit.documents import NEIGHBOUR_TURNS, SURROUNDING_TURNS
from memkit.index import QUERY_STOP_WORDS, IndexDoc, SearchIndex

from .conftest import examples

START = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)  # a Monday


def record(vault: Vault, session: str, turns: list[tuple[str, str, str]], start: datetime) -> None:
    """(id, speaker, text) turns as one interaction, a minute apart."""
    Episodes(vault).record(
        [
            ConversationMessage(
                text=text,
                speaker=speaker,
                message_id=message_id,
                session=session,
                time=start + timedelta(minutes=i),
            )
            for i, (message_id, speaker, text) in enumerate(turns)
        ]
    )


def recalled(vault: Vault, query: str, k: int = 10) -> list[str]:
    memory = Memory(vault)
    try:
        return [h.hit.message_id for h in memory.recall(query, k=k, types=["episodic"])]
    finally:
        memory.close()


def test_question_words_do_not_outrank_the_topic(vault: Vault) -> None:
    record(vault, "s1", [("chat", "Dana", "When did you? What did you do when it rained?")], START)
    record(vault, "s2", [("park", "Dana", "Took the kids to the park yesterday.")], START)
    assert recalled(vault, "When did Dana go to the park?") == ["park"]
    assert {"when", "did", "what"} <= QUERY_STOP_WORDS


def test_a_reply_is_found_by_the_words_of_the_question_before_it(vault: Vault) -> None:
    record(
        vault,
        "s1",
        [
            ("ask", "Sam", "Any tips for keeping basil alive on a windowsill?"),
            ("reply", "Dana", "Water it every morning and give it full sun."),
        ],
        START,
    )
    record(vault, "s2", [("other", "Dana", "Work has been busy this week.")], START)
    hits = recalled(vault, "How does Dana keep her basil alive?")
    assert "reply" in hits[:2]
    assert "other" not in hits


def test_turns_a_few_messages_away_count_within_the_surrounding_window(vault: Vault) -> None:
    far = SURROUNDING_TURNS + 1
    turns = [("t0", "Sam", "We finally adopted a puppy from the shelter!")]
    turns += [
        (f"t{i}", "Dana" if i % 2 else "Sam", f"Filler line number {i}.") for i in range(1, far + 1)
    ]
    record(vault, "s1", turns, START)
    hits = recalled(vault, "adopted puppy shelter", k=20)
    assert hits[0] == "t0"
    # The nearest neighbours rank above the ones a little further away.
    assert hits.index(f"t{NEIGHBOUR_TURNS}") < hits.index(f"t{SURROUNDING_TURNS}")
    assert f"t{far}" not in hits


def test_a_question_naming_a_speaker_prefers_their_messages(vault: Vault) -> None:
    record(vault, "s1", [("sam", "Sam", "I finally ran my first marathon on Sunday!")], START)
    record(vault, "s2", [("dana", "Dana", "My marathon training starts next month.")], START)
    record(vault, "s3", [("thanks", "Sam", "Thanks Dana, the marathon was brutal.")], START)
    assert recalled(vault, "What did Sam say about the marathon?")[0] in {"sam", "thanks"}
    # A message of Dana's beats one that only mentions her name.
    assert recalled(vault, "What did Dana say about the marathon?")[0] == "dana"


def test_a_speaker_name_ranks_messages_but_does_not_find_them(vault: Vault) -> None:
    record(vault, "s1", [("volcano", "Sam", "We hiked up the volcano at dawn.")], START)
    record(
        vault, "s2", [("d1", "Dana", "Lunch was great."), ("d2", "Dana", "See you soon.")], START
    )
    record(vault, "s3", [("d3", "Dana", "A volcano? Sounds fun.")], START)
    assert recalled(vault, "Dana volcano") == ["d3", "volcano"]
    # A name alone still finds that person's messages.
    assert set(recalled(vault, "Dana")) == {"d1", "d2", "d3"}


def test_other_records_still_match_a_speaker_name_alone(vault: Vault) -> None:
    record(vault, "s1", [("d1", "Dana", "Lunch was great.")], START)
    note = Memory(vault).remember("Dana was born on 3 May 1990.", title="Dana")
    hits = Memory(vault).recall("Dana birthday")
    assert [h.hit.record_id for h in hits] == [note.id]


def test_the_day_of_a_message_is_searchable_in_words(vault: Vault) -> None:
    record(vault, "june", [("june", "Dana", "We planted tomatoes in the garden.")], START)
    record(
        vault,
        "july",
        [("july", "Dana", "We planted tomatoes in the garden.")],
        START.replace(month=7),
    )
    assert recalled(vault, "What did we plant in June?")[0] == "june"
    assert recalled(vault, "garden July")[0] == "july"
    assert recalled(vault, "tomatoes on Monday")[0] == "june"


def test_inflected_words_find_each_other(vault: Vault) -> None:
    record(vault, "s1", [("paint", "Dana", "I painted a sunset last weekend.")], START)
    assert recalled(vault, "painting sunsets") == ["paint"]


@pytest.mark.parametrize("query", ["", "?", "Who?", "what did you do", "\ud800", "Dana's"])
def test_questions_made_only_of_stop_words_or_names_never_fail(vault: Vault, query: str) -> None:
    record(vault, "s1", [("m1", "Dana", "What did you do today?")], START)
    recalled(vault, query)


@pytest.fixture(scope="module")
def speakers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    index = SearchIndex(tmp_path_factory.mktemp("speakers") / "index")
    names = ["Dana", "Sam O'Neil", "日本 😀", "user", "what"]
    index.replace_all(
        IndexDoc(
            key=f"day.md#m{i}",
            path="day.md",
            record_id="day",
            type="episodic",
            title=f"{name}, 2025-06-02",
            text=f"message {i} about coffee and {names[(i + 1) % len(names)]}",
            context=f"{name} Monday 2 June 2025",
            surround="further turns",
            message_id=f"m{i}",
            speaker=name,
        )
        for i, name in enumerate(names)
    )
    yield index
    index.close()


@pytest.mark.parametrize(
    "query",
    [
        "Dana",
        "what",
        "Dana coffee",
        '"Sam O\'Neil" coffee',
        "user type:episodic",
        "日本",
        "O'Neil?",
    ],
)
def test_queries_with_speaker_names_work(speakers: SearchIndex, query: str) -> None:
    assert speakers.search(query).hits


@settings(max_examples=examples(150), deadline=None)
@given(st.text())
def test_random_questions_never_fail(speakers: SearchIndex, query: str) -> None:
    speakers.search(query, k=3)
