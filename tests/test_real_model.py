"""Learning, chat and the Agent against a real model: ../shared/llm/serve (llama.cpp's server
with SmolLM2-135M, 2048-token context), started once for the whole test run.

Few requests on purpose (CI runs them on 2 CPU cores): what is checked is that memkit works
with a real server that enforces json_schema with a grammar, has a real context limit, and is
slow; not what a 135M model chooses to learn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from memkit import Agent, LearnConfig, Vault
from memkit.cli import cli
from memkit.llm import SERVERS_STATE_FILE

from .real_llm import RealServer, realistic_conversation, start, stop

pytestmark = pytest.mark.slow
CONTEXT = 2048
# Generous: a loaded 2-core machine generates 1-3 tokens a second; CI's does 12-90.
TIMEOUT = 300


@pytest.fixture(scope="session")
def real_server() -> Iterator[RealServer]:
    # No skip when ../shared/llm is missing: start() raises, and every test here fails loudly.
    server = start(CONTEXT)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def real_env(real_server: RealServer, monkeypatch: pytest.MonkeyPatch) -> RealServer:
    monkeypatch.setenv("OPENAI_BASE_URL", real_server.base_url)
    monkeypatch.setenv("MEMKIT_MODEL", real_server.model)
    return real_server


def real_vault(tmp_path: Path, *, output_tokens: int = 900) -> Vault:
    vault = Vault.init(tmp_path / "vault")
    settings = vault.root / "memkit.yaml"
    llm = (
        f"llm:\n  timeout_seconds: {TIMEOUT}\n  max_wall_seconds: 1800\n"
        f"  max_output_tokens: {output_tokens}\n  chat_max_output_tokens: 96\n"
    )
    settings.write_text(settings.read_text().replace("llm:\n", llm, 1))
    return Vault(vault.root)


def learn(vault: Vault, conversation: Path) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(
        cli, ["--vault", str(vault.root), "learn", str(conversation), "--json"]
    )
    data = json.loads(result.stdout) if result.exit_code == 0 else {}
    return result.exit_code, data, result.stderr


def test_learn_on_a_realistic_conversation(real_env: RealServer, tmp_path: Path) -> None:
    vault = real_vault(tmp_path)
    conversation = tmp_path / "talk.jsonl"
    conversation.write_text(realistic_conversation(15))
    code, report, stderr = learn(vault, conversation)
    assert code == 0, stderr
    # The context came from the server itself (llama.cpp's /props), and json_schema worked.
    assert report["context_tokens"] == CONTEXT and report["fallbacks"] == []
    assert isinstance(report["output_tokens"], int) and 0 < report["output_tokens"] <= 900
    state = json.loads((vault.root / SERVERS_STATE_FILE).read_text())
    (server_state,) = state.values()
    assert server_state["context_tokens"] == CONTEXT
    assert server_state["models"] == [real_env.model]
    # Whatever the model wrote passed the quality floor and is a valid record.
    for item in report["written"]:  # type: ignore[attr-defined]
        record = vault.read_record(item["path"])
        assert len(record.body.split()) > 2 and record.meta.get("evidence")
    check = CliRunner().invoke(cli, ["--vault", str(vault.root), "check"])
    assert check.exit_code == 0, check.output


def test_a_long_conversation_is_chunked_to_fit_a_2048_token_context(
    real_env: RealServer, tmp_path: Path
) -> None:
    vault = real_vault(tmp_path, output_tokens=300)  # one entry per chunk: fewer tokens in CI
    conversation = tmp_path / "long.jsonl"
    conversation.write_text(realistic_conversation(48))
    code, report, stderr = learn(vault, conversation)
    assert code == 0, stderr
    assert isinstance(report["chunks"], int) and report["chunks"] >= 2
    assert "context" not in stderr.lower() or "parts to fit" in stderr


def test_agent_streams_a_reply_and_warns_about_an_unlisted_model(
    real_server: RealServer, tmp_path: Path
) -> None:
    environ = {"OPENAI_BASE_URL": real_server.base_url, "MEMKIT_MODEL": "gpt-4o-mini"}
    with Agent(
        "Answer in one short sentence.",
        vault=real_vault(tmp_path, output_tokens=300).root,
        memory=True,
        learn=LearnConfig(mode="agentic"),
        environ=environ,
    ) as agent:
        pieces = list(agent.stream("Hi, I am Dana. What is Postgres?"))
        assert pieces and "".join(pieces).strip()
        reply = agent.last_reply
        assert reply is not None and reply.text == "".join(pieces)
        agent.end_session()  # waits for the background extraction of that turn
        (extraction,) = agent.extractions
        assert extraction.done and (extraction.ran or extraction.errors)
        # llama.cpp answers whatever model is named; memkit says so.
        assert any("'gpt-4o-mini' is not among" in w for w in agent.llm_warnings)
