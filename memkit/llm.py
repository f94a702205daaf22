"""The language model client: the only code that talks to an OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from memkit.errors import LLMError
from memkit.serverinfo import (
    CHARS_PER_TOKEN,
    DEFAULT_CONTEXT_TOKENS,
    KEYLESS_API_KEY,
    OPENAI_BASE_URL,
    SERVERS_STATE_FILE,
    LLMConfig,
    ServerInfo,
    resolve_llm_config,
)

if TYPE_CHECKING:
    # Types only: importing openai costs ~400 ms, so the real import waits for the first call.
    import openai
    from openai.types.chat import ChatCompletion

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# The configuration and what a server says about itself live in serverinfo (no openai there);
# their names stay importable from here.
__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_CONTEXT_TOKENS",
    "KEYLESS_API_KEY",
    "OPENAI_BASE_URL",
    "SERVERS_STATE_FILE",
    "ContextOverflowError",
    "LLMClient",
    "LLMConfig",
    "LLMTimeoutError",
    "OutputCutError",
    "ServerInfo",
    "resolve_llm_config",
]

_SHOWN_CHARS = 200  # how much of a bad reply an error message quotes
_BACKOFF_FIRST_SECONDS = 0.2
_BACKOFF_CAP_SECONDS = 2.0
_RETRY_AFTER_CAP_SECONDS = 60.0
# What servers say when they do not support structured output (OpenAI, vLLM, Ollama, llama.cpp
# and LiteLLM word it differently); matched on HTTP 400/422.
_REFUSES_SCHEMA = re.compile(
    r"response[_ ]format|json[_ ]schema|not supported|unsupported", re.IGNORECASE
)
# A 5xx counts as a refusal only when its body names the feature: llama-cpp-python's server
# answers json_schema with HTTP 500 and a pydantic literal_error on ('body', 'response_format',
# 'type'); any other 5xx is an outage, retried.
_REFUSES_SCHEMA_5XX = re.compile(r"response[_ ]format|json[_ ]schema", re.IGNORECASE)
_CONTEXT_OVERFLOW = re.compile(
    r"context[_ ]length|context size|context window|maximum context|exceed_context|"
    r"too many tokens|n_ctx|prompt is too long",
    re.IGNORECASE,
)
_FENCE = re.compile(r"\A\s*```[\w-]*[ \t]*\n(?P<body>.*?)\n?[ \t]*```\s*\Z", re.DOTALL)
_NEXT_MODE = {"json_schema": "json_object", "json_object": "prompt"}


class ContextOverflowError(LLMError):
    """The request did not fit the model's context window."""

    def __init__(
        self, message: str, prompt_tokens: int | None = None, context_tokens: int | None = None
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.context_tokens = context_tokens


class OutputCutError(LLMError):
    """The reply reached its output cap before it was finished (the model kept writing)."""


class LLMTimeoutError(LLMError):
    """The server did not answer within llm.timeout_seconds (or the command's time bound)."""


def _quote(text: str) -> str:
    shown = text[:_SHOWN_CHARS]
    return repr(shown) + ("..." if len(text) > _SHOWN_CHARS else "")


def _body_text(error: openai.APIStatusError) -> str:
    body = error.body if isinstance(error.body, str) else json.dumps(error.body)
    return f"{error.message} {body}"


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


def _refuses_structured_output(error: openai.APIStatusError) -> bool:
    if _is_context_overflow(error):
        return False
    if error.status_code in (400, 422):
        return bool(_REFUSES_SCHEMA.search(_body_text(error)))
    if error.status_code >= 500:
        return bool(_REFUSES_SCHEMA_5XX.search(_body_text(error)))
    return False


def _is_context_overflow(error: openai.APIStatusError) -> bool:
    return error.status_code in (400, 413, 422, 500) and bool(
        _CONTEXT_OVERFLOW.search(_body_text(error))
    )


def _overflow_counts(error: openai.APIStatusError) -> tuple[int | None, int | None]:
    """(tokens in the request, the context size) from llama.cpp's or OpenAI's wording."""
    body: Any = error.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("n_ctx"), int):
        prompt = inner.get("n_prompt_tokens")
        return (prompt if isinstance(prompt, int) else None), inner["n_ctx"]
    text = _body_text(error)
    llama = re.search(r"\((\d+) tokens\) exceeds the available context size \((\d+)", text)
    if llama:
        return int(llama.group(1)), int(llama.group(2))
    context = re.search(r"maximum context length is (\d+)", text)
    prompt = re.search(r"(?:resulted in|requested|you requested) (\d+) tokens", text)
    return (
        int(prompt.group(1)) if prompt else None,
        int(context.group(1)) if context else None,
    )


