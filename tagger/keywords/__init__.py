"""Keyphrases from captions as tags: KeyBERT over a sentence-transformers model, with the CLIP
relevance filter on top (the BLIP -> KeyBERT -> CLIP pipeline).

Public interface (keybert, sentence-transformers and torch are imported only when a model
loads)::

    from tagger.keywords import KeywordExtractor, KeywordOptions

    extractor = KeywordExtractor(KeywordOptions(top_n=5))
    extractor.extract(["a dog runs through the grass"])   # [[("dog runs", 0.71), ...]]

``tagger.keywords.pipeline.KeywordPipeline`` is the batch-engine model that reads or writes the
captions, extracts the keyphrases and filters them with CLIP (``tagger keywords``,
``tagger tag --keywords``, the tab and the HTTP API).
"""

from __future__ import annotations

from tagger.keywords.extract import KeywordExtractor
from tagger.keywords.options import KeywordOptions

__all__ = ["KeywordExtractor", "KeywordOptions"]
