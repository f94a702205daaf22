"""The LLM client: the real openai client over HTTP against a scripted server, no mocks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memkit.errors import LLMError
from memkit.llm import (
    KEYLESS_API_KEY,
    ContextOverflowError,
    LLMClient,
    LLMConfig,
    LLMTimeoutError,
    resolve_llm_config,
)
from memkit.settings import LLMSettings

from .conftest import REPO, examples
from .llm_server import ScriptedLLMServer, llm_server  # noqa: F401

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
    "additionalProperties": False,
}
SYSTEM = "Extract facts."
USER = "I live in Lyon and I prefer tea."


def make_client(server: ScriptedLLMServer, *, retries: int = 2, timeout: float = 5.0) -> LLMClient:
    return LLMClient(LLMConfig("test-model", server.base_url, "sk-test", timeout, retries))


@pytest.fixture
def client(llm_server: ScriptedLLMServer) -> Iterator[LLMClient]:  # noqa: F811
    with make_client(llm_server) as llm:
        yield llm


def unused_port() -> int:
    """A port nothing listens on: bound once to learn a free number, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- configuration -------------------------------------------------------------------------


def test_settings_are_used_when_the_environment_says_nothing() -> None:
    config = resolve_llm_config(
        LLMSettings(model="llama3.1", base_url="http://localhost:11434/v1", timeout_seconds=9),
        {},
    )
    assert config == LLMConfig("llama3.1", "http://localhost:11434/v1", KEYLESS_API_KEY, 9.0, 2)


def test_the_environment_overrides_settings() -> None:
    environ = {
        "OPENAI_BASE_URL": "http://localhost:8000/v1",
        "OPENAI_API_KEY": "sk-env",
        "MEMKIT_MODEL": "qwen2.5",
    }
    config = resolve_llm_config(LLMSettings(model="gpt-4o-mini", base_url="http://x/v1"), environ)
    assert (config.model, config.base_url, config.api_key) == (
        "qwen2.5",
        "http://localhost:8000/v1",
        "sk-env",
    )


def test_a_key_alone_means_openai() -> None:
    config = resolve_llm_config(LLMSettings(), {"OPENAI_API_KEY": "sk-abc"})
    assert (config.model, config.base_url, config.api_key) == ("gpt-4o-mini", None, "sk-abc")


def test_only_the_variable_named_by_api_key_env_is_read() -> None:
    named = LLMSettings(base_url="https://api.groq.com/openai/v1", api_key_env="GROQ_API_KEY")
    both = {"GROQ_API_KEY": "gsk-1", "OPENAI_API_KEY": "sk-openai"}
    assert resolve_llm_config(named, both).api_key == "gsk-1"
    # The OpenAI key must never be sent to another provider just because it is set.
    openai_only = {"OPENAI_API_KEY": "sk-openai"}
    assert resolve_llm_config(named, openai_only).api_key == KEYLESS_API_KEY


def test_empty_environment_values_count_as_unset() -> None:
    environ = {"OPENAI_BASE_URL": "", "MEMKIT_MODEL": " ", "OPENAI_API_KEY": "sk-x"}
    config = resolve_llm_config(LLMSettings(model="m", base_url="http://h/v1"), environ)
    assert (config.model, config.base_url) == ("m", "http://h/v1")


def test_no_key_and_no_server_says_how_to_configure_one() -> None:
    with pytest.raises(LLMError) as caught:
        resolve_llm_config(LLMSettings(api_key_env="MY_KEY"), {"OPENAI_API_KEY": "sk-ignored"})
    message = str(caught.value)
    for needed in (
        "MY_KEY",
        "OPENAI_BASE_URL",
        "memkit.yaml",
        "base_url:",
        "api_key_env:",
        "model:",
        "MEMKIT_MODEL",
        "http://localhost:11434/v1",
        "http://localhost:8000/v1",
    ):
        assert needed in message


def test_a_base_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(LLMError, match="http:// or https://"):
        resolve_llm_config(LLMSettings(base_url="localhost:11434/v1"), {})


def test_the_api_key_never_shows_in_repr() -> None:
    config = resolve_llm_config(LLMSettings(), {"OPENAI_API_KEY": "sk-secret-123"})
    assert "sk-secret-123" not in repr(config)


def test_a_client_costs_no_openai_import_until_it_is_used() -> None:
    code = (
        "import sys\n"
        "from memkit.llm import LLMClient, LLMConfig\n"
        "LLMClient(LLMConfig('m', 'http://127.0.0.1:9/v1', None))\n"
        "print('openai' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "False"


# -- structured output ---------------------------------------------------------------------


def test_complete_json_asks_for_structured_output(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_json({"facts": ["lives in Lyon"]})
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA, schema_name="facts") == {
        "facts": ["lives in Lyon"]
    }
    (request,) = llm_server.requests
    assert request["model"] == "test-model"
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER},
    ]
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "facts", "schema": SCHEMA, "strict": True},
    }


