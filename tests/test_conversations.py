"""Imports are all-or-nothing per input, and a day of any size is kept (part files)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from memkit import Vault
from memkit.conversations import (
    DAY_PART_BYTES,
    MAX_MESSAGE_BYTES,
    ConversationMessage,
    Episodes,
)
from memkit.errors import ImportFormatError
from memkit.sync import VaultIndex

from .conftest import Runner

DAY = "2026-11-04T10:00:00Z"


def _line(**fields: object) -> str:
    return json.dumps({"time": DAY, "session": "s1", **fields})


def test_every_bad_message_is_named_and_nothing_is_written(vault: Vault) -> None:
    Episodes(vault).import_text(_line(text="an earlier message of the day"), "first.jsonl")
    before = sorted(p.read_bytes() for p in (vault.root / "memory/episodic").rglob("*.md"))
    text = "\n".join(
        [
            _line(text="fine"),
            _line(text="nul \u0000 inside"),
            '{"time": "2026-11-04T10:00:00Z", "text": "half \\ud800 a pair"}',
            "[" * 100_000 + "]" * 100_000,
            _line(text="x" * (MAX_MESSAGE_BYTES + 1)),
            _line(text="ok", speaker="bell \u0007"),
        ]
    )
    with pytest.raises(ImportFormatError) as caught:
        Episodes(vault).import_text(text, "chat.jsonl")
    message = str(caught.value)
    assert "nothing was imported" in message
    assert "chat.jsonl:2: 'text' holds the control character U+0000 (NUL)" in message
    assert "chat.jsonl:3: 'text' holds a lone surrogate (\\ud800)" in message
    assert "chat.jsonl:4: JSON nested too deeply" in message
    assert f"chat.jsonl:5: the message is {MAX_MESSAGE_BYTES + 1:,} bytes" in message
    assert "chat.jsonl:6: 'speaker' holds the control character U+0007" in message
    assert "chat.jsonl:1" not in message
    after = sorted(p.read_bytes() for p in (vault.root / "memory/episodic").rglob("*.md"))
    assert after == before
    assert not vault.check().problems


def test_a_deeply_nested_array_element_is_named_by_line(vault: Vault) -> None:
    text = '[\n  {"role": "user", "content": "ok"},\n  ' + "[" * 100_000 + "]" * 100_000 + "\n]"
    with pytest.raises(ImportFormatError, match=r"a\.json:3: JSON nested too deeply"):
        Episodes(vault).import_text(text, "a.json")
    assert vault.scan(["episodic"]).records == []


@pytest.mark.parametrize("key", ["id", "session", "speaker"])
def test_a_credential_in_an_id_session_or_speaker_is_refused(vault: Vault, key: str) -> None:
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    text = "\n".join([_line(text="hello"), _line(text="hi", **{key: secret})])
    with pytest.raises(ImportFormatError, match=rf"chat\.jsonl:2: '{key}' holds a credential"):
        Episodes(vault).import_text(text, "chat.jsonl")
    assert vault.scan(["episodic"]).records == []
    assert not any(secret in p.read_text() for p in vault.root.rglob("*.md"))


def test_messages_from_the_python_api_are_checked_too(vault: Vault) -> None:
    messages = [ConversationMessage("fine"), ConversationMessage("bad \u0000")]
    with pytest.raises(ImportFormatError, match=r"agent: message 2: 'text' holds"):
        Episodes(vault).record(messages, where="agent")
    assert vault.scan(["episodic"]).records == []


@pytest.mark.slow
def test_a_day_too_large_for_one_file_continues_in_part_files(vault: Vault, run: Runner) -> None:
    # 9,000 messages of ~1 KB: more than two files' worth of one day, in one session.
    count = 9_000
    lines = [
        _line(id=f"m{n}", text=f"message {n} word{n}z " + "lorem ipsum " * 80) for n in range(count)
    ]
    source = vault.root.parent / "big.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = run.run("import", str(source), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == count
    folder = vault.root / "memory/episodic/2026/11"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["2026-11-04.md", "2026-11-04.part-2.md", "2026-11-04.part-3.md"]
    assert all(p.stat().st_size <= DAY_PART_BYTES for p in folder.iterdir())
    assert not vault.check().problems
    episodes = Episodes(vault)
    assert [m.message_id for m in episodes.session_messages("s1")] == [
        f"m{n}" for n in range(count)
    ]
    # Importing again adds nothing; a later import the same day goes on in the last part.
    assert run.run("import", str(source), "--json").exit_code == 0
    later = datetime(2026, 11, 4, 18, 0, tzinfo=timezone.utc)
    report = episodes.record(
        [ConversationMessage("the evening one", time=later, message_id="late")]
    )
    assert report.added == 1
    assert "[late]" in (folder / "2026-11-04.part-3.md").read_text()
    # Every message is searchable, the first and the last alike.
    index = VaultIndex(vault)
    try:
        for n in (0, count // 2, count - 1):
            hits = index.search(f"word{n}z")[0].hits
            assert hits and hits[0].message_id == f"m{n}"
    finally:
        index.close()


def test_part_files_sort_by_number(vault: Vault, tmp_path: Path) -> None:
    from memkit.conversations import day_order
    from memkit.records import Record

    paths = [f"memory/episodic/2026/11/2026-11-04{s}.md" for s in (".part-10", "", ".part-9")]
    records = [Record(meta={"date": "2026-11-04"}, body="", path=p) for p in paths]
    ordered = [r.path for r in sorted(records, key=day_order)]
    assert ordered == [paths[1], paths[2], paths[0]]


def test_windows_line_ends_in_a_message_are_kept_as_lines(vault: Vault) -> None:
    Episodes(vault).import_text(_line(text="first line\r\nsecond line"), "crlf.jsonl")
    [message] = Episodes(vault).session_messages("s1")
    assert message.text == "first line\nsecond line"


def test_a_day_file_left_too_large_by_an_older_memkit_is_not_a_dead_end(vault: Vault) -> None:
    episodes = Episodes(vault)
    episodes.import_text(_line(text="the first message"), "a.jsonl")
    day = vault.root / "memory/episodic/2026/11/2026-11-04.md"
    day.write_text(day.read_text() + ("- 10:00 **user** [x]: " + "y" * 100 + "\n") * 45_000)
    report = episodes.import_text(_line(id="after", text="a later message"), "b.jsonl")
    assert report.added == 1
    assert "[after]" in (day.parent / "2026-11-04.part-2.md").read_text()
