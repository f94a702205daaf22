"""A scripted OpenAI-compatible chat completions server on 127.0.0.1 for tests (stdlib only)."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

SCHEMA_REFUSAL = {
    "error": {
        "message": "response_format json_schema is not supported by this model",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
}


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes  # sent as is, unless `choices` asks for a completion built around the request
    content_type: str = "application/json"
    delay: float = 0.0
    choices: list[dict[str, Any]] | None = None
    usage: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    stream: bool = False  # send the completion as server-sent events (stream=True requests)
    # "chat" or "extraction" (a request with a response_format): only answers that kind of
    # request, so a test stays deterministic while an Agent learns in the background.
    kind: str | None = None
    gate: threading.Event | None = None  # held until the test sets it


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes each connection after its response, so no handler thread lingers on an
    # idle keep-alive connection and close() can join them all.
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        reply = self.server.owner._answer(self.path, body)
        if reply.delay and self.server.owner._closing.wait(reply.delay):
            return  # the server is closing: the client gave up long ago
        if reply.gate is not None:
            while not reply.gate.wait(0.01):
                if self.server.owner._closing.is_set():
                    return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.stream:
                self.end_headers()
                for event in reply.body.split(b"\n\n"):
                    if event:
                        self.wfile.write(event + b"\n\n")
                        self.wfile.flush()
                        if self.server.owner._closing.wait(self.server.owner.stream_gap):
                            return
                return
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client timed out and hung up first: what a timeout test wants

    def do_GET(self) -> None:
        self.do_POST()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests must not print."""


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread
    block_on_close = True
    owner: ScriptedLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is expected in timeout tests; anything else is kept
        # for the test to see instead of being printed.
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.owner.errors.append(repr(error))


