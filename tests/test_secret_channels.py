"""No credential reaches a vault file through any field of any channel (CLI, Python API, import,
MCP, learning); the vault's write path checks exactly what each write adds."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from memkit import Vault
from memkit.conversations import ConversationMessage, Episodes
from memkit.entities import Entities
from memkit.errors import MemkitError, SecretRefused
from memkit.learning import Learning
from memkit.llm import LLMClient, LLMConfig
from memkit.memory import Memory
from memkit.timeutil import utcnow

from .conftest import REPO, Runner
from .llm_server import ScriptedLLMServer
from .test_secret_guard import ALNUM, UPPER_DIGITS, URLSAFE, fake


def load_corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "secret_corpus", REPO / "benchmarks" / "secret_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["secret_corpus"] = module
    spec.loader.exec_module(module)
    return module


corpus = load_corpus()
AWS = fake("AKIA", 16, UPPER_DIGITS, seed=21)
GITHUB = fake("ghp_", 36, seed=21)
GITLAB = fake("glpat-", 20, URLSAFE, seed=21)


def vault_text(vault: Vault) -> str:
    """Every file's name and text under the vault, except derived state."""
    return "\n".join(
        path.relative_to(vault.root).as_posix() + "\n" + path.read_text("utf-8", "replace")
        for path in sorted(vault.root.rglob("*"))
        if path.is_file() and ".memkit" not in path.relative_to(vault.root).parts
    )


# --- the vault's write path --------------------------------------------------------------------


def test_an_update_refuses_a_credential_in_a_new_front_matter_value(vault: Vault) -> None:
    record = vault.create("long-term", "Priya deploys on Tuesdays.")
    assert record.path is not None
    before = vault.safe_path(record.path).read_bytes()
    record.meta["tags"] = ["deploy", f"deploy-{AWS}"]
    with pytest.raises(SecretRefused, match="AWS access key id in tags"):
        vault.update(record)
    record.meta.pop("tags")
    record.meta["where"] = {GITHUB: "yes"}  # a key, nested
    with pytest.raises(SecretRefused, match="GitHub token in where"):
        vault.update(record)
    assert vault.safe_path(record.path).read_bytes() == before
    assert AWS not in vault_text(vault) and GITHUB not in vault_text(vault)


def test_a_front_matter_change_beside_an_allowed_secret_needs_no_override(vault: Vault) -> None:
    kept = vault.create("long-term", f"The CI key is {GITHUB}.", allow_secrets=True)
    kept.meta["importance"] = 0.9
    kept.meta["tags"] = ["ci"]
    updated = vault.update(kept)  # the body it already held is not checked again
    assert updated.meta["tags"] == ["ci"] and GITHUB in updated.body
    updated.meta["tags"] = ["ci", GITLAB]
    with pytest.raises(SecretRefused, match="GitLab token in tags"):
        vault.update(updated)  # a new credential is refused all the same
    memory = Memory(vault)
    try:
        # A repeated fact merges into the record: its new tag is checked, its old text is not.
        merged = memory.remember(f"The CI key is {GITHUB}.", tags=["ops"], allow_secrets=True)
        assert merged.id == kept.id and "ops" in merged.tags
        with pytest.raises(SecretRefused):
            memory.remember(f"The CI key is {GITHUB}.", tags=[GITLAB])
    finally:
        memory.close()
    assert GITLAB not in vault_text(vault)


def test_every_python_api_field_is_checked(vault: Vault) -> None:
    attempts: list[Callable[[], object]] = [
        lambda: vault.create("long-term", "ordinary", title=f"key {AWS}"),
        lambda: vault.create("long-term", "ordinary", tags=[AWS]),
        lambda: vault.create("long-term", "ordinary", extra={"deep": {"list": [AWS]}}),
        lambda: vault.create("long-term", "ordinary", extra={AWS: 1}),
        lambda: vault.create("long-term", "ordinary", source={"tool": AWS}),
        lambda: vault.create("long-term", "ordinary", relpath=f"memory/long-term/{AWS}.md"),
        lambda: Memory(vault).remember("ordinary", subject=AWS),
        lambda: Entities(vault).upsert("Priya", kind=AWS),
        lambda: Entities(vault).upsert("Priya", attributes={"login": {"password": "Tr0ub4dor&3"}}),
        lambda: Entities(vault).upsert("Priya", relations=[("knows", AWS)]),
        lambda: Episodes(vault).record([ConversationMessage("hi", speaker=AWS)]),
        lambda: Episodes(vault).record([ConversationMessage("hi", message_id=AWS)]),
        lambda: Episodes(vault).record([ConversationMessage("hi", session=f"s-{AWS}")]),
        lambda: Learning(vault).propose("insights", "Deploys on Tuesdays.", rationale=AWS),
        lambda: Learning(vault).propose("insights", "Deploys on Fridays.", tags=[AWS]),
    ]
    for attempt in attempts:
        # Learning.propose reports its refusal as a usage error, with the guard's words.
        with pytest.raises(MemkitError, match="holds a credential"):
            attempt()
    text = vault_text(vault)
    assert AWS not in text and AWS.lower() not in text and "Tr0ub4dor&3" not in text


