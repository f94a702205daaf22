"""`memkit chat`: lines from stdin, replies on stdout, what memory and learning did on stderr, slash
commands; the real openai client against the scripted server, found through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from memkit import Vault
from memkit.learning import Learning

from .conftest import Runner
from .llm_server import ScriptedLLMServer


@pytest.fixture(autouse=True)
def model_server(monkeypatch: pytest.MonkeyPatch, llm_server: ScriptedLLMServer) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("MEMKIT_MODEL", "chat-model")


def entry(store: str, text: str, title: str) -> dict[str, Any]:
    return {
        "store": store,
        "op": "add",
        "target": None,
        "title": title,
        "text": text,
        "importance": 0.6,
        "tags": [],
        "evidence": ["m1"],
        "rationale": "",
    }


def test_chat_replies_on_stdout_and_says_what_it_used_and_learned(
    run: Runner, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    fact = vault.create("long-term", "Ledger deploys on Tuesdays.", title="Deploy day")
    llm_server.reply_text("On Tuesdays.", kind="chat")
    llm_server.reply_json(
        {"entries": [entry("persona", "Dana deploys Ledger.", "Deploys")]}, kind="extraction"
    )
    result = run.run(
        "chat", "--instructions", "You help Dana.", input="When does Ledger deploy?\n/quit\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "On Tuesdays.\n"
    assert f"memory used: {fact.id}" in result.stderr
    assert "learned: add persona learning/persona/" in result.stderr
    request = llm_server.requests[0]
    assert request["model"] == "chat-model"
    system = request["messages"][0]["content"]
    assert system.startswith("You help Dana.") and "Ledger deploys on Tuesdays" in system
    assert request["messages"][-1] == {"role": "user", "content": "When does Ledger deploy?"}
    assert len(list((vault.root / "memory" / "episodic").rglob("*.md"))) == 1


def test_slash_commands_remember_recall_proposals_approve(
    run: Runner, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    waiting = Learning(vault).propose("persona", "Dana reads replies on her phone.", title="Phone")
    llm_server.reply_text("Priya does.", kind="chat")
    llm_server.reply_json(
        {"entries": [entry("insights", "Priya leads Ledger.", "Lead")]}, kind="extraction"
    )
    lines = [
        "/remember Priya leads the Ledger team",
        "/recall Priya",
        "Who leads Ledger?",
        "/proposals",
        f"/approve {waiting.id}",
        "/proposals",
    ]
    result = run.run("chat", "--learn", "propose", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0].startswith("Remembered ") and "memory/long-term/" in out[0]
    assert any("memory/long-term/" in line for line in out[1:3])  # the recall hit
    assert "Priya does." in out
    listed = [line for line in out if line.startswith(waiting.id)]
    assert len(listed) == 1 and "persona" in listed[0]  # listed once, then approved
    assert waiting.path is not None
    assert f"Approved: learning/persona/{waiting.path.split('/')[-1]}" in out
    assert "proposed: insights learning/proposals/" in result.stderr
    # The fact remembered in the chat was in the prompt of the next turn.
    assert "Priya leads the Ledger team" in llm_server.requests[0]["messages"][0]["content"]


def test_no_memory_and_learning_disabled_write_nothing(
    run: Runner, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_text("Hi.")
    result = run.run("chat", "--no-memory", "--learn", "disabled", input="Hello\n")
    assert result.exit_code == 0 and result.stdout == "Hi.\n"
    assert len(llm_server.requests) == 1 and llm_server.requests[0]["messages"] == [
        {"role": "user", "content": "Hello"}
    ]
    assert list(vault.record_paths()) == []


def test_failures_are_reported_and_the_chat_goes_on(
    run: Runner, vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_error(
        400, {"error": {"message": "model overloaded with nonsense"}}, kind="chat"
    )
    llm_server.reply_text("Back.", kind="chat")
    llm_server.reply_text("not JSON at all", kind="extraction")  # the extraction after "Again"
    result = run.run("chat", input="Hello\n/approve nothing-like-this\n/bogus\nAgain\n")
    assert result.exit_code == 1  # something failed: a script can tell
    assert result.stdout == "Back.\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "HTTP 400" in errors[0] and "model overloaded" in errors[0]
    assert "no record with id or path 'nothing-like-this'" in errors[1]
    assert "unknown command /bogus" in errors[2]
    assert "warning: learning failed: " in result.stderr  # extraction failed, reply still shown


@pytest.mark.slow
def test_the_reply_is_on_stdout_before_learning_for_that_turn_finishes(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    release = threading.Event()
    llm_server.reply_text("Hello Dana.", kind="chat")
    llm_server.reply_json(
        {"entries": [entry("persona", "Dana prefers short answers.", "Answer style")]},
        kind="extraction",
        gate=release,
    )
    environment = {
        **os.environ,
        "OPENAI_BASE_URL": llm_server.base_url,
        "MEMKIT_MODEL": "chat-model",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "memkit", "--vault", str(vault.root), "chat", "--no-stream"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write("Hi, I am Dana; keep answers short.\n")
        process.stdin.flush()
        # The server still holds the extraction, so learning cannot have finished.
        assert process.stdout.readline() == "Hello Dana.\n"
        assert not release.is_set()
        release.set()
        process.stdin.close()
        process.wait(timeout=60)
        assert process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
    assert process.returncode == 0, err
    assert out == "" and "learned: add persona learning/persona/" in err


def test_stream_shows_the_reply_as_it_comes(run: Runner, llm_server: ScriptedLLMServer) -> None:
    llm_server.reply_text("Use pg_upgrade with --link, then analyze.", kind="chat")
    llm_server.reply_json({"entries": []}, kind="extraction")
    result = run.run("chat", "--stream", input="How do I upgrade?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Use pg_upgrade with --link, then analyze.\n"
    assert llm_server.requests[0]["stream"] is True
    assert "stream" not in extractions_of(llm_server)[0]


def test_no_stream_asks_for_the_whole_reply(run: Runner, llm_server: ScriptedLLMServer) -> None:
    llm_server.reply_text("Short answer.", kind="chat")
    llm_server.reply_json({"entries": []}, kind="extraction")
    result = run.run("chat", "--no-stream", input="Hi\n")
    assert result.exit_code == 0 and result.stdout == "Short answer.\n"
    assert "stream" not in llm_server.requests[0]


def test_chat_exits_1_when_every_extraction_failed(
    run: Runner, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reply_text("One.", kind="chat")
    llm_server.reply_text("Two.", kind="chat")
    for _ in range(3):
        llm_server.reply_text('{"entries": [{"title": "loop loop loop', kind="extraction")
    result = run.run("chat", "--no-stream", input="First\nSecond\n")
    assert result.exit_code == 1
    assert result.stdout == "One.\nTwo.\n"  # every reply was shown all the same
    assert result.stderr.count("warning: learning failed: ") >= 2


def extractions_of(server: ScriptedLLMServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if "response_format" in r]
