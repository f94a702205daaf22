"""memkit: memory and learning for AI agents, kept as Markdown files in a git-friendly vault."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the module that defines each. Loaded on first use so that
# `import memkit` stays fast (tantivy and openai are imported only when needed).
_EXPORTS = {
    "Agent": "memkit.agent",
    "AgentReply": "memkit.agent",
    "MemoryConfig": "memkit.agent",
    "LearnConfig": "memkit.agent",
    "Vault": "memkit.vault",
    "Problem": "memkit.vault",
    "find_vault_root": "memkit.vault",
    "Record": "memkit.records",
    "SearchRequest": "memkit.index",
    "RECORD_TYPES": "memkit.records",
    "Memory": "memkit.memory",
    "Episodes": "memkit.conversations",
    "parse_conversation": "memkit.conversations",
    "Entities": "memkit.entities",
    "build_context": "memkit.context",
    "Learning": "memkit.learning",
    "LLMClient": "memkit.llm",
    "resolve_llm_config": "memkit.llm",
    "Settings": "memkit.settings",
    "load_settings": "memkit.settings",
    "find_secrets": "memkit.secret_guard",
    "check_text": "memkit.secret_guard",
    "redact_secrets": "memkit.secret_guard",
    "MemkitError": "memkit.errors",
    "VaultNotFound": "memkit.errors",
    "VaultError": "memkit.errors",
    "PathOutsideVault": "memkit.errors",
    "SettingsError": "memkit.errors",
    "RecordNotFound": "memkit.errors",
    "InvalidRecord": "memkit.errors",
    "ConflictError": "memkit.errors",
    "SecretRefused": "memkit.errors",
    "UsageError": "memkit.errors",
    "LockTimeout": "memkit.errors",
    "LLMError": "memkit.errors",
    "ImportFormatError": "memkit.errors",
}
__all__ = [
    "RECORD_TYPES",
    "Agent",
    "AgentReply",
    "ConflictError",
    "Entities",
    "Episodes",
    "ImportFormatError",
    "InvalidRecord",
    "LLMClient",
    "LLMError",
    "LearnConfig",
    "Learning",
    "LockTimeout",
    "MemkitError",
    "Memory",
    "MemoryConfig",
    "PathOutsideVault",
    "Problem",
    "Record",
    "RecordNotFound",
    "SearchRequest",
    "SecretRefused",
    "Settings",
    "SettingsError",
    "UsageError",
    "Vault",
    "VaultError",
    "VaultNotFound",
    "__version__",
    "build_context",
    "check_text",
    "find_secrets",
    "find_vault_root",
    "load_settings",
    "parse_conversation",
    "redact_secrets",
    "resolve_llm_config",
]

if TYPE_CHECKING:
    from memkit.agent import Agent, AgentReply, LearnConfig, MemoryConfig
    from memkit.context import build_context
    from memkit.conversations import Episodes, parse_conversation
    from memkit.entities import Entities
    from memkit.errors import (
        ConflictError,
        ImportFormatError,
        InvalidRecord,
        LLMError,
        LockTimeout,
        MemkitError,
        PathOutsideVault,
        RecordNotFound,
        SecretRefused,
        SettingsError,
        UsageError,
        VaultError,
        VaultNotFound,
    )
    from memkit.index import SearchRequest
    from memkit.learning import Learning
    from memkit.llm import LLMClient, resolve_llm_config
    from memkit.memory import Memory
    from memkit.records import RECORD_TYPES, Record
    from memkit.secret_guard import check_text, find_secrets, redact_secrets
    from memkit.settings import Settings, load_settings
    from memkit.vault import Problem, Vault, find_vault_root


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
