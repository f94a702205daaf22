"""An agent with memory and learning over one vault: `Agent(memory=..., learn=...).chat(text)`."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from memkit import ids
from memkit.context import build_context
from memkit.conversations import ConversationMessage, Episodes
from memkit.errors import MemkitError, UsageError
from memkit.learning import Learning
from memkit.llm import LLMClient, LLMConfig, resolve_llm_config
from memkit.memory import Memory
from memkit.records import STORE_TYPES
from memkit.secret_guard import redact_secrets
from memkit.settings import LEARNING_MODES, SETTINGS_FILE, Settings, load_settings
from memkit.timeutil import utcnow
from memkit.vault import Vault

log = logging.getLogger(__name__)
# A library must not print: without this, Python's last-resort handler would write our warnings
# to stderr of every program using memkit. Applications that configure logging still see them.
log.addHandler(logging.NullHandler())

VAULTS_DIR = "memkit-vaults"  # under the current folder when neither vaults_root nor MEMKIT_HOME
CADENCES = ("turn", "session_end")
# A user id names a folder: only characters that cannot climb out of vaults_root, and lowercase
# so that two ids can never share one folder on a case-insensitive file system.
_USER_ID = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,127}$")
# Messages kept for a later extraction when one fails, so a model outage loses nothing recent
# without letting the transcript grow without bound.
MAX_PENDING_MESSAGES = 60


def _check_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise UsageError(f"{name} must be between 0 and 1, not {value}")


def _check_positive(name: str, value: float | None, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or value < 0 or (value == 0 and not zero_ok):
        floor = "0 or more" if zero_ok else "more than 0"
        raise UsageError(f"{name} must be {floor}, not {value!r}")


@dataclass(frozen=True)
class MemoryConfig:
    """Memory for one agent. `None` keeps the vault's memkit.yaml value for that option.

    The stores: `short_term` records each message as a short-term item, `episodic` records each
    interaction in the day files, `recall` puts memory relevant to the message into the prompt
    (within `budget` tokens). The other fields override memkit.yaml's `memory:` section for this
    agent only (the file is never rewritten).
    """

    short_term: bool = True
    episodic: bool = True
    recall: bool = True
    budget: int = 800  # tokens of recalled memory in the prompt
    capacity: int | None = None  # memory.short_term.capacity
    ttl_hours: float | None = None  # memory.short_term.ttl_hours
    promote_threshold: float | None = None  # memory.short_term.promote_threshold
    duplicate_similarity: float | None = None  # memory.long_term.duplicate_similarity
    retention_days: int | None = None  # memory.episodic.retention_days (0 = forever)

    def __post_init__(self) -> None:
        _check_positive("MemoryConfig.budget", self.budget)
        _check_positive("MemoryConfig.capacity", self.capacity)
        _check_positive("MemoryConfig.ttl_hours", self.ttl_hours)
        _check_positive("MemoryConfig.retention_days", self.retention_days, zero_ok=True)
        _check_fraction("MemoryConfig.promote_threshold", self.promote_threshold)
        _check_fraction("MemoryConfig.duplicate_similarity", self.duplicate_similarity)


@dataclass(frozen=True)
class LearnConfig:
    """Learning for one agent. `None` keeps the vault's memkit.yaml value for that option.

    `mode` is agentic (write entries), propose (write proposals for review) or disabled (extract
    nothing; learned entries already in the vault still go into the prompt when `context` is
    on). `stores` switches single stores on or off over memkit.yaml's. `cadence` says when to
    extract: "turn" (after each interaction, the default), an int N (every N interactions) or
    "session_end" (on `end_session()` / `close()`); what is left over is extracted at session end.
    """

    mode: str | None = None  # learning.mode
    stores: Mapping[str, bool] | None = None  # learning.stores, merged over the vault's
    related_entries: int | None = None  # learning.related_entries
    cadence: str | int = "turn"
    context: bool = True  # put persona and relevant learned entries into the prompt
    budget: int = 400  # tokens of learned entries in the prompt
    # Extract in a background worker after the reply is returned (one at a time, in order);
    # False: extract before `run` returns.
    background: bool = True

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in LEARNING_MODES:
            raise UsageError(
                f"unknown learning mode {self.mode!r}; choose one of {', '.join(LEARNING_MODES)}"
            )
        for store in self.stores or {}:
            if store not in STORE_TYPES:
                raise UsageError(f"unknown store {store!r}; stores are {', '.join(STORE_TYPES)}")
        if isinstance(self.cadence, bool) or not (
            self.cadence in CADENCES or (isinstance(self.cadence, int) and self.cadence >= 1)
        ):
            raise UsageError(
                f"cadence must be 'turn', 'session_end' or a number of turns (1 or more), "
                f"not {self.cadence!r}"
            )
        _check_positive("LearnConfig.budget", self.budget)
        _check_positive("LearnConfig.related_entries", self.related_entries)

    @property
    def every(self) -> int | None:
        """Extract after this many interactions; None: only at session end."""
        if self.cadence == "session_end":
            return None
        return 1 if self.cadence == "turn" else int(self.cadence)


def _finished_event() -> threading.Event:
    event = threading.Event()
    event.set()  # an Extraction made for nothing to do is finished from the start
    return event


@dataclass
class Extraction:
    """What one learning extraction did (nothing ran when `ran` is False and no errors).

    With background learning it is filled in later: `done` says whether it has finished and
    `wait()` waits for it.
    """

    ran: bool = False
    written: list[dict[str, str]] = field(default_factory=list)  # {id, path, store, op}
    proposed: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "store 'title': reason"
    errors: list[str] = field(default_factory=list)
    chunks: int = 0
    _finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def failed(self) -> bool:
        """It was attempted and errored (nothing was learned from those messages)."""
        return bool(self.errors) and not self.ran

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until this extraction has finished; False when `timeout` ran out first."""
        return self._finished.wait(timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "done": self.done,
            "written": self.written,
            "proposed": self.proposed,
            "refused": self.refused,
            "errors": self.errors,
            "chunks": self.chunks,
        }


