"""Learning: extraction through the real openai client against a scripted local server, the three
modes, every store and op, consolidation, refusals, and approval by CLI or by moving a file."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memkit import Vault
from memkit.conversations import ConversationMessage, Episodes
from memkit.errors import ConflictError, LLMError, UsageError
from memkit.learning import Learning
from memkit.llm import LLMClient, LLMConfig
from memkit.maintenance import refresh
from memkit.records import STORE_TYPES, TYPE_FOLDERS
from memkit.sync import SyncReport, VaultIndex
from memkit.timeutil import utcnow

from .conftest import Runner
from .llm_server import ScriptedLLMServer

MESSAGES = [
    ConversationMessage("Please keep answers short, code first.", "Dana", "m-1", "s-1", utcnow()),
    ConversationMessage(
        "Understood: code first, then one line of why.", "assistant", "m-2", "s-1", utcnow()
    ),
]


def entry(
    store: str = "persona",
    op: str = "add",
    text: str = "Prefers code-first answers.",
    target: str | None = None,
    title: str = "Code first",
    **more: Any,
) -> dict[str, Any]:
    return {
        "store": store,
        "op": op,
        "target": target,
        "title": title,
        "text": text,
        "importance": more.get("importance", 0.7),
        "tags": more.get("tags", ["style"]),
        "evidence": more.get("evidence", ["m-1"]),
        "rationale": more.get("rationale", "said so"),
    }


@pytest.fixture
def llm(llm_server: ScriptedLLMServer) -> Iterator[LLMClient]:
    client = LLMClient(
        LLMConfig(
            model="test-model",
            base_url=llm_server.base_url,
            api_key=None,
            timeout_seconds=5,
            max_retries=0,
        )
    )
    yield client
    client.close()


@pytest.fixture
def learning(vault: Vault, llm: LLMClient) -> Iterator[Learning]:
    item = Learning(vault, llm=llm)
    yield item
    item.close()


def stored(vault: Vault, store: str) -> list[Any]:
    return vault.scan([STORE_TYPES[store]]).records


def test_agentic_writes_entries_and_asks_for_structured_output(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_json(
        {
            "entries": [
                entry(),
                entry(
                    "insights", text="Dana reviews deploy plans with Priya.", title="Deploy reviews"
                ),
                entry("threads", text="Agreed on code-first answers.", title="Answer style"),
                entry("persona", op="noop", text=""),
            ]
        }
    )
    report = learning.learn(MESSAGES, mode="agentic")
    assert [w["store"] for w in report.written] == ["persona", "insights", "threads"]
    persona = stored(vault, "persona")[0]
    assert persona.body == "Prefers code-first answers.\n"
    assert persona.meta["evidence"] == ["m-1"] and persona.importance == 0.7
    assert persona.meta["source"] == {"session": "s-1", "tool": "learn"}
    assert stored(vault, "threads")[0].meta["session"] == "s-1"
    request = llm_server.requests[0]
    assert request["model"] == "test-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["entries"]
    prompt = request["messages"][1]["content"]
    # Compact lines: short ids and times relative to the session start, not ULIDs and ISO stamps.
    assert "[m1] +0m Dana: Please keep answers short" in prompt
    schema = request["response_format"]["json_schema"]["schema"]
    item = schema["properties"]["entries"]["items"]["properties"]
    assert item["store"]["enum"] == ["persona", "insights", "threads"]
    assert item["evidence"]["items"]["enum"] == ["m1", "m2"]
    assert item["target"] == {"type": "null"}  # nothing was shown, so nothing can be targeted
    assert (
        schema["properties"]["entries"]["maxItems"] == 2
    )  # what fits 900 tokens with every string full
    assert item["text"]["maxLength"] == 200 and item["title"]["maxLength"] == 60
    assert request["max_tokens"] == 900 and request["temperature"] == 0.2
    assert not vault.check().problems


def test_disabled_mode_asks_nothing(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    report = learning.learn(MESSAGES, mode="disabled")
    assert report.written == [] and llm_server.requests == []
    assert not list(vault.record_paths())


@pytest.mark.parametrize("store", list(STORE_TYPES))
def test_every_store_can_be_written_when_enabled(
    store: str, learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_json({"entries": [entry(store, text=f"An entry for {store}.")]})
    report = learning.learn(MESSAGES, mode="agentic", stores=[store])
    assert report.refused == [] and len(report.written) == 1
    record = stored(vault, store)[0]
    assert record.path.startswith(TYPE_FOLDERS[STORE_TYPES[store]] + "/")
    assert not vault.check().problems


def test_disabled_unknown_and_bad_entries_are_refused(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    key = "sk-proj-" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9"
    llm_server.reply_json(
        {
            "entries": [
                entry("decisions", text="Use RQ."),  # off by default
                entry("diary", text="Dear diary"),
                entry("persona", op="update", target="01JD0000000000000000000000"),
                entry("persona", text="   "),
                entry("persona", text=f"Dana's key is {key}"),
                entry("persona", op="rewrite"),
                "not an object",
            ]
        }
    )
    report = learning.learn(MESSAGES, mode="agentic")
    reasons = [r.reason for r in report.refused]
    assert "store 'decisions' is disabled" in reasons
    assert "unknown store 'diary'" in reasons
    assert any("unknown target" in r for r in reasons)
    assert "the entry has no text" in reasons
    assert "the text holds a credential" in reasons
    assert "unknown op 'rewrite'" in reasons
    assert len(report.refused) == 7 and report.written == []
    assert not list(vault.record_paths())


def test_consolidation_shows_existing_entries_and_updates_or_supersedes(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    old = vault.create(
        "insight", "Dana deploys Ledger on Tuesdays.", title="Deploy day", tags=["ledger"]
    )
    other = vault.create(
        "insight", "Ledger deploys need a rollback plan for Priya.", title="Rollback plans"
    )
    llm_server.reply_json(
        {
            "entries": [
                entry(
                    "insights",
                    op="update",
                    target=old.id,
                    title="Deploy days",
                    text="Dana deploys Ledger on Tuesdays and Thursdays.",
                    tags=["deploys"],
                ),
                entry(
                    "insights",
                    op="supersede",
                    target=other.id,
                    title="Rollback plans",
                    text="Ledger deploys need a written rollback plan, reviewed by Priya.",
                ),
                entry(
                    "insights", text="Dana deploys Ledger on Tuesdays and Thursdays."
                ),  # duplicate
            ]
        }
    )
    report = learning.learn(
        [
            *MESSAGES,
            ConversationMessage(
                "We deploy Ledger on Tuesdays and Thursdays; Priya wants rollback plans.",
                "Dana",
                "m-3",
                "s-1",
                utcnow(),
            ),
        ],
        mode="agentic",
    )
    assert set(report.shown) >= {old.id, other.id}
    prompt = llm_server.requests[0]["messages"][1]["content"]
    assert "- id e1 [insights]" in prompt and "- id e2 [insights]" in prompt
    targets = llm_server.requests[0]["response_format"]["json_schema"]["schema"]["properties"][
        "entries"
    ]["items"]["properties"]["target"]["enum"]
    assert targets == ["e1", "e2", None]
    updated = vault.get(old.id)
    assert updated.body == "Dana deploys Ledger on Tuesdays and Thursdays.\n"
    assert updated.tags == ["deploys", "ledger"] and updated.meta["title"] == "Deploy days"
    superseded = vault.get(other.id)
    replacement = vault.get(superseded.meta["superseded_by"])
    assert replacement.meta["supersedes"] == other.id
    assert report.duplicates == ["Code first"]


def test_one_thread_per_session_is_updated(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_json({"entries": [entry("threads", text="Started on answer style.")]})
    learning.learn(MESSAGES, mode="agentic")
    llm_server.reply_json({"entries": [entry("threads", text="Answer style settled; moved on.")]})
    report = learning.learn(MESSAGES, mode="agentic")
    assert report.written[0]["op"] == "update"
    threads = stored(vault, "threads")
    assert len(threads) == 1 and threads[0].body == "Answer style settled; moved on.\n"


@pytest.mark.parametrize(
    "reply",
    [
        lambda s: s.reply_text("this is not json"),
        lambda s: s.reply_text(""),
        lambda s: s.reply_text('{"entries": [{"store": "persona"', finish_reason="length"),
        lambda s: s.reply_json({"items": []}),
        lambda s: s.reply_error(500, "boom"),
    ],
    ids=["malformed", "empty", "truncated", "no-entries", "server-error"],
)
def test_bad_replies_write_nothing(
    reply: Any, learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    reply(llm_server)
    with pytest.raises(LLMError):
        learning.learn(MESSAGES, mode="agentic")
    assert not list(vault.record_paths())


def test_server_down_is_a_clear_error(vault: Vault) -> None:
    client = LLMClient(
        LLMConfig(
            model="m",
            base_url="http://127.0.0.1:9/v1",
            api_key=None,
            timeout_seconds=1,
            max_retries=0,
        )
    )
    with pytest.raises(LLMError, match=r"127\.0\.0\.1:9"):
        Learning(vault, llm=client).learn(MESSAGES, mode="agentic")
    client.close()


def test_structured_output_fallback(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.refuse_json_schema()
    llm_server.reply_json({"entries": [entry()]})
    report = learning.learn(MESSAGES, mode="agentic")
    assert len(report.written) == 1
    # json_object still carries the schema: servers that enforce it with a grammar use it.
    response_format = llm_server.requests[-1]["response_format"]
    assert response_format["type"] == "json_object"
    assert response_format["schema"]["properties"]["entries"]["maxItems"] == 2


def propose_two(learning: Learning, llm_server: ScriptedLLMServer, vault: Vault) -> list[str]:
    target = vault.create("insight", "Dana deploys on Tuesdays.", title="Deploy day")
    llm_server.reply_json(
        {
            "entries": [
                entry(),
                entry(
                    "insights", op="update", target=target.id, text="Dana deploys on Tue and Thu."
                ),
            ]
        }
    )
    report = learning.learn(MESSAGES, mode="propose")
    assert report.written == [] and len(report.proposed) == 2
    return [p["path"] for p in report.proposed]


def test_propose_then_approve_and_reject_through_the_cli(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    add_path, update_path = propose_two(learning, llm_server, vault)
    assert add_path.startswith("learning/proposals/")
    proposal = vault.get(add_path)
    assert proposal.meta["store"] == "persona" and proposal.meta["op"] == "add"
    assert proposal.body == "Prefers code-first answers.\n"
    runner = Runner(vault.root)
    listed = json.loads(runner.run("proposals", "--json").stdout)
    assert sorted(p["path"] for p in listed) == sorted([add_path, update_path])

    approved = json.loads(runner.run("approve", proposal.id, "--json").stdout)
    assert approved["type"] == "persona" and approved["id"] == proposal.id
    assert approved["path"] == "learning/persona/" + Path(add_path).name
    assert "approved" in approved and "store" not in approved and "op" not in approved
    assert not (vault.root / add_path).exists()

    update = vault.get(update_path)
    target_id = update.meta["target"]
    rejected = json.loads(
        runner.run("reject", update_path, "--reason", "too vague", "--json").stdout
    )
    assert rejected["path"].startswith("learning/rejected/") and rejected["reason"] == "too vague"
    assert vault.get(target_id).body == "Dana deploys on Tuesdays.\n"
    assert json.loads(runner.run("proposals", "--json").stdout) == []
    assert not vault.check().problems

    # The same thing is not proposed again.
    llm_server.reply_json(
        {
            "entries": [
                entry(
                    "insights", op="update", target=target_id, text="Dana deploys on Tue and Thu."
                )
            ]
        }
    )
    again = learning.learn(MESSAGES, mode="propose")
    assert again.proposed == [] and again.refused[0].reason == "a person rejected this before"
    assert runner.run("approve", rejected["id"]).exit_code == 2


def test_approving_an_update_applies_it_to_the_target(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    _, update_path = propose_two(learning, llm_server, vault)
    target_id = vault.get(update_path).meta["target"]
    result = learning.approve(update_path)
    assert result.id == target_id and result.body == "Dana deploys on Tue and Thu.\n"
    assert "approved" in result.meta and not (vault.root / update_path).exists()


def test_approving_when_the_target_changed_is_refused_then_forced(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    _, update_path = propose_two(learning, llm_server, vault)
    target = vault.get(vault.get(update_path).meta["target"])
    target.body = "Dana deploys on Wednesdays now.\n"
    vault.update(target)
    with pytest.raises(ConflictError, match="changed since the proposal"):
        learning.approve(update_path)
    assert vault.get(update_path).type == "proposal"  # nothing lost
    assert learning.approve(update_path, force=True).body == "Dana deploys on Tue and Thu.\n"


def test_approval_by_moving_the_file_is_finalised_by_sync(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    add_path, _ = propose_two(learning, llm_server, vault)
    proposal_id = vault.get(add_path).id
    moved = f"learning/persona/{Path(add_path).name}"
    shutil.move(vault.root / add_path, vault.root / moved)
    refresh(vault)
    record = vault.get(moved)
    assert record.type == "persona" and record.id == proposal_id and "approved" in record.meta
    assert not vault.check().problems


def test_moving_into_the_wrong_store_is_reported_and_loses_nothing(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    add_path, _ = propose_two(learning, llm_server, vault)
    wrong = f"learning/insights/{Path(add_path).name}"
    before = (vault.root / add_path).read_bytes()
    shutil.move(vault.root / add_path, vault.root / wrong)
    with pytest.raises(
        UsageError, match=r"for the 'persona' store but was moved into learning/insights"
    ):
        learning.finalise_moved(wrong)
    assert (vault.root / wrong).read_bytes() == before
    report = refresh(vault)
    assert any(p.path == wrong and "persona" in p.message for p in report.problems)
    assert (vault.root / wrong).read_bytes() == before


def test_approval_by_move_with_the_watcher_running(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    from memkit.maintenance import finalise_moved_proposals
    from memkit.watcher import Watcher

    add_path, _ = propose_two(learning, llm_server, vault)
    moved = vault.root / f"learning/persona/{Path(add_path).name}"
    index = VaultIndex(vault)

    def finalise(report: SyncReport) -> None:
        finalise_moved_proposals(vault, report)

    watcher = Watcher(index, on_sync=finalise)
    with watcher:
        (vault.root / add_path).rename(moved)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "type: persona" in moved.read_text():
                break
            time.sleep(0.05)
    index.close()
    assert "type: persona" in moved.read_text() and "approved:" in moved.read_text()


def test_learn_cli_against_the_local_server(
    run: Runner, llm_server: ScriptedLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = tmp_path / "talk.jsonl"
    conversation.write_text(
        "\n".join(
            json.dumps({"id": m.message_id, "speaker": m.speaker, "text": m.text}) for m in MESSAGES
        )
    )
    result = run.run("learn", str(conversation))
    assert result.exit_code == 1 and "OPENAI_BASE_URL" in result.stderr  # how to configure
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    llm_server.reply_json({"entries": [entry()]})
    data = json.loads(run.run("learn", str(conversation), "--mode", "propose", "--json").stdout)
    assert data["mode"] == "propose" and len(data["proposed"]) == 1
    assert len(Episodes(Vault(run.root)).known_message_ids()) == 2  # recorded as well
    assert (
        json.loads(run.run("learn", str(conversation), "--mode", "disabled", "--json").stdout)[
            "proposed"
        ]
        == []
    )
    assert run.run("learn", str(conversation), "--store", "diary").exit_code == 2


# --- real-model robustness: chunks, quality floor, near-duplicates, failures ------------------


def long_talk(count: int) -> list[ConversationMessage]:
    start = utcnow()
    return [
        ConversationMessage(
            f"Message {n}: Dana explains step {n} of the Postgres upgrade plan in some detail.",
            "Dana" if n % 2 else "assistant",
            f"msg-{n:03d}",
            "s-long",
            start,
        )
        for n in range(1, count + 1)
    ]


def small_context(llm_server: ScriptedLLMServer, context: int = 1200) -> LLMClient:
    return LLMClient(
        LLMConfig(
            "test-model",
            llm_server.base_url,
            None,
            5.0,
            0,
            context_tokens=context,
            max_output_tokens=300,
        )
    )


def test_a_conversation_longer_than_the_context_is_learned_in_chunks_of_whole_messages(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    talk = long_talk(40)
    for n in range(10):
        llm_server.reply_json(
            {
                "entries": [
                    entry(
                        "insights",
                        text=[
                            "Dana documents every step of the upgrade plan.",
                            "Priya reviews the rollback plan before each run.",
                        ][n],
                        title=f"Upgrade step {n}",
                        evidence=[f"m{i}" for i in range(1, 41)],
                    )
                ]
                if n < 2
                else []
            }
        )
    with small_context(llm_server) as llm:
        report = Learning(vault, llm=llm).learn(talk, mode="agentic")
    prompts = [r["messages"][1]["content"] for r in llm_server.requests]
    assert report.chunks == len(prompts) > 1 and report.context_tokens == 1200
    seen: list[str] = []
    for number, request in enumerate(llm_server.requests):
        prompt = request["messages"][1]["content"]
        assert f"PART {number + 1} of {len(prompts)}" in prompt
        ids = request["response_format"]["json_schema"]["schema"]["properties"]["entries"]["items"][
            "properties"
        ]["evidence"]["items"]["enum"]
        # Whole messages, in order, each in exactly one chunk; evidence only from this chunk.
        for short in ids:
            number_of = int(short[1:])
            assert f"[{short}] +0m " in prompt
            assert f"Message {number_of}: Dana explains step {number_of} of" in prompt
        seen += ids
        assert request["max_tokens"] <= 300
    assert seen == [f"m{n}" for n in range(1, 41)]
    # Later chunks are told what earlier ones found; one merged report.
    assert "ALREADY LEARNED FROM EARLIER PARTS" in prompts[-1] and "Upgrade step 0" in prompts[-1]
    assert [w["store"] for w in report.written] == ["insights", "insights"]
    written = [vault.read_record(w["path"]) for w in report.written]
    # Short ids mapped back to the conversation's own: chunk 1's messages only.
    assert written[0].meta["evidence"][0] == "msg-001"
    assert "msg-001" not in written[1].meta["evidence"]  # the second chunk's own messages


def test_a_context_overflow_the_estimate_missed_is_planned_again_smaller(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_error(
        400,
        {
            "error": {
                "code": 400,
                "message": "request (1900 tokens) exceeds the available context size (1600 "
                "tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 1900,
                "n_ctx": 1600,
            }
        },
    )
    for _ in range(12):
        llm_server.reply_json({"entries": []})
    with small_context(llm_server, 2000) as llm:
        report = Learning(vault, llm=llm).learn(long_talk(30), mode="agentic")
    assert report.context_tokens <= 1600 and report.chunks >= 2
    # Every message was still sent once after the failed request.
    later = "\n".join(r["messages"][1]["content"] for r in llm_server.requests[1:])
    assert all(f"Message {n}: " in later for n in range(1, 31))


def test_entries_below_the_quality_floor_are_refused_and_reported(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_json(
        {
            "entries": [
                entry("persona", title="PERSONA", text="PERSONA"),
                entry("persona", title="Editor", text="Uses vim"),
                entry("insights", title="m-1", text="Dana keeps answers short and code first."),
                entry("insights", title="2026-11-20 09:00", text="Dana wants code first, always."),
                entry("insights", title="Made up", text="Dana works at night.", evidence=["m-99"]),
                entry("persona", title="Answer style", text="Dana wants the code before the why."),
            ]
        }
    )
    report = learning.learn(MESSAGES, mode="agentic")
    reasons = [(r.title, r.reason) for r in report.refused]
    assert reasons == [
        ("PERSONA", "its text only repeats its title"),
        ("Editor", "its text is only a word or two"),
        ("m-1", "its title is an id or a timestamp, not what the entry is about"),
        ("2026-11-20 09:00", "its title is an id or a timestamp, not what the entry is about"),
        ("Made up", "its evidence cites no message of the conversation"),
    ]
    assert [w["store"] for w in report.written] == ["persona"]
    assert [r.title for r in stored(vault, "persona")] == ["Answer style"]


def test_a_near_duplicate_of_an_existing_entry_becomes_an_update(
    learning: Learning, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    old = vault.create(
        "persona", "Dana prefers short answers with the code first.", title="Answer style"
    )
    learning.index.sync()
    llm_server.reply_json(
        {
            "entries": [
                entry(text="Dana prefers short answers with the code first, always."),
                entry(text="Dana prefers short answers with the code first, always!"),
            ]
        }
    )
    report = learning.learn(MESSAGES, mode="agentic")
    assert [(w["op"], w["id"]) for w in report.written] == [("update", old.id)]
    assert report.duplicates == ["Code first"]  # the second said it again: dropped
    (only,) = stored(vault, "persona")
    assert only.body == "Dana prefers short answers with the code first, always.\n"


def test_a_failed_chunk_leaves_nothing_partial(vault: Vault, llm_server: ScriptedLLMServer) -> None:
    llm_server.reply_json(
        {"entries": [entry("insights", text="Dana documents every upgrade step.", title="Docs")]}
    )
    llm_server.reply_text('{"entries": [{"store": "insights", "title": "Lo')  # not JSON
    with small_context(llm_server) as llm, pytest.raises(LLMError):
        Learning(vault, llm=llm).learn(long_talk(40), mode="agentic")
    assert len(llm_server.requests) == 2
    assert list(vault.record_paths()) == []  # nothing in learning/ (nor anywhere)


def test_a_chunk_the_model_loops_on_is_asked_again_smaller_then_skipped_and_said(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    looping = '{"entries": [{"store": "insights", "title": "Lo'
    docs = entry("insights", text="Dana documents every upgrade step.", title="Docs")
    llm_server.reply_json({"entries": [{**docs, "evidence": ["m1"]}]})
    llm_server.reply_text(looping, finish_reason="length")
    llm_server.reply_text(looping, finish_reason="length")
    for _ in range(8):  # whatever further parts the plan has
        llm_server.reply_json({"entries": []})
    with small_context(llm_server) as llm:
        report = Learning(vault, llm=llm).learn(long_talk(40), mode="agentic")
    assert report.chunks >= 3
    second, third = llm_server.requests[1:3]
    assert third["max_tokens"] == second["max_tokens"] // 2  # asked again, not the same request
    (warning,) = [w for w in report.warnings if "was skipped" in w]
    assert warning.startswith(f"part 2 of {report.chunks} (messages ")
    assert "kept writing until its output cap" in warning
    assert [w["store"] for w in report.written] == ["insights"]  # the first part was learned


def test_learn_cli_through_a_server_that_refuses_json_schema_with_500(
    run: Runner, llm_server: ScriptedLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_llm import LLAMA_CPP_PYTHON_500

    conversation = tmp_path / "talk.jsonl"
    conversation.write_text(
        "\n".join(
            json.dumps({"id": m.message_id, "speaker": m.speaker, "text": m.text}) for m in MESSAGES
        )
    )
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("MEMKIT_MODEL", "test-model")
    llm_server.reply_error(500, LLAMA_CPP_PYTHON_500)
    llm_server.reply_json({"entries": [entry()]})
    result = run.run("learn", str(conversation))
    assert result.exit_code == 0, result.output
    assert "structured output: the server refused json_schema; used json_object" in result.stderr
    assert len(stored(Vault(run.root), "persona")) == 1
    llm_server.reply_json(
        {"entries": [entry("insights", text="Dana reviews plans with Priya.", title="Reviews")]}
    )
    assert run.run("learn", str(conversation)).exit_code == 0
    kinds = [r["response_format"]["type"] for r in llm_server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]  # one refusal, ever


def test_learn_cli_says_the_model_looped_in_one_line_and_exits_1(
    run: Runner, llm_server: ScriptedLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = tmp_path / "talk.jsonl"
    conversation.write_text(json.dumps({"speaker": "Dana", "text": "Keep it short."}) + "\n")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    for _ in range(2):  # asked again once with half the cap; it loops again
        llm_server.reply_text(
            '{"entries": [{"text": "short short short short', finish_reason="length"
        )
    result = run.run("learn", str(conversation))
    assert len(llm_server.requests) == 2
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "kept writing until its output cap" in line and "looping" in line
    assert not (run.root / "learning" / "persona").exists() or not any(
        (run.root / "learning" / "persona").iterdir()
    )


def test_an_extraction_that_timed_out_is_asked_again_smaller_once(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_json({"entries": []}, delay=3.0)
    llm_server.reply_json({"entries": [entry()]})
    config = LLMConfig("test-model", llm_server.base_url, None, 0.5, 0)
    with LLMClient(config) as llm:
        report = Learning(vault, llm=llm).learn(MESSAGES, mode="agentic")
    first, second = llm_server.requests
    assert second["max_tokens"] == first["max_tokens"] // 2  # not the same request again
    items = [
        r["response_format"]["json_schema"]["schema"]["properties"]["entries"]["maxItems"]
        for r in (first, second)
    ]
    assert items[1] < items[0]
    assert len(report.written) == 1


@pytest.mark.slow
def test_a_second_timeout_is_reported_as_a_timeout(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_json({"entries": []}, delay=3.0)
    llm_server.reply_json({"entries": []}, delay=3.0)
    config = LLMConfig("test-model", llm_server.base_url, None, 0.5, 2)
    with LLMClient(config) as llm, pytest.raises(LLMError, match=r"timed out after 0\.5 s"):
        Learning(vault, llm=llm).learn(MESSAGES, mode="agentic")
    assert len(llm_server.requests) == 2
    assert list(vault.record_paths()) == []


@pytest.mark.parametrize("cap", [900, 682, 300, 256])
def test_the_schema_never_allows_more_than_the_output_cap_holds(cap: int) -> None:
    from memkit.learning import _OUTPUT_CHARS_PER_TOKEN, _entry_chars, extraction_schema

    schema = extraction_schema(["persona", "insights"], ["e1"], ["m1", "m2"], cap)
    entries = schema["properties"]["entries"]
    worst = entries["maxItems"] * _entry_chars(schema) / _OUTPUT_CHARS_PER_TOKEN + 20
    assert entries["maxItems"] >= 1 and worst <= cap
    props = entries["items"]["properties"]
    assert props["store"]["enum"] == ["persona", "insights"]
    assert props["target"]["enum"] == ["e1", None] and props["op"]["enum"][0] == "add"
