"""An OpenAI-compatible chat-completions server on 127.0.0.1 for the tests and the benchmark.

Real HTTP (``http.server``, one thread per connection), so the real ``openai`` client talks to
it. It records every request (arrival and end times, headers, JSON body, the image decoded:
format and size) and answers from a script: a queue of ``Answer`` objects consumed one per
request (then ``default``), each a normal reply, an HTTP error with ``Retry-After``, a refusal,
an empty or malformed reply, after an optional delay. The normal reply names the image by the
SHA-256 of its decoded pixels, so a caption says which image it is for.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """How the server answers one request."""

    kind: str = "ok"  # ok, status, refusal_field, raw
    text: str | None = None  # ok: the reply (None: "A photo of image <id>.")
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    finish: str = "stop"
    raw: bytes = b""
    usage: bool = True


@dataclass
class Recorded:
    """One request as the server saw it."""

    start: float
    end: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    image_format: str | None = None
    image_size: tuple[int, int] | None = None
    image_id: str | None = None
    status: int = 200
    #: The usage the reply reported (0, 0 when it reported none).
    tokens: tuple[int, int] = (0, 0)

    @property
    def user_text(self) -> str:
        """The user message's text part."""
        for message in self.body.get("messages", []):
            if message.get("role") == "user":
                for part in message["content"]:
                    if part.get("type") == "text":
                        return part["text"]
        return ""

    @property
    def system_text(self) -> str:
        """The system message ('' when none)."""
        for message in self.body.get("messages", []):
            if message.get("role") == "system":
                return message["content"]
        return ""


def pixel_id(data: bytes) -> str:
    """The first 8 hex digits of the SHA-256 of an image's RGB pixels."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()[:8]


def default_text(image_id: str | None) -> str:
    """The normal reply for an image."""
    return f"A photo of image {image_id}."


@dataclass
class FakeVlm:
    """The server's state: the script, the record, the requests in flight."""

    latency: float = 0.0
    default: Answer = field(default_factory=Answer)
    script: deque[Answer] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    picker: Callable[[Recorded], Answer | None] | None = None
    #: Decode each request's image (format, size, pixel id); off: only its bytes are counted
    #: (the benchmark's server, so that its own CPU use does not slow the client down).
    decode_images: bool = True
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL (``.../v1``)."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeVlm:
        """Serve on a free port of 127.0.0.1 in a thread."""
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                state.handle(self)

            def do_GET(self) -> None:
                state.handle_get(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def answers(self, *answers: Answer) -> None:
        """Queue answers for the next requests."""
        with self.lock:
            self.script.extend(answers)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Read, record and answer one request."""
        start = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        record = Recorded(start, start, handler.path, dict(handler.headers.items()), body)
        if self.decode_images:
            self._read_image(record)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            picked = self.picker(record) if self.picker is not None else None
            answer = picked or (self.script.popleft() if self.script else self.default)
        try:
            # the reply leaves ``latency`` after the request arrived, its own work included
            time.sleep(max(0.0, self.latency + answer.delay - (time.monotonic() - start)))
            status, headers, payload = self._payload(answer, record)
            record.status = status
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass
        finally:
            record.end = time.monotonic()
            with self.lock:
                self.in_flight -= 1
                self.requests.append(record)

    def handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        """``GET /_records``: the requests so far as JSON (times are the server's monotonic
        clock); ``GET /_reset``: forget them. For a server run in its own process."""
        with self.lock:
            rows = [
                {"start": r.start, "end": r.end, "status": r.status, "tokens": list(r.tokens)}
                for r in self.requests
            ]
            payload = json.dumps({"requests": rows, "max_in_flight": self.max_in_flight})
            if handler.path == "/_reset":
                self.requests.clear()
                self.max_in_flight = 0
        data = payload.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _read_image(self, record: Recorded) -> None:
        """Decode the image of a request (format, size, pixel id)."""
        from PIL import Image

        for message in record.body.get("messages", []):
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if part.get("type") != "image_url":
                    continue
                url = part["image_url"]["url"]
                head, _, data = url.partition(",")
                decoded = base64.b64decode(data)
                with Image.open(io.BytesIO(decoded)) as image:
                    record.image_format = image.format
                    record.image_size = image.size
                record.image_id = pixel_id(decoded)
                assert head.startswith("data:image/"), head
                assert head.endswith(";base64"), head

    def _payload(self, answer: Answer, record: Recorded) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of an answer."""
        headers = {"Content-Type": "application/json"}
        if answer.kind == "raw":
            return answer.status, headers, answer.raw
        if answer.kind == "status":
            if answer.retry_after is not None:
                headers["Retry-After"] = answer.retry_after
            error = {"error": {"message": answer.text or f"error {answer.status}", "type": "x"}}
            return answer.status, headers, json.dumps(error).encode()
        text = default_text(record.image_id) if answer.text is None else answer.text
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if answer.kind == "refusal_field":
            message = {"role": "assistant", "content": None, "refusal": answer.text}
        prompt_tokens = 100 + len(record.user_text) // 4
        completion_tokens = max(1, len(text or "") // 4)
        reply: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": record.body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish}],
        }
        if answer.usage:
            record.tokens = (prompt_tokens, completion_tokens)
            reply["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return 200, headers, json.dumps(reply).encode()


if __name__ == "__main__":  # a server in its own process: prints its URL, serves until killed
    import sys

    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    fake = FakeVlm(latency=latency, decode_images=False).start()
    print(fake.url, flush=True)
    assert fake.thread is not None
    fake.thread.join()
