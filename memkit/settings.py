"""Vault settings: memkit.yaml read into typed dataclasses, with errors naming file and line."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from memkit.errors import SettingsError
from memkit.records import STORE_TYPES
from memkit.yaml_reader import load_yaml_fast, load_yaml_slow

SETTINGS_FILE = "memkit.yaml"
LEARNING_MODES = ("agentic", "propose", "disabled")
STRUCTURED_OUTPUT_MODES = ("auto", "json_schema", "json_object", "prompt")
DEFAULT_STORES = {
    "persona": True,
    "insights": True,
    "threads": True,
    "patterns": False,
    "decisions": False,
    "feedback": False,
    "improvements": False,
}


@dataclass(frozen=True)
class ShortTermSettings:
    capacity: int = 50
    ttl_hours: float = 24.0
    promote_threshold: float = 0.7


@dataclass(frozen=True)
class LongTermSettings:
    # Share of distinct words two facts must have in common to count as the same fact.
    duplicate_similarity: float = 0.8


@dataclass(frozen=True)
class EpisodicSettings:
    retention_days: int = 90


@dataclass(frozen=True)
class MemorySettings:
    short_term: ShortTermSettings = field(default_factory=ShortTermSettings)
    long_term: LongTermSettings = field(default_factory=LongTermSettings)
    episodic: EpisodicSettings = field(default_factory=EpisodicSettings)


@dataclass(frozen=True)
class SearchWeights:
    bm25: float = 1.0
    importance: float = 0.3
    recency: float = 0.2


@dataclass(frozen=True)
class SearchSettings:
    weights: SearchWeights = field(default_factory=SearchWeights)
    recency_half_life_days: float = 30.0


@dataclass(frozen=True)
class LearningSettings:
    mode: str = "agentic"
    stores: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_STORES))
    related_entries: int = 8  # existing entries shown to the model for consolidation


@dataclass(frozen=True)
class LLMSettings:
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_seconds: float = 60.0
    max_retries: int = 2
    max_output_tokens: int = 900  # cap on an extraction reply (small models loop without one)
    chat_max_output_tokens: int = 1024  # cap on a chat reply
    extraction_temperature: float = 0.2
    structured_output: str = "auto"  # auto | json_schema | json_object | prompt
    context_tokens: int = 0  # the model's context window; 0: ask the server, else 8192
    max_wall_seconds: float = 300.0  # bound on all model calls of one learn


@dataclass(frozen=True)
class GitSettings:
    autocommit: bool = False


@dataclass(frozen=True)
class NotesSettings:
    # Vault-relative folders of a person's own notes, besides `notes/` (an Obsidian vault's
    # folders): their Markdown files are records of type `note` once `memkit adopt` ran.
    folders: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    version: int = 1
    memory: MemorySettings = field(default_factory=MemorySettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    learning: LearningSettings = field(default_factory=LearningSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    git: GitSettings = field(default_factory=GitSettings)
    notes: NotesSettings = field(default_factory=NotesSettings)


DEFAULT_SETTINGS_TEXT = """\
# memkit vault settings. This file is committed with the vault: edit it freely.
# Every key is optional; a missing key takes the default shown here.
version: 1

memory:
  short_term:
    capacity: 50            # items kept in the rolling buffer
    ttl_hours: 24           # an item expires this long after it was written
    promote_threshold: 0.7  # expiring items at or above this importance move to long-term
  long_term:
    duplicate_similarity: 0.8  # word overlap at which a new fact updates an existing one
  episodic:
    retention_days: 90      # day files older than this are removed by `memkit expire`; 0 = forever

search:
  weights: {bm25: 1.0, importance: 0.3, recency: 0.2}  # how search results are ranked
  recency_half_life_days: 30

learning:
  mode: agentic             # agentic (write entries) | propose (write proposals) | disabled
  stores:                   # which stores the learner writes (entries you add yourself are always kept)
    persona: true
    insights: true
    threads: true
    patterns: false
    decisions: false
    feedback: false
    improvements: false

llm:
  model: gpt-4o-mini        # any model your OpenAI-compatible server offers (MEMKIT_MODEL overrides)
  base_url: null            # e.g. http://localhost:11434/v1 for Ollama (OPENAI_BASE_URL overrides)
  api_key_env: OPENAI_API_KEY  # the environment variable holding the key; never put a key here
  # max_output_tokens: 900     # cap on an extraction reply; chat_max_output_tokens: 1024
  # structured_output: auto    # auto | json_schema | json_object | prompt
  # context_tokens: 0          # the model's context window; 0 = ask the server (else 8192)

git:
  autocommit: false         # commit each memkit write to the vault's git repository

notes:
  folders: []               # your own Markdown folders besides notes/, e.g. [Projects, Journal]
