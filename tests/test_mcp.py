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

from memkit import Vault, __version__

from .conftest import Runner

TOOLS = {
    "remember",
    "recall",
    "search",
    "show",
    "list",
    "update",
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


def hints(tool: Any) -> dict[str, Any]:
    """A tool's annotations by their wire names (mcp 1 and 2 name the attributes differently)."""
    annotations = tool.annotations
    assert annotations is not None, f"{tool.name} has no annotations"
    return dict(annotations.model_dump(by_alias=True, exclude_none=True))


def server_parameters(root: Path) -> StdioServerParameters:
    # The SDK passes only a few variables to the server; PYTHONPATH, when set, is how this test
    # run finds memkit and its packages, so the server gets it too.
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else None
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "memkit", "--vault", str(root), "mcp"],
        cwd=root,
        env=env,
    )


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
    server = server_parameters(root)
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


SECRET = "the key is sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9"


async def browse_and_edit(root: Path, errlog: Any, alias: str) -> dict[str, Any]:
    """show, list, update, since/until, resources and their errors, in one server's life."""
    seen: dict[str, Any] = {"alias": alias}
    async with (
        stdio_client(server_parameters(root), errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        initialized = await session.initialize()
        # mcp 2 renamed the camelCase fields; 1.x (still allowed by the extra) has the old ones.
        server = getattr(initialized, "server_info", None)
        seen["server"] = server or getattr(initialized, "serverInfo", None)
        seen["tools"] = {tool.name: tool for tool in (await session.list_tools()).tools}
        client = Client(session)

        seen["list"] = await client.call("list", limit=3)
        seen["cli_list"] = json.loads(Runner(root).run("list", "--limit", "3", "--json").stdout)
        seen["list_entities"] = await client.call("list", type="entity", limit=100)
        seen["list_tag"] = await client.call("list", tag="ledger", limit=100)
        seen["list_since"] = await client.call("list", since="2026-11-20", limit=100)
        seen["list_window"] = await client.call(
            "list", since="2026-11-05", until="2026-11-10", limit=100
        )
        seen["show_title"] = await client.call("show", ref="ledger RUNS ON postgres 14")
        seen["show_alias"] = await client.call("show", ref=seen["alias"])
        seen["show_path"] = await client.call("show", ref=seen["show_title"]["path"])

        fact = seen["show_title"]
        seen["appended"] = await client.call(
            "update",
            ref=fact["id"],
            append="Checked again in November.",
            set={"importance": 0.9, "reviewed_by": "agent"},
            expected_updated=fact["updated"],
        )
        # The agent edits its stale copy again: a conflict, and nothing written.
        seen["stale"] = await client.error(
            "update", ref=fact["id"], body="Overwritten.", expected_updated=fact["updated"]
        )
        seen["after_stale"] = await client.call("show", ref=fact["id"])
        # A person edits the file by hand (an editor does not stamp `updated`), after the agent
        # read it: the agent's edit of its older copy is refused all the same.
        copy = await client.call("show", ref=fact["id"])
        fact_path = root / copy["path"]
        fact_path.write_text(
            fact_path.read_text().replace("Checked again", "Checked by Dana"), encoding="utf-8"
        )
        seen["hand_edit_conflict"] = await client.error(
            "update", ref=fact["id"], body="Rewritten.", expected_updated=copy["updated"]
        )
        seen["retitled"] = await client.call(
            "update", ref=fact["path"], title="Ledger ran on Postgres 14", set={"reviewed_by": None}
        )

        # A person adds a file by hand while the server runs: the held index finds it.
        hand = root / "memory" / "long-term" / "by-hand.md"
        hand.write_text(
            "---\nid: 01JC0000000000000000HANDMD\ntype: long-term\ntitle: Kayak trip\n"
            "created: 2026-11-28T10:00:00Z\nupdated: 2026-11-28T10:00:00Z\n---\n"
            "Dana plans a kayak trip on the lake.\n",
            encoding="utf-8",
        )
        seen["search_hand"] = await client.call("search", query="kayak")
        # The watcher starts beside the server (its first reconcile may take a while).
        heartbeat = root / ".memkit" / "watcher.json"
        for _ in range(200):
            if heartbeat.exists():
                break
            await asyncio.sleep(0.05)
        seen["watcher_file"] = heartbeat.exists()
        # Edited, then deleted by hand: each search sees the files as they are now.
        other = root / "memory" / "long-term" / "by-hand-2.md"
        other.write_text(
            "---\nid: 01JC0000000000000000HANDM2\ntype: long-term\ntitle: Boat\n"
            "created: 2026-11-28T10:00:00Z\nupdated: 2026-11-28T10:00:00Z\n---\n"
            "The harbour ferry leaves at noon.\n",
            encoding="utf-8",
        )
        seen["ferry"] = await client.call("search", query="ferry harbour")
        other.write_text(other.read_text().replace("ferry", "paraglider"), encoding="utf-8")
        seen["ferry_after_edit"] = await client.call("search", query="ferry")
        seen["paraglider"] = await client.call("search", query="paraglider")
        other.unlink()
        seen["paraglider_after_delete"] = await client.call("search", query="paraglider")
        seen["search_since"] = await client.call("search", query="kayak", since="2026-11-28")
        seen["search_until"] = await client.call("search", query="kayak", until="2026-11-27")
        # The fact edited above is superseded: include_all shows it.
        seen["recall_since"] = await client.call(
            "recall", query="Postgres", since="1h", types=["long-term"], include_all=True
        )
        seen["recall_until"] = await client.call(
            "recall", query="Postgres", until="2026-11-14", types=["long-term"], include_all=True
        )

        await client.call("remember", text="Another note with a shared title.", title="Kayak trip")
        seen["errors"] = {
            "ambiguous": await client.error("show", ref="kayak TRIP"),
            "missing": await client.error("show", ref="no such thing anywhere"),
            "managed": await client.error("update", ref=fact["id"], set={"id": "x"}),
            "nothing": await client.error("update", ref=fact["id"]),
            "both": await client.error("update", ref=fact["id"], append="a", body="b"),
            "secret": await client.error("update", ref=fact["id"], append=SECRET),
            "since": await client.error("search", query="kayak", since="someday"),
            "list_type": await client.error("list", type="diary"),
        }

        listed = await session.list_resource_templates()
        templates = getattr(listed, "resource_templates", None)
        templates = templates or getattr(listed, "resourceTemplates", [])
        seen["templates"] = [getattr(t, "uri_template", None) or t.uriTemplate for t in templates]
        resource = await session.read_resource(f"memkit://record/{fact['id']}")
        seen["resource"] = resource.contents[0]
        try:
            await session.read_resource("memkit://record/01JC000000000000000000NONE")
        except Exception as error:  # the SDK raises its protocol error for a failed read
            seen["resource_error"] = str(error)
    return seen


@pytest.mark.slow
def test_an_agent_reads_lists_and_edits_records_over_stdio(
    sample_vault: Vault, tmp_path: Path
) -> None:
    entity = next(r for r in sample_vault.scan(["entity"]).records if r.meta.get("aliases"))
    fact_file = sample_vault.root / "memory/long-term/ledger-runs-on-postgres-14-42rp8e.md"
    with (tmp_path / "server-stderr.txt").open("w+") as errlog:
        try:
            alias = str(entity.meta["aliases"][0]).upper()
            seen = asyncio.run(browse_and_edit(sample_vault.root, errlog, alias))
        finally:
            errlog.seek(0)
            log = errlog.read()
    assert "Traceback" not in log, log
    cli = Runner(sample_vault.root)

    # The server names itself with memkit's version.
    assert seen["server"].name == "memkit" and seen["server"].version == __version__

    # Annotations: read-only where nothing is written, destructive where text can be lost.
    tools = seen["tools"]
    for name in ("recall", "search", "show", "list", "context", "proposals"):
        assert hints(tools[name])["readOnlyHint"] is True, name
    for name in ("forget", "reject", "update"):
        assert hints(tools[name])["destructiveHint"] is True, name
    for name in ("remember", "entity", "record_interaction", "propose", "approve"):
        assert hints(tools[name])["readOnlyHint"] is False, name
        assert hints(tools[name])["destructiveHint"] is False, name
    assert hints(tools["forget"])["idempotentHint"] is True
    assert hints(tools["record_interaction"])["idempotentHint"] is True
    assert hints(tools["remember"])["idempotentHint"] is False
    assert all(hints(tool)["openWorldHint"] is False for tool in tools.values())

    # Choices are enums in the input schemas; descriptions are clean text.
    props = {name: input_schema(tool).get("properties", {}) for name, tool in tools.items()}
    assert "long-term" in props["remember"]["type"]["enum"]
    assert "episodic" not in props["remember"]["type"]["enum"]
    assert "insight" in props["search"]["types"]["anyOf"][0]["items"]["enum"]
    assert "entity" in props["recall"]["types"]["anyOf"][0]["items"]["enum"]
    assert set(props["propose"]["store"]["enum"]) >= {"persona", "decisions"}
    assert props["propose"]["op"]["enum"] == ["add", "update", "supersede"]
    assert "entity" in props["list"]["type"]["anyOf"][0]["enum"]
    assert {"since", "until"} <= set(props["search"]) and {"since", "until"} <= set(props["recall"])
    assert input_schema(tools["update"])["required"] == ["ref"]
    for name, tool in tools.items():
        assert "\n " not in tool.description, f"{name}'s description keeps its indentation"

    # list: the CLI's records, newest `updated` first.
    assert seen["list"]["records"] == seen["cli_list"] and len(seen["cli_list"]) == 3
    assert {r["type"] for r in seen["list_entities"]["records"]} == {"entity"}
    assert all("ledger" in r["tags"] for r in seen["list_tag"]["records"])
    assert all(r["updated"] >= "2026-11-20" for r in seen["list_since"]["records"])
    window = seen["list_window"]["records"]
    assert window and all("2026-11-05" <= r["updated"] <= "2026-11-10T00:00:00Z" for r in window)

    # show: a whole record by title (any case), alias or path.
    shown = seen["show_title"]
    assert shown["path"] == "memory/long-term/ledger-runs-on-postgres-14-42rp8e.md"
    assert "pg_locks.waitstart" in shown["body"] and shown["superseded_by"]
    assert seen["show_alias"]["id"] == entity.id
    assert seen["show_path"] == shown

    # update: appended, fields set, `updated` moved; a stale copy got a conflict.
    appended = seen["appended"]
    assert appended["body"].endswith("\n\nChecked again in November.\n")
    assert appended["importance"] == 0.9 and appended["reviewed_by"] == "agent"
    assert appended["updated"] != shown["updated"]
    assert "the file changed on disk since memkit read it" in seen["stale"]
    assert f"it was updated at {appended['updated']}" in seen["stale"]
    assert seen["after_stale"]["body"] == appended["body"]
    assert "Rewritten." not in fact_file.read_text()
    assert "edited since the copy you edited was read" in seen["hand_edit_conflict"]
    assert "Checked by Dana" in fact_file.read_text()
    assert seen["retitled"]["title"] == "Ledger ran on Postgres 14"
    assert "reviewed_by" not in seen["retitled"]
    assert fact_file.read_text().count("Checked by Dana in November.") == 1
    assert not sample_vault.check().problems

    # search and recall: fresh after a hand edit, and within since/until.
    assert [h["id"] for h in seen["search_hand"]["hits"]] == ["01JC0000000000000000HANDMD"]
    assert seen["search_hand"]["stale"] is False
    assert [h["id"] for h in seen["search_since"]["hits"]] == ["01JC0000000000000000HANDMD"]
    # The server runs its own watcher (so a search needs no walk), and hand edits still show.
    assert seen["watcher_file"]
    assert not (sample_vault.root / ".memkit" / "watcher.json").exists()  # gone with the server
    assert [h["id"] for h in seen["ferry"]["hits"]] == ["01JC0000000000000000HANDM2"]
    assert "01JC0000000000000000HANDM2" not in [h["id"] for h in seen["ferry_after_edit"]["hits"]]
    assert [h["id"] for h in seen["paraglider"]["hits"]] == ["01JC0000000000000000HANDM2"]
    assert seen["paraglider_after_delete"]["hits"] == []
    assert not any(s["stale"] for s in (seen["ferry"], seen["paraglider"]))
    assert seen["search_until"]["hits"] == []
    assert [h["id"] for h in seen["recall_since"]["hits"]] == [shown["id"]]
    assert seen["recall_until"]["hits"]
    assert shown["id"] not in [h["id"] for h in seen["recall_until"]["hits"]]

    errors = seen["errors"]
    assert "'kayak TRIP' names 2 records" in errors["ambiguous"]
    assert "01JC0000000000000000HANDMD" in errors["ambiguous"]
    assert "no record with id, path, title or entity name" in errors["missing"]
    assert "'id' is kept by memkit" in errors["managed"]
    assert "nothing to change" in errors["nothing"]
    assert "not both" in errors["both"]
    assert "Rewrite it without the credential" in errors["secret"]
    assert "allow" not in errors["secret"].lower()
    assert "since: 'someday' is not a date" in errors["since"]
    assert "unknown type 'diary'" in errors["list_type"]
    assert SECRET.split()[-1] not in fact_file.read_text()
    # The same words as the CLI prints for the same mistake.
    cli_error = cli.run("show", "no such thing anywhere")
    assert cli_error.stderr.strip().removeprefix("Error: ") in errors["missing"]

    # Records are resources too.
    assert seen["templates"] == ["memkit://record/{id}"]
    assert seen["resource"].text == fact_file.read_text()
    assert "no record with id, path, title or entity name" in seen["resource_error"]
