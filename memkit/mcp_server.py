"""`memkit mcp`: the vault served to MCP hosts over stdio (the only code importing the mcp SDK)."""

# Only `memkit mcp` imports this module. pydantic is declared in the mcp extra (openai brings it
# too); the SDK itself is imported when a server is built, so its absence can be reported with
# the fix.

import contextlib
import importlib
import inspect
import json
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from pydantic import Field

from memkit import __version__
from memkit.browse import ListRequest, find_record, list_records, parse_moment
from memkit.context import DEFAULT_BUDGET, build_context
from memkit.conversations import Episodes, parse_conversation
from memkit.editing import RecordEdit
from memkit.entities import Entities, split_pair
from memkit.errors import MemkitError, RecordNotFound, SecretRefused
from memkit.held_vault import HeldVault
from memkit.memory import REMEMBER_TYPES, RecallHit
from memkit.records import RECORD_TYPES, STORE_TYPES
from memkit.secret_guard import redact_secrets
from memkit.vault import Vault

INSTALL_HINT = "pip install 'memkit[mcp]'"
INSTRUCTIONS = (
    "memkit keeps this agent's memory and learning as Markdown files in a vault. Use `recall` "
    "or `context` before answering, `remember` for facts worth keeping, `entity` for people and "
    "things, `record_interaction` to keep a conversation, and `propose` for learnings a person "
    "should review (`proposals`, `approve`, `reject`). `search` finds records, `show` reads one "
    "whole, `list` shows what changed recently, and `update` edits a record in place (pass the "
    "`updated` value you read as `expected_updated`, so a person's newer edit is never lost)."
)
OPS = ("add", "update", "supersede")


def secret_refusal(error: SecretRefused) -> str:
    """What the model reads when its text holds a credential: rewrite it, never override."""
    return (
        f"{error} Say where the credential is kept instead (e.g. 'the API key is in the team "
        "password manager') and call the tool again."
    )


def _sdk() -> tuple[Any, Any]:
    """The server class and the module of its exceptions: MCPServer in mcp 2, FastMCP in mcp 1."""
    try:
        importlib.import_module("mcp")
    except ImportError:
        raise MemkitError(
            f"the MCP server needs the mcp package, which is not installed: {INSTALL_HINT}"
        ) from None
    try:
        server = importlib.import_module("mcp.server.mcpserver")
        errors = importlib.import_module("mcp.server.mcpserver.exceptions")
        return server.MCPServer, errors
    except ImportError:
        server = importlib.import_module("mcp.server.fastmcp")
        errors = importlib.import_module("mcp.server.fastmcp.exceptions")
        return server.FastMCP, errors


def one_of(choices: Any) -> dict[str, Any]:
    """An enum for an input schema: the host shows the choices, memkit still checks them."""
    return {"enum": list(choices)}


# Parameter types shared by several tools; the SDK turns the descriptions into input schemas.
Query = Annotated[str, Field(description="What to look for, in plain words.")]
Ref = Annotated[str, Field(description="A record id (ULID) or its vault-relative path, as listed.")]
AnyRef = Annotated[
    str,
    Field(
        description=(
            "The record: its id, its vault-relative path, its title, or an entity's name or "
            "alias (any case). A title several records share is an error listing them."
        )
    ),
]
RecordType = Annotated[str, Field(json_schema_extra=one_of(RECORD_TYPES))]
Types = Annotated[list[RecordType] | None, Field(description="Only these record types.")]
K = Annotated[int, Field(description="How many results, 1..1000.", ge=1, le=1000)]
Since = Annotated[
    str | None,
    Field(
        description="Only records updated on or after this (2026-11-01, 2026-11-01T09:00Z, today, 7d)."
    ),
]
Until = Annotated[
    str | None, Field(description="Only records updated on or before this (same forms as since).")
]