@dataclass
class AgentReply:
    """One interaction: the reply and what memory and learning did around it."""

    text: str
    session: str
    message_ids: list[str] = field(default_factory=list)  # [user message, reply]
    memories_used: list[str] = field(default_factory=list)  # ids (id#message) the prompt cited
    extraction: Extraction = field(default_factory=Extraction)
    errors: list[str] = field(default_factory=list)  # everything that failed, already logged

    @property
    def written(self) -> list[dict[str, str]]:
        return self.extraction.written

    @property
    def proposed(self) -> list[dict[str, str]]:
        return self.extraction.proposed

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "session": self.session,
            "message_ids": self.message_ids,
            "memories_used": self.memories_used,
            "extraction": self.extraction.to_json(),
            "errors": self.errors,
        }


def _memory_config(value: bool | MemoryConfig | None, learning: bool) -> MemoryConfig | None:
    if isinstance(value, MemoryConfig):
        return value
    if value is True:
        return MemoryConfig()
    if value is None and learning:
        # Learning works from recorded interactions: keep the minimal memory it needs, without
        # putting recalled memory into the prompt (that is what memory=True asks for).
        return MemoryConfig(recall=False)
    if value is None or value is False:
        return None
    raise UsageError(f"memory must be True, False, None or a MemoryConfig, not {value!r}")


def _learn_config(value: bool | str | LearnConfig | None) -> LearnConfig | None:
    if isinstance(value, LearnConfig):
        return value
    if value is True:
        return LearnConfig()
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return LearnConfig(mode=value)
    raise UsageError(
        f"learn must be True, False, None, a mode ({', '.join(LEARNING_MODES)}) or a "
        f"LearnConfig, not {value!r}"
    )


def agent_settings(
    base: Settings, memory: MemoryConfig | None, learn: LearnConfig | None
) -> Settings:
    """The vault's settings with an agent's overrides applied (memkit.yaml stays untouched)."""

    def given(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value is not None}

    mem = base.memory
    if memory is not None:
        mem = replace(
            mem,
            short_term=replace(
                mem.short_term,
                **given(
                    capacity=memory.capacity,
                    ttl_hours=memory.ttl_hours,
                    promote_threshold=memory.promote_threshold,
                ),
            ),
            long_term=replace(
                mem.long_term, **given(duplicate_similarity=memory.duplicate_similarity)
            ),
            episodic=replace(mem.episodic, **given(retention_days=memory.retention_days)),
        )
    learning = base.learning
    if learn is not None:
        stores = {**learning.stores, **dict(learn.stores or {})}
        learning = replace(
            learning,
            stores=stores,
            **given(mode=learn.mode, related_entries=learn.related_entries),
        )
    return replace(base, memory=mem, learning=learning)


