"""`memkit mcp`: the vault served to MCP hosts over stdio (the only code importing the mcp SDK)."""

# Only `memkit mcp` imports this module. pydantic comes with openai (a core dependency); the SDK
# itself is imported when a server is built, so its absence can be reported with the fix.

import contextlib
import importlib
import json
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field

from memkit.context import DEFAULT_BUDGET, build_context
from memkit.conversations import Episodes, parse_conversation
from memkit.entities import Entities, split_pair
from memkit.errors import MemkitError
from memkit.learning import Learning
from memkit.memory import REMEMBER_TYPES, Memory, RecallHit
from memkit.records import RECORD_TYPES, STORE_TYPES
from memkit.secret_guard import redact_secrets
from memkit.vault import Vault

INSTALL_HINT = "pip install 'memkit[mcp]'"
INSTRUCTIONS = (
    "memkit keeps this agent's memory and learning as Markdown files in a vault. Use `recall` "
    "or `context` before answering, `remember` for facts worth keeping, `entity` for people and "
    "things, `record_interaction` to keep a conversation, and `propose` for learnings a person "
    "should review (`proposals`, `approve`, `reject`)."
)


def _sdk() -> tuple[Any, type[Exception]]:
    """The server class and its ToolError: MCPServer in mcp 2, FastMCP in mcp 1."""
    try:
        importlib.import_module("mcp")
    except ImportError:
        raise MemkitError(
            f"the MCP server needs the mcp package, which is not installed: {INSTALL_HINT}"
        ) from None
    try:
        server = importlib.import_module("mcp.server.mcpserver")
        errors = importlib.import_module("mcp.server.mcpserver.exceptions")
        return server.MCPServer, errors.ToolError
    except ImportError:
        server = importlib.import_module("mcp.server.fastmcp")
        errors = importlib.import_module("mcp.server.fastmcp.exceptions")
        return server.FastMCP, errors.ToolError


# Parameter types shared by several tools; the SDK turns the descriptions into input schemas.
Query = Annotated[str, Field(description="What to look for, in plain words.")]
Ref = Annotated[str, Field(description="A record id (ULID) or its vault-relative path, as listed.")]
Types = Annotated[
    list[str] | None, Field(description=f"Only these record types: {', '.join(RECORD_TYPES)}.")
]
K = Annotated[int, Field(description="How many results, 1..1000.", ge=1, le=1000)]