def _new_server(server_class: Any) -> Any:
    try:
        return server_class(
            "memkit", instructions=INSTRUCTIONS, log_level="WARNING", version=__version__
        )
    except TypeError:
        # mcp 1's FastMCP takes no version; its low-level server carries it.
        server = server_class("memkit", instructions=INSTRUCTIONS, log_level="WARNING")
        server._mcp_server.version = __version__
        return server


def build_server(vault: Vault, held: HeldVault | None = None) -> Any:
    """An MCP server whose tools act on `vault`; `.run()` serves it over stdio."""
    server_class, sdk_errors = _sdk()
    tool_error = sdk_errors.ToolError
    # A resource error reaches the host with its message (anything else only names the URI);
    # mcp 2 has a "not found" kind of it, mcp 1 only the general one.
    resource_error = sdk_errors.ResourceError
    not_found = getattr(sdk_errors, "ResourceNotFoundError", resource_error)
    server = _new_server(server_class)
    held = held or HeldVault(vault)

    @contextlib.contextmanager
    def tool_errors() -> Iterator[HeldVault]:
        # A tool error (is_error) carries the CLI's own message, so the model reads what a person
        # would read, and can correct its call; a refused secret is told what to do instead.
        try:
            with held.use() as state:
                yield state
        except SecretRefused as error:
            raise tool_error(secret_refusal(error)) from None
        except MemkitError as error:
            raise tool_error(str(error)) from None

    def remember(
        text: Annotated[str, Field(description="The memory itself, in Markdown.")],
        type: Annotated[
            str,
            Field(description="The kind of memory.", json_schema_extra=one_of(REMEMBER_TYPES)),
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
        with tool_errors() as state:
            record = state.memory.remember(
                text,
                type=type,
                title=title,
                tags=tags or (),
                importance=importance,
                source={"tool": "mcp"},
                supersedes=supersedes,
                subject=subject,
            )
            return record.to_json()

    def recall(
        query: Query,
        k: K = 10,
        types: Types = None,
        since: Since = None,
        until: Until = None,
        include_all: Annotated[
            bool, Field(description="Include expired and superseded records.")
        ] = False,
    ) -> dict[str, Any]:
        """Recall memory relevant to a query, ranked by relevance, importance and recency.
        Episodic hits are single messages, with the turns before and after them."""
        with tool_errors() as state:
            hits = state.memory.recall(
                query,
                k=k,
                types=types or (),
                include_hidden=include_all,
                since=parse_moment(since, "since"),
                until=parse_moment(until, "until"),
            )
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
        since: Since = None,
        until: Until = None,
        include_all: Annotated[
            bool, Field(description="Include expired and superseded records.")
        ] = False,
    ) -> dict[str, Any]:
        """Search the whole vault (memory and learning), syncing the index first when files
        changed. `stale` is true when the index could not be brought up to date. Hits carry a
        snippet; `show` reads a whole record."""
        with tool_errors() as state:
            result, stale = state.index.search(
                query,
                k=k,
                types=types or (),
                tags=tags or (),
                since=parse_moment(since, "since"),
                until=parse_moment(until, "until"),
                include_hidden=include_all,
            )
            return {
                "query": query,
                "total": result.total,
                "stale": stale,
                "hits": [RecallHit(hit).to_json() for hit in result.hits],
            }

    def show(ref: AnyRef) -> dict[str, Any]:
        """Read one whole record: every front-matter field and the full Markdown body (as
        `memkit show --json` prints it). `updated` is what `update` takes as expected_updated."""
        with tool_errors() as state:
            return state.served(find_record(state.vault, ref))

    def list_(
        type: Annotated[
            Annotated[str, Field(json_schema_extra=one_of(RECORD_TYPES))] | None,
            Field(description="Only records of this type."),
        ] = None,
        tag: Annotated[str | None, Field(description="Only records with this tag.")] = None,
        since: Since = None,
        until: Until = None,
        limit: Annotated[
            int, Field(description="At most this many records, 1..1000.", ge=1, le=1000)
        ] = 20,
    ) -> dict[str, Any]:
        """What changed recently: records, most recently updated first, without their bodies
        (`show` reads one)."""
        with tool_errors() as state:
            listing = list_records(
                state.vault,
                ListRequest(
                    types=(type,) if type else (),
                    tags=(tag,) if tag else (),
                    since=parse_moment(since, "since"),
                    until=parse_moment(until, "until"),
                    limit=limit,
                ),
                state.stamps,
            )
            return {
                "records": [
                    {k: v for k, v in r.to_json().items() if k != "body"} for r in listing.records
                ],
            }

    def update(
        ref: AnyRef,
        append: Annotated[
            str | None, Field(description="Text to add after the body, as its own paragraph.")
        ] = None,
        body: Annotated[
            str | None, Field(description="A new Markdown body, replacing the whole old one.")
        ] = None,
        set: Annotated[
            dict[str, Any] | None,
            Field(
                description=(
                    "Front-matter fields to set (tags, importance, ...); null removes a field. "
                    "id, type, created and updated are kept by memkit."
                )
            ),
        ] = None,
        title: Annotated[str | None, Field(description="A new title.")] = None,
        expected_updated: Annotated[
            str | None,
            Field(
                description=(
                    "The `updated` value of the copy you read (from show or list): if the record "
                    "changed since, nothing is written and you get a conflict; read it again."
                )
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Edit a record in place: append text or replace the body, set front-matter fields,
        retitle. The write is checked (schema, credentials) and never overwrites a newer edit.
        Returns the record as written."""
        with tool_errors() as state:
            edit = RecordEdit(
                append=append,
                body=body,
                fields=set or {},
                title=title,
                expected_updated=expected_updated,
            )
            return state.served(state.edit(ref, edit))

    def context(
        query: Annotated[str, Field(description="The message or task the context is for.")],
        budget: Annotated[
            int, Field(description="Token budget for the block, 20..100000.", ge=20, le=100_000)
        ] = DEFAULT_BUDGET,
    ) -> dict[str, Any]:
        """A Markdown block for a system prompt: persona first, then learned entries and memory
        relevant to the query, each line citing its record id, within the token budget."""
        with tool_errors() as state:
            block = build_context(state.vault, query, budget=budget, memory_obj=state.memory)
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
        with tool_errors() as state:
            entities = Entities(state.vault)
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
        with tool_errors() as state:
            # One JSON line per message, so an error names the message by its position.
            text = "\n".join(json.dumps(m, ensure_ascii=False) for m in messages)
            episodes = Episodes(state.vault)
            parsed = parse_conversation(text, "messages")
            prepared = episodes.prepare(parsed, session=session or "")
            report = episodes.record(prepared)
            if short_term and report.added:
                for message in prepared:
                    # Redacted like the day files, which never keep a credential either.
                    state.memory.remember(
                        redact_secrets(f"{message.speaker}: {message.text}"),
                        type="short-term",
                        source={"session": message.session, "messages": [message.message_id]},
                    )
            return report.to_json()

    def propose(
        store: Annotated[
            str, Field(description="The learning store.", json_schema_extra=one_of(STORE_TYPES))
        ],
        text: Annotated[str, Field(description="The entry as it would be written, Markdown.")],
        title: Annotated[str | None, Field(description="At most ten words.")] = None,
        op: Annotated[
            str,
            Field(
                description="add, update (target's text replaced) or supersede.",
                json_schema_extra=one_of(OPS),
            ),
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
        with tool_errors() as state:
            record = state.learning.propose(
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
        with tool_errors() as state:
            return {"proposals": [r.to_json() for r in state.learning.proposals()]}

    def approve(
        ref: Ref,
        force: Annotated[
            bool, Field(description="Apply even if the target changed since the proposal.")
        ] = False,
    ) -> dict[str, Any]:
        """Approve a proposal: move it into its store and apply its operation."""
        with tool_errors() as state:
            return state.learning.approve(state.vault.resolve(ref), force=force).to_json()

    def reject(
        ref: Ref,
        reason: Annotated[str, Field(description="Why (kept in the file for audit).")] = "",
    ) -> dict[str, Any]:
        """Reject a proposal: move it to learning/rejected/, so it is not proposed again."""
        with tool_errors() as state:
            return state.learning.reject(state.vault.resolve(ref), reason=reason).to_json()

    def forget(ref: Ref) -> dict[str, Any]:
        """Delete a record's file (git keeps its history)."""
        with tool_errors() as state:
            record = state.memory.forget(state.vault.resolve(ref))
            return {"forgotten": record.id, "path": record.path}

    def record_resource(id: str) -> str:
        """A record's file as it is on disk: front-matter and Markdown body."""
        try:
            with held.use() as state:
                record = find_record(state.vault, id)
                assert record.path is not None
                return state.vault.safe_path(record.path).read_text("utf-8-sig")
        except RecordNotFound as error:
            raise not_found(str(error)) from None
        except MemkitError as error:
            raise resource_error(str(error)) from None

    server.resource(
        "memkit://record/{id}",
        name="record",
        title="A memkit record",
        description="One record of the vault by its id: front-matter and Markdown body.",
        mime_type="text/markdown",
    )(record_resource)

    # Registered by name, in the order an MCP host lists them, with what each does to the vault:
    # read-only, destructive (deletes or replaces a person's text), idempotent (a repeat with the
    # same arguments changes nothing more). Nothing reaches outside the vault (closed world).
    tools: list[tuple[Callable[..., Any], str, str, dict[str, bool]]] = [
        (remember, "remember", "Remember", {}),
        (recall, "recall", "Recall memory", {"readOnlyHint": True}),
        (search, "search", "Search the vault", {"readOnlyHint": True}),
        (show, "show", "Show a record", {"readOnlyHint": True}),
        (list_, "list", "List recent records", {"readOnlyHint": True}),
        (update, "update", "Edit a record", {"destructiveHint": True}),
        (context, "context", "Context for a prompt", {"readOnlyHint": True}),
        (entity, "entity", "Show or update an entity", {}),
        (
            record_interaction,
            "record_interaction",
            "Record a conversation",
            {"idempotentHint": True},
        ),
        (propose, "propose", "Propose a learning", {}),
        (proposals, "proposals", "Pending proposals", {"readOnlyHint": True}),
        (approve, "approve", "Approve a proposal", {}),
        (reject, "reject", "Reject a proposal", {"destructiveHint": True}),
        (forget, "forget", "Forget a record", {"destructiveHint": True, "idempotentHint": True}),
    ]
    annotations_class = _annotations_class()
    for function, name, title, hints in tools:
        hints = {
            "readOnlyHint": False,
            "destructiveHint": False,
            "idempotentHint": False,
            **hints,
            "openWorldHint": False,
        }
        if hints["readOnlyHint"]:
            # The spec reads destructive and idempotent only on tools that write.
            del hints["destructiveHint"], hints["idempotentHint"]
        server.add_tool(
            function,
            name=name,
            description=inspect.cleandoc(function.__doc__ or ""),
            annotations=annotations_class(title=title, **hints),
        )
    return server


def _annotations_class() -> Any:
    return importlib.import_module("mcp.types").ToolAnnotations


def serve(vault: Vault) -> None:
    """Serve the vault over stdio until the host closes the connection."""
    held = HeldVault(vault)
    # The watcher's first reconcile may rebuild a large index: the host is answered meanwhile
    # (searches walk the files until the watcher vouches).
    starting = threading.Thread(target=held.watch, name="memkit-mcp-watch", daemon=True)
    starting.start()
    try:
        build_server(vault, held).run()
    finally:
        starting.join()
        held.close()