def vault_root_for(
    user_id: str, vaults_root: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path:
    """`<vaults_root>/<user_id>`; vaults_root defaults to $MEMKIT_HOME, else ./memkit-vaults."""
    if not _USER_ID.match(user_id) or ".." in user_id:
        raise UsageError(
            f"user_id {user_id!r} cannot name a vault folder: use lowercase letters, digits and "
            ". _ @ - (starting with a letter or digit), at most 128 characters"
        )
    home = vaults_root or environ.get("MEMKIT_HOME", "").strip() or Path.cwd() / VAULTS_DIR
    return Path(home).expanduser() / user_id


def _new_session() -> str:
    return f"s-{utcnow().date().isoformat()}-{ids.new_id()[-6:].lower()}"


class Agent:
    """A chat agent over an OpenAI-compatible model whose memory and learning live in a vault.

    `memory` and `learn` are independent: either, both or neither. The vault is `vault=PATH`, or
    `<vaults_root>/<user_id>` (one vault per user); it is created on first use when absent.
    `llm` is an LLMClient, an LLMConfig, a model name, or None (memkit.yaml's `llm:` and the
    environment decide). The Agent constructor is a composition root: it may read `environ`
    (default `os.environ`): MEMKIT_VAULT, MEMKIT_HOME, and the model variables.
    """

    def __init__(
        self,
        instructions: str = "",
        *,
        vault: str | os.PathLike[str] | Vault | None = None,
        user_id: str | None = None,
        vaults_root: str | os.PathLike[str] | None = None,
        memory: bool | MemoryConfig | None = None,
        learn: bool | str | LearnConfig | None = None,
        llm: LLMClient | LLMConfig | str | None = None,
        session: str | None = None,
        name: str = "assistant",
        user_name: str | None = None,
        history_turns: int = 10,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.instructions = instructions.strip()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.learn_config = _learn_config(learn)
        self.memory_config = _memory_config(memory, self.learn_config is not None)
        if vault is not None and user_id is not None:
            raise UsageError("give the agent a vault or a user_id, not both")
        self._given_vault = vault if isinstance(vault, Vault) else None
        if isinstance(vault, Vault):
            self.vault_root = vault.root
        elif vault is not None:
            self.vault_root = Path(vault).expanduser()
        elif user_id is not None:
            self.vault_root = vault_root_for(user_id, vaults_root, self.environ)
        elif self.environ.get("MEMKIT_VAULT", "").strip():
            self.vault_root = Path(self.environ["MEMKIT_VAULT"].strip()).expanduser()
        else:
            raise UsageError(
                "the agent needs a vault: pass vault=PATH, or user_id=... (one vault per user "
                "under vaults_root, $MEMKIT_HOME or ./memkit-vaults), or set MEMKIT_VAULT"
            )
        self.user_id = user_id
        self.name = name
        self.user_name = user_name or user_id or "user"
        self.history_turns = max(0, history_turns)
        self.session = session or _new_session()
        self._llm_arg = llm
        self._llm: LLMClient | None = llm if isinstance(llm, LLMClient) else None
        self._owns_llm = False
        self._vault: Vault | None = None
        self._memory: Memory | None = None
        self._learning: Learning | None = None
        self._history: list[dict[str, str]] = []  # this session's turns, as chat messages
        self._pending: list[ConversationMessage] = []  # messages not yet learned from
        self._turns_since_extraction = 0
        self._lock = threading.RLock()
        self._pending_lock = threading.Lock()  # _pending, shared with the learning worker
        self._closed = False
        # Every extraction scheduled, in order: results and errors stay readable here.
        self.extractions: list[Extraction] = []
        self.last_reply: AgentReply | None = None  # set by `stream` once the reply is complete
        self._jobs: queue.Queue[tuple[list[ConversationMessage], Extraction, str] | None] = (
            queue.Queue()
        )
        self._worker: threading.Thread | None = None
        self._worker_learning: Learning | None = None

    # --- what the agent is built on (opened on first use) ------------------------------------

    @property
    def vault(self) -> Vault:
        """The agent's vault, created on first use, with this agent's settings overrides."""
        if self._vault is None:
            root = self.vault_root
            if self._given_vault is not None:
                base = self._given_vault.settings
            else:
                if not (root / SETTINGS_FILE).is_file():
                    Vault.init(root)
                base = load_settings(root)
            settings = agent_settings(base, self.memory_config, self.learn_config)
            self._vault = Vault(root, settings)
        return self._vault

    @property
    def memory(self) -> Memory:
        if self._memory is None:
            self._memory = Memory(self.vault)
        return self._memory

    @property
    def learning(self) -> Learning:
        """Proposals, approval and rejection; extraction gets the model when it first runs."""
        if self._learning is None:
            # Shares memory's index: one Tantivy reader per agent, not two.
            self._learning = Learning(self.vault, index=self.memory.index)
        return self._learning

    @property
    def llm(self) -> LLMClient:
        if self._llm is None:
            given = self._llm_arg
            if isinstance(given, LLMConfig):
                config = given
            else:
                config = resolve_llm_config(
                    self.vault.settings.llm, self.environ, vault_root=self.vault.root
                )
                if isinstance(given, str):
                    # A model named in code wins over MEMKIT_MODEL: it is the more specific ask.
                    config = replace(config, model=given)
            self._llm = LLMClient(config)
            self._owns_llm = True
        return self._llm

    @property
    def extracting(self) -> bool:
        """Whether this agent asks the model for learnings (learning on, mode not disabled)."""
        return self.learn_config is not None and self.vault.settings.learning.mode != "disabled"

    # --- chatting ---------------------------------------------------------------------------

    def chat(self, text: str) -> str:
        """Reply to `text`; memory and learning happen around it (see `run` for the details)."""
        return self.run(text).text

    async def achat(self, text: str) -> str:
        return (await self.arun(text)).text

    async def arun(self, text: str) -> AgentReply:
        # The work is blocking I/O (files, index, HTTP): a worker thread keeps the loop free.
        return await asyncio.to_thread(self.run, text)

    def run(self, text: str) -> AgentReply:
        """One interaction: recall, ask the model, record, and learn when the cadence says so.

        Only a failure to get a reply raises (LLMError); failures to recall, record or learn
        are logged and listed in the reply's `errors`, and the reply is returned all the same.
        Learning runs after the reply, in a background worker unless
        `LearnConfig(background=False)`: `reply.extraction` fills in when it is done.
        """
        with self._lock:
            messages, errors, used = self._prepare(text)
            answer = self.llm.chat(messages)
            return self._finish(text, answer, errors, used)

    def stream(self, text: str) -> Iterator[str]:
        """Like `run`, but yields the reply in pieces as the model writes it; the complete
        reply (what memory and learning did) is then in `last_reply`."""
        with self._lock:
            messages, errors, used = self._prepare(text)
            pieces: list[str] = []
            for piece in self.llm.stream_chat(messages):
                pieces.append(piece)
                yield piece
            self.last_reply = self._finish(text, "".join(pieces), errors, used)

    def _prepare(self, text: str) -> tuple[list[dict[str, str]], list[str], list[str]]:
        if not text.strip():
            raise UsageError("nothing to say: the message is empty")
        if self._closed:
            raise UsageError("this agent is closed; create a new Agent")
        errors: list[str] = []
        self.llm.check_model()  # once per client (remembered per server): a warning, not an error
        with self.memory.index.operation():  # one freshness check for the turn's recall
            system, used = self._system_prompt(text, errors)
        messages = [{"role": "system", "content": system}] if system else []
        messages += self._history[-2 * self.history_turns :] if self.history_turns else []
        messages.append({"role": "user", "content": text})
        return messages, errors, used

    def _finish(self, text: str, answer: str, errors: list[str], used: list[str]) -> AgentReply:
        self._history += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer},
        ]
        with self.memory.index.batch():  # the turn's writes indexed in one commit
            turn = self._record(text, answer, errors)
        reply = AgentReply(answer, self.session, [m.message_id for m in turn], used, errors=errors)
        if self.learn_config is not None:
            with self._pending_lock:
                self._pending += turn
            self._turns_since_extraction += 1
            every = self.learn_config.every
            if every is not None and self._turns_since_extraction >= every:
                reply.extraction = self._extract()
                if reply.extraction.done:
                    errors += reply.extraction.errors
        self.last_reply = reply
        return reply

    def _system_prompt(self, text: str, errors: list[str]) -> tuple[str, list[str]]:
        recall = self.memory_config is not None and self.memory_config.recall
        learned = self.learn_config is not None and self.learn_config.context
        used: list[str] = []
        context = ""
        if recall or learned:
            budget = (self.memory_config.budget if recall and self.memory_config else 0) + (
                self.learn_config.budget if learned and self.learn_config else 0
            )
            try:
                block = build_context(
                    self.vault,
                    text,
                    budget=budget,
                    memory=recall,
                    learning=learned,
                    memory_obj=self.memory,
                    assistant_names=(self.name, "assistant"),
                    # The turns already in the prompt as history are not recalled again.
                    exclude=[m["content"] for m in self._history[-2 * self.history_turns :]]
                    + [text],
                )
                context, used = block.text, block.used
            except MemkitError as error:
                self._failed(errors, "recalling memory", error)
        parts = [part for part in (self.instructions, context.strip()) if part]
        return "\n\n".join(parts), used

    def _record(self, text: str, answer: str, errors: list[str]) -> list[ConversationMessage]:
        now = utcnow()
        turn = [
            ConversationMessage(text, self.user_name, f"m-{ids.new_id()}", self.session, now),
            ConversationMessage(answer, self.name, f"m-{ids.new_id()}", self.session, now),
        ]
        config = self.memory_config
        if config is None:
            return turn
        if config.episodic:
            try:
                Episodes(self.vault).record(turn, session=self.session)
            except MemkitError as error:
                self._failed(errors, "recording the interaction", error)
        if config.short_term:
            try:
                for message in turn:
                    # Credentials never reach the vault; the day files redact them the same way.
                    self.memory.remember(
                        redact_secrets(f"{message.speaker}: {message.text}"),
                        type="short-term",
                        source={"session": self.session, "messages": [message.message_id]},
                    )
            except MemkitError as error:
                self._failed(errors, "recording short-term memory", error)
        return turn

    def _failed(self, errors: list[str], doing: str, error: BaseException) -> None:
        message = f"{doing} failed: {error}"
        errors.append(message)
        # Unexpected exceptions keep their traceback in the log; memkit's own errors say it all.
        log.warning("%s", message, exc_info=not isinstance(error, MemkitError))

    def _extract(self) -> Extraction:
        """Learn from the pending messages: queued for the worker, or now (background=False)."""
        result = Extraction(_finished=threading.Event())
        self._turns_since_extraction = 0
        with self._pending_lock:
            batch = list(self._pending)
            self._pending.clear()
        if not batch or not self.extracting:
            result._finished.set()
            return result
        self.extractions.append(result)
        assert self.learn_config is not None
        if self.learn_config.background:
            self._start_worker()
            self._jobs.put((batch, result, self.session))
        else:
            self._learn_from(batch, result, self.session, self.learning)
        return result

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name=f"memkit-learning-{self.session}", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        """The learning worker: one extraction at a time, in the order they were asked for."""
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                batch, result, session = job
                if self._worker_learning is None:
                    # Its own index handle: the chat thread keeps using memory's meanwhile.
                    self._worker_learning = Learning(self.vault)
                self._learn_from(batch, result, session, self._worker_learning)
            finally:
                self._jobs.task_done()

    def _learn_from(
        self,
        batch: list[ConversationMessage],
        result: Extraction,
        session: str,
        learning: Learning,
    ) -> None:
        try:
            learning.llm = self.llm
            report = learning.learn(batch, session=session)
        except Exception as error:  # whatever it is, learning must never take the chat down
            self._failed(result.errors, "learning", error)
            with self._pending_lock:
                # Kept for the next extraction, so a short outage loses nothing.
                self._pending[:0] = batch
                del self._pending[:-MAX_PENDING_MESSAGES]
        else:
            result.ran = True
            result.written = report.written
            result.proposed = report.proposed
            result.chunks = report.chunks
            result.refused = [f"{r.store} {r.title!r}: {r.reason}" for r in report.refused]
        finally:
            result._finished.set()

    def wait_for_learning(self) -> None:
        """Wait until every extraction asked for so far has finished."""
        if self._worker is not None:
            self._jobs.join()

    @property
    def llm_warnings(self) -> list[str]:
        """Warnings about the model server (e.g. the model is not among those it lists)."""
        return list(self._llm.warnings) if self._llm is not None else []

    @property
    def learning_errors(self) -> list[str]:
        """Errors of every extraction so far (each also logged)."""
        return [error for extraction in self.extractions for error in extraction.errors]

    # --- sessions and closing -----------------------------------------------------------------

    def end_session(self) -> Extraction:
        """Learn from what is not learned yet, then start a new session (history cleared)."""
        with self._lock:
            extraction = self._extract() if self.learn_config is not None else Extraction()
            self.wait_for_learning()
            self._history.clear()
            self.session = _new_session()
            return extraction

    def close(self) -> Extraction:
        """End the session (learning what is left), then release the index and the client."""
        with self._lock:
            if self._closed:
                return Extraction()
            try:
                extraction = self.end_session() if self._pending else Extraction()
                self.wait_for_learning()
            finally:
                self._closed = True
                if self._worker is not None:
                    self._jobs.put(None)
                    self._worker.join()
                    self._worker = None
                if self._worker_learning is not None:
                    self._worker_learning.close()
                if self._memory is not None:
                    self._memory.close()
                if self._learning is not None:
                    self._learning.close()
                if self._llm is not None and self._owns_llm:
                    self._llm.close()
            return extraction

    def __enter__(self) -> Agent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Agent(vault={str(self.vault_root)!r}, session={self.session!r})"