def test_an_existing_entity_refuses_new_credentials_in_every_field(vault: Vault) -> None:
    entities = Entities(vault)
    record = entities.upsert("Priya Raman", kind="person", aliases=["Priya"]).record
    assert record.path is not None
    before = vault.safe_path(record.path).read_bytes()
    for change in (
        {"aliases": [f"priya-{AWS}"]},
        {"kind": AWS},
        {"attributes": {"api": AWS}},
        {"attributes": {AWS: "yes"}},
        {"relations": [("knows", GITHUB)]},
        {"note": f"her token is {GITHUB}"},
    ):
        with pytest.raises(SecretRefused):
            entities.upsert("Priya", **change)
    assert vault.safe_path(record.path).read_bytes() == before


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_refuses_credentials_in_options_and_names_the_override(
    run: Runner, vault: Vault
) -> None:
    assert run.run("entity", "Priya", "--kind", "person").exit_code == 0
    for args in (
        ("remember", "Deploys on Tuesdays.", "--tag", AWS),
        ("remember", "Deploys on Tuesdays.", "--subject", f"keys/{AWS}"),
        ("remember", "Deploys on Tuesdays.", "--title", f"x-{AWS}"),
        ("entity", "Priya", "--alias", AWS),
        ("entity", "Priya", "--relate", f"knows={AWS}"),
        ("entity", "Priya", "--kind", AWS),
        ("entity", "Priya", "--set", f"key={AWS}"),
        ("entity", "Priya", "--set", f"{AWS}=yes"),
        ("entity", AWS, "--kind", "person"),
    ):
        result = run.run(*args)
        assert result.exit_code == 1, args
        assert "holds a credential" in result.stderr
        assert "--allow-secrets" in result.stderr  # the CLI's own hint
        assert AWS not in result.stderr
    assert AWS not in vault_text(vault) and AWS.lower() not in vault_text(vault)
    allowed = run.run("entity", "Priya", "--alias", AWS, "--allow-secrets")
    assert allowed.exit_code == 0 and AWS in vault_text(vault)


def test_cli_import_redacts_texts_and_refuses_ids_sessions_and_speakers(
    run: Runner, vault: Vault, tmp_path: Path
) -> None:
    def imported(*messages: dict[str, Any], args: tuple[str, ...] = ()) -> Any:
        path = tmp_path / "chat.jsonl"
        path.write_text("\n".join(json.dumps(m) for m in messages) + "\n", "utf-8")
        return run.run("import", str(path), "--json", *args)

    result = imported({"role": "user", "content": f"the key is {GITHUB}", "id": "m-1"})
    assert result.exit_code == 0 and json.loads(result.stdout)["redacted"] == 1
    for message, args in (
        ({"role": "user", "content": "hi", "id": f"m-{AWS}"}, ()),
        ({"role": "user", "content": "hi", "session": AWS}, ()),
        ({"role": f"bot-{AWS}", "content": "hi"}, ()),
        ({"role": "user", "content": "hello again"}, ("--session", AWS)),
    ):
        result = imported(message, args=args)
        assert result.exit_code == 1, message
        assert "holds a credential" in result.stderr and AWS not in result.stderr
    text = vault_text(vault)
    assert GITHUB not in text and AWS not in text and "[REDACTED:GitHub token]" in text


# --- MCP ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mcp_tools_refuse_credentials_without_offering_an_override(vault: Vault) -> None:
    pytest.importorskip("mcp")
    from memkit.mcp_server import build_server

    server = build_server(vault)

    def refusal(tool: str, **arguments: Any) -> str:
        try:
            result = asyncio.run(server.call_tool(tool, arguments))
        except Exception as error:  # the SDK's ToolError
            return str(error)
        pytest.fail(f"{tool} accepted {arguments}: {result}")

    asyncio.run(server.call_tool("entity", {"name": "Priya", "kind": "person"}))
    messages = [
        refusal("entity", name="Priya", aliases=[AWS]),
        refusal("entity", name="Priya", relations=[f"knows={AWS}"]),
        refusal("entity", name="Priya", attributes={"key": AWS}),
        refusal("remember", text="Deploys on Tuesdays.", tags=[AWS]),
        refusal(
            "record_interaction",
            messages=[{"role": "user", "content": "hi"}],
            session=AWS,
            short_term=True,
        ),
    ]
    for message in messages:
        assert "holds a credential" in message and "Rewrite it" in message
        assert "allow" not in message.lower() and AWS not in message
    assert AWS not in vault_text(vault)


