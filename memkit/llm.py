"""The language model client: the only code that talks to an OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from memkit.errors import LLMError
from memkit.settings import LLMSettings

if TYPE_CHECKING:
    # Types only: importing openai costs ~400 ms, so the real import waits for the first call.
    import openai
    from openai.types.chat import ChatCompletion

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the openai client refuses to
# start without one.
KEYLESS_API_KEY = "not-needed"

_SHOWN_CHARS = 200  # how much of a bad reply an error message quotes
_BACKOFF_FIRST_SECONDS = 0.2
_BACKOFF_CAP_SECONDS = 2.0
# What servers say when they do not support structured output (OpenAI, vLLM, Ollama, llama.cpp
# and LiteLLM word it differently); matched only on HTTP 400/422.
_REFUSES_SCHEMA = re.compile(
    r"response[_ ]format|json[_ ]schema|not supported|unsupported", re.IGNORECASE
)
_FENCE = re.compile(r"\A\s*```[\w-]*[ \t]*\n(?P<body>.*?)\n?[ \t]*```\s*\Z", re.DOTALL)


@dataclass(frozen=True)
class LLMConfig:
    """Where the model lives and how long to wait for it; built by `resolve_llm_config`."""

    model: str
    base_url: str | None
    api_key: str | None = field(repr=False)  # kept out of repr so tracebacks and logs never show it
    timeout_seconds: float = 60.0
    max_retries: int = 2


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


def resolve_llm_config(settings: LLMSettings, environ: Mapping[str, str]) -> LLMConfig:
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
    return LLMConfig(
        model=model,
        base_url=base_url or None,
        api_key=api_key or KEYLESS_API_KEY,
        timeout_seconds=float(settings.timeout_seconds),
        max_retries=int(settings.max_retries),
    )


def _quote(text: str) -> str:
    shown = text[:_SHOWN_CHARS]
    return repr(shown) + ("..." if len(text) > _SHOWN_CHARS else "")


def _error_detail(error: openai.APIStatusError) -> str:
    """The server's own words about a failed request, short enough for one message."""
    body: Any = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        text = message if isinstance(message, str) else json.dumps(body)
    elif body is None:
        text = error.message
    else:
        text = str(body)
    return _quote(text)


def _refuses_json_schema(error: openai.APIStatusError) -> bool:
    if error.status_code not in (400, 422):
        return False
    body = error.body if isinstance(error.body, str) else json.dumps(error.body)
    return bool(_REFUSES_SCHEMA.search(f"{error.message} {body}"))


def _is_transient(error: openai.APIStatusError) -> bool:
    # 408 is a proxy or server giving up on a slow request: as worth retrying as our own timeout.
    return error.status_code in (408, 429) or error.status_code >= 500


def _strip_fence(text: str) -> str:
    # Models asked for JSON without server-side enforcement often wrap it in a Markdown fence.
    match = _FENCE.match(text)
    return match.group("body") if match else text


