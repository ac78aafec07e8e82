"""Captions from any OpenAI-compatible chat-completions endpoint, through the ``openai`` client.

OpenAI, Gemini's OpenAI-compatible endpoint, OpenRouter, and local servers (vLLM, llama.cpp's
server, Ollama, LM Studio) all take the same request: a system message, then a user message with
the prompt text and the image as a base64 data URL.

How a batch runs: ``forward`` hands every image of the batch to a pool of ``concurrency``
threads, so that many requests are in flight at once, and returns when each has its reply. Each
request first takes a start time from the ``RateLimiter`` (requests and tokens per minute), then
is sent; a 429, a 5xx, a timeout or a lost connection is retried after the server's Retry-After
or an exponential backoff with jitter, within the image's time budget (``timeout``). A refused
key (401, 403) or an unknown model (404) stops the run: every later request would fail the same
way. The replies go back to the batch engine, which writes every caption in input order and
records every failure, so resume, planning and failure reports stay the engine's.

The key is read from the environment variable ``key_env`` when the model loads, kept in the
client only, and removed from every error text and reply before it is reported or written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from tagger.errors import MissingDependencyError, ModelLoadError, OptionsError, RunAbortedError
from tagger.vlm.base import PromptPreview, VlmCaptioner, VlmItem, VlmReply
from tagger.vlm.images import EncodedImage, encode_image, image_tokens
from tagger.vlm.limits import (
    RETRY_STATUSES,
    LimitError,
    RateLimiter,
    parse_retry_after,
    retry_delay,
)
from tagger.vlm.options import resolve_endpoint
from tagger.vlm.usage import priced

log = logging.getLogger("tagger")

VLM_HINT = "install the VLM extra: pip install 'tagger[vlm]' (the openai client)"
#: What a key is replaced with in messages.
REDACTED = "[key removed]"
#: Sent as the key to servers that need none (the openai client requires one).
NO_KEY = "not-needed"


def redact(text: str, secret: str | None) -> str:
    """``text`` without the key, whole or in the masked forms servers echo back
    (``sk-ab...wxyz``, ``sk-ab****wxyz``).

    >>> redact("Incorrect API key provided: sk-tes************7890.", "sk-test-1234567890")
    'Incorrect API key provided: [key removed].'
    >>> redact("no key here", "sk-test-1234567890")
    'no key here'
    """
    if not secret:
        return text
    import re

    text = text.replace(secret, REDACTED)
    if len(secret) >= 8:
        head, tail = re.escape(secret[:3]), re.escape(secret[-4:])
        text = re.sub(rf"{head}\S*?(?:\*{{2,}}|\.{{3}}|\u2026)\S*?{tail}", REDACTED, text)
        text = re.sub(rf"{head}\S*?(?:\*{{2,}}|\.{{3}}|\u2026)\S*", REDACTED, text)
    return text


def looks_like_key(name: str) -> bool:
    """True for a "variable name" that is more likely a key typed in its place (20 or more
    characters mixing lower case and digits), which must not be shown.

    >>> looks_like_key("OPENAI_API_KEY"), looks_like_key("AIzaSyD1x2c3v4b5n6m7q8w9e0r")
    (False, True)
    """
    mixed = any(c.islower() for c in name) and any(c.isdigit() for c in name)
    return len(name) >= 20 and mixed


def message_text(content: Any) -> str | None:
    """A reply message's text: a string, or the text parts of a list of parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
            if isinstance(text, str):
                parts.append(text)
        return "".join(parts)
    return str(content)


class MalformedReplyError(Exception):
    """A 200 reply without a readable message (retried like a server error)."""


