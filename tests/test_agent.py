"""Agent: memory only, learning only, both, custom configs, cadences, failures, one vault per user;
the real openai client against a scripted local server, asserting on what the model was sent."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from memkit import Agent, LearnConfig, MemoryConfig, Vault
from memkit.errors import LLMError, UsageError
from memkit.llm import LLMConfig

from .conftest import REPO
from .llm_server import ScriptedLLMServer

# Extraction before `run` returns: tests that script several turns need the requests in order.
SYNC = LearnConfig(background=False)


def config(server: ScriptedLLMServer) -> LLMConfig:
    return LLMConfig(
        model="test-model",
        base_url=server.base_url,
        api_key=None,
        timeout_seconds=5,
        max_retries=0,
    )


def entry(store: str, text: str, title: str, op: str = "add") -> dict[str, Any]:
    return {
        "store": store,
        "op": op,
        "target": None,
        "title": title,
        "text": text,
        "importance": 0.7,
        "tags": [],
        "evidence": ["m1"],
        "rationale": "said so",
    }


def chats(server: ScriptedLLMServer) -> list[dict[str, Any]]:
    """The chat requests (extraction requests ask for structured output)."""
    return [r for r in server.requests if "response_format" not in r]


def extractions(server: ScriptedLLMServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if "response_format" in r]


def system_of(request: dict[str, Any]) -> str:
    first = request["messages"][0]
    return str(first["content"]) if first["role"] == "system" else ""


def day_files(root: Path) -> list[Path]:
    return sorted((root / "memory" / "episodic").rglob("*.md"))


def short_term(root: Path) -> list[Path]:
    return sorted((root / "memory" / "short-term").glob("*.md"))


@pytest.mark.slow
def test_memory_only_records_each_interaction_and_recalls_it_later(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    root = tmp_path / "vault"  # absent: created on first use
    llm_server.reply_text("Noted: Miso likes tuna.")
    with Agent("Be brief.", vault=root, memory=True, llm=config(llm_server)) as agent:
        reply = agent.run("My cat is called Miso and she likes tuna.")
    assert reply.text == "Noted: Miso likes tuna."
    assert (root / "memkit.yaml").is_file()
    day = day_files(root)[0].read_text()
    assert f"[{reply.message_ids[0]}]: My cat is called Miso" in day
    assert f"**assistant** [{reply.message_ids[1]}]: Noted: Miso likes tuna." in day
    assert len(short_term(root)) == 2
    assert extractions(llm_server) == []  # no learning asked for

    # A new agent (new session, no chat history) still knows, through recall.
    llm_server.reply_text("Miso.")
    with Agent("Be brief.", vault=root, memory=True, llm=config(llm_server)) as agent:
        again = agent.run("What is my cat called?")
    assert again.session != reply.session
    system = system_of(chats(llm_server)[1])
    assert system.startswith("Be brief.\n\n## Relevant memory (memkit)")
    assert "### Memory" in system and "Miso" in system
    assert "About the user" not in system  # learning was not asked for
    assert again.memories_used and all(cite.split("#")[0] in system for cite in again.memories_used)
    assert not Vault(root).check().problems


def test_learning_only_puts_persona_first_and_learns_after_each_turn(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    vault = Vault.init(tmp_path / "vault")
    vault.create("persona", "Dana prefers answers in French.", title="French", importance=0.9)
    vault.create("insight", "Ledger deploys need a rollback plan.", title="Rollback plans")
    vault.create("long-term", "Ledger deploys on Tuesdays.", title="Deploy day")
    llm_server.reply_text("Oui: prepare a rollback plan.")
    llm_server.reply_json(
        {"entries": [entry("persona", "Dana deploys Ledger herself.", "Deploys herself")]}
    )
    with Agent(vault=vault.root, learn=SYNC, llm=config(llm_server), user_name="Dana") as agent:
        reply = agent.run("I am deploying Ledger today, what should I check?")

    system = system_of(chats(llm_server)[0])
    assert system.index("### About the user") < system.index("### Learned")
    assert "Dana prefers answers in French." in system
    assert "Ledger deploys need a rollback plan" in system
    assert "Tuesdays" not in system and "### Memory" not in system  # memory recall not asked
    # The extraction saw this turn, with its message ids, and wrote the entry.
    (extraction,) = extractions(llm_server)
    assert extraction["response_format"]["type"] == "json_schema"
    prompt = extraction["messages"][1]["content"]
    assert "[m1] +0m Dana: I am deploying Ledger" in prompt
    assert [w["store"] for w in reply.written] == ["persona"] and reply.extraction.ran
    assert (
        (vault.root / reply.written[0]["path"])
        .read_text()
        .endswith("Dana deploys Ledger herself.\n")
    )
    # learn=True keeps the minimal memory it needs: the interaction is recorded.
    assert len(day_files(vault.root)) == 1 and len(short_term(vault.root)) == 2


def test_learning_modes_propose_and_disabled(tmp_path: Path, llm_server: ScriptedLLMServer) -> None:
    root = tmp_path / "vault"
    llm_server.reply_text("Sure.")
    llm_server.reply_json({"entries": [entry("insights", "Dana ships on Fridays.", "Fridays")]})
    with Agent(
        vault=root, learn=LearnConfig(mode="propose", background=False), llm=config(llm_server)
    ) as agent:
        reply = agent.run("We ship on Fridays.")
    assert reply.written == [] and len(reply.proposed) == 1
    assert reply.proposed[0]["path"].startswith("learning/proposals/")

    llm_server.reply_text("Fine.")
    with Agent(vault=root, learn="disabled", llm=config(llm_server)) as agent:
        quiet = agent.run("Nothing to learn here.")
    assert not quiet.extraction.ran and len(extractions(llm_server)) == 1


def test_memory_and_learning_together_neither_disables_the_other(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    vault = Vault.init(tmp_path / "vault")
    vault.create("persona", "Dana wants code first.", title="Code first", importance=0.9)
    vault.create("long-term", "Ledger runs on Postgres 16.", title="Ledger database")
    llm_server.reply_text("Use pg_upgrade.")
    llm_server.reply_json({"entries": [entry("insights", "Dana upgrades Postgres.", "Upgrades")]})
    with Agent(vault=vault.root, memory=True, learn=SYNC, llm=config(llm_server)) as agent:
        reply = agent.run("How do I upgrade the Ledger Postgres database?")
    system = system_of(chats(llm_server)[0])
    assert system.index("### About the user") < system.index("### Memory")
    assert "Dana wants code first." in system and "Ledger runs on Postgres 16" in system
    assert len(reply.written) == 1 and reply.errors == []
    assert len(day_files(vault.root)) == 1 and len(short_term(vault.root)) == 2


def test_custom_config_overrides_the_vault_settings_for_that_agent_only(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    vault = Vault.init(tmp_path / "vault")
    settings_text = (vault.root / "memkit.yaml").read_bytes()
    memory = MemoryConfig(episodic=False, capacity=2, ttl_hours=1.5, retention_days=7)
    learn = LearnConfig(
        mode="propose",
        stores={"decisions": True, "threads": False},
        cadence=2,
        related_entries=3,
        background=False,
    )
    agent = Agent(vault=vault.root, memory=memory, learn=learn, llm=config(llm_server))
    try:
        settings = agent.vault.settings
        assert settings.memory.short_term.capacity == 2
        assert settings.memory.short_term.ttl_hours == 1.5
        assert settings.memory.episodic.retention_days == 7
        assert settings.learning.mode == "propose" and settings.learning.related_entries == 3
        assert settings.learning.stores["decisions"] and not settings.learning.stores["threads"]
        assert settings.learning.stores["persona"]  # untouched stores keep the vault's value

        replies = []
        for number in (1, 2, 3):
            llm_server.reply_text(f"Reply {number}.")
            if number == 2:
                llm_server.reply_json(
                    {"entries": [entry("decisions", "Use RQ for the job queue.", "Queue")]}
                )
            replies.append(agent.run(f"Message {number} about the job queue."))
        assert [r.extraction.ran for r in replies] == [False, True, False]
        assert len(replies[1].proposed) == 1 and replies[1].written == []
        first = extractions(llm_server)[0]
        prompt = first["messages"][1]["content"]
        assert "Message 1 about" in prompt and "Message 2 about" in prompt
        assert "- decisions:" in first["messages"][0]["content"]
        assert "- threads:" not in first["messages"][0]["content"]
        assert len(short_term(vault.root)) == 2  # the capacity of this agent
        assert day_files(vault.root) == []  # episodic off
        llm_server.reply_json({"entries": []})
    finally:
        leftover = agent.close()  # what is left (turn 3) is learned at session end
    assert (
        leftover.ran and "Message 3 about" in extractions(llm_server)[1]["messages"][1]["content"]
    )
    assert (vault.root / "memkit.yaml").read_bytes() == settings_text
    assert Vault(vault.root).settings.memory.short_term.capacity == 50


def test_session_end_cadence_extracts_once_over_the_whole_session(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    learn = LearnConfig(cadence="session_end", background=False)
    with Agent(vault=tmp_path / "v", learn=learn, llm=config(llm_server)) as agent:
        for number in (1, 2):
            llm_server.reply_text(f"Reply {number}.")
            assert not agent.run(f"Turn {number}.").extraction.ran
        assert extractions(llm_server) == []
        # Chat history of the session goes to the model with each turn.
        assert [m["content"] for m in chats(llm_server)[1]["messages"][-3:]] == [
            "Turn 1.",
            "Reply 1.",
            "Turn 2.",
        ]
        llm_server.reply_json({"entries": [entry("threads", "Two turns so far.", "Session")]})
        session = agent.session
        ended = agent.end_session()
        assert agent.session != session  # a new session starts
    assert ended.ran and len(ended.written) == 1
    prompt = extractions(llm_server)[0]["messages"][1]["content"]
    assert all(f"Turn {n}." in prompt and f"Reply {n}." in prompt for n in (1, 2))


def test_extraction_failure_never_breaks_the_chat(
    tmp_path: Path, llm_server: ScriptedLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm_server.reply_text("Hello Dana.")
    llm_server.reply_text("this is not JSON")
    with Agent(vault=tmp_path / "v", learn=SYNC, llm=config(llm_server)) as agent:
        with caplog.at_level(logging.WARNING, logger="memkit.agent"):
            reply = agent.run("Hi, I am Dana.")
        assert reply.text == "Hello Dana."
        assert not reply.extraction.ran
        assert reply.errors and reply.errors[0].startswith("learning failed: ")
        assert "not valid JSON" in reply.errors[0]
        assert any("learning failed" in r.getMessage() for r in caplog.records)
        # The turn that failed to teach anything is learned with the next one.
        llm_server.reply_text("Noted.")
        llm_server.reply_json({"entries": [entry("persona", "Dana uses vim.", "Editor")]})
        later = agent.run("I use vim.")
    assert later.errors == [] and len(later.written) == 1
    prompt = extractions(llm_server)[1]["messages"][1]["content"]
    assert "Hi, I am Dana." in prompt and "I use vim." in prompt


def test_a_failed_reply_raises_and_records_nothing(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_error(400, {"error": {"message": "bad request"}})
    with (
        Agent(vault=tmp_path / "v", memory=True, learn=SYNC, llm=config(llm_server)) as agent,
        pytest.raises(LLMError, match="HTTP 400"),
    ):
        agent.run("Hello?")
    assert day_files(tmp_path / "v") == [] and extractions(llm_server) == []


def test_user_id_selects_one_vault_per_user_and_no_read_crosses_them(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    home = tmp_path / "home"
    llm_server.reply_text("Teal, noted.")
    with Agent(user_id="dana", vaults_root=home, memory=True, llm=config(llm_server)) as dana:
        dana.run("My favourite colour is teal.")
    llm_server.reply_text("I do not know.")
    environ = {"MEMKIT_HOME": str(home)}  # the same root, from the environment
    with Agent(user_id="sam", environ=environ, memory=True, llm=config(llm_server)) as sam:
        reply = sam.run("What is my favourite colour?")
    assert (home / "dana" / "memkit.yaml").is_file() and (home / "sam" / "memkit.yaml").is_file()
    assert "teal" not in str(chats(llm_server)[1]["messages"])
    assert reply.memories_used == []

    for bad in ("../dana", "Dana", "", "a/b", ".hidden"):
        with pytest.raises(UsageError, match="cannot name a vault folder"):
            Agent(user_id=bad, vaults_root=home)
    with pytest.raises(UsageError, match="not both"):
        Agent(user_id="dana", vault=home / "dana")
    with pytest.raises(UsageError, match="needs a vault"):
        Agent(environ={})


def test_the_model_comes_from_settings_environment_or_a_name(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    environ = {"OPENAI_BASE_URL": llm_server.base_url, "MEMKIT_MODEL": "env-model"}
    llm_server.reply_text("One.")
    llm_server.reply_text("Two.")
    with Agent(vault=tmp_path / "v", environ=environ) as plain:
        assert plain.chat("Hi") == "One."
    with Agent(vault=tmp_path / "v", environ=environ, llm="named-model") as named:
        assert asyncio.run(named.achat("Hi")) == "Two."
    assert [r["model"] for r in llm_server.requests] == ["env-model", "named-model"]
    # Neither memory nor learning: nothing written besides the new vault.
    assert day_files(tmp_path / "v") == [] and short_term(tmp_path / "v") == []


def test_bad_configurations_are_refused_with_what_to_do() -> None:
    with pytest.raises(UsageError, match="capacity must be more than 0"):
        MemoryConfig(capacity=0)
    with pytest.raises(UsageError, match="between 0 and 1"):
        MemoryConfig(promote_threshold=2)
    with pytest.raises(UsageError, match="cadence must be"):
        LearnConfig(cadence=0)
    with pytest.raises(UsageError, match="cadence must be"):
        LearnConfig(cadence="hourly")
    with pytest.raises(UsageError, match="unknown learning mode 'eager'"):
        LearnConfig(mode="eager")
    with pytest.raises(UsageError, match="unknown store 'diary'"):
        LearnConfig(stores={"diary": True})
    with pytest.raises(UsageError, match="learn must be"):
        Agent(vault=Path("unused"), learn=42)  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_readme_agent_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server: ScriptedLLMServer
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Agents\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 4  # memory only, learning only, both, custom
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("MEMKIT_MODEL", "readme-model")
    for _ in range(40):
        # Valid both as a chat reply and as an extraction with nothing to learn.
        llm_server.reply_text('{"entries": []}')
    for block in blocks:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "agent-vault" / "memkit.yaml").is_file()
    assert (tmp_path / "memkit-vaults" / "dana" / "memkit.yaml").is_file()
    assert not Vault(tmp_path / "agent-vault").check().problems


# --- a reply never waits for learning --------------------------------------------------------


def test_the_reply_returns_before_learning_which_runs_in_the_background(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    release = threading.Event()
    llm_server.reply_text("Hello Dana.", kind="chat")
    llm_server.reply_json(
        {"entries": [entry("persona", "Dana prefers short answers.", "Answer style")]},
        kind="extraction",
        gate=release,  # the server holds the extraction until the test lets it go
    )
    llm_server.reply_text("Sure.", kind="chat")
    llm_server.reply_json({"entries": []}, kind="extraction")
    with Agent(vault=tmp_path / "v", learn=True, llm=config(llm_server)) as agent:
        first = agent.run("Hi, I am Dana; keep answers short.")
        assert first.text == "Hello Dana." and not first.extraction.done
        # The next turn does not wait either; its extraction queues behind the first.
        second = agent.run("What is pg_upgrade?")
        assert second.text == "Sure." and not second.extraction.done
        release.set()
        agent.end_session()  # waits for both, in order
        assert first.extraction.done and second.extraction.done
        assert [w["store"] for w in first.extraction.written] == ["persona"]
        assert agent.extractions == [first.extraction, second.extraction]
        assert agent.learning_errors == []
    prompts = [r["messages"][1]["content"] for r in extractions(llm_server)]
    assert "Hi, I am Dana" in prompts[0] and "What is pg_upgrade?" in prompts[1]


def test_background_errors_stay_readable_and_the_messages_are_kept_for_the_next_try(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_text("Hello.", kind="chat")
    llm_server.reply_text("not JSON", kind="extraction")
    llm_server.reply_json(
        {"entries": [entry("persona", "Dana uses vim for everything.", "Editor")]},
        kind="extraction",
    )
    with Agent(vault=tmp_path / "v", learn=True, llm=config(llm_server)) as agent:
        reply = agent.run("I use vim.")
        assert reply.extraction.wait(30)
        assert reply.extraction.failed and "not valid JSON" in agent.learning_errors[0]
        last = agent.close()  # learns what failed before
    assert last.ran and [w["store"] for w in last.written] == ["persona"]
    assert "I use vim." in extractions(llm_server)[1]["messages"][1]["content"]


def test_stream_yields_the_reply_in_pieces_then_records_and_learns(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_text("Run pg_upgrade with --check first, then --link.", kind="chat")
    llm_server.reply_json(
        {"entries": [entry("insights", "Dana upgrades with pg_upgrade --link.", "Upgrade")]},
        kind="extraction",
    )
    with Agent(vault=tmp_path / "v", learn=SYNC, memory=True, llm=config(llm_server)) as agent:
        pieces = list(agent.stream("How do I upgrade Postgres?"))
        assert len(pieces) > 1
        assert "".join(pieces) == "Run pg_upgrade with --check first, then --link."
        reply = agent.last_reply
        assert reply is not None and reply.text == "".join(pieces)
        assert [w["store"] for w in reply.written] == ["insights"]
    assert chats(llm_server)[0]["stream"] is True
    assert "then --link" in day_files(tmp_path / "v")[0].read_text()


# --- recall hygiene ---------------------------------------------------------------------------


def test_recall_lists_a_message_once_and_the_assistants_words_below_the_users(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    root = tmp_path / "v"
    llm_server.reply_text("Noted: the Ledger rollback plan is in the wiki.")
    with Agent(vault=root, memory=True, llm=config(llm_server), user_name="Dana") as agent:
        agent.run("The Ledger rollback plan lives in the ops wiki.")
        agent.end_session()  # a new session: the history is no longer in the prompt
        llm_server.reply_text("In the ops wiki.")
        agent.run("Where is the Ledger rollback plan?")
    system = system_of(chats(llm_server)[-1])
    memory = system.split("### Memory", 1)[1]
    # Recorded twice (a short-term item and a day-file line), recalled once.
    assert memory.count("rollback plan lives in the ops wiki") == 1
    said = [line for line in memory.splitlines() if "rollback plan" in line]
    assert len(said) == 2
    assert "the assistant's own earlier words" not in said[0]
    assert "the assistant's own earlier words, not a fact" in said[1]
