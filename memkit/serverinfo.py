"""The model server: its configuration, what it says about itself, what memkit remembers of it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memkit.errors import LLMError
from memkit.settings import STRUCTURED_OUTPUT_MODES, LLMSettings

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the openai client refuses to
# start without one.
KEYLESS_API_KEY = "not-needed"
# What memkit learned about each server and model (derived state under .memkit/, safe to delete).
SERVERS_STATE_FILE = ".memkit/llm-servers.json"
# When neither llm.context_tokens nor the server says: small enough for most local setups.
DEFAULT_CONTEXT_TOKENS = 8192
# Characters per token on conversation transcripts, measured with SmolLM2's tokenizer (2.3-2.4:
# ids and timestamps are expensive); larger vocabularies do better, so this errs on the safe side.
CHARS_PER_TOKEN = 2.3
_PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class LLMConfig:
    """Where the model lives and how long to wait for it; built by `resolve_llm_config`."""

    model: str
    base_url: str | None
    api_key: str | None = field(repr=False)  # kept out of repr so tracebacks and logs never show it
    timeout_seconds: float = 60.0
    max_retries: int = 2
    max_output_tokens: int = 900
    chat_max_output_tokens: int = 1024
    extraction_temperature: float = 0.2
    structured_output: str = "auto"
    context_tokens: int = 0  # 0: ask the server
    max_wall_seconds: float = 300.0
    # Where to remember what each server supports (None: only for this client's life).
    state_file: Path | None = None


def _how_to_configure(api_key_env: str) -> str:
    return (
        "no language model is configured: memkit found no API key "
        f"(environment variable {api_key_env} is not set) and no server address. Either\n"
        f"  - use OpenAI: export {api_key_env}=sk-...\n"
        "  - or use a local OpenAI-compatible server (no key needed): export OPENAI_BASE_URL="
        "http://localhost:11434/v1 for Ollama, or http://localhost:8000/v1 for vLLM\n"
        "The same settings can live in the vault's memkit.yaml (never put the key itself there):\n"
        "  llm:\n"
        "    model: gpt-4o-mini            # or MEMKIT_MODEL; e.g. llama3.1 for Ollama\n"
        "    base_url: http://localhost:11434/v1\n"
        "    api_key_env: OPENAI_API_KEY   # the variable that holds the key"
    )


def resolve_llm_config(
    settings: LLMSettings, environ: Mapping[str, str], *, vault_root: Path | None = None
) -> LLMConfig:
    """Combine memkit.yaml's llm settings with the environment, which wins."""
    model = environ.get("MEMKIT_MODEL", "").strip() or (settings.model or "").strip()
    base_url = environ.get("OPENAI_BASE_URL", "").strip() or (settings.base_url or "").strip()
    # Only the variable the settings name is read: a vault pointed at another provider must not
    # send the person's OpenAI key to it just because OPENAI_API_KEY happens to be set.
    api_key = environ.get(settings.api_key_env, "").strip()
    if not model:
        raise LLMError(
            "no model name: set llm.model in memkit.yaml or the MEMKIT_MODEL environment "
            "variable (e.g. gpt-4o-mini for OpenAI, llama3.1 for Ollama)"
        )
    if base_url and not base_url.startswith(("http://", "https://")):
        raise LLMError(
            f"the model server address {base_url!r} must start with http:// or https:// "
            "(e.g. http://localhost:11434/v1); fix llm.base_url in memkit.yaml or OPENAI_BASE_URL"
        )
    if not api_key and not base_url:
        raise LLMError(_how_to_configure(settings.api_key_env))
    if settings.structured_output not in STRUCTURED_OUTPUT_MODES:
        raise LLMError(
            f"llm.structured_output must be one of {', '.join(STRUCTURED_OUTPUT_MODES)}, "
            f"not {settings.structured_output!r}"
        )
    return LLMConfig(
        model=model,
        base_url=base_url or None,
        api_key=api_key or KEYLESS_API_KEY,
        timeout_seconds=float(settings.timeout_seconds),
        max_retries=int(settings.max_retries),
        max_output_tokens=int(settings.max_output_tokens),
        chat_max_output_tokens=int(settings.chat_max_output_tokens),
        extraction_temperature=float(settings.extraction_temperature),
        structured_output=settings.structured_output,
        context_tokens=int(settings.context_tokens),
        max_wall_seconds=float(settings.max_wall_seconds),
        state_file=vault_root / SERVERS_STATE_FILE if vault_root is not None else None,
    )


