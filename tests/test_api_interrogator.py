"""The CLIP Interrogator and the caption scores over HTTP: clip-interrogator-ext's routes with its
request and reply shapes, ``/tagger/v1/caption`` with the interrogator, ``/tagger/v1/score`` and
``/tagger/v1/analyze``, on tiny models, against the clip-interrogator package and a direct
``BlipForImageTextRetrieval`` call; and the 4xx replies for bad input."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytest.importorskip("clip_interrogator")

from apiutil import client, make_app  # noqa: E402
from PIL import Image  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
    pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from tiny_interrogator import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory, ci_clip_dir: Path, blip_dir: Path, itm_dir: Path) -> Path:
    """A server's models folder: the tiny CLIP as ci-clip, the tiny BLIP as blip-large (the
    caption model clip-interrogator-ext uses), the tiny ITM model as tiny-itm."""
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(ci_clip_dir, folder / "ci-clip")
    shutil.copytree(blip_dir, folder / "blip-large")
    shutil.copytree(itm_dir, folder / "tiny-itm")
    return folder


@pytest.fixture(scope="module")
def api(models: Path, ci_data_dir: Path, tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("TAGGER_INTERROGATOR_DATA", str(ci_data_dir))
    patch.setenv("TAGGER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield client(make_app(models_dirs=[models]))
    patch.undo()


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(21)
    return Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8))


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def package(models: Path, ci_data_dir: Path, tmp_path_factory):
    """The package with clip-interrogator-ext's settings on the same CLIP and BLIP."""
    from tiny_interrogator import package_interrogator
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from tagger.captioners.openclip import load_clip

    return package_interrogator(
        load_clip(str(models / "ci-clip"), None, device=torch.device("cpu"), half=False),
        ci_data_dir,
        tmp_path_factory.mktemp("pkg"),
        caption_model=BlipForConditionalGeneration.from_pretrained(models / "blip-large").eval(),
        caption_processor=BlipProcessor.from_pretrained(models / "blip-large"),
        chunk_size=2048,
        intermediate=2048,
    )


@pytest.mark.parametrize("mode", ["fast", "classic", "best", "negative", "caption"])
def test_ext_prompt_is_the_packages(api, package, picture, mode: str) -> None:
    reply = api.post(
        "/interrogator/prompt",
        json={"image": encoded(picture), "clip_model_name": "ci-clip", "mode": mode},
    )
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"prompt"}
    expected = {
        "fast": package.interrogate_fast,
        "classic": package.interrogate_classic,
        "best": package.interrogate,
        "negative": package.interrogate_negative,
        "caption": package.generate_caption,
    }[mode](picture)
    assert reply.json()["prompt"] == expected


def test_ext_prompt_defaults_to_fast_and_ignores_unknown_keys(api, package, picture) -> None:
    body = {"image": encoded(picture), "clip_model_name": "ci-clip", "something": 1}
    reply = api.post("/interrogator/prompt", json=body)
    assert reply.status_code == 200
    assert reply.json()["prompt"] == package.interrogate_fast(picture)


def test_ext_analyze_is_the_extensions(api, package, picture) -> None:
    reply = api.post(
        "/interrogator/analyze", json={"image": encoded(picture), "clip_model_name": "ci-clip"}
    )
    assert reply.status_code == 200, reply.text
    features = package.image_to_features(picture)
    expected = {}
    for key, table in (
        ("medium", package.mediums),
        ("artist", package.artists),
        ("movement", package.movements),
        ("trending", package.trendings),
        ("flavor", package.flavors),
    ):
        top = table.rank(features, 5)
        expected[key] = dict(zip(top, package.similarities(features, top), strict=True))
    assert reply.json() == expected


def test_ext_models_lists_open_clip_and_local_folders(api) -> None:
    import open_clip

    reply = api.get("/interrogator/models")
    assert reply.status_code == 200
    names = reply.json()
    assert names[0] == "ci-clip"
    assert names[1:] == ["/".join(pair) for pair in open_clip.list_pretrained()]
    assert "ViT-L-14/openai" in names


def test_caption_route_runs_the_interrogator(api, package, picture) -> None:
    options = {
        "mode": "classic", "clip_model": "ci-clip", "caption_model": "blip-large",
        "caption_decoding": "library",
    }  # fmt: skip
    reply = api.post(
        "/tagger/v1/caption",
        json={"image": encoded(picture), "model": "clip-interrogator", "interrogator": options},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "model": "clip-interrogator",
        "caption": package.interrogate_classic(picture),
    }
    assert "clip-interrogator" in api.get("/tagger/v1/captioners").json()["models"]


