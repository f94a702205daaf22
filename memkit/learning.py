"""Learning: LLM extraction into seven stores (agentic or proposed), approval by moving files."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from memkit.approvals import (
    PROPOSAL_ONLY_KEYS,
    Approvals,
    body_digest,
    finalise,
    finalise_moved,
    finalise_moves,
    mark_superseded,
    target_of,
)
from memkit.conversations import ConversationMessage
from memkit.errors import (
    ConflictError,
    LLMError,
    LockTimeout,
    MemkitError,
    SecretRefused,
    UsageError,
)
from memkit.extraction import (
    _OUTPUT_CHARS_PER_TOKEN,
    FOLDER_STORES,
    STORE_DESCRIPTIONS,
    STORE_FOLDERS,
    TranscriptLine,
    _entry_chars,
    extract_in_chunks,
    extraction_schema,
    plan_chunks,
    transcript_lines,
)
from memkit.llm import LLMClient
from memkit.memory import normalise, similarity
from memkit.records import REJECTED_FOLDER, STORE_TYPES, TYPE_FOLDERS, Record
from memkit.secret_guard import find_secrets
from memkit.settings import LEARNING_MODES
from memkit.sync import VaultIndex
from memkit.timeutil import format_time, utcnow
from memkit.vault import Vault

# What a model is asked and how its reply comes back lives in extraction; those names stay
# importable from here (the two private ones for tests that size the schema), and so do the
# approval names now in memkit.approvals.
__all__ = [
    "FOLDER_STORES",
    "PROPOSALS_FOLDER",
    "PROPOSAL_ONLY_KEYS",
    "REJECTED_SIMILARITY",
    "STORE_DESCRIPTIONS",
    "STORE_FOLDERS",
    "_OUTPUT_CHARS_PER_TOKEN",
    "Approvals",
    "LearnReport",
    "Learning",
    "Refusal",
    "TranscriptLine",
    "_entry_chars",
    "body_digest",
    "extract_in_chunks",
    "extraction_schema",
    "plan_chunks",
    "quality_problem",
    "transcript_lines",
]

PROPOSALS_FOLDER = TYPE_FOLDERS["proposal"]
# A rejected proposal this similar to a new entry means "do not propose it again".
REJECTED_SIMILARITY = 0.8
_WORD = re.compile(r"\w+", re.UNICODE)
# Titles that name an id or a time instead of saying what the entry is about.
_ID_OR_TIME = re.compile(
    r"\A\W*(?:[a-z]{1,3}-?\d+|[a-z]{0,3}-?[0-9a-hjkmnp-tv-z]{10,}|"
    r"\d{4}-\d{2}-\d{2}(?:[ t]\d{1,2}:\d{2}(?::\d{2})?z?)?|\d{1,2}:\d{2}(?::\d{2})?|[\d\W]+)\W*\Z",
    re.IGNORECASE,
)


@dataclass
class Refusal:
    title: str
    store: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"title": self.title, "store": self.store, "reason": self.reason}


@dataclass
class LearnReport:
    mode: str
    stores: list[str]
    written: list[dict[str, str]] = field(default_factory=list)  # {id, path, store, op}
    proposed: list[dict[str, str]] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # titles dropped without asking
    shown: list[str] = field(default_factory=list)  # ids of existing entries shown to the model
    chunks: int = 0  # extraction requests the conversation was split into
    context_tokens: int = 0  # the model's context window the chunks were sized for
    prompt_tokens: int = 0  # as the server counted them (0 when it did not say)
    output_tokens: int = 0
    fallbacks: list[str] = field(default_factory=list)  # structured-output modes given up on
    warnings: list[str] = field(default_factory=list)  # e.g. the model is not listed

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "stores": self.stores,
            "written": self.written,
            "proposed": self.proposed,
            "refused": [r.to_json() for r in self.refused],
            "duplicates": self.duplicates,
            "shown": self.shown,
            "chunks": self.chunks,
            "context_tokens": self.context_tokens,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "fallbacks": self.fallbacks,
            "warnings": self.warnings,
        }


def quality_problem(
    title: str, text: str, evidence: Sequence[str], shown_messages: set[str] | None
) -> str | None:
    """Why an extracted entry is not worth writing, or None: the floor below which a model's
    output (a tiny model's especially) is noise, refused before anything is written."""
    words = _WORD.findall(text)
    if title and normalise(title) == normalise(text):
        return "its text only repeats its title"
    if len(words) <= 2:
        return "its text is only a word or two"
    if title and _ID_OR_TIME.match(title):
        return "its title is an id or a timestamp, not what the entry is about"
    if shown_messages is not None and not any(e in shown_messages for e in evidence):
        return "its evidence cites no message of the conversation"
    return None


class Learning:
    """Learning stores in a vault: extraction through an LLM, proposals, approval, rejection."""

    def __init__(
        self, vault: Vault, llm: LLMClient | None = None, index: VaultIndex | None = None
    ) -> None:
        self.vault = vault
        self.llm = llm
        self._index = index
        # An index handed in is the caller's to use from this thread (the CLI's, a server's
        # held one); one opened here may be in use by a background learner (the Agent's).
        self._given_index = index is not None

    @property
    def index(self) -> VaultIndex:
        if self._index is None:
            self._index = VaultIndex(self.vault)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    # --- extraction ---------------------------------------------------------------------------

    def enabled_stores(self, stores: Iterable[str] | None = None) -> list[str]:
        if stores:
            chosen = list(dict.fromkeys(stores))
            unknown = [s for s in chosen if s not in STORE_TYPES]
            if unknown:
                raise UsageError(
                    f"unknown store {unknown[0]!r}; stores are {', '.join(STORE_TYPES)}"
                )
            return chosen
        return [s for s, on in self.vault.settings.learning.stores.items() if on]

    def related_entries(self, text: str, stores: list[str]) -> list[Record]:
        """Existing entries the model should see so that it updates instead of duplicating."""
        types = [STORE_TYPES[s] for s in stores]
        limit = self.vault.settings.learning.related_entries
        result, _stale = self.index.search(text[-2000:], k=limit, types=types)
        records: list[Record] = []
        for hit in result.hits:
            try:
                records.append(self.vault.read_record(hit.path))
            except (MemkitError, OSError):
                continue
        return records

    def learn(
        self,
        messages: Sequence[ConversationMessage],
        *,
        mode: str | None = None,
        stores: Iterable[str] | None = None,
        session: str = "",
    ) -> LearnReport:
        """Extraction over a conversation: write entries (agentic) or proposals (propose).

        A conversation longer than the model's context is extracted in chunks of whole messages;
        every chunk is asked for before anything is written, so a failure leaves nothing partial.
        """
        mode = mode or self.vault.settings.learning.mode
        if mode not in LEARNING_MODES:
            raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(LEARNING_MODES)}")
        enabled = self.enabled_stores(stores)
        report = LearnReport(mode=mode, stores=enabled)
        if mode == "disabled" or not enabled or not messages:
            return report
        if self.llm is None:
            raise LLMError("learning needs a language model: configure `llm:` in memkit.yaml")
        llm = self.llm
        session = session or messages[-1].session or "session"
        lines = transcript_lines(messages)
        existing = self.related_entries("\n".join(line.text for line in lines), enabled)
        thread = self._thread_for(session) if "threads" in enabled else None
        if thread is not None and thread.id not in {r.id for r in existing}:
            existing.insert(0, thread)
        report.shown = [r.id for r in existing]
        before_usage = dict(llm.usage_total)
        before_fallbacks = len(llm.fallbacks)
        try:
            with llm.time_budget():
                warning = llm.check_model()
                raw_entries, report.chunks, report.context_tokens, skipped = extract_in_chunks(
                    llm, lines, messages, existing, enabled, session
                )
                report.warnings.extend(skipped)
        finally:
            report.prompt_tokens = llm.usage_total["prompt_tokens"] - before_usage["prompt_tokens"]
            report.output_tokens = (
                llm.usage_total["completion_tokens"] - before_usage["completion_tokens"]
            )
            report.fallbacks = llm.fallbacks[before_fallbacks:]
        if warning:
            report.warnings.append(warning)
        known = {r.id: r for r in existing}
        message_ids = {m.message_id for m in messages}
        with self.vault.write_lock():
            rejected, pending = self._rejected_and_pending()
            for raw in raw_entries:
                self._apply_entry(
                    raw,
                    mode,
                    enabled,
                    known,
                    message_ids,
                    session,
                    thread,
                    rejected,
                    pending,
                    report,
                    check_quality=True,
                )
        return report

    def _apply_entry(
        self,
        raw: Any,
        mode: str,
        enabled: list[str],
        known: dict[str, Record],
        message_ids: set[str],
        session: str,
        thread: Record | None,
        rejected: list[str],
        pending: list[str],
        report: LearnReport,
        *,
        check_quality: bool = False,
    ) -> None:
        if not isinstance(raw, dict):
            report.refused.append(Refusal("?", "?", f"not an object: {str(raw)[:80]}"))
            return
        store = str(raw.get("store", ""))
        op = str(raw.get("op", "add"))
        title = str(raw.get("title") or "").strip()
        text = str(raw.get("text") or "").strip()
        target = raw.get("target") or None
        label = title or text[:60] or "?"
        if op == "noop":
            return
        if store not in STORE_TYPES:
            report.refused.append(Refusal(label, store, f"unknown store {store!r}"))
            return
        if store not in enabled:
            report.refused.append(Refusal(label, store, f"store {store!r} is disabled"))
            return
        if op not in ("add", "update", "supersede"):
            report.refused.append(Refusal(label, store, f"unknown op {op!r}"))
            return
        if not text:
            report.refused.append(Refusal(label, store, "the entry has no text"))
            return
        # Tags and rationale as the model wrote them: tags are lowercased below, which can make
        # a credential no longer look like one (the vault's own guard sees only the result).
        raw_extras = [str(t) for t in raw.get("tags") or []] + [str(raw.get("rationale") or "")]
        if find_secrets("\n".join([title, text, *raw_extras])):
            report.refused.append(Refusal(label, store, "the text holds a credential"))
            return
        if check_quality:
            cited = [str(e) for e in raw.get("evidence") or []]
            problem = quality_problem(title, text, cited, message_ids)
            if problem:
                report.refused.append(Refusal(label, store, problem))
                return
        if store == "threads" and thread is not None and op == "add":
            op, target = "update", thread.id  # one thread per session, updated as it goes
        if op in ("update", "supersede"):
            if not isinstance(target, str) or target not in known:
                report.refused.append(
                    Refusal(label, store, f"{op} of unknown target {target!r} (not shown)")
                )
                return
            if known[target].type != STORE_TYPES[store]:
                report.refused.append(
                    Refusal(
                        label,
                        store,
                        f"target {target} is a {known[target].type}, not a {store} entry",
                    )
                )
                return
        else:
            target = None
        wanted = normalise(text)
        if any(normalise(r.body) == wanted for r in known.values()) or wanted in pending:
            report.duplicates.append(label)
            return
        if check_quality and op == "add":
            near = self._near_duplicate(text, store, known, report)
            if near == "":
                report.duplicates.append(label)
                return
            if near is not None:
                op, target = "update", near  # the same thing said again: revise, not repeat
        if any(similarity(text, old) >= REJECTED_SIMILARITY for old in rejected):
            report.refused.append(Refusal(label, store, "a person rejected this before"))
            return
        evidence = [str(e) for e in raw.get("evidence") or [] if str(e) in message_ids]
        importance = raw.get("importance")
        if not isinstance(importance, (int, float)) or isinstance(importance, bool):
            importance = 0.5
        importance = min(1.0, max(0.0, float(importance)))
        tags = [str(t).strip().lower() for t in raw.get("tags") or [] if str(t).strip()]
        rationale = str(raw.get("rationale") or "").strip()
        entry = {
            "store": store,
            "op": op,
            "target": target,
            "title": title or None,
            "text": text,
            "importance": importance,
            "tags": tags,
            "evidence": evidence,
            "rationale": rationale,
            "session": session,
        }
        try:
            if mode == "propose":
                record = self._write_proposal(entry, known)
                report.proposed.append(
                    {"id": record.id, "path": str(record.path), "store": store, "op": op}
                )
                pending.append(wanted)
            else:
                record = self._write_entry(entry, known)
                report.written.append(
                    {"id": record.id, "path": str(record.path), "store": store, "op": op}
                )
                if op != "add" and target in known:
                    known[target] = record
        except (ConflictError, SecretRefused, MemkitError) as error:
            report.refused.append(Refusal(label, store, str(error)))

    def _near_duplicate(
        self, text: str, store: str, known: dict[str, Record], report: LearnReport
    ) -> str | None:
        """The id of an entry of `store` that says nearly the same as `text` (long-term facts'
        similarity rule), "" when it was written by this very run (drop it), else None."""
        threshold = self.vault.settings.memory.long_term.duplicate_similarity
        entry_type = STORE_TYPES[store]
        this_run = {item["id"] for item in report.written + report.proposed}
        candidates = [r for r in known.values() if r.type == entry_type]
        try:
            hits = self.index.search(text, k=3, types=[entry_type])[0].hits
        except MemkitError:
            hits = []
        for hit in hits:
            if hit.record_id not in known:
                try:
                    candidates.append(self.vault.read_record(hit.path))
                except (MemkitError, OSError):
                    continue
        for record in candidates:
            if record.meta.get("superseded_by") or similarity(text, record.body) < threshold:
                continue
            if record.id in this_run:
                return ""
            known.setdefault(record.id, record)
            return record.id
        return None

    def _thread_for(self, session: str) -> Record | None:
        for record in self.vault.scan(["thread"]).records:
            if record.meta.get("session") == session and not record.meta.get("superseded_by"):
                return record
        return None

    def _rejected_and_pending(self) -> tuple[list[str], list[str]]:
        """Texts of rejected proposals, and normalised texts of pending ones (one scan)."""
        rejected: list[str] = []
        pending: list[str] = []
        for record in self.vault.scan(["proposal"]).records:
            path = str(record.path)
            if path.startswith(REJECTED_FOLDER + "/"):
                rejected.append(record.body)
            elif path.startswith(PROPOSALS_FOLDER + "/"):
                pending.append(normalise(record.body))
        return rejected, pending

    def _entry_meta(self, entry: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if entry["evidence"]:
            meta["evidence"] = entry["evidence"]
        if entry["store"] == "threads":
            meta["session"] = entry["session"]
        if entry["store"] == "decisions" and entry["rationale"]:
            meta["rationale"] = entry["rationale"]
        return meta

    def _write_entry(self, entry: dict[str, Any], known: dict[str, Record]) -> Record:
        entry_type = STORE_TYPES[entry["store"]]
        source = {"session": entry["session"], "tool": "learn"}
        if entry["op"] == "update":
            target = known[entry["target"]]
            target.body = entry["text"] + "\n"
            if entry["title"]:
                target.meta["title"] = entry["title"]
            target.meta["importance"] = max(target.importance or 0, entry["importance"])
            if entry["tags"]:
                target.meta["tags"] = sorted(set(target.tags) | set(entry["tags"]))
            if entry["evidence"]:
                old = [str(e) for e in target.meta.get("evidence") or []]
                target.meta["evidence"] = old + [e for e in entry["evidence"] if e not in old]
            return self.vault.update(target)
        extra = self._entry_meta(entry)
        if entry["op"] == "supersede":
            extra["supersedes"] = entry["target"]
        record = self.vault.create(
            entry_type,
            entry["text"],
            title=entry["title"],
            tags=entry["tags"],
            importance=entry["importance"],
            source=source,
            extra=extra,
        )
        if entry["op"] == "supersede":
            mark_superseded(self.vault, known[entry["target"]], record)
        return record

    def _write_proposal(self, entry: dict[str, Any], known: dict[str, Record]) -> Record:
        extra: dict[str, Any] = {"store": entry["store"], "op": entry["op"]}
        if entry["target"]:
            extra["target"] = entry["target"]
            extra["target_digest"] = body_digest(known[entry["target"]].body)
        if entry["rationale"]:
            extra["rationale"] = entry["rationale"]
        extra.update({k: v for k, v in self._entry_meta(entry).items() if k != "rationale"})
        return self.vault.create(
            "proposal",
            entry["text"],
            title=entry["title"],
            tags=entry["tags"],
            importance=entry["importance"],
            source={"session": entry["session"], "tool": "learn"},
            extra=extra,
        )

    # --- proposals: propose, list, approve, reject -------------------------------------------

    def propose(
        self,
        store: str,
        text: str,
        *,
        title: str | None = None,
        op: str = "add",
        target: str | None = None,
        rationale: str = "",
        evidence: Iterable[str] = (),
        tags: Iterable[str] = (),
        importance: float = 0.5,
        session: str = "",
    ) -> Record:
        """Write one proposal without asking a model (an agent or a person proposes it).

        It goes through the same checks as an extracted entry (store, op, target, credentials,
        pending duplicates, earlier rejections); any store may be named, since a proposal waits
        for a person's review anyway.
        """
        if op not in ("add", "update", "supersede"):
            raise UsageError(f"unknown op {op!r}; choose add, update or supersede")
        if store not in STORE_TYPES:
            raise UsageError(f"unknown store {store!r}; stores are {', '.join(STORE_TYPES)}")
        if not 0 <= importance <= 1:
            raise UsageError(f"importance must be between 0 and 1, not {importance}")
        known = {target: self.vault.get(target)} if target else {}
        if target and known[target].id != target:
            known = {known[target].id: known[target]}  # a path was given: entries name ids
            target = next(iter(known))
        evidence = [str(e) for e in evidence]
        raw = {
            "store": store,
            "op": op,
            "target": target,
            "title": title,
            "text": text,
            "importance": importance,
            "tags": list(tags),
            "evidence": evidence,
            "rationale": rationale,
        }
        report = LearnReport(mode="propose", stores=[store])
        with self.vault.write_lock():
            rejected, pending = self._rejected_and_pending()
            self._apply_entry(
                raw,
                "propose",
                [store],
                known,
                set(evidence),
                session or "manual",
                None,
                rejected,
                pending,
                report,
            )
        if report.refused:
            raise UsageError(f"nothing was proposed: {report.refused[0].reason}")
        if report.duplicates:
            raise UsageError(
                "nothing was proposed: the same text is already pending or is its target's text"
            )
        return self.vault.read_record(report.proposed[0]["path"])

    def proposals(self) -> list[Record]:
        return [
            r
            for r in self.vault.scan(["proposal"]).records
            if str(r.path).startswith(PROPOSALS_FOLDER + "/")
        ]

    def _proposal(self, ref: str | Record) -> Record:
        record = ref if isinstance(ref, Record) else self.vault.get(ref)
        if record.type != "proposal":
            raise UsageError(f"{record.path} is a {record.type} entry, not a proposal")
        if str(record.path).startswith(REJECTED_FOLDER + "/"):
            raise UsageError(f"{record.path} was rejected; move it to {PROPOSALS_FOLDER}/ first")
        return record

    def approve(self, ref: str | Record, *, force: bool = False) -> Record:
        """Move a proposal into its store and apply it: the same as moving the file by hand.
        `ref` may be the proposal as read already (then it is not read again). With an index
        handed in, the entry is indexed at once, from the files as written (no parse of its own)."""
        written: dict[str, Record | None] = {}
        with self.vault.write_lock():
            record = self._proposal(ref)
            store = str(record.meta.get("store", ""))
            if store not in STORE_FOLDERS:
                raise UsageError(f"{record.path}: proposal has no valid store ({store!r})")
            assert record.path is not None
            target_of(self.vault, record, force=force)  # refuse before moving anything
            if str(PurePosixPath(record.path).parent) == PROPOSALS_FOLDER:
                name = PurePosixPath(record.path).name
                record = self.vault.move(record, f"{STORE_FOLDERS[store]}/{name}")
            entry = finalise(self.vault, record, force=force, written=written)
        # Indexed at once through the caller's index, from the files as written (no parse).
        # Without one, or with another process holding the index for long, the write stands
        # and the next freshness check (or the watcher) indexes it.
        if self._given_index and self._index is not None:
            with contextlib.suppress(LockTimeout):
                self._index.index_writes(
                    records={path: r for path, r in written.items() if r is not None}
                )
        return entry

    def finalise_moved(self, path: str) -> str:
        """A proposal a person moved into a store folder: finalise it like `approve`."""
        entry = finalise_moved(self.vault, path)
        return path if entry is None else str(entry.path)

    def finalise_moves(self, found: Mapping[str, Record | None]) -> Approvals:
        """Finalise the proposals among `found` (path -> the file as a sync read it, or None)
        that sit in a store folder: approvals by move (see `approvals.finalise_moves`)."""
        return finalise_moves(self.vault, found)

    def reject(self, ref: str, *, reason: str = "") -> Record:
        """Move a proposal to learning/rejected/ so it is kept for audit and not proposed again."""
        with self.vault.write_lock():
            record = self._proposal(ref)
            assert record.path is not None
            name = PurePosixPath(record.path).name
            moved = self.vault.move(record, f"{REJECTED_FOLDER}/{name}")
            moved.meta["rejected"] = format_time(utcnow())
            if reason:
                moved.meta["reason"] = reason
            return self.vault.update(moved)  # the reason is new text: the guard checks it