class ApiCaptioner(VlmCaptioner):
    """A model behind an OpenAI-compatible endpoint (``--vlm-url``, ``--vlm-model``)."""

    family = "vlm-api"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base_url, self.key_env = resolve_endpoint(self.vlm.url, self.vlm.key_env)
        if not (self.vlm.model or "").strip():
            raise OptionsError(
                "no model named for the endpoint: pass --vlm-model (e.g. gpt-4o-mini, "
                "gemini-2.0-flash, qwen2.5vl:7b for Ollama)"
            )
        self.limiter = RateLimiter(self.vlm.rpm, self.vlm.tpm)
        self._client: Any = None
        self._secret: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._fatal: str | None = None
        self._prompt_seen = 0
        self._state = threading.Lock()

    # -- lifetime ------------------------------------------------------------------------------
    def load(self) -> ApiCaptioner:
        """Make the client (the key read from ``key_env`` now) and the request threads."""
        if self.guide is not None:
            self.guide.load()
        with self._lock:
            if self._loaded:
                return self
            try:
                import openai
            except ImportError as exc:
                raise MissingDependencyError(f"openai is not installed: {VLM_HINT}") from exc
            key = None
            if self.key_env:
                key = os.environ.get(self.key_env, "").strip()
                if not key:
                    if looks_like_key(self.key_env):  # never shown: it may be the key itself
                        raise ModelLoadError(
                            "the environment variable named by --vlm-key-env is not set, and "
                            "its name looks like a key: pass the variable's name (e.g. "
                            "OPENAI_API_KEY), never the key"
                        )
                    raise ModelLoadError(
                        f"the environment variable {self.key_env} is empty or not set: export "
                        f"your API key in it (e.g. export {self.key_env}=...) before the run; "
                        "tagger reads the key from there only"
                    )
            self._secret = key
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=key or NO_KEY,
                max_retries=0,
                timeout=self.vlm.timeout,
            )
            self._pool = ThreadPoolExecutor(self.vlm.concurrency, thread_name_prefix="tagger-vlm")
            self._fatal = None
            self._loaded = True
            log.info("VLM endpoint %s, model %s", self.base_url, self.vlm.model)
        return self

    def unload(self) -> None:
        """Close the client and stop the request threads."""
        with self._lock:
            if not self._loaded:
                return
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._client is not None:
                self._client.close()
            self._client = self._pool = None
            self._secret = None
            self._loaded = False
        if self.guide is not None:
            self.guide.unload()

    @property
    def active_providers(self) -> list[str]:
        """The endpoint's host, e.g. ``["api.openai.com"]``."""
        return [urlparse(self.base_url).netloc or self.base_url]

    @property
    def preferred_batch(self) -> int:
        """Four rounds of ``concurrency`` requests a batch: at least 8."""
        return max(8, 4 * self.vlm.concurrency)

    @property
    def pipelined(self) -> int:
        """Batches the engine keeps in flight while it writes (``BatchRun``): two, so that the
        request threads always have the next batch's requests queued and never wait for a
        batch to be written; one with a guide captioner (its torch model runs one batch at a
        time)."""
        return 1 if self.guide is not None else 2

    # -- inputs ----------------------------------------------------------------------------------
    def prepare_image(self, image: Any) -> EncodedImage:
        """Resize and encode the image (in the engine's decode threads)."""
        return encode_image(image, self.vlm.image_side, self.vlm.image_format)

    def messages(self, item: VlmItem, image_url: str) -> list[dict[str, Any]]:
        """The chat messages of one request."""
        messages: list[dict[str, Any]] = []
        system = self.system_prompt(item)
        if system:
            messages.append({"role": "system", "content": system})
        picture: dict[str, Any] = {"url": image_url}
        if self.vlm.detail:
            picture["detail"] = self.vlm.detail
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": self.user_prompt(item)},
                    {"type": "image_url", "image_url": picture},
                ],
            }
        )
        return messages

    def request(self, item: VlmItem, image_url: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for one item."""
        body: dict[str, Any] = {
            "model": self.vlm.model,
            "messages": self.messages(item, image_url or item.image.data_url),
            self.vlm.token_field: self.vlm.max_tokens,
        }
        for name in ("temperature", "top_p", "seed"):
            value = getattr(self.vlm, name)
            if value is not None:
                body[name] = value
        return body

    def preview(self, items: Sequence[VlmItem]) -> list[PromptPreview]:
        """The requests of these items, the image described instead of its bytes."""
        out = []
        for item in items:
            shown = f"<{item.image.describe()}>"
            out.append(
                PromptPreview(
                    self.system_prompt(item),
                    self.user_prompt(item),
                    item.image.describe(),
                    self.request(item, shown),
                )
            )
        return out

    def estimate(self, item: VlmItem) -> float:
        """Tokens a request may use, for the tokens-per-minute limit: its prompt (the largest
        prompt the server has reported, or the text and image estimate) plus the most reply."""
        text = self.user_prompt(item) + self.system_prompt(item)
        guess = len(text) / 3 + image_tokens(item.image.width, item.image.height, self.vlm.detail)
        with self._state:
            seen = self._prompt_seen
        return max(guess, seen) + self.vlm.max_tokens

    # -- running ---------------------------------------------------------------------------------
    def _generate(self, items: list[VlmItem]) -> list[VlmReply]:
        """Every item's request in flight at once (up to ``concurrency``); their replies."""
        if self._pool is None:  # pragma: no cover - load() made it
            raise RuntimeError("the captioner is not loaded")
        futures = [self._pool.submit(self.request_one, item) for item in items]
        replies = [future.result() for future in futures]
        if self._fatal is not None:
            raise RunAbortedError(self._fatal)
        return replies

    def request_one(self, item: VlmItem) -> VlmReply:
        """One image's request, retried as the module says; never raises."""
        usage: dict[str, float] = {"requests": 0, "retries": 0}
        try:
            return self._caption_one(item, usage)
        except Exception as exc:  # a bug must not hang the batch: report it on the image
            log.debug("VLM request failed", exc_info=True)
            return VlmReply(error=self._safe(f"{type(exc).__name__}: {exc}"), usage=usage)

    def _safe(self, text: str) -> str:
        """A message without the key."""
        return redact(text, self._secret)

    def _caption_one(self, item: VlmItem, usage: dict[str, float]) -> VlmReply:
        import openai

        vlm = self.vlm
        body = self.request(item)
        started = time.monotonic()
        waited = 0.0
        attempt = 0
        last = "no request was sent"
        while True:
            if self._fatal is not None:
                return VlmReply(error=self._fatal, usage=usage)
            try:
                reservation, slept = self.limiter.acquire(self.estimate(item))
            except LimitError as exc:
                return VlmReply(error=str(exc), usage=usage)
            waited += slept
            remaining = started + vlm.timeout + waited - time.monotonic()
            if remaining <= 0:
                self.limiter.settle(reservation, 0)
                return VlmReply(error=self._timed_out(attempt, last), usage=usage)
            attempt += 1
            usage["requests"] += 1
            retry_after: float | None = None
            try:
                response = self._client.chat.completions.create(**body, timeout=remaining)
                return self._reply(response, reservation, usage, body)
            except openai.APIStatusError as exc:
                self.limiter.settle(reservation, 0)
                status = exc.status_code
                last = self._safe(f"HTTP {status}: {_status_message(exc)}")
                if status in (401, 403):
                    self._fatal = self._safe(
                        f"the endpoint {self.base_url} refused the key ({last}); check the key "
                        f"in {self.key_env or 'the key variable (none was named)'}"
                    )
                    return VlmReply(error=self._fatal, usage=usage)
                if status == 404:
                    self._fatal = self._safe(
                        f"the endpoint {self.base_url} does not know model {vlm.model!r} or the "
                        f"URL is not an OpenAI-compatible /v1 base ({last})"
                    )
                    return VlmReply(error=self._fatal, usage=usage)
                if status not in RETRY_STATUSES:
                    return VlmReply(error=last, usage=usage)
                retry_after = parse_retry_after(exc.response.headers)
                if status == 429 and retry_after is not None:
                    self.limiter.hold(time.monotonic() + retry_after)
            except openai.APITimeoutError:
                last = f"no reply within {vlm.timeout:g} s"
            except openai.APIConnectionError as exc:
                self.limiter.settle(reservation, 0)
                last = self._safe(f"connection failed: {exc}")
            except (MalformedReplyError, openai.APIResponseValidationError, ValueError) as exc:
                last = self._safe(f"malformed reply: {type(exc).__name__}: {exc}")
            if attempt > vlm.retries:
                more = f" after {attempt} requests" if attempt > 1 else ""
                return VlmReply(error=f"{last}{more}", usage=usage)
            delay = retry_delay(attempt, retry_after)
            remaining = started + vlm.timeout + waited - time.monotonic()
            if delay >= remaining:
                return VlmReply(error=self._timed_out(attempt, last), usage=usage)
            log.debug("retrying a VLM request in %.1f s (%s)", delay, last)
            usage["retries"] += 1
            time.sleep(delay)

    def _timed_out(self, attempts: int, last: str) -> str:
        """The reason of an image whose time ran out."""
        return (
            f"timed out: no caption within --vlm-timeout {self.vlm.timeout:g} s "
            f"({attempts} requests; last: {last})"
        )

    def _reply(
        self, response: Any, reservation: Any, usage: dict[str, float], body: dict[str, Any]
    ) -> VlmReply:
        """Read a 200 reply (``MalformedReplyError`` when it holds no message)."""
        try:
            choice = response.choices[0]
            message = choice.message
            text = message_text(message.content)
            finish = choice.finish_reason
            refusal = getattr(message, "refusal", None)
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            kind = type(exc).__name__
            raise MalformedReplyError(f"no choices[0].message in the reply ({kind})") from None
        counted = getattr(response, "usage", None)
        prompt_tokens = int(getattr(counted, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(counted, "completion_tokens", 0) or 0)
        self.limiter.settle(
            reservation, prompt_tokens + completion_tokens if counted else reservation.tokens
        )
        if prompt_tokens:
            with self._state:
                self._prompt_seen = max(self._prompt_seen, prompt_tokens)
        usage["prompt_tokens"] = prompt_tokens
        usage["completion_tokens"] = completion_tokens
        usage = priced(usage, self.vlm.price_input, self.vlm.price_output)
        prompt = self.user_prompt_of(body)
        text, refusal = self._safe(text or ""), self._safe(refusal) if refusal else refusal
        if refusal:
            return VlmReply(error=f'refused: "{refusal}"', usage=usage, prompt=prompt)
        if finish == "content_filter":
            return VlmReply(
                error="the endpoint's content filter stopped the reply", usage=usage, prompt=prompt
            )
        return VlmReply(text=text, usage=usage, finish=finish, prompt=prompt)

    @staticmethod
    def user_prompt_of(body: dict[str, Any]) -> str:
        """The user prompt text of a request body."""
        for message in body["messages"]:
            if message["role"] == "user":
                return next(p["text"] for p in message["content"] if p["type"] == "text")
        return ""  # pragma: no cover


def _status_message(exc: Any) -> str:
    """The server's error message, in one line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return " ".join(str(inner["message"]).split())[:300]
        if isinstance(inner, str):
            return " ".join(inner.split())[:300]
    return " ".join(str(getattr(exc, "message", exc)).split())[:300]