def test_analyze_route(api, picture) -> None:
    reply = api.post(
        "/tagger/v1/analyze",
        json={
            "image": encoded(picture),
            "interrogator": {"clip_model": "ci-clip", "extra_banks": {"mine": ["a cat", "a dog"]}},
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["clip_model"] == "ci-clip"
    assert list(body["analyze"]) == ["medium", "artist", "movement", "trending", "flavor", "mine"]
    assert set(body["analyze"]["mine"]) == {"a cat", "a dog"}


def test_score_route_equals_a_direct_call(api, models, picture) -> None:
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    texts = ["a dog on the grass", "a red car"]
    reply = api.post(
        "/tagger/v1/score", json={"image": encoded(picture), "texts": texts, "model": "tiny-itm"}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "tiny-itm"
    assert [s["text"] for s in body["scores"]] == texts
    model = BlipForImageTextRetrieval.from_pretrained(models / "tiny-itm").eval()
    processor = BlipProcessor.from_pretrained(models / "tiny-itm")
    inputs = processor(images=[picture] * 2, text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        itm = model(**inputs).itm_score.softmax(dim=-1)[:, 1].tolist()
        itc = model(**inputs, use_itm_head=False).itm_score.diagonal().tolist()
    assert [s["itm"] for s in body["scores"]] == pytest.approx(itm, abs=1e-6)
    assert [s["itc"] for s in body["scores"]] == pytest.approx(itc, abs=1e-6)
    assert api.get("/tagger/v1/scorers").json()["models"][0] == "tiny-itm"


CI = "clip-interrogator"
BAD_REQUESTS = [
    ("/interrogator/prompt", {"image": "", "clip_model_name": "ci-clip"}, 422, "image"),
    ("/interrogator/prompt", {"image": "not base64!", "clip_model_name": "ci-clip"}, 422, "base64"),
    (
        "/interrogator/prompt",
        {"image": "IMG", "clip_model_name": "ci-clip", "mode": "x"},
        422,
        "mode",
    ),
    ("/interrogator/prompt", {"image": "IMG", "clip_model_name": "/etc"}, 404, "unknown CLIP"),
    (
        "/interrogator/prompt",
        {"image": "IMG", "clip_model_name": "ViT-Nope/x"},
        404,
        "unknown CLIP",
    ),
    ("/interrogator/analyze", {"image": "IMG", "clip_model_name": 3}, 422, "clip_model_name"),
    ("/tagger/v1/score", {"image": "IMG", "texts": []}, 422, "1 to 64"),
    ("/tagger/v1/score", {"image": "IMG", "texts": ["a"], "model": "../x"}, 404, "not a model"),
    ("/tagger/v1/score", {"image": "IMG", "texts": ["a"], "model": "nope"}, 404, "unknown scorer"),
    ("/tagger/v1/score", {"image": "IMG", "texts": ["a" * 2001]}, 422, "longer than"),
    ("/tagger/v1/caption", {"image": "IMG", "interrogator": {}}, 422, "interrogator options"),
    (
        "/tagger/v1/caption",
        {"image": "IMG", "model": CI, "interrogator": {"mode": "x"}},
        422,
        "mode",
    ),
    (
        "/tagger/v1/caption",
        {
            "image": "IMG",
            "model": CI,
            "interrogator": {"clip_model": "ci-clip", "caption_model": "../b"},
        },
        422,
        "looks like a path",
    ),
    (
        "/tagger/v1/analyze",
        {"image": "IMG", "interrogator": {"clip_model": "ViT-L-14/openai"}},
        503,
        "not on disk",
    ),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_4xx_json(
    api, picture, path: str, body: dict, status: int, words: str
) -> None:
    body = {k: (encoded(picture) if v == "IMG" else v) for k, v in body.items()}
    reply = api.post(path, json=body)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]


def test_ext_routes_are_left_to_an_extension_that_serves_them() -> None:
    from fastapi import FastAPI

    from tagger.api import mount

    app = FastAPI()

    @app.post("/interrogator/prompt")
    def theirs() -> dict:
        return {"prompt": "from the other extension"}

    mount(app, providers="cpu")
    reply = client(app).post("/interrogator/prompt", json={})
    assert reply.json() == {"prompt": "from the other extension"}
    assert client(app).get("/interrogator/models").status_code == 404  # none of ours there
    assert client(app).get("/tagger/v1/scorers").status_code == 200
