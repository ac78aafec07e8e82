"""The HTTP API on tiny models: the older extensions' requests replayed, the full routes, every
kind of bad input, mounting, locking and parallel requests."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from apiutil import (
    b64,
    client,
    direct_probs,
    expected_picobyte_tags,
    expected_toriato,
    fake_hub_cache,
    make_app,
    png_header_only,
    sample_image,
)
from tiny import CHARACTER, GENERAL, RATINGS

from tagger.image import load_image
from tagger.options import TagOptions
from tagger.registry import local_spec, registry_lookup
from tagger.tags import caption_tags
from tagger.wd14 import WD14Tagger

URL = "/tagger/v1"


@pytest.fixture
def app(model_dir: Path, fixed_model_dir: Path) -> Any:
    return make_app(models_dirs=[model_dir.parent, fixed_model_dir.parent])


@pytest.fixture
def api(app: Any) -> Any:
    return client(app)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return sample_image(tmp_path)


def _no_traceback(response: Any) -> None:
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


# -- toriato's API ---------------------------------------------------------------------------


def test_toriato_interrogate_replay(api: Any, model_dir: Path, image: Path) -> None:
    probs = direct_probs(model_dir, image)
    for threshold in (0.35, 0.9, 0.0):
        body = {"image": b64(image), "model": "tiny-v3", "threshold": threshold}
        response = api.post(f"{URL}/interrogate", json=body)
        assert response.status_code == 200
        assert list(response.json()) == ["caption"]
        caption = response.json()["caption"]
        assert list(caption.items()) == expected_toriato(probs, threshold)
    # The ratings come first, all four, whatever their scores.
    assert list(caption)[:4] == RATINGS


def test_toriato_default_threshold_is_035_and_inclusive(
    api: Any, model_dir: Path, image: Path
) -> None:
    probs = direct_probs(model_dir, image)
    response = api.post(f"{URL}/interrogate", json={"image": b64(image), "model": "tiny-v3"})
    assert list(response.json()["caption"].items()) == expected_toriato(probs, 0.35)
    # A tag scoring exactly the threshold is kept (toriato compared with >=).
    name, score = sorted((n, probs[n]) for n in GENERAL)[5]
    body = {"image": b64(image), "model": "tiny-v3", "threshold": score}
    caption = api.post(f"{URL}/interrogate", json=body).json()["caption"]
    assert caption[name] == score


def test_toriato_old_model_keys_still_work(
    model_dir: Path, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sending toriato's key gets the model it named (from the Hub cache, offline)."""
    cache = fake_hub_cache(tmp_path / "hf", "SmilingWolf/wd-v1-4-vit-tagger-v2", "v2.0", model_dir)
    api = client(make_app(models_dirs=[tmp_path / "none"], hf_cache=cache))
    probs = direct_probs(model_dir, image)
    for key in ("wd14-vit-v2", "wd14-vit-v2-git", "wd14-vit.v2", "wd-v1-4-vit-tagger-v2"):
        body = {"image": b64(image), "model": key, "threshold": 0.35}
        response = api.post(f"{URL}/interrogate", json=body)
        assert response.status_code == 200, response.text
        assert list(response.json()["caption"].items()) == expected_toriato(probs, 0.35)


