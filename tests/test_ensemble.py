"""Ensembles: merge rules exact on known scores, the union of vocabularies, and a real batch
of two tiny models of different families."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_families as tf

from tagger.batch import BatchRun
from tagger.cache import get_tagger
from tagger.ensemble import Ensemble, merge_scores, merge_votes, union_vocabulary
from tagger.errors import OptionsError
from tagger.families.vocab import vocabulary_from_rows
from tagger.options import BatchOptions, TagOptions
from tagger.registry import local_spec
from tagger.tags import labels_from_rows


def test_merge_rules_exact() -> None:
    a = {"1girl": 0.9, "solo": 0.5}
    b = {"solo": 0.7, "hat": 0.2}
    assert merge_scores([a, b], "mean") == {"1girl": 0.9, "solo": 0.6, "hat": 0.2}
    assert merge_scores([a, b], "max") == {"1girl": 0.9, "solo": 0.7, "hat": 0.2}
    assert merge_votes([["1girl", "solo"], ["solo"], ["hat", "solo"]], 2) == {"solo": 3}
    with pytest.raises(OptionsError, match="merge mode 'median'"):
        merge_scores([a], "median")


def test_union_vocabulary_keeps_first_category_and_positions() -> None:
    wd = labels_from_rows([("general", 9), ("1girl", 0), ("miku", 4)])
    cl = vocabulary_from_rows(
        [
            ("general", "rating"),
            ("miku", "character"),
            ("vocaloid", "copyright"),
            ("1girl", "general"),
        ]
    )
    union, positions = union_vocabulary([wd, cl])
    assert union.names == ("general", "1girl", "miku", "vocaloid")
    assert union.rating == (0,)
    assert union.general == (1,)
    assert union.character == (2,)
    assert dict(union.other) == {"copyright": (3,)}
    assert [p.tolist() for p in positions] == [[0, 1, 2], [0, 2, 3, 1]]


class _Fixed:
    """A stand-in member with fixed scores (for exact merge checks)."""

    def __init__(self, key: str, labels, scores) -> None:
        from tagger.registry import ModelSpec

        self.spec = ModelSpec(key=key, family="wd14")
        self.labels = labels
        self.scores = np.asarray(scores, dtype=np.float32)
        self.input_size = 4
        self.active_providers = ["CPUExecutionProvider"]

    def load(self):
        return self

    def preprocess(self, image):
        return np.zeros((4, 4, 3), np.float32)

    def forward(self, batch):
        return np.repeat(self.scores[None], len(batch), axis=0)

    def postprocess(self, row, options):
        from tagger.tags import tag_scores

        return tag_scores(row.tolist(), self.labels, options)

    def unload(self):
        pass


def _members():
    a = _Fixed("a", labels_from_rows([("general", 9), ("1girl", 0), ("solo", 0)]), [0.5, 0.75, 0.5])
    b = _Fixed("b", labels_from_rows([("general", 9), ("solo", 0), ("hat", 0)]), [0.25, 0.25, 0.5])
    return a, b


@pytest.mark.parametrize(
    ("mode", "general"),
    [
        ("mean", {"1girl": 0.75, "hat": 0.5, "solo": 0.375}),
        ("max", {"1girl": 0.75, "solo": 0.5, "hat": 0.5}),
        ("votes", {"1girl": 0.75, "hat": 0.5, "solo": 0.375}),  # min_votes 1
    ],
)
def test_ensemble_postprocess_exact(mode: str, general: dict[str, float]) -> None:
    ensemble = Ensemble(_members(), mode, min_votes=1)
    rows = ensemble.forward(ensemble.collate([ensemble.preprocess(None)]))[0]
    result = ensemble.postprocess(rows, TagOptions(general_threshold=0.3))
    assert result.tags.general == general
    assert result.tags.rating == {"general": 0.375 if mode != "max" else 0.5}
    assert result.extra == {
        "models": {
            "a": {
                "rating": {"general": 0.5},
                "character": {},
                "general": {"1girl": 0.75, "solo": 0.5},
            },
            "b": {"rating": {"general": 0.25}, "character": {}, "general": {"hat": 0.5}},
        }
    }


def test_votes_need_a_majority_by_default() -> None:
    ensemble = Ensemble(_members(), "votes")
    assert ensemble.min_votes == 2
    rows = ensemble.forward(ensemble.collate([ensemble.preprocess(None)]))[0]
    assert ensemble.postprocess(rows, TagOptions(general_threshold=0.3)).tags.general == {}
    low = ensemble.postprocess(rows, TagOptions(general_threshold=0.2)).tags.general
    assert low == {"solo": 0.375}  # kept by both (0.5 > 0.2 and 0.25 > 0.2)


def test_ensemble_refuses_bad_setups() -> None:
    a, b = _members()
    with pytest.raises(OptionsError, match="at least two"):
        Ensemble([a])
    with pytest.raises(OptionsError, match="each model once"):
        Ensemble([a, a])
    with pytest.raises(OptionsError, match=r"outside 0\.\.2"):
        Ensemble([a, b], "votes", min_votes=3)


def test_two_families_in_one_run(tmp_path: Path, model_dir: Path) -> None:
    from tiny import make_image

    cl = tf.make_cl_tagger(tmp_path / "cl")
    images = tmp_path / "images"
    for i in range(3):
        make_image(images / f"{i}.png", (40, 30 + i), seed=i)
    members = [get_tagger(local_spec(model_dir), providers="cpu"),
               get_tagger(local_spec(cl), providers="cpu")]  # fmt: skip
    ensemble = Ensemble(members, "mean")
    summary = BatchRun([images], ensemble, TagOptions(general_threshold=0.2),
                       BatchOptions(write_json=True)).run()  # fmt: skip
    assert summary.written == 3
    record = json.loads((images / "0.json").read_text())
    assert set(record["models"]) == {model_dir.name, "cl"}
    # the merged general scores equal the mean of the members' raw scores, by hand
    from tagger.image import load_image

    image = load_image(images / "0.png")
    raw = [m.forward(m.preprocess(image)[None])[0] for m in members]
    wd_labels, cl_labels = members[0].labels, members[1].labels
    mean = {}
    for labels, scores in zip((wd_labels, cl_labels), raw, strict=True):
        for i in labels.general:
            mean.setdefault(labels.names[i], []).append(float(scores[i]))
    expected = {n: sum(v) / len(v) for n, v in mean.items() if sum(v) / len(v) > 0.2}
    assert record["general"] == pytest.approx(
        {n: round(s, 6) for n, s in expected.items()}, abs=1e-6
    )
