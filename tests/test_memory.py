"""Memory lifecycles: dedupe, supersede, short-term capacity/expiry/promotion, entities,
episodic import and retention, recall and context."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from memkit import Memory, Vault
from memkit.context import build_context
from memkit.conversations import Episodes, parse_conversation
from memkit.entities import Entities
from memkit.episodic import parse_day
from memkit.errors import ImportFormatError, SecretRefused, UsageError
from memkit.settings import MemorySettings, Settings, ShortTermSettings
from memkit.timeutil import utcnow

from .conftest import Runner


@pytest.fixture
def memory(vault: Vault) -> Memory:
    return Memory(vault)


def test_same_fact_twice_updates_instead_of_duplicating(memory: Memory, vault: Vault) -> None:
    first = memory.remember(
        "Dana prefers espresso over filter coffee.",
        tags=["coffee"],
        importance=0.4,
        source={"session": "s1"},
    )
    again = memory.remember(
        "dana prefers ESPRESSO over filter coffee",
        tags=["dana"],
        importance=0.9,
        source={"session": "s2"},
    )
    assert again.id == first.id
    assert again.importance == 0.9
    assert again.tags == ["coffee", "dana"]
    assert again.meta["source"] == [{"session": "s1"}, {"session": "s2"}]
    assert again.meta["updated"] >= first.meta["updated"]
    assert len(vault.scan(["long-term"]).records) == 1


def test_near_duplicate_is_merged_but_a_different_fact_is_not(memory: Memory, vault: Vault) -> None:
    first = memory.remember("The Ledger team deploys on Tuesdays and Thursdays after standup")
    near = memory.remember("The Ledger team deploys on Tuesdays and Thursdays after the standup")
    other = memory.remember("The Ledger team never deploys on Fridays")
    assert near.id == first.id
    assert other.id != first.id
    assert len(vault.scan(["long-term"]).records) == 2


def test_supersede_by_id_and_by_subject(memory: Memory, vault: Vault) -> None:
    old = memory.remember("Ledger runs on Postgres 14", subject="ledger database")
    new = memory.remember(
        "Ledger runs on Postgres 16 since the November upgrade", subject="Ledger database"
    )
    old_now = vault.get(old.id)
    assert old_now.meta["superseded_by"] == new.id
    assert old_now.meta["valid_to"] == new.meta["created"]
    assert new.meta["supersedes"] == old.id
    # Superseded facts stay on disk and out of default recall; --all shows them.
    ids = [h.hit.record_id for h in memory.recall("Ledger Postgres")]
    assert new.id in ids and old.id not in ids
    ids_all = [h.hit.record_id for h in memory.recall("Ledger Postgres", include_hidden=True)]
    assert old.id in ids_all
    third = memory.remember("Ledger moved to Postgres 17", supersedes=new.id)
    assert vault.get(new.id).meta["superseded_by"] == third.id
    with pytest.raises(UsageError):
        memory.remember("x", supersedes=Entities(vault).upsert("Dana").record.id)


def _vault_with(tmp_path: Path, **short_term: float) -> Vault:
    vault = Vault.init(tmp_path / "v")
    settings = Settings(memory=MemorySettings(short_term=ShortTermSettings(**short_term)))  # type: ignore[arg-type]
    return Vault(vault.root, settings)


def test_short_term_capacity_drops_oldest_and_promotes_important(tmp_path: Path) -> None:
    vault = _vault_with(tmp_path, capacity=3, promote_threshold=0.7)
    memory = Memory(vault)
    first = memory.remember("item one, important", type="short-term", importance=0.9)
    second = memory.remember("item two", type="short-term", importance=0.1)
    for n in range(3, 6):
        memory.remember(f"item {n}", type="short-term")
    left = sorted(r.body.strip() for r in vault.scan(["short-term"]).records)
    assert left == ["item 3", "item 4", "item 5"]
    facts = vault.scan(["long-term"]).records
    assert [f.body.strip() for f in facts] == ["item one, important"]
    assert facts[0].meta["source"] == {"promoted_from": first.id}
    assert second.id not in {r.id for r in vault.scan().records}


def test_the_buffer_order_follows_a_persons_edit_between_remembers(tmp_path: Path) -> None:
    # The capacity check keeps what it read of each item; an item a person edited (or one
    # another process wrote) is read again, so the oldest is still the one that goes.
    vault = _vault_with(tmp_path, capacity=2)
    memory = Memory(vault)
    one = memory.remember("item one", type="short-term")
    two = memory.remember("item two", type="short-term")
    assert one.path is not None
    path = vault.root / one.path
    text = path.read_text("utf-8")
    created = str(one.meta["created"])
    edited = text.replace(f'created: "{created}"', 'created: "2999-01-01T00:00:00Z"')
    assert edited != text
    path.write_text(edited, "utf-8")
    other = Memory(vault)  # another writer: its items are new to the first Memory
    three = other.remember("item three", type="short-term")
    other.close()
    memory.remember("item four", type="short-term")
    left = {r.id for r in vault.scan(["short-term"]).records}
    assert two.id not in left and three.id not in left and one.id in left
    memory.close()


def test_expire_removes_expired_and_promotes(tmp_path: Path) -> None:
    vault = _vault_with(tmp_path, ttl_hours=1, promote_threshold=0.7)
    memory = Memory(vault)
    keep = memory.remember("fresh", type="short-term")
    memory.remember("stale but vital", type="short-term", importance=0.8)
    memory.remember("stale and trivial", type="short-term", importance=0.2)
    report = memory.expire(now=utcnow() + timedelta(hours=2))
    assert len(report.expired) == 3  # every item is past its hour at that moment
    assert len(report.promoted) == 1
    assert [r.body.strip() for r in vault.scan(["long-term"]).records] == ["stale but vital"]
    assert keep.id not in {r.id for r in vault.scan().records}
    # At the real current time a new item has not expired yet.
    again = memory.remember("new", type="short-term")
    assert memory.expire().expired == []
    assert again.id in {r.id for r in vault.scan().records}


def test_episodic_retention(vault: Vault) -> None:
    episodes = Episodes(vault)
    from memkit.conversations import ConversationMessage

    old_day = utcnow() - timedelta(days=120)
    episodes.record([ConversationMessage("long ago", "Dana", "m-old", "s-old", old_day)])
    episodes.record([ConversationMessage("today", "Dana", "m-new", "s-new", utcnow())])
    report = Memory(vault).expire()
    assert report.episodic_removed == [episodes.day_path(old_day.date().isoformat())]
    assert [r.meta["date"] for r in vault.scan(["episodic"]).records] == [
        utcnow().date().isoformat()
    ]


def test_entity_upsert_merges_with_history_and_relations(vault: Vault) -> None:
    entities = Entities(vault)
    made = entities.upsert(
        "Priya Raman",
        kind="person",
        attributes={"role": "engineer"},
        aliases=["Priya"],
        relations=[("works_at", "Northwind Labs")],
    )
    assert made.created and made.record.path == "memory/entities/Priya Raman.md"
    again = entities.upsert(
        "priya",
        attributes={"role": "tech lead", "city": "Berlin"},
        relations=[("works_at", "Northwind Labs"), ("manages", "Dana Okafor")],
        note="Runs the Ledger retro on Fridays",
        aliases=["PRIYA", "P.R."],
    )
    record = again.record
    assert record.id == made.record.id
    assert record.meta["attributes"] == {"role": "tech lead", "city": "Berlin"}
    assert record.meta["aliases"] == ["Priya", "P.R."]
    assert "role changed from 'engineer' to 'tech lead'" in record.body
    assert record.body.count("[[Northwind Labs]]") == 1
    assert "- manages: [[Dana Okafor]]" in record.body
    assert f"- {utcnow().date().isoformat()}: Runs the Ledger retro on Fridays" in record.body
    assert entities.find("p.r.").id == made.record.id  # type: ignore[union-attr]
    assert not vault.check().problems
    unchanged = entities.upsert("Priya Raman", kind="person")
    assert unchanged.changes == []
    with pytest.raises(SecretRefused):
        entities.upsert(
            "Priya Raman", note="her token is ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
        )


def test_entity_merge_keeps_a_persons_edit(vault: Vault) -> None:
    entities = Entities(vault)
    record = entities.upsert("Miso", kind="pet").record
    assert record.path is not None
    full = vault.root / record.path
    full.write_text(full.read_text() + "\nMiso is a shiba inu. (added by Dana)\n")
    entities.upsert("Miso", note="Walks at 7am")
    text = full.read_text()
    assert "added by Dana" in text and "Walks at 7am" in text


CONVERSATION = "\n".join(
    json.dumps(m)
    for m in [
        {
            "id": "m1",
            "session": "s-a",
            "time": "2026-11-02T10:00:00Z",
            "speaker": "Dana",
            "text": "Our invoice run deadlocked last night.",
        },
        {
            "id": "m2",
            "session": "s-a",
            "time": "2026-11-02T10:01:00Z",
            "role": "assistant",
            "content": "Check pg_stat_activity for the blocking query.",
        },
        {
            "id": "m3",
            "session": "s-a",
            "time": "2026-11-02T10:02:00Z",
            "speaker": "Dana",
            "text": "It was apply_credit locking the account row second.",
        },
        {
            "id": "m4",
            "session": "s-b",
            "time": "2026-11-03T09:00:00Z",
            "speaker": "Dana",
            "text": "Miso ate my headphones.",
        },
    ]
)


def test_import_is_idempotent_and_readable(vault: Vault, tmp_path: Path) -> None:
    episodes = Episodes(vault)
    first = episodes.import_text(CONVERSATION, "chat.jsonl")
    assert (first.added, first.skipped, first.days) == (4, 0, ["2026-11-02", "2026-11-03"])
    second = episodes.import_text(CONVERSATION, "chat.jsonl")
    assert (second.added, second.skipped) == (0, 4)
    day = vault.get("memory/episodic/2026/11/2026-11-02.md")
    assert "- 10:01 **assistant** [m2]: Check pg_stat_activity for the blocking query." in day.body
    interactions = parse_day(day.body)
    assert [m.message_id for m in interactions[0].messages] == ["m1", "m2", "m3"]
    assert interactions[0].session == "s-a"
    assert not vault.check().problems


def test_import_without_ids_is_still_idempotent(vault: Vault) -> None:
    text = json.dumps(
        [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "hello"},
        ]
    )
    episodes = Episodes(vault)
    assert episodes.import_text(text, "a.json", session="s-x").added == 3
    assert episodes.import_text(text, "a.json", session="s-x").added == 0


def test_bad_import_lines_name_file_and_line_and_write_nothing(vault: Vault) -> None:
    text = "\n".join(
        [
            json.dumps({"text": "fine"}),
            "{not json",
            json.dumps({"speaker": "Dana"}),
            json.dumps({"text": "x", "time": "yesterday-ish"}),
            json.dumps(["a list"]),
        ]
    )
    with pytest.raises(ImportFormatError) as caught:
        Episodes(vault).import_text(text, "chat.jsonl")
    message = str(caught.value)
    assert "chat.jsonl:2: not valid JSON" in message
    assert "chat.jsonl:3: a message needs non-empty 'text' or 'content'" in message
    assert "chat.jsonl:4: 'time' must be an ISO 8601" in message
    assert "chat.jsonl:5: expected a JSON object" in message
    assert "chat.jsonl:1" not in message
    assert vault.scan(["episodic"]).records == []
    array = '[\n  {"role": "user", "content": "ok"},\n  {"role": "user"}\n]'
    with pytest.raises(ImportFormatError, match=r"a.json:3: a message needs"):
        Episodes(vault).import_text(array, "a.json")


def test_import_redacts_credentials(vault: Vault) -> None:
    key = "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7"
    report = Episodes(vault).import_text(json.dumps({"text": f"my key is {key}"}), "c.jsonl")
    assert report.redacted == 1
    body = vault.scan(["episodic"]).records[0].body
    assert key not in body and "[REDACTED" in body


def test_recall_returns_messages_with_neighbours(vault: Vault) -> None:
    Episodes(vault).import_text(CONVERSATION, "chat.jsonl")
    Memory(vault).remember("Dana's dog Miso is a shiba inu", importance=0.8)
    hits = Memory(vault).recall("blocking query pg_stat_activity", k=3)
    top = hits[0]
    assert top.hit.message_id == "m2" and top.hit.session == "s-a"
    assert top.hit.created is not None and top.hit.created.date().isoformat() == "2026-11-02"
    assert [m[0] for m in top.before] == ["m1"] and [m[0] for m in top.after] == ["m3"]
    data = top.to_json()
    assert data["message_id"] == "m2" and data["date"] == "2026-11-02"
    assert data["path"] == "memory/episodic/2026/11/2026-11-02.md"
    kinds = {h.hit.type for h in Memory(vault).recall("Miso")}
    assert kinds == {"episodic", "long-term"}


def test_context_cites_records_within_budget(sample_vault: Vault) -> None:
    block = build_context(sample_vault, "postgres deadlock in the invoice run", budget=400)
    assert block.text.startswith("## Relevant memory (memkit)\n")
    assert block.tokens <= 400
    lines = [line for line in block.text.splitlines() if line.startswith("- ")]
    assert lines and all(line.endswith(")") for line in lines)
    assert "### About the user" in block.text  # persona first
    assert block.text.index("### About the user") < block.text.index("### Memory")
    small = build_context(sample_vault, "postgres deadlock", budget=60)
    assert small.tokens <= 60 and len(small.used) < len(block.used)


def test_cli_memory_commands(run: Runner, tmp_path: Path) -> None:
    conversation = tmp_path / "chat.jsonl"
    conversation.write_text(CONVERSATION)
    data = json.loads(run.run("import", str(conversation), "--json").stdout)
    assert data["added"] == 4
    assert json.loads(run.run("import", str(conversation), "--json").stdout)["added"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    result = run.run("import", str(bad))
    assert result.exit_code == 1 and f"{bad}:2: not valid JSON" in result.stderr
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "caf\xe9"}\n')
    result = run.run("import", str(latin))
    assert result.exit_code != 0 and "UTF-8" in result.stderr

    recalled = json.loads(run.run("recall", "apply_credit", "account", "row", "--json").stdout)
    assert recalled["hits"][0]["message_id"] == "m3"
    text = run.run("recall", "apply_credit account row").stdout
    assert "> Dana [m3]" in text and "assistant [m2]" in text

    made = json.loads(
        run.run(
            "entity",
            "Dana Okafor",
            "--kind",
            "person",
            "--set",
            "team=Ledger",
            "--alias",
            "Dana",
            "--relate",
            "owns=Miso",
            "--json",
        ).stdout
    )
    assert made["created_now"] is True and made["attributes"] == {"team": "Ledger"}
    shown = json.loads(run.run("entity", "dana", "--json").stdout)
    assert shown["id"] == made["id"]
    assert run.run("entity", "Nobody").exit_code == 1
    assert run.run("entity", "Dana", "--set", "broken").exit_code == 2
    listed = json.loads(run.run("list", "--type", "entity", "--json").stdout)
    assert [r["name"] for r in listed] == ["Dana Okafor"]

    ctx = run.run("context", "deadlock", "--budget", "200").stdout
    assert "## Relevant memory" in ctx and "m1" in ctx
    expired = json.loads(run.run("expire", "--json").stdout)
    # The imported days are within the 90-day retention; nothing in short-term.
    assert expired == {"expired": [], "promoted": [], "episodic_removed": []}


def test_cli_supersede_and_short_term(run: Runner) -> None:
    old = json.loads(
        run.run("remember", "Dana drinks oat milk", "--subject", "milk", "--json").stdout
    )
    new = json.loads(
        run.run("remember", "Dana switched to whole milk", "--subject", "milk", "--json").stdout
    )
    assert new["supersedes"] == old["id"]
    shown = json.loads(run.run("show", old["id"], "--json").stdout)
    assert shown["superseded_by"] == new["id"]
    assert run.run("remember", "x", "--type", "short-term", "--subject", "milk").exit_code == 2


def test_undated_messages_keep_their_ids_when_imported_again_later(vault: Vault) -> None:
    from datetime import datetime, timedelta, timezone

    text = json.dumps(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    )
    episodes = Episodes(vault)
    first = datetime(2026, 11, 29, 10, 0, 0, tzinfo=timezone.utc)
    messages = parse_conversation(text, "a.json")
    assert episodes.record(messages, session="s-x", now=first).added == 2
    # A second later, and a day later: the same messages, nothing added.
    for later in (first + timedelta(seconds=1), first + timedelta(days=1)):
        assert episodes.record(messages, session="s-x", now=later).added == 0
