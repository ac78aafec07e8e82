"""The options of vision-language (VLM) captions, and the endpoints known by name.

``VlmOptions`` is the one place the VLM options are defined: the command line's ``--vlm-*``
flags, the tab's VLM panel and the HTTP API's ``vlm`` field derive from it. It never holds an
API key: ``key_env`` names the environment variable the key is read from, in the process that
sends the requests, when they are sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from tagger.errors import OptionsError
from tagger.options import StrictModel

ImageFormat = Literal["jpeg", "png", "webp"]
ImageDetail = Literal["auto", "low", "high"]
ReplyKind = Literal["prose", "tags"]
Dtype = Literal["auto", "float16", "bfloat16", "float32"]
TokenField = Literal["max_tokens", "max_completion_tokens"]


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint known by name: its base URL and the variable its key is
    usually kept in (empty: a local server that needs no key)."""

    name: str
    url: str
    key_env: str
    description: str


#: ``--vlm-url NAME`` shortcuts. The local servers' ports are their defaults.
ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "OpenAI"),
        Endpoint(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "GEMINI_API_KEY",
            "Google Gemini (OpenAI-compatible endpoint)",
        ),
        Endpoint("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "OpenRouter"),
        Endpoint("ollama", "http://localhost:11434/v1", "", "Ollama on this machine"),
        Endpoint("vllm", "http://localhost:8000/v1", "", "vLLM's OpenAI server on this machine"),
        Endpoint("lmstudio", "http://localhost:1234/v1", "", "LM Studio on this machine"),
        Endpoint("llamacpp", "http://localhost:8080/v1", "", "llama.cpp server on this machine"),
    )
}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_endpoint(url: str | None, key_env: str | None) -> tuple[str, str]:
    """The base URL and key variable for ``--vlm-url`` (a URL or an ``ENDPOINTS`` name) and
    ``--vlm-key-env`` (empty: the named endpoint's usual variable, or no key).

    >>> resolve_endpoint("openai", None)
    ('https://api.openai.com/v1', 'OPENAI_API_KEY')
    >>> resolve_endpoint("http://127.0.0.1:9000/v1/", "MY_KEY")
    ('http://127.0.0.1:9000/v1', 'MY_KEY')
    >>> resolve_endpoint("ollama", None)
    ('http://localhost:11434/v1', '')
    """
    text = (url or "").strip()
    if not text:
        raise OptionsError(
            "no VLM endpoint: pass --vlm-url with a base URL (http://host:port/v1) or one of "
            f"{', '.join(ENDPOINTS)}"
        )
    known = ENDPOINTS.get(text.lower())
    if known is not None:
        base, default_env = known.url, known.key_env
    elif text.startswith(("http://", "https://")):
        base, default_env = text.rstrip("/"), ""
    else:
        raise OptionsError(
            f"VLM endpoint {text!r} is neither a URL (http://host:port/v1) nor one of "
            f"{', '.join(ENDPOINTS)}"
        )
    env = (key_env or "").strip() or default_env
    if env and not _ENV_NAME.fullmatch(env):  # the value is not shown: it may be a key
        raise OptionsError(
            "--vlm-key-env is not an environment variable name: name the variable that holds "
            "the key (e.g. OPENAI_API_KEY), never the key itself"
        )
    return base, env