def test_a_server_without_json_schema_gets_json_object_and_it_is_remembered(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.refuse_json_schema()
    llm_server.reply_json({"facts": ["a"]})
    llm_server.reply_json({"facts": ["b"]})
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["a"]}
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["b"]}
    kinds = [request["response_format"]["type"] for request in llm_server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    # Without enforcement the model must read the schema, and OpenAI wants "JSON" mentioned.
    system = llm_server.requests[1]["messages"][0]["content"]
    assert system.startswith(SYSTEM)
    assert "JSON" in system
    assert json.dumps(SCHEMA, separators=(",", ":")) in system
    assert llm_server.requests[1]["messages"][1] == {"role": "user", "content": USER}


@pytest.mark.parametrize("status", [400, 422])
def test_other_schema_complaints_also_fall_back(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
    status: int,
) -> None:
    llm_server.reply_error(status, {"error": {"message": "json_schema: unsupported keyword"}})
    llm_server.reply_json({"facts": []})
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": []}
    assert len(llm_server.requests) == 2


def test_a_bad_request_that_is_not_about_the_schema_is_not_retried(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(400, {"error": {"message": "messages: too many tokens"}})
    with pytest.raises(LLMError, match=r"HTTP 400.*messages: too many tokens"):
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert len(llm_server.requests) == 1


def test_a_rejected_key_says_where_the_key_comes_from(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(401, {"error": {"message": "Incorrect API key provided"}})
    with pytest.raises(LLMError, match=r"HTTP 401.*Incorrect API key.*api_key_env"):
        client.chat([{"role": "user", "content": "hi"}])
    assert len(llm_server.requests) == 1


def test_an_unknown_model_names_the_model(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(404, {"error": {"message": "model 'test-model' not found"}})
    with pytest.raises(LLMError, match=r"HTTP 404.*not found.*llm\.model"):
        client.chat([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    ("content", "finish_reason", "expected"),
    [
        ('{"facts": ["unterminated', "stop", r"not valid JSON.*unterminated"),
        ("Sure! Here are the facts: Lyon", "stop", r"not valid JSON.*Sure! Here are"),
        ("", "stop", "an empty reply"),
        ("   \n", "stop", "an empty reply"),
        ('["Lyon", "tea"]', "stop", r"JSON that is a list, not an object.*Lyon"),
        ('"just a string"', "stop", "JSON that is a string"),
        ("42", "stop", "JSON that is a number"),
        ("null", "stop", "JSON that is null"),
        (
            '{"facts": ["Lyon", "te',
            "length",
            r"kept writing until its output cap of 900 tokens.*looping.*Lyon",
        ),
        ('{"facts": []}', "content_filter", "content filter"),
    ],
)
def test_unusable_replies_say_what_came_back(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
    content: str,
    finish_reason: str,
    expected: str,
) -> None:
    llm_server.reply_text(content, finish_reason=finish_reason)
    with pytest.raises(LLMError, match=expected) as caught:
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert "test-model" in str(caught.value)
    assert len(llm_server.requests) == 1  # a bad reply is the model's answer: not retried


def test_a_long_bad_reply_is_quoted_short(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_text("x" * 5000)
    with pytest.raises(LLMError) as caught:
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert "x" * 200 in str(caught.value)
    assert len(str(caught.value)) < 600


def test_a_null_content_is_an_empty_reply(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_text(None)
    with pytest.raises(LLMError, match="empty reply"):
        client.chat([{"role": "user", "content": "hi"}])


def test_a_refusal_is_reported(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_refusal("I can't help with that.")
    with pytest.raises(LLMError, match=r"refusal.*I can't help with that"):
        client.complete_json(SYSTEM, USER, schema=SCHEMA)


def test_a_reply_without_choices_is_reported(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_completion(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    )
    with pytest.raises(LLMError, match=r"without choices.*chat\.completion"):
        client.complete_json(SYSTEM, USER, schema=SCHEMA)


def test_a_reply_that_is_not_json_at_all_is_reported(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(200, "<html>proxy login</html>")
    with pytest.raises(LLMError, match=r"not a chat completion.*proxy login"):
        client.chat([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "reply",
    [
        '```json\n{"facts": ["Lyon"]}\n```',
        '```\n{"facts": ["Lyon"]}\n```\n',
        '  ```JSON\n{"facts": ["Lyon"]}```',
        '\n{"facts": ["Lyon"]}\n',
    ],
)
def test_a_fenced_reply_is_accepted(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
    reply: str,
) -> None:
    llm_server.reply_text(reply)
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["Lyon"]}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=examples(30),
    deadline=None,
    # One server and client serve every example: each example queues its own reply.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(obj=st.dictionaries(st.text(), JSON_VALUES, max_size=4), fenced=st.booleans())
def test_any_json_object_comes_back_as_sent(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
    obj: dict[str, Any],
    fenced: bool,
) -> None:
    text = json.dumps(obj)
    llm_server.reply_text(f"```json\n{text}\n```" if fenced else text)
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == obj


# -- transport trouble and retries ---------------------------------------------------------


def test_a_server_that_is_down_fails_fast_with_bounded_retries() -> None:
    base_url = f"http://127.0.0.1:{unused_port()}/v1"
    started = time.monotonic()
    with (
        LLMClient(LLMConfig("m", base_url, None, 2.0, 2)) as llm,
        pytest.raises(LLMError) as caught,
    ):
        llm.complete_json(SYSTEM, USER, schema=SCHEMA)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"could not reach the model server at {base_url}")
    assert "3 attempts" in message
    assert elapsed < 2.0  # backoff 0.2 + 0.4 s, connections refused at once


def test_a_slow_server_times_out(llm_server: ScriptedLLMServer) -> None:  # noqa: F811
    llm_server.reply_json({"facts": []}, delay=3.0)
    started = time.monotonic()
    with make_client(llm_server, retries=0, timeout=0.3) as llm, pytest.raises(LLMError) as caught:
        llm.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert time.monotonic() - started < 1.5
    assert "timed out after 0.3 s" in str(caught.value)
    assert "timeout_seconds" in str(caught.value)
    assert len(llm_server.requests) == 1


def test_a_timeout_is_not_sent_again(llm_server: ScriptedLLMServer) -> None:  # noqa: F811
    # A local server keeps generating an abandoned request: the same request again would only
    # queue behind it, so a timeout is reported at once, as a timeout.
    llm_server.reply_json({"facts": ["late"]}, delay=3.0)
    llm_server.reply_json({"facts": ["never asked"]})
    with make_client(llm_server, retries=2, timeout=0.3) as llm, pytest.raises(LLMTimeoutError):
        llm.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert len(llm_server.requests) == 1


def test_a_server_error_is_retried(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(500, {"error": {"message": "model is loading"}})
    llm_server.reply_error(503, "Service Unavailable")
    llm_server.reply_json({"facts": ["ok"]})
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["ok"]}
    assert len(llm_server.requests) == 3


def test_rate_limits_are_retried_a_bounded_number_of_times(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    for _ in range(5):
        llm_server.reply_error(429, {"error": {"message": "Rate limit reached for requests"}})
    with pytest.raises(LLMError, match=r"HTTP 429, 3 attempts.*Rate limit reached"):
        client.chat([{"role": "user", "content": "hi"}])
    assert len(llm_server.requests) == 3  # max_retries=2


def test_the_schema_fallback_adds_one_attempt_and_no_more(
    llm_server: ScriptedLLMServer,  # noqa: F811
) -> None:
    llm_server.refuse_json_schema()  # and nothing scripted: every json_object request gets a 500
    with make_client(llm_server, retries=1) as llm, pytest.raises(LLMError, match="HTTP 500"):
        llm.complete_json(SYSTEM, USER, schema=SCHEMA)
    kinds = [request["response_format"]["type"] for request in llm_server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]


def test_an_unscripted_request_fails_loudly(
    llm_server: ScriptedLLMServer,  # noqa: F811
) -> None:
    with make_client(llm_server, retries=0) as llm, pytest.raises(LLMError) as caught:
        llm.chat([{"role": "user", "content": "hi"}])
    assert "no reply scripted" in str(caught.value)


# -- chat and usage ------------------------------------------------------------------------


def test_chat_returns_the_text(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_text("Hello! You prefer tea.")
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "What do I drink?"},
    ]
    assert client.chat(messages, temperature=0.2) == "Hello! You prefer tea."
    (request,) = llm_server.requests
    assert request["messages"] == messages
    assert request["temperature"] == 0.2
    assert "response_format" not in request


def test_chat_leaves_temperature_to_the_server_by_default(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_text("hi")
    client.chat([{"role": "user", "content": "hi"}])
    assert "temperature" not in llm_server.requests[0]


def test_last_usage_reports_the_last_call(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    assert client.last_usage is None
    llm_server.reply_text("one two three")
    client.chat([{"role": "user", "content": "count"}])
    usage = client.last_usage
    assert usage is not None
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    llm_server.reply_text("no usage this time", usage=False)
    client.chat([{"role": "user", "content": "again"}])
    assert client.last_usage is None


def test_a_failed_call_clears_last_usage(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_json({"facts": []})
    client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert client.last_usage is not None
    llm_server.reply_error(400, {"error": {"message": "bad"}})
    with pytest.raises(LLMError):
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert client.last_usage is None


# --- real-server quirks ---------------------------------------------------------------------

# llama-cpp-python's server answers a json_schema response_format with HTTP 500 and pydantic's
# validation error (its wording, as it sends it).
LLAMA_CPP_PYTHON_500 = {
    "error": {
        "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
        "'ctx': {'expected': \"'text' or 'json_object'\"}}]",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}


def stateful(server: ScriptedLLMServer, state: Path, **more: Any) -> LLMClient:
    return LLMClient(
        LLMConfig("test-model", server.base_url, None, 5.0, 2, state_file=state, **more)
    )


def test_a_500_naming_response_format_falls_back_once_per_server_and_model_ever(
    llm_server: ScriptedLLMServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = tmp_path / ".memkit" / "llm-servers.json"
    state.parent.mkdir()
    llm_server.reply_error(500, LLAMA_CPP_PYTHON_500)
    llm_server.reply_json({"facts": ["a"]})
    with stateful(llm_server, state) as llm:
        assert llm.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["a"]}
        assert llm.fallbacks == ["json_schema->json_object"]
    # A later process (a new client) skips the refused request altogether.
    llm_server.reply_json({"facts": ["b"]})
    with stateful(llm_server, state) as llm:
        assert llm.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["b"]}
    kinds = [r["response_format"]["type"] for r in llm_server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert llm_server.requests[1]["response_format"]["schema"] == SCHEMA
    key = f"{llm_server.base_url} test-model"
    assert json.loads(state.read_text())[key]["structured_output"] == "json_object"


def test_a_plain_500_is_an_outage_and_retried_not_a_refusal(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(500, {"error": {"message": "CUDA out of memory"}})
    llm_server.reply_json({"facts": []})
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": []}
    kinds = [r["response_format"]["type"] for r in llm_server.requests]
    assert kinds == ["json_schema", "json_schema"] and client.fallbacks == []


def test_json_object_refused_too_falls_back_to_the_prompt(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(400, {"error": {"message": "response_format is not supported"}})
    llm_server.reply_error(422, {"detail": "json_object: unsupported response_format type"})
    llm_server.reply_text('```json\n{"facts": ["c"]}\n```')
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["c"]}
    assert "response_format" not in llm_server.requests[2]
    assert "JSON Schema" in llm_server.requests[2]["messages"][0]["content"]
    assert client.structured_output_mode() == "prompt"


def test_a_fixed_structured_output_mode_never_falls_back(
    llm_server: ScriptedLLMServer,  # noqa: F811
) -> None:
    llm_server.reply_error(500, LLAMA_CPP_PYTHON_500)
    config = LLMConfig(
        "test-model", llm_server.base_url, None, 5.0, 0, structured_output="json_schema"
    )
    with LLMClient(config) as llm, pytest.raises(LLMError, match=r"llm\.structured_output"):
        llm.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert len(llm_server.requests) == 1


def test_every_request_carries_an_output_cap_and_extraction_a_low_temperature(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_json({"facts": []})
    llm_server.reply_text("Hello.")
    client.complete_json(SYSTEM, USER, schema=SCHEMA)
    client.chat([{"role": "user", "content": "Hi"}])
    extraction, chat = llm_server.requests
    assert extraction["max_tokens"] == 900 and extraction["temperature"] == 0.2
    assert chat["max_tokens"] == 1024 and "temperature" not in chat


def test_429_waits_as_long_as_retry_after_ms_says(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(
        429, {"error": {"message": "slow down"}}, headers={"retry-after-ms": "50"}
    )
    llm_server.reply_json({"facts": ["after the wait"]})
    assert client.complete_json(SYSTEM, USER, schema=SCHEMA) == {"facts": ["after the wait"]}
    assert len(llm_server.requests) == 2


def test_a_retry_after_beyond_the_time_budget_gives_up_without_resending(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_error(429, {"error": {"message": "quota"}}, headers={"Retry-After": "30"})
    llm_server.reply_json({"facts": ["never asked"]})
    with client.time_budget(5.0), pytest.raises(LLMError, match=r"rate limiting.*HTTP 429"):
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert len(llm_server.requests) == 1  # it did not hammer the server inside its wait


def test_a_spent_time_budget_stops_before_sending(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    with client.time_budget(0.0), pytest.raises(LLMTimeoutError, match=r"llm\.max_wall_seconds"):
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    assert llm_server.requests == []


@pytest.mark.parametrize(
    ("status", "body", "prompt", "context"),
    [
        (  # llama.cpp's llama-server
            400,
            {
                "error": {
                    "code": 400,
                    "message": "request (2131 tokens) exceeds the available context size "
                    "(2048 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 2131,
                    "n_ctx": 2048,
                }
            },
            2131,
            2048,
        ),
        (  # OpenAI
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens. However, "
                    "your messages resulted in 9013 tokens. Please reduce the length of the "
                    "messages.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            9013,
            8192,
        ),
    ],
)
def test_a_context_overflow_says_how_many_tokens_and_what_memkit_does(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
    status: int,
    body: dict[str, Any],
    prompt: int,
    context: int,
) -> None:
    llm_server.reply_error(status, body)
    with pytest.raises(ContextOverflowError) as caught:
        client.complete_json(SYSTEM, USER, schema=SCHEMA)
    error = caught.value
    assert (error.prompt_tokens, error.context_tokens) == (prompt, context)
    message = str(error)
    assert f"had {prompt} tokens" in message and f"holds {context} tokens" in message
    assert "chunks" in message and "try another model" not in message
    assert len(llm_server.requests) == 1  # not retried, not a structured-output refusal
    assert client.context_tokens() == context  # learned for the next plan


def test_the_context_comes_from_settings_then_props_then_models_then_a_default(
    llm_server: ScriptedLLMServer,  # noqa: F811
) -> None:
    config = LLMConfig("test-model", llm_server.base_url, None, 5.0, 0)
    with LLMClient(config) as llm:
        assert llm.context_tokens() == 8192  # the server says nothing
    llm_server.models = ["test-model"]
    with LLMClient(replace(config, context_tokens=3000)) as llm:
        assert llm.context_tokens() == 3000
    llm_server.props = {"default_generation_settings": {"n_ctx": 2048}}
    with LLMClient(config) as llm:
        assert llm.context_tokens() == 2048
        assert llm.context_tokens() == 2048
    assert llm_server.probes.count("/props") == 2  # asked once per client without a state file
    assert llm_server.requests == []


def test_token_estimates_are_calibrated_by_the_servers_tokenizer(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.tokenize_ratio = 4.0
    sample = "Dana prefers short answers with the commands first. " * 20
    assert client.chars_per_token(sample) == pytest.approx(3.8)
    assert client.count_tokens("x" * 380) == 101
    assert llm_server.probes == ["/tokenize"]


def test_a_model_the_server_does_not_list_is_warned_about_once(
    llm_server: ScriptedLLMServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = tmp_path / ".memkit" / "llm-servers.json"
    state.parent.mkdir()
    llm_server.models = ["smollm2-135m-instruct"]
    with stateful(llm_server, state) as llm:
        warning = llm.check_model()
        assert warning is not None and "'test-model' is not among" in warning
        assert "smollm2-135m-instruct" in warning and llm.check_model() is None
    with stateful(llm_server, state) as llm:
        assert llm.check_model() is not None  # still said, from what was remembered
    assert llm_server.probes == ["/v1/models"]  # the server was asked once


def test_a_reply_is_streamed_in_pieces(
    llm_server: ScriptedLLMServer,  # noqa: F811
    client: LLMClient,
) -> None:
    llm_server.reply_text("Use pg_upgrade with link mode, then analyze.")
    pieces = list(client.stream_chat([{"role": "user", "content": "How?"}]))
    assert len(pieces) > 1 and "".join(pieces) == "Use pg_upgrade with link mode, then analyze."
    assert llm_server.requests[0]["stream"] is True


def test_an_unknown_structured_output_mode_names_the_file_and_line(tmp_path: Path) -> None:
    from memkit.errors import SettingsError
    from memkit.settings import parse_settings

    text = "llm:\n  model: m\n  structured_output: grammar\n"
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, tmp_path / "memkit.yaml")
    message = str(caught.value)
    assert "memkit.yaml:3" in message and "auto, json_schema, json_object, prompt" in message
    settings = parse_settings(
        "llm:\n  max_output_tokens: 400\n  context_tokens: 2048\n", tmp_path / "memkit.yaml"
    )
    config = resolve_llm_config(
        settings.llm, {"OPENAI_BASE_URL": "http://h/v1"}, vault_root=tmp_path
    )
    assert (config.max_output_tokens, config.context_tokens) == (400, 2048)
    assert config.state_file == tmp_path / ".memkit" / "llm-servers.json"