class ServerInfo:
    """One server and model: what it says about itself (stdlib probes outside the OpenAI API),
    and what memkit learned about it, remembered per base URL and model in SERVERS_STATE_FILE."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self._state_lock = threading.Lock()
        self._memory: dict[str, Any] = {}  # what this client learned when there is no state file

    @property
    def base_url(self) -> str:
        return self.config.base_url or OPENAI_BASE_URL

    # --- what memkit remembers about a server ------------------------------------------------

    @property
    def _state_key(self) -> str:
        return f"{self.base_url.rstrip('/')} {self.config.model}"

    def _read_state(self) -> dict[str, Any]:
        file = self.config.state_file
        if file is None:
            return dict(self._memory)
        try:
            data = json.loads(file.read_text("utf-8"))
        except (OSError, ValueError):
            return dict(self._memory)
        entry = data.get(self._state_key) if isinstance(data, dict) else None
        return {**self._memory, **entry} if isinstance(entry, dict) else dict(self._memory)

    def _remember(self, **values: Any) -> None:
        with self._state_lock:
            self._memory.update(values)
            file = self.config.state_file
            if file is None or not file.parent.is_dir():
                return  # no .memkit/ yet: never created just for this
            try:
                data = json.loads(file.read_text("utf-8"))
                if not isinstance(data, dict):
                    data = {}
            except (OSError, ValueError):
                data = {}
            entry = data.get(self._state_key)
            data[self._state_key] = {**(entry if isinstance(entry, dict) else {}), **values}
            temporary = file.with_name(f"{file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                temporary.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
                os.replace(temporary, file)
            except OSError:
                with contextlib.suppress(OSError):
                    temporary.unlink()

    # --- what the server says about itself -----------------------------------------------------

    @property
    def _root_url(self) -> str:
        base = self.base_url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def _probe(self, url: str, payload: dict[str, Any] | None = None) -> Any:
        """GET (or POST `payload` to) a server endpoint outside the OpenAI API; None on failure."""
        data = json.dumps(payload).encode() if payload is not None else None
        import urllib.error  # (here: urllib.request costs ~12 ms to import, most runs never ask)
        import urllib.request

        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        request.add_header("Content-Type", "application/json")
        if self.config.api_key and self.config.api_key != KEYLESS_API_KEY:
            request.add_header("Authorization", f"Bearer {self.config.api_key}")
        try:
            timeout = min(_PROBE_TIMEOUT_SECONDS, self.config.timeout_seconds)
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def _is_openai(self) -> bool:
        return self.config.base_url is None or "api.openai.com" in self.base_url

    def context_tokens(self) -> int:
        """The model's context window: llm.context_tokens, else what the server says, else 8192."""
        if self.config.context_tokens > 0:
            return self.config.context_tokens
        known = self._read_state().get("context_tokens")
        if isinstance(known, int) and known > 0:
            return known
        found = None if self._is_openai() else self._discover_context()
        self._remember(context_tokens=found or DEFAULT_CONTEXT_TOKENS)
        return found or DEFAULT_CONTEXT_TOKENS

    def _discover_context(self) -> int | None:
        root = self._root_url
        # llama.cpp's llama-server: the context each slot really has.
        props = self._probe(f"{root}/props")
        if isinstance(props, dict):
            settings = props.get("default_generation_settings")
            n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx
        models = self._probe(f"{self.base_url.rstrip('/')}/models")
        for item in models.get("data", []) if isinstance(models, dict) else []:
            if not isinstance(item, dict) or item.get("id") != self.config.model:
                continue
            meta: dict[str, Any] = item["meta"] if isinstance(item.get("meta"), dict) else {}
            # llama.cpp (meta.n_ctx), vLLM (max_model_len), LM Studio and others.
            for value in (
                meta.get("n_ctx"),
                item.get("max_model_len"),
                item.get("context_length"),
                item.get("loaded_context_length"),
            ):
                if isinstance(value, int) and value > 0:
                    return value
        # Ollama: num_ctx when the model sets it; else Ollama's own default window (4096), not
        # the model's trained length, which Ollama does not use unless asked.
        show = self._probe(f"{root}/api/show", {"model": self.config.model})
        if isinstance(show, dict) and ("model_info" in show or "parameters" in show):
            parameters = str(show.get("parameters") or "")
            match = re.search(r"num_ctx\s+(\d+)", parameters)
            return int(match.group(1)) if match else 4096
        # LM Studio's own API: the context the model was loaded with.
        studio = self._probe(f"{root}/api/v0/models/{self.config.model}")
        if isinstance(studio, dict):
            value = studio.get("loaded_context_length") or studio.get("max_context_length")
            if isinstance(value, int) and value > 0:
                return value
        return None

    def chars_per_token(self, sample: str = "") -> float:
        """Characters per token, measured once with the server's /tokenize when it has one."""
        known = self._read_state().get("chars_per_token")
        if isinstance(known, (int, float)) and known > 0:
            return float(known)
        ratio = CHARS_PER_TOKEN
        if sample and len(sample) >= 200 and not self._is_openai():
            reply = self._probe(f"{self._root_url}/tokenize", {"content": sample[:20_000]})
            tokens = reply.get("tokens") if isinstance(reply, dict) else None
            if isinstance(tokens, list) and tokens:
                # A little under the measured ratio: the sample is not the whole prompt.
                ratio = max(1.0, 0.95 * len(sample[:20_000]) / len(tokens))
                self._remember(chars_per_token=round(ratio, 3))
        return ratio

    def count_tokens(self, text: str) -> int:
        """An estimate of the tokens in `text` (calibrated ratio, rounded up)."""
        ratio = self.chars_per_token()
        return int(len(text) / ratio) + 1