class ScriptedLLMServer:
    """Answers chat completions from a queue of scripted replies, recording every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # chat completions only
        self.paths: list[str] = []  # every path asked for, probes included
        self.probes: list[str] = []  # requests outside /v1/chat/completions (/v1/models, /props)
        # What the server says about itself; None: answer 404 as a plain OpenAI-compatible
        # server without the endpoint does.
        self.models: list[str] | None = None
        self.props: dict[str, Any] | None = None
        self.tokenize_ratio: float | None = None  # characters per token for /tokenize
        self.stream_gap = 0.0  # seconds between streamed events
        self.errors: list[str] = []
        self._replies: deque[_Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._refuse_json_schema = False
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedLLMServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()  # wakes handlers sleeping in a delayed reply
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- scripting ---------------------------------------------------------------------------

    def reply_json(
        self,
        obj: Any,
        *,
        finish_reason: str = "stop",
        delay: float = 0.0,
        usage: bool = True,
        kind: str | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        """Queue a completion whose message content is json.dumps(obj)."""
        self.reply_text(
            json.dumps(obj),
            finish_reason=finish_reason,
            delay=delay,
            usage=usage,
            kind=kind,
            gate=gate,
        )

    def reply_text(
        self,
        text: str | None,
        *,
        finish_reason: str = "stop",
        delay: float = 0.0,
        usage: bool = True,
        refusal: str | None = None,
        kind: str | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        """Queue a completion with this raw content (None: a null content)."""
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": refusal}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        self._queue(
            _Reply(200, b"", delay=delay, choices=[choice], usage=usage, kind=kind, gate=gate)
        )

    def reply_refusal(self, refusal: str, *, delay: float = 0.0) -> None:
        """Queue a completion where the model refused (content null, refusal set)."""
        self.reply_text(None, refusal=refusal, delay=delay)

    def reply_completion(self, body: dict[str, Any], *, delay: float = 0.0) -> None:
        """Queue an HTTP 200 with exactly this body, for shapes the helpers above cannot make."""
        self._queue(_Reply(200, json.dumps(body).encode(), delay=delay))

    def reply_error(
        self,
        status: int,
        body: dict[str, Any] | str,
        *,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        """Queue an HTTP error with a JSON (dict) or plain text (str) body."""
        extra = tuple((headers or {}).items())
        if isinstance(body, str):
            self._queue(
                _Reply(
                    status,
                    body.encode(),
                    "text/plain; charset=utf-8",
                    delay,
                    headers=extra,
                    kind=kind,
                )
            )
        else:
            self._queue(
                _Reply(status, json.dumps(body).encode(), delay=delay, headers=extra, kind=kind)
            )

    def refuse_json_schema(self) -> None:
        """From now on, answer json_schema requests with HTTP 400, as servers without it do."""
        self._refuse_json_schema = True

    def _queue(self, reply: _Reply) -> None:
        with self._lock:
            self._replies.append(reply)

    # -- answering (handler threads) ---------------------------------------------------------

    def _answer(self, path: str, request: dict[str, Any]) -> _Reply:
        with self._lock:
            self.paths.append(path)
            if path.rstrip("/") != "/v1/chat/completions":
                self.probes.append(path)
                return self._probe_reply(path.rstrip("/"), request)
            self.requests.append(request)
            number = len(self.requests)
            response_format = request.get("response_format") or {}
            if self._refuse_json_schema and response_format.get("type") == "json_schema":
                return _Reply(400, json.dumps(SCHEMA_REFUSAL).encode())
            kind = "extraction" if response_format else "chat"
            reply = next((r for r in self._replies if r.kind in (None, kind)), None)
            if reply is None:
                return _error_reply(
                    500,
                    f"ScriptedLLMServer: no reply scripted for request #{number} ({kind}); "
                    "queue one with reply_json / reply_text / reply_error",
                )
            self._replies.remove(reply)
        if reply.choices is None:
            return reply
        completion = self._completion(request, reply.choices, reply.usage)
        if request.get("stream"):
            return _Reply(
                reply.status,
                _events(completion),
                "text/event-stream",
                delay=reply.delay,
                stream=True,
                gate=reply.gate,
            )
        return _Reply(
            reply.status, json.dumps(completion).encode(), delay=reply.delay, gate=reply.gate
        )

    def _probe_reply(self, path: str, request: dict[str, Any]) -> _Reply:
        if path == "/v1/models" and self.models is not None:
            data = [{"id": name, "object": "model", "owned_by": "scripted"} for name in self.models]
            return _Reply(200, json.dumps({"object": "list", "data": data}).encode())
        if path == "/props" and self.props is not None:
            return _Reply(200, json.dumps(self.props).encode())
        if path == "/tokenize" and self.tokenize_ratio is not None:
            content = str(request.get("content", ""))
            count = max(1, int(len(content) / self.tokenize_ratio))
            return _Reply(200, json.dumps({"tokens": list(range(count))}).encode())
        return _error_reply(404, f"ScriptedLLMServer does not serve {path}")

    def _completion(
        self, request: dict[str, Any], choices: list[dict[str, Any]], usage: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model", "scripted")),
            "choices": choices,
            "system_fingerprint": None,
        }
        if usage:
            # Word counts stand in for tokens: deterministic, and never zero.
            prompt = sum(
                len(str(message.get("content", "")).split()) + 1
                for message in request.get("messages", [])
            )
            completion = sum(
                len(str(choice["message"].get("content") or "").split()) + 1 for choice in choices
            )
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return body


def _events(completion: dict[str, Any]) -> bytes:
    """A completion as server-sent events: the content in three-word pieces, then [DONE]."""
    choice = completion["choices"][0]
    words = str(choice["message"].get("content") or "").split(" ")
    pieces = [" ".join(words[i : i + 3]) + " " for i in range(0, len(words), 3)]
    if pieces:
        pieces[-1] = pieces[-1][:-1]
    events = []
    for number, piece in enumerate(pieces):
        last = number == len(pieces) - 1
        chunk = {
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": piece},
                    "finish_reason": choice["finish_reason"] if last else None,
                }
            ],
        }
        events.append(b"data: " + json.dumps(chunk).encode())
    events.append(b"data: [DONE]")
    return b"\n\n".join(events) + b"\n\n"


def _error_reply(status: int, message: str) -> _Reply:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return _Reply(status, json.dumps(body).encode())


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server