def _is_transient(error: openai.APIStatusError) -> bool:
    # 408 is a proxy or server giving up on a slow request: as worth retrying as our own timeout.
    return error.status_code in (408, 429) or error.status_code >= 500


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms or Retry-After), if it said."""
    headers = getattr(error.response, "headers", None) or {}
    milliseconds = headers.get("retry-after-ms")
    try:
        if milliseconds is not None:
            return max(0.0, float(milliseconds) / 1000)
    except ValueError:
        pass
    seconds = headers.get("retry-after")
    if seconds is None:
        return None
    try:
        return max(0.0, float(seconds))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(seconds).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _strip_fence(text: str) -> str:
    # Models asked for JSON without server-side enforcement often wrap it in a Markdown fence.
    match = _FENCE.match(text)
    return match.group("body") if match else text


class _Refused(Exception):
    """Internal: the server refused this structured-output mode."""

    def __init__(self, error: openai.APIStatusError) -> None:
        super().__init__(str(error))
        self.error = error


class LLMClient(ServerInfo):
    """Chat completions with structured output, bounded retries and errors written for people."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        self._client: openai.OpenAI | None = None
        self._last_usage: dict[str, int] | None = None
        self._local = threading.local()  # the time budget belongs to the thread that set it
        self._model_checked = False
        self.warnings: list[str] = []  # said once each (model not listed, ...); also logged
        self.fallbacks: list[str] = []  # structured-output modes given up on, "json_schema->..."
        self.usage_total: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0}
        self.requests_sent = 0

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

    def structured_output_mode(self) -> str:
        """The structured-output mode the next extraction uses (remembered per server)."""
        if self.config.structured_output != "auto":
            return self.config.structured_output
        mode = self._read_state().get("structured_output")
        return mode if mode in _NEXT_MODE or mode == "prompt" else "json_schema"

    # --- time budget ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def time_budget(self, seconds: float | None = None) -> Iterator[None]:
        """All requests inside share one bound on wall time (llm.max_wall_seconds by default)."""
        outer: float | None = getattr(self._local, "deadline", None)
        span = seconds if seconds is not None else self.config.max_wall_seconds
        limit = time.monotonic() + span
        self._local.deadline = limit if outer is None else min(outer, limit)
        try:
            yield
        finally:
            self._local.deadline = outer

    def _remaining(self) -> float | None:
        deadline: float | None = getattr(self._local, "deadline", None)
        return None if deadline is None else deadline - time.monotonic()

    def check_model(self) -> str | None:
        """Warn (once per server, remembered) when the model is not among those the server lists."""
        if self._model_checked:
            return None
        self._model_checked = True
        state = self._read_state()
        listed = state.get("models")
        if not isinstance(listed, list):
            try:
                page = self._openai().models.list()
                listed = sorted({str(getattr(m, "id", "")) for m in page.data} - {""})
            except Exception:  # a server without /models is no reason to fail
                listed = []
            self._remember(models=listed)
        if not listed or self.config.model in listed:
            return None
        warning = (
            f"the model {self.config.model!r} is not among the models the server at "
            f"{self.base_url} lists ({', '.join(listed[:5])}); some servers (llama.cpp) answer "
            "with their own model whatever is asked. Set llm.model or MEMKIT_MODEL to a listed one."
        )
        self.warnings.append(warning)
        log.warning("%s", warning)
        return warning

    # --- requests ------------------------------------------------------------------------------

    def complete_json(
        self,
        system: str,
        user: str,
        *,
        schema: dict[str, Any],
        schema_name: str = "extraction",
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """Ask for one JSON object matching `schema` and return it parsed.

        The structured-output mode adapts: a server that refuses json_schema (400/422, or a 5xx
        naming response_format) gets json_object with the schema, then a plain prompt; the mode
        that works is remembered per server and model so the refused request is never sent again.
        """
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        cap = max_tokens or self.config.max_output_tokens
        heat = self.config.extraction_temperature if temperature is None else temperature
        mode = self.structured_output_mode()
        while True:
            request = self._structured_request(mode, messages, schema, schema_name)
            request.update(max_tokens=cap, temperature=heat)
            adaptive = self.config.structured_output == "auto" and mode in _NEXT_MODE
            try:
                completion = self._send(request, refusal=adaptive)
            except _Refused as refused:
                following = _NEXT_MODE[mode]
                self.fallbacks.append(f"{mode}->{following}")
                log.info("%s refused %s (%s); using %s", self.base_url, mode, refused, following)
                self._remember(structured_output=following)
                mode = following
                continue
            break
        text = self._reply_text(completion, cap)
        return self._parse_object(text)

    def _structured_request(
        self,
        mode: str,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        schema_name: str,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.config.model}
        if mode == "json_schema":
            request["messages"] = messages
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            }
            return request
        # Without json_schema the model has to read the schema; OpenAI also rejects json_object
        # requests whose messages never mention JSON.
        system = messages[0]["content"] + (
            "\n\nReply with one JSON object only, no other text, matching this JSON Schema:\n"
            + json.dumps(schema, separators=(",", ":"))
        )
        request["messages"] = [{"role": "system", "content": system}, *messages[1:]]
        if mode == "json_object":
            # Servers that enforce json_object with a grammar (llama.cpp, llama-cpp-python) use
            # the schema given here; the others ignore it.
            request["response_format"] = {"type": "json_object", "schema": schema}
        return request

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """A plain chat completion (an agent's reply); returns the reply text."""
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens or self.config.chat_max_output_tokens,
        }
        if temperature is not None:
            request["temperature"] = temperature
        completion = self._send(request, refusal=False)
        return self._reply_text(completion, None)

    def stream_chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[str]:
        """A chat completion streamed: yields the reply in pieces as the server sends them."""
        import openai

        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens or self.config.chat_max_output_tokens,
            "stream": True,
        }
        if temperature is not None:
            request["temperature"] = temperature
        stream = self._send(request, refusal=False)
        any_text = False
        try:
            for chunk in cast("Any", stream):
                for choice in getattr(chunk, "choices", None) or []:
                    delta = getattr(choice, "delta", None)
                    piece = getattr(delta, "content", None)
                    if isinstance(piece, str) and piece:
                        any_text = True
                        yield piece
        except openai.APITimeoutError as error:
            raise self._gave_up(error, 1) from error
        except openai.OpenAIError as error:
            raise LLMError(
                f"the model server at {self.base_url} broke off a streamed reply: "
                f"{_quote(str(error))}"
            ) from error
        finally:
            closer = getattr(stream, "close", None)
            if callable(closer):
                closer()
        if not any_text:
            raise self._bad_reply("an empty reply", "try again, or use a more capable model")

    def _send(self, request: dict[str, Any], *, refusal: bool) -> Any:
        """One completion with at most max_retries retries of transient failures.

        A timeout is never re-sent as it was: a local server keeps generating an abandoned
        request, so the same request again only queues behind it. A 429 waits as long as the
        server asks. With `refusal`, a refused structured-output mode raises _Refused.
        """
        import openai

        self._last_usage = None
        client = self._openai()
        attempts = 0
        retries_left = self.config.max_retries
        while True:
            attempts += 1
            remaining = self._remaining()
            if remaining is not None and remaining <= 0.5:
                raise LLMTimeoutError(
                    f"memkit stopped asking the model server at {self.base_url}: this command "
                    f"used its {self.config.max_wall_seconds:g} s for model calls "
                    "(llm.max_wall_seconds in memkit.yaml)"
                )
            timeout = self.config.timeout_seconds
            if remaining is not None:
                timeout = min(timeout, remaining)
            failure: openai.APIError
            wait: float | None = None
            try:
                self.requests_sent += 1
                completion = client.with_options(timeout=timeout).chat.completions.create(**request)
            except openai.APIStatusError as error:
                if _is_context_overflow(error):
                    raise self._overflow(error) from error
                if "response_format" in request and _refuses_structured_output(error):
                    if refusal:
                        raise _Refused(error) from error
                    raise self._rejected(error) from error
                if not _is_transient(error):
                    raise self._rejected(error) from error
                failure = error
                wait = _retry_after(error)
            except openai.APITimeoutError as error:
                raise self._gave_up(error, attempts) from error
            except openai.APIConnectionError as error:
                failure = error
            except openai.OpenAIError as error:
                raise LLMError(
                    f"the model server at {self.base_url} sent a reply memkit cannot read: "
                    f"{_quote(str(error))}. Check that llm.base_url points at an "
                    "OpenAI-compatible API (it usually ends in /v1)."
                ) from error
            else:
                self._last_usage = _usage_of(completion)
                for key, value in (self._last_usage or {}).items():
                    if key in self.usage_total:
                        self.usage_total[key] += value
                return completion
            if retries_left <= 0:
                raise self._gave_up(failure, attempts) from failure
            if wait is None:
                # Transient trouble (overload, restart): wait a little longer each time.
                wait = min(
                    _BACKOFF_CAP_SECONDS,
                    _BACKOFF_FIRST_SECONDS * 2 ** (self.config.max_retries - retries_left),
                )
            wait = min(wait, _RETRY_AFTER_CAP_SECONDS)
            remaining = self._remaining()
            if remaining is not None and wait >= remaining:
                raise self._gave_up(failure, attempts) from failure
            time.sleep(wait)
            retries_left -= 1

    def _overflow(self, error: openai.APIStatusError) -> ContextOverflowError:
        prompt, context = _overflow_counts(error)
        if context:
            self._remember(context_tokens=context)
        had = f"{prompt} tokens" if prompt else "more tokens than fit"
        holds = f"holds {context} tokens" if context else "is smaller"
        return ContextOverflowError(
            f"the request to {self.config.model!r} at {self.base_url} had {had} but the model's "
            f"context {holds} (HTTP {error.status_code}: {_error_detail(error)}). memkit splits "
            "a long conversation into chunks that fit; set llm.context_tokens in memkit.yaml to "
            "the server's real context size if it is wrong, or start the server with a larger "
            "context",
            prompt,
            context,
        )

    def _gave_up(self, error: openai.APIError, attempts: int) -> LLMError:
        import openai

        tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
        if isinstance(error, openai.APITimeoutError):
            return LLMTimeoutError(
                f"the model server at {self.base_url} timed out after "
                f"{self.config.timeout_seconds:g} s (llm.timeout_seconds) and memkit stopped "
                "waiting and did not send the request again. A slow model may need a larger "
                "llm.timeout_seconds in memkit.yaml; check the server is not stuck."
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
        if _refuses_structured_output(error):
            return LLMError(
                f"the model server at {self.base_url} refused the structured-output request "
                f"(HTTP {code}): {detail}. Set llm.structured_output in memkit.yaml to auto "
                "(memkit then finds a mode the server accepts), json_object or prompt."
            )
        return LLMError(
            f"the model server at {self.base_url} rejected the request (HTTP {code}): {detail}. "
            f"The model {self.config.model!r} may not support this request; try another model."
        )

    def _reply_text(self, completion: ChatCompletion, cap: int | None) -> str:
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
        if finish_reason == "length" and cap is not None:
            # With a bounded schema a finished answer fits the cap easily: reaching it means the
            # model kept writing (typically repeating itself inside a string).
            raise OutputCutError(
                f"the model {self.config.model!r} at {self.base_url} kept writing until its "
                f"output cap of {cap} tokens (llm.max_output_tokens) without finishing its "
                f"answer; it was probably looping: {_quote(content or '')}. Nothing was "
                "written. Try again, or use a larger or better instruction-following model."
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
