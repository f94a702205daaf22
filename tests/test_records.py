"""The record format: parsing every kind of bad file, writing, and keeping a person's edits."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memkit import ids
from memkit.errors import InvalidRecord
from memkit.records import Record, edit_front_matter, load_yaml, parse_record, render_record

GOOD = b"""---
id: 01JC8Y2M4K7P9R3T5V6W8X0Z1A
type: long-term   # a fact
# a comment a person wrote
title: "Re: the deploy"
created: 2026-11-04T10:12:00Z
updated: 2026-11-04T10:12:00Z
tags: [ledger, deploys]
importance: 0.7  # a guess
---
Dana's team deploys on **Tuesdays**.
"""


def test_parse_keeps_timestamps_as_written_and_body_exact() -> None:
    record = parse_record(GOOD, "memory/long-term/x.md")
    assert record.meta["created"] == "2026-11-04T10:12:00Z"
    assert record.title == "Re: the deploy"
    assert record.tags == ["ledger", "deploys"]
    assert record.importance == 0.7
    assert record.body == "Dana's team deploys on **Tuesdays**.\n"
    assert record.line_of("tags") == 8


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b"", 1, "empty file"),
        (b"   \n\n", 1, "empty file"),
        (b"---\nid: a\x00b\n---\n", 1, "binary"),
        (b"---\ntitle: caf\xe9\n---\n", 2, "not UTF-8"),
        (b"# Just a note\n\nno front-matter\n", 1, "no front-matter"),
        (b"---\nid: x\ntype: long-term\n", 1, "never closed"),
        (b"---\ntitle: Re: meeting\n---\n", 2, "must be quoted"),
        (b"---\n- a\n- b\n---\n", 2, "not a mapping"),
        (b"---\nJust a horizontal rule above\n---\ntext\n", 2, "not a mapping"),
        (b"---\n---\nbody\n", 2, "empty"),
        (b"---\nid: a\nid: b\n---\n", 3, "duplicate key"),
        (b"---\nid: 01A\ntype: long-term\ncreated: 2026-01-01T00:00:00Z\n---\n", 5, "'updated'"),
        (b"---\nid: 01A\ntype: memo\ncreated: 1\nupdated: 1\n---\n", 3, "unknown type"),
        (b"---\ntags: [a\n---\n", 3, "invalid YAML"),
    ],
)
def test_bad_files_raise_with_path_and_line(data: bytes, line: int, words: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_record(data, "memory/long-term/bad.md")
    assert caught.value.path == "memory/long-term/bad.md"
    assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"memory/long-term/bad.md:{line}: ")


def test_huge_file_is_refused() -> None:
    data = GOOD + b"x" * (5 * 1024 * 1024)
    with pytest.raises(InvalidRecord, match="limit"):
        parse_record(data, "big.md")


def test_bom_and_crlf_are_read_and_kept_on_rewrite() -> None:
    data = b"\xef\xbb\xbf" + GOOD.replace(b"\n", b"\r\n")
    record = parse_record(data, "x.md")
    assert record.bom and record.newline == "\r\n"
    assert record.body == "Dana's team deploys on **Tuesdays**.\n"
    record.meta["importance"] = 0.9
    out = render_record(record)
    assert out.startswith(b"\xef\xbb\xbf---\r\n")
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert b"importance: 0.9  # a guess\r\n" in out


def test_rewrite_changes_only_the_changed_keys() -> None:
    record = parse_record(GOOD, "x.md")
    record.meta["tags"] = ["ledger", "deploys", "ops"]
    record.meta["superseded_by"] = "01JC8Y2M4K7P9R3T5V6W8X0Z1B"
    out = render_record(record).decode()
    expected = GOOD.decode().replace("tags: [ledger, deploys]", "tags: [ledger, deploys, ops]")
    expected = expected.replace(
        "importance: 0.7  # a guess\n",
        "importance: 0.7  # a guess\nsuperseded_by: 01JC8Y2M4K7P9R3T5V6W8X0Z1B\n",
    )
    assert out == expected


def test_unchanged_record_renders_byte_for_byte() -> None:
    assert render_record(parse_record(GOOD, "x.md")) == GOOD


def test_deleting_a_key_keeps_comments() -> None:
    text = "a: 1\n# keep me\nb:\n  - x\n  - y\nc: 3\n"
    out = edit_front_matter(text, {"a": 1, "b": ["x", "y"], "c": 3}, {"a": 1, "c": 3})
    assert out == "a: 1\n# keep me\nc: 3\n"


def test_yaml_1_1_pitfalls_are_what_pyyaml_does() -> None:
    # Documented so that schema errors can explain them: a bare `no` is a boolean.
    assert load_yaml("tags: [no, null]") == {"tags": [False, None]}
    assert load_yaml("created: 2026-11-04T10:12:00Z") == {"created": "2026-11-04T10:12:00Z"}


def test_file_stem_is_readable_and_unique() -> None:
    first, second = ids.new_id(), ids.new_id()
    assert first < second
    assert ids.file_stem("Café au lait: Dana's order!", first).startswith(
        "cafe-au-lait-dana-s-order-"
    )
    assert ids.file_stem("same", first) != ids.file_stem("same", second)
    assert ids.slugify("x" * 200) == "x" * 60
    assert ids.slugify("日本語") == "note"


safe_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029"
    )
    | st.sampled_from([*list(string.punctuation), "\n", " "]),
    max_size=80,
)
scalars = st.one_of(
    safe_text,
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
)
meta_values = st.one_of(
    scalars,
    st.lists(safe_text, max_size=4),
    st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), scalars, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    title=safe_text,
    tags=st.lists(safe_text.filter(lambda t: t.strip() != ""), max_size=4),
    extra=st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), meta_values, max_size=4),
    body=st.text(max_size=300).map(lambda t: t.replace("\x00", "")),
)
def test_round_trip_any_record(
    title: str, tags: list[str], extra: dict[str, object], body: str
) -> None:
    meta = {
        "id": ids.new_id(),
        "type": "long-term",
        "title": title,
        "created": "2026-11-04T10:12:00Z",
        "updated": "2026-11-04T10:12:00Z",
        "tags": tags,
        **extra,
    }
    body = body.replace("\r", "")
    record = Record(meta=meta, body=body)
    back = parse_record(render_record(record), "x.md")
    assert back.meta == meta
    assert back.body == body


@settings(max_examples=100, deadline=None)
@given(
    old=st.dictionaries(st.from_regex(r"k[a-z]{0,5}", fullmatch=True), meta_values, max_size=5),
    new=st.dictionaries(st.from_regex(r"k[a-z]{0,5}", fullmatch=True), meta_values, max_size=5),
)
def test_editing_front_matter_gives_the_new_values(
    old: dict[str, object], new: dict[str, object]
) -> None:
    meta = {
        "id": "01JC8Y2M4K7P9R3T5V6W8X0Z1A",
        "type": "insight",
        "created": "2026-11-04T10:12:00Z",
        "updated": "2026-11-04T10:12:00Z",
    }
    record = Record(meta={**meta, **old}, body="b\n")
    loaded = parse_record(render_record(record), "x.md")
    loaded.meta = {**meta, **new}
    again = parse_record(render_record(loaded), "x.md")
    assert again.meta == {**meta, **new}