class VlmOptions(StrictModel):
    """How a vision-language model is asked for a caption and how its requests are paced.

    Endpoint fields (``url``, ``model``, ``key_env``) apply to OpenAI-compatible endpoints;
    ``task`` and ``dtype`` to local models. Rate limits and retries apply to endpoints.
    """

    url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (http://host:port/v1) or a known endpoint: "
        + ", ".join(ENDPOINTS)
        + ".",
    )
    model: str | None = Field(None, description="The model's name at the endpoint.")
    key_env: str | None = Field(
        None,
        description="Environment variable holding the API key. Default: the known endpoint's "
        "usual variable; local servers need none. The key itself is never stored.",
    )
    template: str = Field(
        "dense",
        description="Built-in prompt template: dense (tag-guided description), sd-prompt, "
        "booru-tags.",
    )
    prompt: str | None = Field(
        None,
        description="Your own prompt template (overrides template); fields in braces: {tags}, "
        "{general}, {character}, {copyright}, {rating}, {caption}, {name}, {folder}, {trigger}, "
        "{existing}.",
    )
    system_prompt: str | None = Field(
        None, description="System prompt. Default: the template's; '' for none."
    )
    reply: ReplyKind | None = Field(
        None,
        description="How the reply is cleaned: prose (one paragraph) or tags (a comma list). "
        "Default: the template's (prose for your own).",
    )
    trigger: str = Field("", description="Trigger word for the {trigger} field.")
    existing_extension: str | None = Field(
        None,
        description="Read {existing} from <stem> + this extension. Default: the caption file "
        "the run writes.",
    )
    task: str | None = Field(
        None,
        description="Florence-2 task token: <MORE_DETAILED_CAPTION> when none is given; PromptGen "
        "also takes <GENERATE_TAGS>, <MIXED_CAPTION>, ... Florence-2 takes no free prompt.",
    )
    max_tokens: int = Field(400, ge=1, le=32768, description="Most tokens in a reply.")
    token_field: TokenField = Field(
        "max_tokens",
        description="Request field for max_tokens: max_tokens (most servers) or "
        "max_completion_tokens (OpenAI's reasoning models).",
    )
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Sampling temperature. Default: the model's (local models: greedy).",
    )
    top_p: float | None = Field(None, ge=0.01, le=1.0, description="Nucleus sampling mass.")
    seed: int | None = Field(None, description="Seed, where the backend supports one.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    rpm: float = Field(0.0, ge=0.0, description="Most requests per minute (0: no limit).")
    tpm: float = Field(
        0.0, ge=0.0, description="Most tokens (prompt + reply) per minute (0: no limit)."
    )
    retries: int = Field(
        6, ge=0, le=100, description="Retries of a request on 429, 5xx, timeouts, lost connections."
    )
    timeout: float = Field(
        180.0,
        ge=0.1,
        description="Seconds one image may take: its requests and the waits between retries "
        "(waiting for the rate limits not counted).",
    )
    image_side: int = Field(
        1024, ge=0, le=8192, description="Longest side of the image sent (0: as it is)."
    )
    image_format: ImageFormat = Field("jpeg", description="Format of the image sent.")
    detail: ImageDetail | None = Field(
        None, description="OpenAI image detail (auto, low, high); not sent by default."
    )
    price_input: float | None = Field(
        None, ge=0.0, description="Price per million prompt tokens, for the cost line."
    )
    price_output: float | None = Field(
        None, ge=0.0, description="Price per million reply tokens, for the cost line."
    )
    check_language: bool = Field(
        True,
        description="Fail replies written mostly outside the Latin script (a model answering in "
        "the language of text in the image).",
    )
    dtype: Dtype = Field(
        "auto",
        description="Local models' weights on CUDA: auto (bfloat16 where supported, else "
        "float16), float16, bfloat16, float32. The CPU always uses float32.",
    )


def parse_endpoint(text: str) -> Endpoint:
    """A server's endpoint from its owner's spelling: a known name (``openai``), or
    ``NAME=URL`` / ``NAME=URL,KEY_VARIABLE``.

    >>> parse_endpoint("openai").key_env
    'OPENAI_API_KEY'
    >>> parse_endpoint("box=http://gpu:8000/v1,BOX_KEY")
    Endpoint(name='box', url='http://gpu:8000/v1', key_env='BOX_KEY', description='box')
    """
    spec = text.strip()
    if "=" not in spec:
        known = ENDPOINTS.get(spec.lower())
        if known is None:
            raise OptionsError(
                f"VLM endpoint {spec!r} is not one of {', '.join(ENDPOINTS)}; write "
                "NAME=URL or NAME=URL,KEY_VARIABLE"
            )
        return known
    name, _, rest = spec.partition("=")
    url, _, env = rest.partition(",")
    name = name.strip()
    if not _ENV_NAME.fullmatch(name.replace("-", "_")):
        raise OptionsError(f"VLM endpoint name {name!r} must be letters, digits, '-' or '_'")
    base, key_env = resolve_endpoint(url.strip(), env.strip() or None)
    return Endpoint(name, base, key_env, name)


def parse_endpoints(specs: str | list[str] | tuple[str, ...]) -> dict[str, Endpoint]:
    """Endpoints by name from specs (a list, or one text of specs separated by ';').

    >>> sorted(parse_endpoints("openai; local=http://127.0.0.1:8080/v1"))
    ['local', 'openai']
    """
    items = specs.split(";") if isinstance(specs, str) else list(specs)
    table: dict[str, Endpoint] = {}
    for item in items:
        if item.strip():
            endpoint = parse_endpoint(item)
            table[endpoint.name] = endpoint
    return table
