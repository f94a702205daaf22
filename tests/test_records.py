"""The record format: parsing every kind of bad file, writing, and keeping a person's edits."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memkit import ids, yaml_reader
from memkit.errors import InvalidRecord
from memkit.records import Record, edit_front_matter, parse_record, render_record
from memkit.yaml_reader import load_yaml

from .conftest import examples

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


@settings(max_examples=examples(150), deadline=None)
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


@settings(max_examples=examples(100), deadline=None)
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


# --- the fast front-matter path gives exactly what the YAML loader gives -------------------------


def _same(fast: object, slow: object) -> bool:
    """Equal values of the same types, in the same key order (nan equals nan, -0.0 is not 0.0)."""
    if type(fast) is not type(slow):
        return False
    if isinstance(fast, dict) and isinstance(slow, dict):
        return list(map(repr, fast)) == list(map(repr, slow)) and all(
            _same(fast[key], slow[key]) for key in fast
        )
    if isinstance(fast, list) and isinstance(slow, list):
        return len(fast) == len(slow) and all(map(_same, fast, slow))
    return repr(fast) == repr(slow)


def _check_fast_path(text: str) -> bool:
    """Assert the fast path agrees with the YAML loader; True when it did not fall back."""
    try:
        fast = yaml_reader.fast_load(text)
    except yaml_reader.NotFlat:
        return False
    slow = yaml_reader.load_yaml_slow(text)  # must not raise: the fast path accepted the text
    assert _same(fast, slow), f"{text!r}: fast {fast!r} != yaml {slow!r}"
    return True


def _words(text: str) -> list[str]:
    return text.split()


TRICKY_PLAIN = [
    *_words("yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF y n Y N"),
    *_words("~ null Null NULL nULL none None"),
    *_words("0 -0 +0 00 012 019 0o12 0x1F 0x_1f -0x1F 0b101 0b_ 0b -0b1 0x 1_000 1__0 +12 -12"),
    *_words("12:30 1:30:05 -1:30 1:60 190:20:30 0:30 01:30 1_2:30"),
    *_words(".5 -.5 +.5 1. 1.5 1e3 1E3 1.0e+3 1.0e3 1.0E-3 6.8523015e+5 685.230_15e+03 1_0.5"),
    *_words("1:30.5 .inf -.inf +.inf .Inf .INF .nan .NaN .NAN -.nan inf nan . .. 1.2.3 .e3 ._5"),
    *_words("2026-11-04T10:12:00Z 2026-11-04 2026-11-04T10:12:00.5+02:00 10:12:00"),
    "2026-11-04 10:12:00",
    *_words("a b a_b a-b a.b 01JC8Y2M4K7P9R3T5V6W8X0Z1A m-1133-16 s-2022-06-26-b C# a#b"),
    *_words("- -- --- -a -1 ... ? ?a :a : a: a:b << = == =a <a > | & * ! % @ ` #a"),
    *_words("&a *a !a !!str |a >a %a @a `a [a] {a} [a {a a] a} a, ,a 'a' \"a\" a' a\""),
    "a b  c",
    "a #b",
    "a: b",
    "x ,y",
    "café",
    "日本語",
    "a\\b",
    "a\\nb",
    "\\",
    "é: x",
    "a\u00a0b",
    "\u00a0",
    "a\u2028b",
    "a\x85b",
    "a\ufeffb",
    "a\x7fb",
    "a\tb",
]
_printable = st.characters(blacklist_categories=["Cs"], max_codepoint=0x2FFF) | st.sampled_from(
    ["\t", "\x85", "\u2028", "\ufeff", "\x7f", "\x00", "\x1b", "\U0001f600"]
)
plain_text = st.sampled_from(TRICKY_PLAIN) | st.text(_printable, min_size=1, max_size=12).filter(
    lambda t: "\n" not in t and "\r" not in t
)
escapes = st.sampled_from(
    [
        *(f"\\{c}" for c in '0abtnvfre "/\\NL_P'),
        *("\\x41", "\\xe9", "\\u00e9", "\\U0001F600"),
        "\\ud800",
        "\\x4",
        "\\u12",
        "\\q",
        "\\",
        "\\U00110000",
        '"',
        "'",
        "''",
        "#",
        " #",
    ]
)
double_quoted = st.lists(plain_text | escapes, max_size=4).map(lambda p: '"' + "".join(p) + '"')
single_quoted = st.lists(plain_text | st.just("''"), max_size=4).map(
    lambda p: "'" + "".join(p) + "'"
)
scalar_text = (
    plain_text
    | double_quoted
    | single_quoted
    | st.text(_printable, max_size=20)
    .filter(lambda t: "\n" not in t)
    .map(lambda t: json.dumps(t, ensure_ascii=False))
)
spaces = st.sampled_from(["", " ", "  ", "   "])
flow_key = st.sampled_from(["a", "b", "k", "yes", "1", "0x1", "null", "a b", "-a", "x:y"])


@st.composite
def flow_text(draw: st.DrawFn, depth: int = 0) -> str:
    is_map = draw(st.booleans())
    items = []
    for _ in range(draw(st.integers(0, 3))):
        value = (
            draw(flow_text(depth + 1))
            if depth < 2 and draw(st.integers(0, 4)) == 0
            else draw(scalar_text)
        )
        item = f"{draw(flow_key)}:{draw(spaces)}{value}" if is_map else value
        items.append(draw(spaces) + item + draw(spaces))
    separator = draw(st.sampled_from([",", ", ", " , "]))
    text = separator.join(items) + draw(st.sampled_from(["", "", ",", ", "]))
    return ("{" + text + "}") if is_map else ("[" + text + "]")


inline_value = scalar_text | flow_text()
comment = st.sampled_from(["", "", "", "  # note", " #", "#x", " # a: b", "   "])
top_key = st.sampled_from(
    [
        *("id", "type", "title", "tags", "attributes", "x_y", "a.b", "a-b", "1", "yes", "null"),
        *(
            "Key",
            "x",
            "x",
            "x2",
            "~",
            "'q'",
            '"dq"',
            "a b",
            "? c",
            "-k",
            "k ",
            "0x10",
            "&a k",
            "!!str k",
        ),
    ]
)


@st.composite
def block_entry(draw: st.DrawFn, indent: int, depth: int, clean: bool = False) -> list[str]:
    pad = " " * indent
    key = (
        draw(st.sampled_from(["id", "title", "tags", "x_", "y-", "k."])) + str(draw(st.integers(0)))
        if clean
        else draw(top_key)
    )
    kinds = ["inline", "inline", "inline", "empty", "list", "map"] + ([] if clean else ["odd"])
    kind = draw(st.sampled_from(kinds))
    if kind == "inline":
        return [
            f"{pad}{key}:{draw(st.sampled_from([' ', ' ', '  ', '']))}"
            f"{draw(inline_value)}{draw(comment)}"
        ]
    if kind == "empty":
        return [f"{pad}{key}:{draw(comment)}"]
    if kind == "list":
        item_pad = pad + draw(st.sampled_from(["", "  ", "  ", "    ", " "]))
        lines = [f"{pad}{key}:{draw(comment)}"]
        for _ in range(draw(st.integers(0, 3))):
            dash = draw(st.sampled_from(["- ", "- ", "-  ", "-"]))
            lines.append(f"{item_pad}{dash}{draw(inline_value)}{draw(comment)}")
        return lines
    if kind == "map" and depth < 2:
        sub_indent = indent + draw(st.sampled_from([2, 2, 4, 1]))
        lines = [f"{pad}{key}:{draw(comment)}"]
        for _ in range(draw(st.integers(1, 3))):
            lines += draw(block_entry(sub_indent, depth + 1, clean))
        return lines
    odd = draw(
        st.sampled_from(
            [
                "|\n  text",
                ">\n  folded",
                "&anchor v",
                "*alias",
                "!!str 1",
                "a\n  continued",
                "'multi\n  line'",
                '"multi\n  line"',
                "[a,\n  b]",
                "- a",
                "{a: [b, {c: d}]}",
                "\t1",
                "v\t",
                "1 # c\n  # c2",
                "? x",
                "",
            ]
        )
    )
    return [f"{pad}{key}: {odd}"]


@st.composite
def front_matter_text(draw: st.DrawFn, clean: bool = False) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 6)) == 0:
            lines.append(draw(st.sampled_from(["", "# comment", "  # indented", "   ", "  "])))
        lines += draw(block_entry(0, 0, clean))
    if draw(st.integers(0, 10)) == 0:  # a duplicate key
        lines.append(lines[0])
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@pytest.mark.slow
@settings(max_examples=examples(1500), deadline=None)
@given(text=front_matter_text() | front_matter_text(clean=True))
def test_fast_path_matches_the_yaml_loader(text: str) -> None:
    _check_fast_path(text)


@settings(max_examples=examples(300), deadline=None)
@given(value=scalar_text | flow_text())
def test_fast_path_matches_the_yaml_loader_on_single_values(value: str) -> None:
    _check_fast_path(f"k: {value}\n")
    _check_fast_path(f"k: [{value}]\n")
    _check_fast_path(f"k: {{a: {value}}}\n")
    _check_fast_path(f"k:\n  - {value}\n")
    _check_fast_path(f"k:\n  sub: {value}  # c\n")


@pytest.mark.parametrize("plain", TRICKY_PLAIN)
def test_fast_path_resolves_tricky_scalars_like_yaml(plain: str) -> None:
    for text in (f"k: {plain}\n", f"k: [{plain}]\n", f"{plain}: v\n", f"k:\n- {plain}\n"):
        _check_fast_path(text)


def test_fast_path_takes_the_front_matter_memkit_writes() -> None:
    assert _check_fast_path(GOOD.decode().split("---\n")[1])
    text = (
        'id: 01HHB5H0HH0GMZY33F4AJ8F2DP\ntype: entity\ntitle: "Femi Dubois"\n'
        "created: 2023-12-11T00:48:10Z\nupdated: 2023-12-16T16:15:13Z\n"
        "tags: [ops, billing, personal]\nimportance: 0.54\naliases: [Femi]\nattributes: \n"
        "  role: version owner\n  location: Tbilisi\n  since: '2023'\n"
        "source: {session: s-2022-06-26-b, messages: [m-1133-16], tool: api}\n"
        "history:\n- a\n- 'b'\n"
    )
    assert _check_fast_path(text)
    assert yaml_reader.fast_load(text)["attributes"] == {
        "role": "version owner",
        "location": "Tbilisi",
        "since": "2023",
    }


def test_fast_path_leaves_duplicate_keys_to_yaml_with_the_same_error() -> None:
    data = b"---\nid: a\ntags: [x]\nid: b\n---\n"
    with pytest.raises(InvalidRecord) as caught:
        parse_record(data, "x.md")
    assert caught.value.line == 4
    assert "duplicate key 'id'" in str(caught.value)
    with pytest.raises(InvalidRecord, match="duplicate key"):
        parse_record(b"---\nid: a\nsource: {a: 1, a: 2}\n---\n", "x.md")


def test_fast_path_resolvers_are_pyyaml_s() -> None:
    import yaml

    resolvers = yaml.SafeLoader.yaml_implicit_resolvers
    patterns = {tag: regexp.pattern for first in resolvers for tag, regexp in resolvers[first]}
    assert patterns["tag:yaml.org,2002:float"] == yaml_reader._YAML_FLOAT.pattern.replace(
        "\n    |", "\n                    |"
    )
    assert patterns["tag:yaml.org,2002:int"] == yaml_reader._YAML_INT.pattern.replace(
        "\n    |", "\n                    |"
    )
    assert dict(yaml.constructor.SafeConstructor.bool_values) == {
        key.lower(): value for key, value in yaml_reader._YAML_BOOL.items()
    }


def test_loaded_meta_is_an_independent_copy() -> None:
    record = parse_record(
        b"---\nid: 01A\ntype: entity\ncreated: 1\nupdated: 1\ntags: [a]\n"
        b"attributes:\n  role: x\n---\n",
        "x.md",
    )
    assert record.loaded_meta == record.meta
    record.meta["tags"].append("b")
    record.meta["attributes"]["role"] = "y"
    assert record.loaded_meta is not None
    assert record.loaded_meta["tags"] == ["a"]
    assert record.loaded_meta["attributes"] == {"role": "x"}


@pytest.mark.parametrize("source", ["default", "sample_vault"])
def test_memkits_own_settings_files_take_the_fast_path(source: str) -> None:
    from memkit import settings as settings_module

    if source == "default":
        text = settings_module.DEFAULT_SETTINGS_TEXT
    else:
        text = (Path(__file__).parent.parent / "sample_vault" / "memkit.yaml").read_text("utf-8")
    fast = yaml_reader.load_yaml_fast(text)
    # No cache is needed when memkit's own files never need the (slow) YAML loader.
    assert fast is not None
    assert fast == yaml_reader.load_yaml_slow(text)


def test_settings_in_richer_yaml_still_load(tmp_path: Path) -> None:
    from memkit import settings as settings_module

    # A flow mapping over two lines is beyond the fast reader: the YAML loader reads it.
    text = "learning:\n  stores: {persona: true,\n    patterns: true}\n"
    assert yaml_reader.load_yaml_fast(text) is None
    (tmp_path / "memkit.yaml").write_text(text, "utf-8")
    loaded = settings_module.load_settings(tmp_path)
    assert loaded.learning.stores["patterns"] is True
    # An old vault's cache file is ignored (it was derived state).
    (tmp_path / ".memkit").mkdir()
    (tmp_path / ".memkit" / "settings.cache.json").write_text("{not json", "utf-8")
    assert settings_module.load_settings(tmp_path) == loaded


def test_settings_errors_name_their_lines(tmp_path: Path) -> None:
    from memkit import settings as settings_module
    from memkit.errors import SettingsError

    (tmp_path / ".memkit").mkdir()
    text = "version: 1\nmemory:\n  short_term:\n    capacty: 5\n"
    (tmp_path / "memkit.yaml").write_text(text, "utf-8")
    with pytest.raises(SettingsError) as caught:
        settings_module.load_settings(tmp_path)
    assert caught.value.line == 4 and "did you mean 'capacity'" in str(caught.value)
    (tmp_path / "memkit.yaml").write_text("memory:\n  short_term: {capacity: -1,\n  x: 1}\n")
    with pytest.raises(SettingsError) as caught:
        settings_module.load_settings(tmp_path)
    assert caught.value.line == 2


@pytest.mark.parametrize("title", ["A\n", "trailing newline\n", "x\r"])
def test_a_value_ending_in_a_newline_is_quoted_and_kept(title: str) -> None:
    meta = {
        "id": "01JC8Y2M4K7P9R3T5V6W8X0Z1A",
        "type": "long-term",
        "title": title,
        "created": "2026-11-04T10:12:00Z",
        "updated": "2026-11-04T10:12:00Z",
    }
    assert parse_record(render_record(Record(meta=meta, body="b\n")), "x.md").meta == meta


@pytest.mark.parametrize(
    ("front", "why"),
    [
        ("a: &a [*a]\n", "refers to itself"),
        ("a: &a {b: *a}\n", "recursive"),  # PyYAML itself refuses a recursive mapping
        ("a: " + "[" * 60 + "]" * 60 + "\n", "nests deeper"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
            "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
            "more than 10,000 values",
        ),
    ],
)
def test_hostile_front_matter_is_a_per_file_problem(front: str, why: str) -> None:
    data = f"---\n{front}id: 01JC8Y2M4K7P9R3T5V6W8X0Z1A\ntype: long-term\n---\nx\n".encode()
    with pytest.raises(InvalidRecord, match=why) as caught:
        parse_record(data, "memory/long-term/x.md")
    assert caught.value.line == 2