class LLMClient:
    """Chat completions with structured output, bounded retries and errors written for people."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self._client: openai.OpenAI | None = None
        # Set to False after the server refuses json_schema once, so later calls do not pay
        # for a failing request each time.
        self._json_schema_supported = True
        self._last_usage: dict[str, int] | None = None

    @property
    def base_url(self) -> str:
        return self.config.base_url or OPENAI_BASE_URL

    @property
    def last_usage(self) -> dict[str, int] | None:
        """Token counts of the last successful call, when the server reported them."""
        return None if self._last_usage is None else dict(self._last_usage)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _openai(self) -> openai.OpenAI:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                # Always explicit: left as None, the client would read OPENAI_BASE_URL itself,
                # and only the composition root may read the environment.
                base_url=self.base_url,
                api_key=self.config.api_key or KEYLESS_API_KEY,
                timeout=self.config.timeout_seconds,
                # Retries are ours, so that the budget and the final message are under our control.
                max_retries=0,
            )
        return self._client

    def complete_json(
        self,
        system: str,
        user: str,
        *,
        schema: dict[str, Any],
        schema_name: str = "extraction",
    ) -> dict[str, Any]:
        """Ask for one JSON object matching `schema` and return it parsed."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if self._json_schema_supported:
            request = self._json_schema_request(messages, schema, schema_name)
        else:
            request = self._json_object_request(messages, schema)
        completion = self._send(
            request, fallback=lambda: self._json_object_request(messages, schema)
        )
        text = self._reply_text(completion)
        return self._parse_object(text)

    def chat(self, messages: list[dict[str, str]], *, temperature: float | None = None) -> str:
        """A plain chat completion (an agent's reply); returns the reply text."""
        request: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if temperature is not None:
            request["temperature"] = temperature
        return self._reply_text(self._send(request, fallback=None))

    def _json_schema_request(
        self, messages: list[dict[str, str]], schema: dict[str, Any], schema_name: str
    ) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            },
        }

    def _json_object_request(
        self, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> dict[str, Any]:
        # json_object mode does not enforce the schema, so the model has to read it; OpenAI also
        # rejects json_object requests whose messages never mention JSON.
        system = messages[0]["content"] + (
            "\n\nReply with one JSON object only, no other text, matching this JSON Schema:\n"
            + json.dumps(schema)
        )
        return {
            "model": self.config.model,
            "messages": [{"role": "system", "content": system}, *messages[1:]],
            "response_format": {"type": "json_object"},
        }

    def _send(
        self, request: dict[str, Any], fallback: Callable[[], dict[str, Any]] | None
    ) -> ChatCompletion:
        """One completion with at most max_retries retries (+1 json_object fallback)."""
        import openai

        self._last_usage = None
        client = self._openai()
        attempts = 0
        retries_left = self.config.max_retries
        while True:
            attempts += 1
            failure: openai.APIError
            try:
                completion: ChatCompletion = client.chat.completions.create(**request)
            except openai.APIStatusError as error:
                if (
                    fallback is not None
                    and request.get("response_format", {}).get("type") == "json_schema"
                    and _refuses_json_schema(error)
                ):
                    # The server cannot do structured output: ask for plain JSON instead, once,
                    # and remember it for this client's later calls.
                    self._json_schema_supported = False
                    request = fallback()
                    continue
                if not _is_transient(error):
                    raise self._rejected(error) from error
                failure = error
            except openai.APIConnectionError as error:  # includes APITimeoutError
                failure = error
            except openai.OpenAIError as error:
                raise LLMError(
                    f"the model server at {self.base_url} sent a reply memkit cannot read: "
                    f"{_quote(str(error))}. Check that llm.base_url points at an "
                    "OpenAI-compatible API (it usually ends in /v1)."
                ) from error
            else:
                self._last_usage = _usage_of(completion)
                return completion
            if retries_left <= 0:
                raise self._gave_up(failure, attempts) from failure
            # Transient trouble (overload, rate limit, restart): wait a little longer each time.
            time.sleep(
                min(
                    _BACKOFF_CAP_SECONDS,
                    _BACKOFF_FIRST_SECONDS * 2 ** (self.config.max_retries - retries_left),
                )
            )
            retries_left -= 1

    def _gave_up(self, error: openai.APIError, attempts: int) -> LLMError:
        import openai

        tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
        if isinstance(error, openai.APITimeoutError):
            return LLMError(
                f"the model server at {self.base_url} timed out after "
                f"{self.config.timeout_seconds:g} s ({tries}). A slow or busy model may need a "
                "larger llm.timeout_seconds in memkit.yaml; check the server is not stuck."
            )
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error
            return LLMError(
                f"could not reach the model server at {self.base_url}: {cause} ({tries}). "
                "Check that the server is running and that llm.base_url in memkit.yaml "
                "(or OPENAI_BASE_URL) is right."
            )
        status = cast("openai.APIStatusError", error)
        if status.status_code == 429:
            return LLMError(
                f"the model server at {self.base_url} is rate limiting memkit (HTTP 429, "
                f"{tries}): {_error_detail(status)}. Wait a minute and try again, or check the "
                "account's limits."
            )
        return LLMError(
            f"the model server at {self.base_url} failed with HTTP {status.status_code} "
            f"({tries}): {_error_detail(status)}. Try again later, or check the server's logs."
        )

    def _rejected(self, error: openai.APIStatusError) -> LLMError:
        detail = _error_detail(error)
        code = error.status_code
        if code in (401, 403):
            return LLMError(
                f"the model server at {self.base_url} refused the API key (HTTP {code}): "
                f"{detail}. Check the key in OPENAI_API_KEY (or the variable named by "
                "llm.api_key_env in memkit.yaml)."
            )
        if code == 404:
            return LLMError(
                f"the model server at {self.base_url} answered HTTP 404: {detail}. Check the "
                f"model name {self.config.model!r} (llm.model or MEMKIT_MODEL) and that "
                "llm.base_url is the API root (it usually ends in /v1)."
            )
        return LLMError(
            f"the model server at {self.base_url} rejected the request (HTTP {code}): {detail}. "
            f"The model {self.config.model!r} may not support this request; try another model."
        )

    def _reply_text(self, completion: ChatCompletion) -> str:
        """The first choice's text, or an LLMError saying what came back instead."""
        # getattr throughout: a server that is only loosely OpenAI-compatible may leave out any
        # field, and the openai client does not check (it may even hand back a plain string).
        choices = getattr(completion, "choices", None)
        if not choices:
            raise self._bad_reply(
                f"a reply without choices, not a chat completion: {_quote(_raw(completion))}",
                "check that llm.base_url points at an OpenAI-compatible API (it usually ends "
                "in /v1)",
            )
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        finish_reason = getattr(choice, "finish_reason", None)
        if refusal:
            raise self._bad_reply(
                f"a refusal instead of an answer: {_quote(str(refusal))}",
                "rephrase the request or use another model",
            )
        if finish_reason == "length":
            raise self._bad_reply(
                "a reply cut short at its output token limit (finish_reason 'length'): "
                f"{_quote(content or '')}",
                "shorten the input, or use a model or server setting that allows longer replies",
            )
        if finish_reason == "content_filter":
            raise self._bad_reply(
                f"a reply stopped by the server's content filter: {_quote(content or '')}",
                "rephrase the request or use another model",
            )
        if not isinstance(content, str) or not content.strip():
            raise self._bad_reply(
                f"an empty reply (content {_quote(str(content))})",
                "try again, or use a more capable model",
            )
        return content

    def _bad_reply(self, what: str, advice: str) -> LLMError:
        return LLMError(
            f"the model {self.config.model!r} at {self.base_url} sent {what}; {advice}."
        )

    def _parse_object(self, text: str) -> dict[str, Any]:
        """The reply as a JSON object, accepting a Markdown fence around it."""
        advice = "try again, or use a model that follows JSON instructions better"
        try:
            value = json.loads(_strip_fence(text))
        except json.JSONDecodeError as error:
            raise self._bad_reply(
                f"a reply that is not valid JSON ({error.msg}): {_quote(text)}", advice
            ) from None
        if not isinstance(value, dict):
            kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(value), "a number"
            )
            raise self._bad_reply(f"JSON that is {kind}, not an object: {_quote(text)}", advice)
        return value


def _raw(completion: Any) -> str:
    """What the server sent, as close to its own text as the openai client still has it."""
    if isinstance(completion, str):  # a 200 whose body was not JSON comes back as text
        return completion
    dump = getattr(completion, "model_dump", None)
    return json.dumps(dump(exclude_unset=True)) if callable(dump) else repr(completion)


def _usage_of(completion: Any) -> dict[str, int] | None:
    usage = getattr(completion, "usage", None)
    if usage is None:
        return None
    counts: dict[str, int] = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, name, None)
        if isinstance(value, int):
            counts[name] = value
    return counts or None