"""


def _line_of(text: str, keys: list[str]) -> int:
    """1-based line of a nested key in the YAML `text` (1 when not found).

    Only called to word an error, so PyYAML is imported here rather than for every load.
    """
    import yaml

    try:
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return 1
    line = 1
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == key:
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            break
    return line


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check one setting's value against the type of its default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, not {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise ValueError(f"{where} must be a whole number, not {value!r}")
        if value < 0:
            raise ValueError(f"{where} must not be negative")
        return value
    if isinstance(default, str) or default is None:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where} must be text, not {value!r}")
        return value
    return value


def _build(cls: Any, data: Any, path: list[str], text: str, file: Path) -> Any:
    where = ".".join(path) or "the file"
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise SettingsError(file, _line_of(text, path), f"{where} must be a mapping of settings")
    defaults = cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            import difflib  # (here: only a misspelt key needs it)

            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise SettingsError(
                file,
                _line_of(text, [*path, str(key)]),
                f"unknown setting {'.'.join([*path, str(key)])!r}{hint}",
            )
        default = getattr(defaults, key)
        try:
            if is_dataclass(default):
                values[key] = _build(type(default), value, [*path, key], text, file)
            elif key == "folders" and cls is NotesSettings:
                values[key] = _notes_folders(value, ".".join([*path, key]))
            elif key == "stores" and isinstance(default, dict):
                values[key] = _stores(value, ".".join([*path, key]))
            else:
                values[key] = _coerce(value, default, ".".join([*path, key]))
        except ValueError as error:
            raise SettingsError(file, _line_of(text, [*path, key]), str(error)) from None
    built = replace(defaults, **values)
    if cls is LearningSettings and built.mode not in LEARNING_MODES:
        raise SettingsError(
            file,
            _line_of(text, [*path, "mode"]),
            f"learning.mode must be one of {', '.join(LEARNING_MODES)}, not {built.mode!r}",
        )
    if cls is LLMSettings and built.structured_output not in STRUCTURED_OUTPUT_MODES:
        raise SettingsError(
            file,
            _line_of(text, [*path, "structured_output"]),
            f"llm.structured_output must be one of {', '.join(STRUCTURED_OUTPUT_MODES)}, "
            f"not {built.structured_output!r}",
        )
    return built


def _stores(value: Any, where: str) -> dict[str, bool]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must map store names to true/false")
    stores = dict(DEFAULT_STORES)
    for name, enabled in value.items():
        if name not in STORE_TYPES:
            raise ValueError(
                f"{where}: unknown store {name!r}; stores are {', '.join(STORE_TYPES)}"
            )
        if not isinstance(enabled, bool):
            raise ValueError(f"{where}.{name} must be true or false, not {enabled!r}")
        stores[name] = enabled
    return stores


def _notes_folders(value: Any, where: str) -> tuple[str, ...]:
    """Vault-relative folders, never memkit's own (memory/, learning/) nor hidden ones."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where} must be a list of folder names, like [Projects, Journal]")
    folders: list[str] = []
    for given in value:
        folder = given.strip().replace("\\", "/").strip("/")
        parts = folder.split("/")
        if (
            not folder
            or folder == "."
            or given.strip().startswith("/")
            or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
        ):
            raise ValueError(
                f"{where}: {given!r} must be a folder inside the vault, not hidden, not '.'"
            )
        if parts[0] in ("memory", "learning", "notes"):
            raise ValueError(f"{where}: {given!r} is one of memkit's own folders")
        folders.append(folder)
    return tuple(dict.fromkeys(folders))


def _load_with_yaml(text: str, file: Path) -> Any:
    import yaml

    try:
        return load_yaml_slow(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise SettingsError(
            file, (mark.line + 1) if mark else 1, f"invalid YAML: {error.problem}"
        ) from None
    except yaml.YAMLError as error:
        raise SettingsError(file, 1, f"invalid YAML: {error}") from None


def parse_settings(text: str, file: Path) -> Settings:
    """Settings from memkit.yaml's `text`.

    memkit's own memkit.yaml is in the shape the fast reader handles; a file a person rewrote
    in richer YAML (anchors, block scalars...) goes through the YAML loader instead.
    """
    data: Any = load_yaml_fast(text)
    if data is None:
        data = _load_with_yaml(text, file)
    settings: Settings = _build(Settings, data, [], text, file)
    return settings


def load_settings(vault_root: Path) -> Settings:
    file = vault_root / SETTINGS_FILE
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        return Settings()
    except UnicodeDecodeError:
        raise SettingsError(file, 1, "not UTF-8 text; save memkit.yaml as UTF-8") from None
    return parse_settings(text, file)
