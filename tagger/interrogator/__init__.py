"""The CLIP Interrogator (pharmapsychotic's ``clip-interrogator``): a prompt from a caption and
the artists, mediums, movements, trending sites and flavors CLIP finds closest to the image.

It runs as a captioner of this project (registry key ``clip-interrogator``), configured by
``InterrogatorOptions``::

    from tagger.captioners import get_captioner
    from tagger.interrogator import InterrogatorOptions, interrogator_spec
    from tagger.registry import resolve_captioner

    entry = resolve_captioner("clip-interrogator")
    spec = interrogator_spec(entry, InterrogatorOptions(mode="fast"))
    prompts = get_captioner(spec).caption([pil_image])
    analysis = get_captioner(spec).analyze(pil_image)   # top 5 of each bank with similarities

Modules: ``options`` (the options model), ``banks`` (term lists and cached embeddings),
``rules`` (prompt layout, token limit, chunked ranking), ``textenc`` (CLIP's text encoder with
a shared prefix computed once), ``engine`` (the four modes and Analyze on CLIP features),
``captioner`` (the captioner interface). Nothing heavy is imported until a model loads.
"""

from __future__ import annotations

from typing import Any

from tagger.interrogator.options import InterrogatorOptions

__all__ = ["InterrogatorOptions", "interrogator_spec"]


def interrogator_spec(*args: Any, **kwargs: Any) -> Any:
    """``tagger.interrogator.captioner.interrogator_spec`` (imported when called)."""
    from tagger.interrogator.captioner import interrogator_spec as build

    return build(*args, **kwargs)