# --- learning ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_learned_entries_with_credentials_in_any_field_are_refused(
    vault: Vault, llm_server: ScriptedLLMServer
) -> None:
    def entry(**fields: Any) -> dict[str, Any]:
        base = {
            "store": "insights",
            "op": "add",
            "target": None,
            "title": "Deploy day",
            "text": "Deploys go out on Tuesdays.",
            "importance": 0.6,
            "tags": ["deploy"],
            "evidence": ["m-1"],
            "rationale": "said so",
        }
        return {**base, **fields}

    secret_tag = fake("ghp_", 36, ALNUM, seed=22)  # mixed case, lowercased by learning
    entries = [
        entry(title=f"Key {AWS}", text="Keys rotate monthly."),
        entry(text=f"The deploy token is {GITLAB}."),
        entry(tags=["ops", secret_tag], text="Ops owns the deploy."),
        entry(store="decisions", rationale=f"see {GITHUB}", text="Use RQ for jobs."),
    ]
    client = LLMClient(
        LLMConfig(model="m", base_url=llm_server.base_url, api_key=None, max_retries=0)
    )
    learning = Learning(vault, llm=client)
    try:
        message = ConversationMessage("We deploy on Tuesdays.", "user", "m-1", "s-1", utcnow())
        for mode in ("agentic", "propose"):
            clean = entry(title=f"Clean {mode}", text=f"Dana reviews deploy plans ({mode}).")
            llm_server.reply_json({"entries": [*entries, clean]})
            report = learning.learn([message], mode=mode, stores=["insights", "decisions"])
            assert [r.reason for r in report.refused if "credential" not in r.reason] == []
            assert len(report.refused) == 4
            assert len(report.written) + len(report.proposed) == 1
    finally:
        learning.close()
        client.close()
    text = vault_text(vault).casefold()
    for secret in (AWS, GITLAB, secret_tag, GITHUB):
        assert secret.casefold() not in text


# --- the corpus: every kind, every channel -----------------------------------------------------


def test_the_corpus_has_35_kinds_300_secrets_all_found_and_no_false_positives() -> None:
    from memkit.secret_guard import find_secrets, redact_secrets

    secrets = corpus.secret_corpus()
    assert len(corpus.KINDS) >= 35 and len(secrets) >= 300
    assert len({s.needle for s in secrets}) == len(secrets)
    missed = [s for s in secrets if not find_secrets(s.text) or s.needle in redact_secrets(s.text)]
    assert missed == []
    assert corpus.false_positives() == []


def test_a_secret_is_found_whatever_follows_it() -> None:
    from memkit.secret_guard import find_secrets, redact_secrets

    missed = [
        (secret.kind, suffix)
        for secret in corpus.secret_corpus(2, salt="suffix")
        for suffix in ("-prod", "_old", "/x", ".", ",", ")")
        if not find_secrets(secret.text + suffix)
        or secret.needle in redact_secrets(secret.text + suffix)
    ]
    assert missed == []


FAST_CHANNELS = [
    name
    for name in corpus.CHANNELS
    if name.startswith(("api ", "cli remember --tag", "cli entity existing", "cli import"))
    or name in ("mcp entity aliases", "mcp record_interaction session", "learn propose tags")
]


@pytest.mark.slow
def test_no_secret_of_any_kind_reaches_a_file_through_the_channels(tmp_path: Path) -> None:
    result = corpus.run_secret_channels(
        tmp_path / "vault", instances_per_kind=1, channels=FAST_CHANNELS
    )
    assert result["errors"] == {}
    assert result["leaks"] == []
    ran = set(result["channels"]) | set(result["skipped"])
    assert ran == set(FAST_CHANNELS)
    for name, counts in result["channels"].items():
        # A file name cannot hold a "/" or a line break: those secrets skip that channel.
        expected = len(corpus.KINDS) if name != "cli import file name" else 40
        assert counts["attempts"] >= expected, name
        if "text" not in name:  # message texts are redacted and written; the rest is refused
            assert counts["refused"] + counts["accepted"] == counts["attempts"]