@pytest.mark.parametrize(
    ("old_key", "key"),
    [
        # toriato
        ("wd14-vit-v2", "wd-v1-4-vit-tagger-v2"),
        ("wd14-convnext-v2", "wd-v1-4-convnext-tagger-v2"),
        ("wd14-swinv2-v2", "wd-v1-4-swinv2-tagger-v2"),
        ("wd14-convnextv2-v2", "wd-v1-4-convnextv2-tagger-v2"),
        ("wd14-vit-v2-git", "wd-v1-4-vit-tagger-v2"),
        ("wd14-convnext-v2-git", "wd-v1-4-convnext-tagger-v2"),
        ("wd14-swinv2-v2-git", "wd-v1-4-swinv2-tagger-v2"),
        ("wd14-convnextv2-v2-git", "wd-v1-4-convnextv2-tagger-v2"),
        ("wd14-vit", "wd-v1-4-vit-tagger"),
        ("wd14-convnext", "wd-v1-4-convnext-tagger"),
        # picobyte
        ("wd14-vit.v1", "wd-v1-4-vit-tagger"),
        ("wd14-vit.v2", "wd-v1-4-vit-tagger-v2"),
        ("wd14-convnext.v1", "wd-v1-4-convnext-tagger"),
        ("wd14-convnext.v2", "wd-v1-4-convnext-tagger-v2"),
        ("wd14-convnextv2.v1", "wd-v1-4-convnextv2-tagger-v2"),
        ("wd14-swinv2-v1", "wd-v1-4-swinv2-tagger-v2"),
        ("wd-v1-4-moat-tagger.v2", "wd-v1-4-moat-tagger-v2"),
        # forks with v3 models
        ("wd-v1-4-vit-tagger.v3", "wd-vit-tagger-v3"),
        ("wd-v1-4-convnext-tagger.v3", "wd-convnext-tagger-v3"),
        ("wd-v1-4-swinv2-tagger.v3", "wd-swinv2-tagger-v3"),
        ("wd14-vit-v3-git", "wd-vit-tagger-v3"),
        ("wd-ViT-Large-v3", "wd-vit-large-tagger-v3"),
    ],
)
def test_old_extension_keys_are_aliases(old_key: str, key: str) -> None:
    spec = registry_lookup(old_key)
    assert spec is not None
    assert spec.key == key


def test_interrogators_lists_local_folders_and_registry(api: Any) -> None:
    response = api.get(f"{URL}/interrogators")
    assert response.status_code == 200
    models = response.json()["models"]
    assert list(response.json()) == ["models"]
    assert models[:2] == ["tiny-v3", "tiny-v2"]
    assert "wd-vit-tagger-v3" in models
    assert "wd-v1-4-moat-tagger-v2" in models


# -- picobyte's API ----------------------------------------------------------------------------


def test_picobyte_single_replay(api: Any, model_dir: Path, image: Path) -> None:
    probs = direct_probs(model_dir, image)
    body = {"image": b64(image), "model": "tiny-v3", "queue": "", "name_in_queue": ""}
    caption = api.post(f"{URL}/interrogate", json=body).json()["caption"]
    assert list(caption) == ["tag", "rating"]
    assert caption["rating"] == {name: probs[name] for name in RATINGS}
    # picobyte's default threshold is 0.0: every tag scoring above zero.
    assert list(caption["tag"].items()) == list(expected_picobyte_tags(probs, 0.0).items())
    # Strictly above the threshold (picobyte compared with >).
    name, score = sorted((n, probs[n]) for n in GENERAL)[5]
    body = {**body, "threshold": score}
    caption = api.post(f"{URL}/interrogate", json=body).json()["caption"]
    assert name not in caption["tag"]
    assert caption["tag"] == expected_picobyte_tags(probs, score)


