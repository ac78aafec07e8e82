"""The KeyBERT options: one model for the command line, the tab, the HTTP API and presets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tagger.options import StrictModel

KeywordMethod = Literal["cosine", "mmr", "maxsum"]
DEFAULT_KEYWORD_MODEL = "all-MiniLM-L6-v2"


class KeywordOptions(StrictModel):
    """How keyphrases are extracted from a caption (KeyBERT's ``extract_keywords`` options).

    Candidates are the caption's word n-grams (``ngram_min`` to ``ngram_max`` words, after
    ``stop_words`` are removed); each is scored by the cosine similarity of its embedding with
    the caption's. ``cosine`` keeps the ``top_n`` best; ``mmr`` (Maximal Marginal Relevance)
    trades relevance for ``diversity``; ``maxsum`` keeps the ``top_n`` least similar to each other
    among the ``nr_candidates`` best.
    """

    model: str = Field(
        DEFAULT_KEYWORD_MODEL,
        min_length=1,
        description="sentence-transformers model: a name, a models-folder name or a folder.",
    )
    ngram_min: int = Field(1, ge=1, le=6, description="Fewest words in a keyphrase.")
    ngram_max: int = Field(2, ge=1, le=6, description="Most words in a keyphrase.")
    stop_words: str | None = Field(
        "english", description="Stop words removed before n-grams are formed ('english' or none)."
    )
    top_n: int = Field(5, ge=1, le=100, description="Keyphrases kept per caption.")
    method: KeywordMethod = Field(
        "cosine", description="cosine (the best top_n), mmr (diverse) or maxsum (least alike)."
    )
    diversity: float = Field(0.5, ge=0.0, le=1.0, description="mmr: 0 relevance only, 1 diversity.")
    nr_candidates: int = Field(
        20, ge=1, le=1000, description="maxsum: best candidates the top_n are chosen among."
    )
    batch_size: int = Field(
        256, ge=1, le=100_000, description="Captions embedded together in one KeyBERT call."
    )
