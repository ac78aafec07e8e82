"""Token usage and cost: per image (the manifest's ``usage``) and summed (the summary's).

A usage record is a dict of numbers: ``prompt_tokens``, ``completion_tokens`` (as the server
reports them, or as the local model counted them), ``requests`` (HTTP requests sent, retries
included), ``retries``, and ``cost`` when prices were given (in the prices' currency, per
million tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "requests", "retries", "cost")


def cost(
    prompt_tokens: float, completion_tokens: float, price_in: float, price_out: float
) -> float:
    """The cost of some tokens at prices per million.

    >>> round(cost(1_000_000, 500_000, 0.15, 0.60), 6)
    0.45
    """
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000


def priced(
    usage: Mapping[str, float], price_in: float | None, price_out: float | None
) -> dict[str, float]:
    """``usage`` with its ``cost`` added when a price was given (a missing price counts 0).

    >>> priced({"prompt_tokens": 2000, "completion_tokens": 1000}, 1.0, 2.0)["cost"]
    0.004
    >>> "cost" in priced({"prompt_tokens": 1}, None, None)
    False
    """
    out = dict(usage)
    if price_in is not None or price_out is not None:
        spent = cost(
            out.get("prompt_tokens", 0),
            out.get("completion_tokens", 0),
            price_in or 0,
            price_out or 0,
        )
        out["cost"] = round(spent, 10)
    return out


def add_usage(total: dict[str, float], usage: Mapping[str, float] | None) -> dict[str, float]:
    """Add one usage record into ``total`` (in place; returns it).

    >>> add_usage({"prompt_tokens": 1}, {"prompt_tokens": 2, "requests": 1})
    {'prompt_tokens': 3, 'requests': 1}
    """
    for key, value in (usage or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
    return total


def sum_usage(records: Iterable[Mapping[str, float] | None]) -> dict[str, float]:
    """The sum of usage records."""
    total: dict[str, float] = {}
    for record in records:
        add_usage(total, record)
    return total


def usage_line(usage: Mapping[str, float]) -> str:
    """The summary's line about tokens and cost.

    >>> usage_line({"prompt_tokens": 12000, "completion_tokens": 3456, "requests": 10,
    ...             "retries": 2, "cost": 0.0123})
    'tokens: 12,000 prompt + 3,456 reply = 15,456 (10 requests, 2 retries); cost 0.0123'
    >>> usage_line({})
    ''
    """
    if not usage:
        return ""
    prompt = int(usage.get("prompt_tokens", 0))
    reply = int(usage.get("completion_tokens", 0))
    text = f"tokens: {prompt:,} prompt + {reply:,} reply = {prompt + reply:,}"
    extra = []
    if "requests" in usage:
        extra.append(f"{int(usage['requests']):,} requests")
    if usage.get("retries"):
        retries = int(usage["retries"])
        extra.append(f"{retries:,} {'retry' if retries == 1 else 'retries'}")
    if extra:
        text += f" ({', '.join(extra)})"
    if "cost" in usage:
        text += f"; cost {usage['cost']:.4f}"
    return text