def test_picobyte_queue_replay(api: Any, model_dir: Path, tmp_path: Path) -> None:
    images = [sample_image(tmp_path, seed=s) for s in (1, 2, 3)]
    probs = [direct_probs(model_dir, path) for path in images]

    def add(path: Path, name: str) -> Any:
        body = {
            "image": b64(path),
            "model": "tiny-v3",
            "threshold": 0.5,
            "queue": "q1",
            "name_in_queue": name,
        }
        response = api.post(f"{URL}/interrogate", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    assert add(images[0], "a") == {"caption": {"tiny-v3": {"q1": 1.0}}}
    assert add(images[1], "a") == {"caption": {"tiny-v3": {"q1": 2.0}}}  # stored as a#0
    assert add(images[2], "<sha256>") == {"caption": {"tiny-v3": {"q1": 3.0}}}
    assert add(images[2], "<sha256>") == {"caption": {"tiny-v3": {"q1": 3.0}}}  # a duplicate
    done = api.post(f"{URL}/interrogate", json={"model": "tiny-v3", "queue": "q1"}).json()
    digest = hashlib.sha256(images[2].read_bytes()).hexdigest()
    assert list(done["caption"]) == ["a", "a#0", digest]

    def entry(scores: dict[str, float]) -> dict[str, float]:
        tags = expected_picobyte_tags(scores, 0.5)
        return {**tags, **{f"rating:{name}": scores[name] for name in RATINGS}}

    assert done["caption"]["a"] == entry(probs[0])
    assert done["caption"]["a#0"] == entry(probs[1])
    assert done["caption"][digest] == entry(probs[2])
    # Read once: the queue is gone.
    again = api.post(f"{URL}/interrogate", json={"model": "tiny-v3", "queue": "q1"})
    assert again.json() == {"caption": {}}


def test_picobyte_queue_without_name_gets_a_random_one(api: Any, image: Path) -> None:
    body = {"image": b64(image), "model": "tiny-v3", "name_in_queue": "x"}
    reply = api.post(f"{URL}/interrogate", json=body).json()["caption"]
    (queue, count), *_ = reply["tiny-v3"].items()
    assert len(queue) == 8
    assert queue.isalnum()
    assert queue.upper() == queue
    assert count == 1.0
    done = api.post(f"{URL}/interrogate", json={"model": "tiny-v3", "queue": queue}).json()
    assert list(done["caption"]) == ["x"]


def test_picobyte_queues_are_independent(api: Any, image: Path, tmp_path: Path) -> None:
    other = sample_image(tmp_path, seed=9)
    for queue, path in (("A", image), ("B", other)):
        body = {"image": b64(path), "model": "tiny-v3", "queue": queue, "name_in_queue": "n"}
        assert api.post(f"{URL}/interrogate", json=body).status_code == 200
    a = api.post(f"{URL}/interrogate", json={"model": "tiny-v3", "queue": "A"}).json()
    b = api.post(f"{URL}/interrogate", json={"model": "tiny-v3", "queue": "B"}).json()
    assert list(a["caption"]) == ["n"]
    assert list(b["caption"]) == ["n"]
    assert a["caption"]["n"] != b["caption"]["n"]


def test_unload_interrogators_replay(api: Any, image: Path) -> None:
    api.post(f"{URL}/interrogate", json={"image": b64(image), "model": "tiny-v3"})
    response = api.post(f"{URL}/unload-interrogators")
    assert response.status_code == 200
    assert response.json() == "Successfully unload 1 model(s)"
    assert api.post(f"{URL}/unload-interrogators").json() == "Successfully unload 0 model(s)"


# -- full routes ---------------------------------------------------------------------------------


def test_tag_route_matches_the_model_run_directly(api: Any, model_dir: Path, image: Path) -> None:
    options = TagOptions(
        general_threshold=0.5,
        character_threshold=0.6,
        rating_tag="first",
        additional_tags=["trigger"],
        exclude_tags=["blue eyes"],
    )
    tagger = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    expected = tagger.tag_batch([load_image(image.read_bytes())], options)[0]
    body = {
        "image": b64(image),
        "model": "tiny-v3",
        "options": {
            "general_threshold": 0.5,
            "character_threshold": 0.6,
            "rating_tag": "first",
            "additional_tags": ["trigger"],
            "exclude_tags": ["blue eyes"],
        },
    }
    response = api.post(f"{URL}/tag", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["model"] == "tiny-v3"
    assert reply["rating"] == expected.rating
    assert list(reply["character"].items()) == list(expected.character.items())
    assert list(reply["general"].items()) == list(expected.general.items())
    assert reply["tags"] == caption_tags(expected, options)
    assert reply["text"] == ", ".join(reply["tags"])
    assert reply["tags"][1] == "trigger"
    assert "blue_eyes" not in reply["general"]


def test_tag_route_defaults(api: Any, model_dir: Path, image: Path) -> None:
    probs = direct_probs(model_dir, image)
    reply = api.post(f"{URL}/tag", json={"image": b64(image), "model": "tiny-v3"}).json()
    assert reply["general"] == {n: probs[n] for n in GENERAL if probs[n] > 0.35} | {}
    assert set(reply["character"]) == {n for n in CHARACTER if probs[n] > 0.85}


def test_models_route_metadata(api: Any, image: Path) -> None:
    models = {m["key"]: m for m in api.get(f"{URL}/models").json()["models"]}
    tiny = models["tiny-v3"]
    assert (tiny["source"], tiny["family"], tiny["downloaded"], tiny["loaded"]) == (
        "local",
        "wd14",
        True,
        False,
    )
    assert tiny["input_size"] is None  # unknown until the model is read
    hub = models["wd-v1-4-vit-tagger-v2"]
    assert hub["source"] == "hub"
    assert hub["repo_id"] == "SmilingWolf/wd-v1-4-vit-tagger-v2"
    assert hub["revision"] == "v2.0"
    assert hub["downloaded"] is False
    assert hub["input_size"] == 448
    assert "wd14-vit-v2" in hub["aliases"]
    assert hub["batch_dynamic"] is False
    api.post(f"{URL}/tag", json={"image": b64(image), "model": "tiny-v2"})
    models = {m["key"]: m for m in api.get(f"{URL}/models").json()["models"]}
    assert (models["tiny-v2"]["loaded"], models["tiny-v2"]["input_size"]) == (True, 48)
    assert api.post(f"{URL}/unload").json() == {"unloaded": 1}
    models = {m["key"]: m for m in api.get(f"{URL}/models").json()["models"]}
    assert models["tiny-v2"]["loaded"] is False


def test_data_urls_and_wrapped_base64_give_the_same_result(api: Any, image: Path) -> None:
    plain = b64(image)
    variants = [
        "data:image/png;base64," + plain,
        "\n".join(plain[i : i + 76] for i in range(0, len(plain), 76)),
        plain.rstrip("="),
        base64.urlsafe_b64encode(image.read_bytes()).decode(),
    ]
    first = api.post(f"{URL}/interrogate", json={"image": plain, "model": "tiny-v3"}).json()
    for text in variants:
        response = api.post(f"{URL}/interrogate", json={"image": text, "model": "tiny-v3"})
        assert response.status_code == 200, response.text
        assert response.json() == first


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_text", "status", "words"),
    [
        ("not base64!", 422, "not valid base64"),
        ("QUJD#", 422, "not valid base64"),
        ("QUJDR", 422, "cut off"),
        ("", 422, "missing"),
        ("   ", 422, "missing"),
        ("data:image/png,abcd", 422, "without ';base64'"),
        ("https://example.com/a.png", 422, "URL"),
        (base64.b64encode(b"hello, not an image").decode(), 422, "not an image"),
        (base64.b64encode(png_header_only(20_000, 10_000)).decode(), 413, "pixels"),
    ],
)
def test_bad_images(api: Any, image_text: str, status: int, words: str) -> None:
    for route in ("interrogate", "tag"):
        response = api.post(f"{URL}/{route}", json={"image": image_text, "model": "tiny-v3"})
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]
        _no_traceback(response)


