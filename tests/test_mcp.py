"""`memkit mcp`: the SDK's own client launches `python -m memkit --vault V mcp` over stdio, lists
the tools and their documented schemas, calls each one, and gets the CLI's messages as tool errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from memkit import Vault

from .conftest import Runner

TOOLS = {
    "remember",
    "recall",
    "search",
    "context",
    "entity",
    "record_interaction",
    "propose",
    "proposals",
    "approve",
    "reject",
    "forget",
}


def is_error(result: Any) -> bool:
    # mcp 2 names the field is_error; mcp 1 called it isError.
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "text", None))


def input_schema(tool: Any) -> dict[str, Any]:
    schema = getattr(tool, "input_schema", None) or tool.inputSchema
    return dict(schema)


class Client:
    """Calls tools and unpacks their JSON results, failing on unexpected tool errors."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, tool: str, **arguments: Any) -> Any:
        result = await self.session.call_tool(tool, arguments)
        assert not is_error(result), f"{tool} failed: {text_of(result)}"
        return json.loads(text_of(result))

    async def error(self, tool: str, **arguments: Any) -> str:
        result = await self.session.call_tool(tool, arguments)
        assert is_error(result), f"{tool} should have failed: {text_of(result)}"
        return text_of(result)


async def exercise(root: Path, errlog: Any) -> dict[str, Any]:
    # The SDK passes only a few variables to the server; PYTHONPATH, when set, is how this test
    # run finds memkit and its packages, so the server gets it too.
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else None
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memkit", "--vault", str(root), "mcp"],
        cwd=root,
        env=env,
    )
    seen: dict[str, Any] = {}
    async with (
        stdio_client(server, errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        seen["tools"] = {tool.name: tool for tool in listed.tools}
        client = Client(session)

        fact = await client.call(
            "remember", text="Ledger deploys on Tuesdays.", tags=["ledger"], importance=0.7
        )
        seen["fact"] = fact
        seen["recall"] = await client.call("recall", query="when does Ledger deploy", k=5)
        seen["search"] = await client.call("search", query="Tuesdays", types=["long-term"])
        seen["entity"] = await client.call(
            "entity",
            name="Priya Raman",
            kind="person",
            attributes={"role": "tech lead"},
            relations=["works_at=Northwind Labs"],
        )
        seen["entity_shown"] = await client.call("entity", name="priya raman")
        messages = [
            {"role": "user", "content": "We chose RQ over Celery.", "id": "m-1"},
            {"speaker": "assistant", "text": "Noted: RQ.", "id": "m-2"},
        ]
        seen["recorded"] = await client.call(
            "record_interaction", messages=messages, session="s-mcp"
        )
        seen["recorded_again"] = await client.call(
            "record_interaction", messages=messages, session="s-mcp"
        )
        seen["context"] = await client.call("context", query="Ledger deploy", budget=400)
        decision = await client.call(
            "propose",
            store="decisions",
            text="Use RQ for background jobs.",
            title="RQ for jobs",
            rationale="Simpler than Celery for our load.",
            evidence=["m-1"],
        )
        vague = await client.call("propose", store="persona", text="Dana likes things.")
        seen["pending_twice"] = await client.error(
            "propose", store="decisions", text="Use RQ for background jobs."
        )
        seen["pending"] = await client.call("proposals")
        seen["rejected"] = await client.call("reject", ref=vague["id"], reason="too vague")
        seen["approved"] = await client.call("approve", ref=decision["id"])
        seen["after"] = await client.call("proposals")
        seen["forgotten"] = await client.call("forget", ref=fact["path"])

        seen["errors"] = {
            "empty": await client.error("remember", text="   "),
            "missing": await client.error("forget", ref="nothing-like-this"),
            "store": await client.error("propose", store="diary", text="Dear diary."),
            "rejected": await client.error("propose", store="persona", text="Dana likes things."),
            "entity": await client.error("entity", name="Nobody"),
            "messages": await client.error("record_interaction", messages=[{"role": "user"}]),
            "secret": await client.error(
                "remember", text="the key is sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9"
            ),
        }
    return seen


@pytest.mark.slow
def test_the_sdk_client_uses_every_tool_over_stdio(vault: Vault, tmp_path: Path) -> None:
    with (tmp_path / "server-stderr.txt").open("w+") as errlog:
        try:
            seen = asyncio.run(exercise(vault.root, errlog))
        finally:
            errlog.seek(0)
            log = errlog.read()
    assert "Traceback" not in log, log

    # Every tool is listed, described, and each parameter of its input schema documented.
    tools = seen["tools"]
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.description, f"{name} has no description"
        for param, spec in input_schema(tool).get("properties", {}).items():
            assert spec.get("description"), f"{name}.{param} is not documented"
    assert input_schema(tools["remember"])["required"] == ["text"]
    assert {"type", "title", "tags", "importance"} <= set(
        input_schema(tools["remember"])["properties"]
    )
    assert input_schema(tools["recall"])["required"] == ["query"]
    assert input_schema(tools["search"])["required"] == ["query"]
    assert input_schema(tools["propose"])["required"] == ["store", "text"]

    fact = seen["fact"]
    assert fact["path"].startswith("memory/long-term/") and fact["tags"] == ["ledger"]
    assert fact["id"] in [hit["id"] for hit in seen["recall"]["hits"]]
    assert [hit["id"] for hit in seen["search"]["hits"]] == [fact["id"]]
    assert seen["entity"]["created_now"] and seen["entity"]["attributes"] == {"role": "tech lead"}
    assert seen["entity_shown"]["id"] == seen["entity"]["id"]  # found by name, any case
    assert seen["recorded"]["added"] == 2 and seen["recorded_again"]["skipped"] == 2
    assert fact["id"] in seen["context"]["used"] and "Tuesdays" in seen["context"]["text"]
    pending = seen["pending"]["proposals"]
    assert sorted(p["store"] for p in pending) == ["decisions", "persona"]
    decision = next(p for p in pending if p["store"] == "decisions")
    assert decision["evidence"] == ["m-1"] and decision["rationale"].startswith("Simpler")
    assert seen["rejected"]["path"].startswith("learning/rejected/")
    assert seen["approved"]["path"].startswith("learning/decisions/")
    assert seen["after"]["proposals"] == []
    assert seen["forgotten"]["forgotten"] == fact["id"]
    assert not (vault.root / fact["path"]).exists()
    assert not vault.check().problems

    errors = seen["errors"]
    assert "nothing to remember: the text is empty" in errors["empty"]
    assert "unknown store 'diary'" in errors["store"]
    assert "already pending" in seen["pending_twice"]
    assert "a person rejected this before" in errors["rejected"]
    assert "no entity named 'Nobody'" in errors["entity"]
    assert "messages:1: a message needs non-empty 'text' or 'content'" in errors["messages"]
    assert "refused: this holds a credential" in errors["secret"]
    assert "allow" not in errors["secret"].lower()  # no override to offer a model
    # The same words as the CLI prints for the same mistake.
    cli = Runner(vault.root).run("forget", "nothing-like-this")
    assert cli.exit_code == 1
    assert cli.stderr.strip().removeprefix("Error: ") in errors["missing"]


def test_mcp_without_the_sdk_says_how_to_install_it(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import mcp` fail, as when the extra is not installed.
    for name in [m for m in sys.modules if m == "mcp" or m.startswith("mcp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)
    result = run.run("mcp")
    assert result.exit_code == 1
    assert "pip install 'memkit[mcp]'" in result.stderr