def build_server(vault: Vault) -> Any:
    """An MCP server whose tools act on `vault`; `.run()` serves it over stdio."""
    server_class, tool_error = _sdk()
    server = server_class("memkit", instructions=INSTRUCTIONS, log_level="WARNING")

    @contextlib.contextmanager
    def tool_errors() -> Iterator[None]:
        # A tool error (is_error) carries the CLI's own message, so the model reads what a person
        # would read, and can correct its call.
        try:
            yield
        except MemkitError as error:
            raise tool_error(str(error)) from None

    def remember(
        text: Annotated[str, Field(description="The memory itself, in Markdown.")],
        type: Annotated[
            str, Field(description=f"The kind of memory: {', '.join(REMEMBER_TYPES)}.")
        ] = "long-term",
        title: Annotated[
            str | None, Field(description="A short title (also names the file).")
        ] = None,
        tags: Annotated[list[str] | None, Field(description="Tags for filtering.")] = None,
        importance: Annotated[
            float | None, Field(description="How much it matters, 0..1.", ge=0, le=1)
        ] = None,
        supersedes: Annotated[
            str | None, Field(description="Id of a long-term fact this one replaces.")
        ] = None,
        subject: Annotated[
            str | None,
            Field(description="What the fact is about; a newer fact on it supersedes the older."),
        ] = None,
    ) -> dict[str, Any]:
        """Remember one thing: a long-term fact (deduplicated), a short-term item, or another
        memory type. Returns the record written (or the existing fact it repeats)."""
        with tool_errors():
            memory = Memory(vault)
            try:
                record = memory.remember(
                    text,
                    type=type,
                    title=title,
                    tags=tags or (),
                    importance=importance,
                    source={"tool": "mcp"},
                    supersedes=supersedes,
                    subject=subject,
                )
            finally:
                memory.close()
            return record.to_json()

    def recall(
        query: Query,
        k: K = 10,
        types: Types = None,
        include_all: Annotated[
            bool, Field(description="Include expired and superseded records.")
        ] = False,
    ) -> dict[str, Any]:
        """Recall memory relevant to a query, ranked by relevance, importance and recency.
        Episodic hits are single messages, with the turns before and after them."""
        with tool_errors():
            memory = Memory(vault)
            try:
                hits = memory.recall(query, k=k, types=types or (), include_hidden=include_all)
            finally:
                memory.close()
            return {"query": query, "hits": [hit.to_json() for hit in hits]}

    def search(
        query: Annotated[
            str,
            Field(description='Free text; "phrases", type:T and tag:T filters are understood.'),
        ],
        k: K = 10,
        types: Types = None,
        tags: Annotated[
            list[str] | None, Field(description="Only records with these tags.")
        ] = None,
        include_all: Annotated[
            bool, Field(description="Include expired and superseded records.")
        ] = False,
    ) -> dict[str, Any]:
        """Search the whole vault (memory and learning), syncing the index first when files
        changed. `stale` is true when the index could not be brought up to date."""
        with tool_errors():
            memory = Memory(vault)
            try:
                result, stale = memory.index.search(
                    query, k=k, types=types or (), tags=tags or (), include_hidden=include_all
                )
            finally:
                memory.close()
            return {
                "query": query,
                "total": result.total,
                "stale": stale,
                "hits": [RecallHit(hit).to_json() for hit in result.hits],
            }

    def context(
        query: Annotated[str, Field(description="The message or task the context is for.")],
        budget: Annotated[
            int, Field(description="Token budget for the block, 20..100000.", ge=20, le=100_000)
        ] = DEFAULT_BUDGET,
    ) -> dict[str, Any]:
        """A Markdown block for a system prompt: persona first, then learned entries and memory
        relevant to the query, each line citing its record id, within the token budget."""
        with tool_errors():
            block = build_context(vault, query, budget=budget)
            return {
                "query": query,
                "budget": budget,
                "tokens": block.tokens,
                "used": block.used,
                "text": block.text,
            }

    def entity(
        name: Annotated[str, Field(description="The entity's name or one of its aliases.")],
        kind: Annotated[
            str | None, Field(description="person, place, org, project, pet, ...")
        ] = None,
        attributes: Annotated[
            dict[str, Any] | None,
            Field(description="Attributes to set; a changed value keeps the old one in history."),
        ] = None,
        aliases: Annotated[list[str] | None, Field(description="Other names it goes by.")] = None,
        relations: Annotated[
            list[str] | None,
            Field(description="Relations as RELATION=OTHER (written as [[OTHER]] links)."),
        ] = None,
        note: Annotated[str | None, Field(description="A dated observation to append.")] = None,
    ) -> dict[str, Any]:
        """Show an entity (only a name given), or create/update it: attributes merged, aliases
        added, relations linked without duplicates, notes appended with today's date."""
        with tool_errors():
            entities = Entities(vault)
            if not (kind or attributes or aliases or relations or note):
                found = entities.find(name)
                if found is None:
                    raise MemkitError(
                        f"no entity named {name!r} (create it with "
                        f"`memkit entity {name!r} --kind person`)"
                    )
                return found.to_json()
            change = entities.upsert(
                name,
                kind=kind,
                attributes=attributes,
                aliases=aliases or (),
                relations=[split_pair(r, "a relation") for r in relations or ()],
                note=note,
            )
            return {
                **change.record.to_json(),
                "created_now": change.created,
                "changes": change.changes,
            }

    def record_interaction(
        messages: Annotated[
            list[dict[str, Any]],
            Field(
                description=(
                    'The messages, in order: {"speaker" (or "role"), "text" (or "content"), '
                    'optional "id", "time" (ISO 8601), "session"}.'
                )
            ),
        ],
        session: Annotated[
            str | None,
            Field(description="Session id for messages without one (default: s-<today>)."),
        ] = None,
        short_term: Annotated[
            bool, Field(description="Also put the messages in short-term memory.")
        ] = False,
    ) -> dict[str, Any]:
        """Record an interaction in episodic memory (the day files). Messages already recorded
        (same id) are skipped; credentials are redacted."""
        with tool_errors():
            # One JSON line per message, so an error names the message by its position.
            text = "\n".join(json.dumps(m, ensure_ascii=False) for m in messages)
            episodes = Episodes(vault)
            parsed = parse_conversation(text, "messages")
            prepared = episodes.prepare(parsed, session=session or "")
            report = episodes.record(prepared)
            if short_term and report.added:
                memory = Memory(vault)
                try:
                    for message in prepared:
                        # Redacted like the day files, which never keep a credential either.
                        memory.remember(
                            redact_secrets(f"{message.speaker}: {message.text}"),
                            type="short-term",
                            source={"session": message.session, "messages": [message.message_id]},
                        )
                finally:
                    memory.close()
            return report.to_json()

    def propose(
        store: Annotated[str, Field(description=f"The learning store: {', '.join(STORE_TYPES)}.")],
        text: Annotated[str, Field(description="The entry as it would be written, Markdown.")],
        title: Annotated[str | None, Field(description="At most ten words.")] = None,
        op: Annotated[
            str, Field(description="add, update (target's text replaced) or supersede.")
        ] = "add",
        target: Annotated[
            str | None, Field(description="Id of the entry an update or supersede applies to.")
        ] = None,
        rationale: Annotated[str, Field(description="Why this is worth keeping.")] = "",
        evidence: Annotated[
            list[str] | None, Field(description="Ids of the messages that support it.")
        ] = None,
        importance: Annotated[float, Field(description="0..1.", ge=0, le=1)] = 0.5,
    ) -> dict[str, Any]:
        """Propose a learning for a person to review (a file in learning/proposals/). Nothing
        enters a store until it is approved."""
        with tool_errors():
            record = Learning(vault).propose(
                store,
                text,
                title=title,
                op=op,
                target=target,
                rationale=rationale,
                evidence=evidence or (),
                importance=importance,
                session="mcp",
            )
            return record.to_json()

    def proposals() -> dict[str, Any]:
        """The proposals waiting for review."""
        with tool_errors():
            return {"proposals": [r.to_json() for r in Learning(vault).proposals()]}

    def approve(
        ref: Ref,
        force: Annotated[
            bool, Field(description="Apply even if the target changed since the proposal.")
        ] = False,
    ) -> dict[str, Any]:
        """Approve a proposal: move it into its store and apply its operation."""
        with tool_errors():
            return Learning(vault).approve(vault.resolve(ref), force=force).to_json()

    def reject(
        ref: Ref,
        reason: Annotated[str, Field(description="Why (kept in the file for audit).")] = "",
    ) -> dict[str, Any]:
        """Reject a proposal: move it to learning/rejected/, so it is not proposed again."""
        with tool_errors():
            return Learning(vault).reject(vault.resolve(ref), reason=reason).to_json()

    def forget(ref: Ref) -> dict[str, Any]:
        """Delete a record's file (git keeps its history)."""
        with tool_errors():
            record = Memory(vault).forget(vault.resolve(ref))
            return {"forgotten": record.id, "path": record.path}

    # Registered by name, in the order an MCP host lists them.
    for tool in (
        remember,
        recall,
        search,
        context,
        entity,
        record_interaction,
        propose,
        proposals,
        approve,
        reject,
        forget,
    ):
        server.add_tool(tool)
    return server


def serve(vault: Vault) -> None:
    """Serve the vault over stdio until the host closes the connection."""
    build_server(vault).run()