def test_bad_image_in_picobyte_queue_leaves_the_queue_clean(api: Any, image: Path) -> None:
    body = {"model": "tiny-v3", "queue": "q", "name_in_queue": "bad"}
    bad = api.post(f"{URL}/interrogate", json={**body, "image": b64(Path(__file__))})
    assert bad.status_code == 422
    good = api.post(f"{URL}/interrogate", json={**body, "image": b64(image)})
    assert good.json() == {"caption": {"tiny-v3": {"q": 1.0}}}
    done = api.post(f"{URL}/interrogate", json={"model": "tiny-v3", "queue": "q"}).json()
    assert list(done["caption"]) == ["bad"]


def test_image_over_the_pixel_limit_is_413_naming_the_limit_and_the_flag(
    model_dir: Path, image: Path
) -> None:
    api = client(make_app(models_dirs=[model_dir.parent], max_pixels=40 * 30 - 1))
    for route in ("interrogate", "tag"):
        response = api.post(f"{URL}/{route}", json={"image": b64(image), "model": "tiny-v3"})
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert "40\N{MULTIPLICATION SIGN}30 = 1,200 pixels" in detail
        assert "over this server's limit of 1,199 pixels" in detail
        assert "tagger serve --max-pixels" in detail
    exact = client(make_app(models_dirs=[model_dir.parent], max_pixels=40 * 30))
    response = exact.post(f"{URL}/tag", json={"image": b64(image), "model": "tiny-v3"})
    assert response.status_code == 200


