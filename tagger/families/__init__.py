"""Tagger families beyond SmilingWolf's WD14: PixAI, cl_tagger, Camie, Z3D-E621, IdolSankaku,
ML-Danbooru and any ONNX classifier with a declared config.

Each family is a declarative description (``tagger.families.spec``): its files, its
preprocessing (``tagger.families.preprocess``), its vocabulary format and categories
(``tagger.families.vocab``), its output and its default thresholds. ``FamilyTagger``
(``tagger.families.model``) runs any of them with the same preprocess -> forward ->
postprocess steps as ``tagger.wd14.WD14Tagger``, so the batch engine, the command line, the
tab and the API use them unchanged. Nothing heavy is imported here.
"""

from __future__ import annotations

#: Every family that tags (the registry's ``family`` of a tagger model).
TAGGER_FAMILIES: tuple[str, ...] = (
    "wd14",
    "pixai",
    "cl_tagger",
    "camie",
    "z3d",
    "idolsankaku",
    "mldanbooru",
    "onnx",
)


def is_tagger_family(family: str) -> bool:
    """True when models of ``family`` tag images (not captioners).

    >>> is_tagger_family("camie"), is_tagger_family("blip")
    (True, False)
    """
    return family in TAGGER_FAMILIES