def test_image_file_over_the_size_limit_is_413(model_dir: Path, image: Path) -> None:
    """The decoded file limit is three quarters of the body limit (base64's overhead)."""
    size = len(image.read_bytes())
    body = {"image": b64(image), "model": "tiny-v3"}
    tight = client(make_app(models_dirs=[model_dir.parent], max_body_bytes=(size - 1) * 4 // 3))
    response = tight.post(f"{URL}/interrogate", json=body)
    assert response.status_code == 413
    assert "--max-body-bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    "model",
    ["nope", "wd14-nope", "../tiny-v3", "/etc", "C:tiny", " ", "~", "~root", "tiny-v3/", "a\x00b"],
)
def test_unknown_model_is_404_listing_valid_keys(api: Any, image: Path, model: str) -> None:
    for route in ("interrogate", "tag"):
        response = api.post(f"{URL}/{route}", json={"image": b64(image), "model": model})
        assert response.status_code == 404, response.text
        detail = response.json()["detail"]
        assert "tiny-v3" in detail
        assert "wd-vit-tagger-v3" in detail


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": "QUJD"}, "model"),
        ({"model": "tiny-v3", "image": "QUJD", "threshold": "high"}, "threshold"),
        ({"model": "tiny-v3", "image": "QUJD", "threshold": 1.5}, "threshold"),
        ({"model": "tiny-v3", "image": "QUJD", "threshold": -0.1}, "threshold"),
        ({"model": "tiny-v3", "image": 12}, "image"),
        ({"model": ["tiny-v3"], "image": "QUJD"}, "model"),
        ({"model": "tiny-v3", "image": "QUJD", "queue": 3}, "queue"),
    ],
)
def test_invalid_interrogate_fields_are_422(api: Any, body: dict[str, Any], field: str) -> None:
    response = api.post(f"{URL}/interrogate", json=body)
    assert response.status_code == 422, response.text
    reply = response.json()
    assert field in reply["detail"]
    assert any(error["loc"][-1] == field for error in reply["errors"])
    assert "QUJD" not in response.text  # the input is not echoed back


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"general_threshold": 2}, "general_threshold"),
        ({"max_tags": -1}, "max_tags"),
        ({"order": "random"}, "order"),
        ({"separator": ""}, "separator"),
        ({"no_such_option": True}, "no_such_option"),
        ({"exclude_tags": "a,b"}, "exclude_tags"),
    ],
)
def test_invalid_tag_options_are_422(
    api: Any, image: Path, options: dict[str, Any], field: str
) -> None:
    body = {"image": b64(image), "model": "tiny-v3", "options": options}
    response = api.post(f"{URL}/tag", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"image": "QUJD", "model": ', {"content-type": "application/json"}),
        (b"{bad json}", {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b"image=QUJD&model=tiny", {"content-type": "application/x-www-form-urlencoded"}),
        (b"\xff\xfe\x00", {"content-type": "application/json"}),
    ],
)
def test_malformed_bodies_are_422(api: Any, content: bytes, headers: dict[str, str]) -> None:
    for route in ("interrogate", "tag"):
        response = api.post(f"{URL}/{route}", content=content, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("invalid request")
        _no_traceback(response)


def test_missing_model_files_offline_is_503_with_the_core_message(api: Any, image: Path) -> None:
    response = api.post(f"{URL}/interrogate", json={"image": b64(image), "model": "wd14-vit-v2"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "wd-v1-4-vit-tagger-v2" in detail
    assert "HF_HUB_OFFLINE" in detail
    assert "model.onnx" in detail


def test_missing_model_files_offline_name_the_servers_folder(
    api: Any, image: Path, model_dir: Path
) -> None:
    response = api.post(f"{URL}/tag", json={"image": b64(image), "model": "wd-vit-tagger-v3"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "model.onnx and selected_tags.csv" in detail
    folder = model_dir.parent / "wd-vit-tagger-v3"
    assert f"On this server, a folder {str(folder)!r} holding them is used" in detail


@pytest.mark.parametrize("endpoint", ["closed", "black hole"])
def test_an_unreachable_hub_is_503_at_once_on_every_route(
    endpoint: str, model_dir: Path, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HUB_OFFLINE unset and the Hub not answering: 503 with the files and the folder,
    without huggingface_hub ever being asked to download (so none of its retries)."""
    import contextlib

    import huggingface_hub
    from endpoints import black_hole_endpoint, closed_endpoint

    import tagger.hub

    def no_download(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TAGGER_HUB_TIMEOUT", "0.5")
    tagger.hub.forget_hub_probes()
    allowed = tmp_path / "allowed"
    sample_image(allowed)
    api = client(
        make_app(models_dirs=[model_dir.parent], allowed_dirs=[allowed], hf_cache=tmp_path / "hf")
    )
    hole = black_hole_endpoint() if endpoint == "black hole" else contextlib.nullcontext()
    with hole as url:
        monkeypatch.setenv("HF_ENDPOINT", url or closed_endpoint())
        requests = [
            ("interrogate", {"image": b64(image), "model": "wd14-vit-v2"}),
            ("tag", {"image": b64(image), "model": "wd-vit-tagger-v3"}),
            ("jobs", {"inputs": [str(allowed)], "model": "wd-convnext-tagger-v3"}),
        ]
        for route, body in requests:
            response = api.post(f"{URL}/{route}", json=body)
            assert response.status_code == 503, (route, response.text)
            detail = response.json()["detail"]
            assert "cannot be reached" in detail
            assert "model.onnx and selected_tags.csv" in detail
            assert "On this server, a folder" in detail
    assert api.get(f"{URL}/jobs").json() == {"jobs": []}
    tagger.hub.forget_hub_probes()


def test_unexpected_errors_are_500_without_internals(
    api: Any, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tagger.api.service import TaggerService

    def broken(self: Any, spec: Any, image: Any) -> Any:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(TaggerService, "scores", broken)
    response = api.post(f"{URL}/interrogate", json={"image": b64(image), "model": "tiny-v3"})
    assert response.status_code == 500
    assert "secret" not in response.text
    assert "internal error" in response.json()["detail"]
    _no_traceback(response)


# -- mounting ----------------------------------------------------------------------------------


def test_mount_twice_registers_routes_once(model_dir: Path) -> None:
    from tagger.api import mount

    app = make_app(models_dirs=[model_dir.parent])
    before = _operations(app)
    mount(app, models_dirs=[model_dir.parent])
    assert _operations(app) == before
    assert before.count(("post", f"{URL}/interrogate")) == 1
    assert (
        len(before) == 15 + 7 + 2 + 4 + 6
    )  # dataset, keywords and sbg, VLM, CLIP Interrogator and scorers
    schema = client(app).get("/openapi.json").json()
    assert schema["paths"][f"{URL}/interrogate"]["post"]["responses"]["404"]


def _operations(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's OpenAPI schema."""
    app.openapi_schema = None
    paths = app.openapi()["paths"]
    return sorted((method, path) for path, item in paths.items() for method in item)


def test_dependencies_guard_every_route(model_dir: Path, image: Path) -> None:
    from fastapi import Depends, Header, HTTPException

    def auth(authorization: str = Header("")) -> None:
        if authorization != "Basic dXNlcjpwdw==":
            raise HTTPException(401, "Incorrect username or password")

    for dependency in (Depends(auth), auth):
        app = make_app(models_dirs=[model_dir.parent], dependencies=[dependency])
        api = client(app)
        operations = _operations(app)
        assert (
            len(operations) == 15 + 7 + 2 + 4 + 6
        )  # dataset, keywords and sbg, VLM, CLIP Interrogator and scorers
        for method, route in operations:
            path = route.replace("{job_id}", "x")
            response = api.request(method, path, json={"image": b64(image), "model": "tiny-v3"})
            assert response.status_code == 401, (path, response.text)
        ok = api.post(
            f"{URL}/interrogate",
            json={"image": b64(image), "model": "tiny-v3"},
            headers={"Authorization": "Basic dXNlcjpwdw=="},
        )
        assert ok.status_code == 200


def test_host_lock_is_held_while_the_model_runs(
    model_dir: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    seen: list[bool] = []
    forward = WD14Tagger.forward

    def watched(self: WD14Tagger, batch: Any) -> Any:
        seen.append(lock.locked())
        return forward(self, batch)

    monkeypatch.setattr(WD14Tagger, "forward", watched)
    api = client(make_app(models_dirs=[model_dir.parent], lock=lock))
    assert api.post(f"{URL}/interrogate", json={"image": b64(image), "model": "tiny-v3"}).is_success
    assert api.post(f"{URL}/unload-interrogators").is_success
    assert seen == [True]
    assert not lock.locked()


def test_serve_command_parses(tmp_path: Path) -> None:
    from tagger.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "--models-dir", str(tmp_path), "--allow-dir", str(tmp_path), "--port", "9"]
    )
    assert (args.host, args.port, args.device) == ("127.0.0.1", 9, "auto")
    assert args.allow_dir == [str(tmp_path)]
    assert args.handler.__name__ == "cmd_serve"


# -- parallel requests against a real server ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_parallel_requests_identical_and_one_model_load(
    model_dir: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    import tagger.runtime

    loads: list[str] = []
    create = tagger.runtime.create_session

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(str(args[0]))
        time.sleep(0.2)  # widen the window in which the other requests arrive
        return create(*args, **kwargs)

    monkeypatch.setattr(tagger.runtime, "create_session", counted)
    from tagger.api.server import create_app

    app = create_app(models_dirs=[model_dir.parent], providers="cpu")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started
        body = json.dumps({"image": b64(image), "model": "tiny-v3", "threshold": 0.2}).encode()
        barrier = threading.Barrier(16)
        replies: list[tuple[int, bytes]] = []

        def call() -> None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{URL}/interrogate",
                data=body,
                headers={"content-type": "application/json"},
            )
            barrier.wait()
            with urllib.request.urlopen(request, timeout=60) as response:
                replies.append((response.status, response.read()))

        workers = [threading.Thread(target=call) for _ in range(16)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
    finally:
        server.should_exit = True
        thread.join(30)
    assert len(replies) == 16
    assert {status for status, _ in replies} == {200}
    assert len({content for _, content in replies}) == 1
    assert len(loads) == 1
    probs = direct_probs(model_dir, image)
    assert list(json.loads(replies[0][1])["caption"].items()) == expected_toriato(probs, 0.2)


def test_tagger_serve_answers_a_toriato_client(model_dir: Path, image: Path) -> None:
    """``tagger serve`` as a user starts it, and a client written for toriato's API."""
    import subprocess
    import sys

    pytest.importorskip("uvicorn")
    port = _free_port()
    command = [sys.executable, "-m", "tagger", "serve", "--port", str(port)]
    command += ["--models-dir", str(model_dir.parent), "--device", "cpu", "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}{URL}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/interrogators", timeout=5) as response:
                    models = json.loads(response.read())["models"]
                    break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(server.communicate()[1]) from None
                time.sleep(0.1)
        assert models[0] == "tiny-v3"
        body = json.dumps({"image": b64(image), "model": "tiny-v3", "threshold": 0.35}).encode()
        request = urllib.request.Request(
            f"{base}/interrogate", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            caption = json.loads(response.read())["caption"]
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert list(caption.items()) == expected_toriato(direct_probs(model_dir, image), 0.35)
