"""BLIP and CLIP-prefix GPT-2 captioners on tiny models built in the session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tiny import make_image
from tiny_caption import make_clipcap_dir

from tagger.captioners import caption_images, get_captioner, unload_captioners
from tagger.captioners.clipcap import (
    _reorder,
    beam_decode,
    drop_stale_keys,
    greedy_decode,
)
from tagger.captioners.common import load_state_dict
from tagger.errors import (
    ModelFilesMissingError,
    ModelLoadError,
    ModelNotFoundError,
    UnsafeCheckpointError,
)
from tagger.options import CaptionOptions
from tagger.registry import captioner_models, resolve_captioner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")
from reference_caption import reference_generate2, reference_generate_beam  # noqa: E402

SHORT = {"max_new_tokens": 8, "min_new_tokens": 2}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Image.Image]:
    folder = tmp_path_factory.mktemp("caption-images")
    sizes = [(40, 30), (33, 57), (64, 64), (25, 41), (50, 20)]
    return [
        Image.open(make_image(folder / f"{i}.png", size, seed=i)).convert("RGB")
        for i, size in enumerate(sizes)
    ]


# -- BLIP ---------------------------------------------------------------------------------------


def test_blip_batched_equals_one_by_one(blip_dir: Path, images: list[Image.Image]) -> None:
    captioner = get_captioner(str(blip_dir), device="cpu")
    options = CaptionOptions(**SHORT)
    batched = captioner.caption(images, options)
    single = [captioner.caption([image], options)[0] for image in images]
    assert batched == single
    assert len(set(batched)) > 1  # the captions depend on the image
    assert all(caption and "[" not in caption for caption in batched)


def test_blip_prompt_is_given_and_stripped(blip_dir: Path, images: list[Image.Image]) -> None:
    captioner = get_captioner(str(blip_dir), device="cpu")
    options = CaptionOptions(**SHORT)
    pixels = captioner.collate([captioner.preprocess(images[0])])
    ids = captioner.forward(pixels, options)[0]
    raw = captioner.processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert raw.startswith("a picture of ")
    caption = captioner.postprocess(ids, options)
    assert caption == raw[len("a picture of ") :].strip()
    # The same generate() call written out by hand gives the same tokens.
    prompt = captioner.processor.tokenizer("a picture of", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        direct = captioner.model.generate(
            pixel_values=pixels,
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            num_beams=3,
            max_new_tokens=8,
            min_new_tokens=2,
            repetition_penalty=1.2,
            no_repeat_ngram_size=3,
            early_stopping=True,
        )
    assert direct[0].tolist() == ids


def _has_repeated_ngram(words: list[str], n: int) -> bool:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def test_blip_defaults_stop_repetition_loops(blip_dir: Path, images: list[Image.Image]) -> None:
    captioner = get_captioner(str(blip_dir), device="cpu")
    plain = CaptionOptions(
        prompt="", num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0, max_new_tokens=16
    )
    looped = captioner.caption(images, plain)
    assert any(_has_repeated_ngram(c.split(), 3) for c in looped)  # "dog dog dog dog ..."
    guarded = captioner.caption(images, CaptionOptions(prompt="", max_new_tokens=16))
    assert not any(_has_repeated_ngram(c.split(), 3) for c in guarded)


def test_blip_sampling_is_seeded(blip_dir: Path, images: list[Image.Image]) -> None:
    captioner = get_captioner(str(blip_dir), device="cpu")
    first = captioner.caption(images, CaptionOptions(sample=True, seed=1, **SHORT))
    again = captioner.caption(images, CaptionOptions(sample=True, seed=1, **SHORT))
    other = captioner.caption(images, CaptionOptions(sample=True, seed=2, **SHORT))
    assert first == again
    assert first != other


# -- CLIP-prefix GPT-2 ----------------------------------------------------------------------------


def _prefixes(captioner, images: list[Image.Image]) -> torch.Tensor:
    return captioner.prefix(captioner.collate([captioner.preprocess(i) for i in images]))


def test_clipcap_greedy_equals_reference_generate2(
    clipcap_dir: Path, images: list[Image.Image]
) -> None:
    captioner = get_captioner(str(clipcap_dir), device="cpu")
    images = images[:3]
    prefixes = _prefixes(captioner, images)
    expected = [
        reference_generate2(captioner.model.gpt, prefixes[i : i + 1], captioner.stop_id)
        for i in range(len(images))
    ]
    assert greedy_decode(captioner.model.gpt, prefixes, captioner.stop_id) == expected
    assert max(len(tokens) for tokens in expected) == 67  # the reference's length limit
    captions = captioner.caption(images, CaptionOptions())
    assert captions == [captioner.tokenizer.decode(t).strip() for t in expected]
    assert len(set(captions)) > 1


def test_clipcap_greedy_stops_after_the_stop_token(clipcap_dir: Path, images) -> None:
    captioner = get_captioner(str(clipcap_dir), device="cpu")
    prefixes = _prefixes(captioner, images)
    gpt = captioner.model.gpt
    # Make the first token chosen for image 0 the stop token: decoding ends there.
    first = reference_generate2(gpt, prefixes[:1], stop_id=-1, entry_length=1)[0]
    assert greedy_decode(gpt, prefixes, first, 20)[0] == [first]
    assert reference_generate2(gpt, prefixes[:1], first, 20) == [first]


def test_clipcap_beam_equals_reference_generate_beam(
    clipcap_dir: Path, images: list[Image.Image]
) -> None:
    captioner = get_captioner(str(clipcap_dir), device="cpu")
    prefixes = _prefixes(captioner, images[:2])
    gpt = captioner.model.gpt
    for length in (67, 12):
        expected = [
            reference_generate_beam(gpt, prefixes[i : i + 1], captioner.stop_id, 5, length)
            for i in range(2)
        ]
        assert beam_decode(gpt, prefixes, captioner.stop_id, 5, length) == expected
    # With stop tokens that end beams early, finished beams are padded at no cost.
    ended = 0
    for stop in dict.fromkeys(expected[0][0][:3]):
        expected = [
            reference_generate_beam(gpt, prefixes[i : i + 1], stop, 5, 12) for i in range(2)
        ]
        assert beam_decode(gpt, prefixes, stop, 5, 12) == expected
        ended += sum(beam[-1] == stop for beams in expected for beam in beams)
    assert ended > 0
    best = captioner.caption(images[:2], CaptionOptions(num_beams=5, max_new_tokens=12))
    expected = [
        reference_generate_beam(gpt, prefixes[i : i + 1], captioner.stop_id, 5, 12)
        for i in range(2)
    ]
    assert best == [captioner.tokenizer.decode(beams[0]).strip() for beams in expected]


def test_clipcap_batched_equals_one_by_one(clipcap_dir: Path, images) -> None:
    captioner = get_captioner(str(clipcap_dir), device="cpu")
    for options in (
        CaptionOptions(max_new_tokens=20),
        CaptionOptions(num_beams=5, max_new_tokens=15),
        CaptionOptions(sample=True, seed=3, max_new_tokens=15),
    ):
        batched = captioner.caption(images, options)
        single = [captioner.caption([image], options)[0] for image in images]
        assert batched == single or options.sample  # sampling draws depend on the batch
        assert captioner.caption(images, options) == batched  # reproducible


def test_clipcap_transformer_mapper_and_safetensors(
    tmp_path: Path, clip_dir: Path, images: list[Image.Image]
) -> None:
    folder = make_clipcap_dir(tmp_path / "tf", clip_dir, mapper="transformer", normalize=False)
    captioner = get_captioner(str(folder), device="cpu")
    prefixes = _prefixes(captioner, images[:2])
    assert prefixes.shape == (2, 4, 32)
    expected = [
        reference_generate2(captioner.model.gpt, prefixes[i : i + 1], captioner.stop_id, 30)
        for i in range(2)
    ]
    assert greedy_decode(captioner.model.gpt, prefixes, captioner.stop_id, 30) == expected
    pt = captioner.caption(images, CaptionOptions(max_new_tokens=30))
    unload_captioners()
    # The same weights as .safetensors (no pickle at all) give the same captions.
    st = make_clipcap_dir(
        tmp_path / "st", clip_dir, mapper="transformer", normalize=False,
        file_name="model.safetensors",
    )  # fmt: skip
    assert caption_images(images, str(st), CaptionOptions(max_new_tokens=30), device="cpu") == pt


def test_original_checkpoint_with_stale_keys_loads(clipcap_dir: Path) -> None:
    state = load_state_dict(clipcap_dir / "model.pt")
    stale = [k for k in state if k.endswith((".attn.bias", ".attn.masked_bias"))]
    assert len(stale) == 4  # 2 layers x (bias, masked_bias), as old transformers saved them
    kept = drop_stale_keys(state)
    assert set(state) - set(kept) == set(stale)
    assert "gpt.transformer.h.0.attn.c_attn.bias" in kept
    assert {k.split(".")[0] for k in kept} == {"gpt", "clip_project"}
    assert {"clip_project.model.0.weight", "clip_project.model.2.weight"} <= set(kept)


class _Payload:
    """Unpickling this would call Path.touch: code a checkpoint must never run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path, clipcap_dir: Path) -> None:
    target = tmp_path / "pwned"
    bad = tmp_path / "evil"
    shutil.copytree(clipcap_dir, bad)
    state = torch.load(bad / "model.pt", weights_only=True)
    state["gpt.payload"] = _Payload(target)
    torch.save(state, bad / "model.pt")
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        load_state_dict(bad / "model.pt")
    with pytest.raises(UnsafeCheckpointError):
        get_captioner(str(bad), device="cpu")
    assert not target.exists()


def test_checkpoint_not_fitting_its_config_is_a_clear_error(
    tmp_path: Path, clipcap_dir: Path
) -> None:
    bad = tmp_path / "wrong"
    shutil.copytree(clipcap_dir, bad)
    config = json.loads((bad / "clipcap.json").read_text())
    (bad / "clipcap.json").write_text(json.dumps({**config, "mapper": "transformer"}))
    with pytest.raises(ModelLoadError, match="transformer"):
        get_captioner(str(bad), device="cpu")
    (bad / "clipcap.json").write_text(json.dumps({**config, "prefix_size": 512}))
    with pytest.raises(ModelLoadError, match=r"prefix_size is 512"):
        get_captioner(str(bad), device="cpu")
    (bad / "clipcap.json").write_text(json.dumps({**config, "prefix": 3}))
    with pytest.raises(ModelLoadError, match="unknown keys"):
        get_captioner(str(bad), device="cpu")


def test_cache_reorder_handles_legacy_tuples() -> None:
    layer = (torch.arange(6.0).view(3, 1, 2, 1), torch.arange(6.0).view(3, 1, 2, 1) * 10)
    out = _reorder((layer,), torch.tensor([2, 2, 0]))
    assert out[0][0][:, 0, :, 0].tolist() == [[4.0, 5.0], [4.0, 5.0], [0.0, 1.0]]
    assert out[0][1][:, 0, 0, 0].tolist() == [40.0, 40.0, 0.0]


# -- registry -------------------------------------------------------------------------------------


def test_registry_entries_and_resolution(tmp_path: Path, blip_dir: Path, clipcap_dir: Path) -> None:
    keys = {spec.key: spec for spec in captioner_models()}
    assert keys["blip-large"].repo_id == "Salesforce/blip-image-captioning-large"
    assert keys["blip-base"].repo_id == "Salesforce/blip-image-captioning-base"
    flickr = keys["clip-prefix-flickr8k-gradient"]
    assert (flickr.repo_id, flickr.files) == ("Anshler/clip-prefix", ("flickr8k_gradient.pt",))
    settings = dict(flickr.settings)
    assert settings["clip_model"] == "ViT-L-14"
    assert settings["normalize"] is True
    assert (settings["prefix_size"], settings["prefix_length"]) == (768, 10)
    conceptual = keys["clipcap-conceptual"]
    assert (conceptual.repo_id, conceptual.files) == (
        "OpenShape/clipcap-cc",
        ("conceptual_weights.pt",),
    )
    assert (conceptual.setting("normalize"), conceptual.setting("prefix_size")) == (False, 512)
    assert resolve_captioner("blip").key == "blip-large"
    assert resolve_captioner(str(blip_dir)).family == "blip"
    assert resolve_captioner(str(clipcap_dir)).family == "clipcap"
    assert resolve_captioner(clipcap_dir.name, [clipcap_dir.parent]).path == clipcap_dir.resolve()
    with pytest.raises(ModelNotFoundError, match="blip-large"):
        resolve_captioner("no-such-captioner", [])
    with pytest.raises(ModelNotFoundError, match="not a captioner folder"):
        resolve_captioner(str(tmp_path))
    # A registry entry's checkpoint in models/<key>/ is that entry, read from disk.
    local = tmp_path / "clipcap-coco"
    local.mkdir()
    (local / "coco_weights.pt").write_bytes(b"")
    spec = resolve_captioner("clipcap-coco", [tmp_path])
    assert (spec.path, spec.setting("clip_model")) == (local.resolve(), "ViT-B-32")


def test_missing_registry_files_fail_at_once_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFilesMissingError, match=r"coco_weights\.pt"):
        get_captioner("clipcap-coco", device="cpu", models_dirs=[])
    with pytest.raises(ModelFilesMissingError, match="Anshler/clip-prefix"):
        get_captioner("clip-prefix-flickr8k", device="cpu", cache_dir=tmp_path, models_dirs=[])
    with pytest.raises(ModelFilesMissingError, match="blip-image-captioning-base"):
        get_captioner("blip-base", device="cpu", cache_dir=tmp_path, models_dirs=[])


def test_the_tab_and_the_api_caption_with_a_local_folder(
    tmp_path: Path, blip_dir: Path, images: list[Image.Image]
) -> None:
    """The Tagger tab and POST /tagger/v1/caption reach the same captioner as the CLI."""
    import base64
    import io

    from tagger.ui.actions import caption_image, captioner_choices
    from tagger.ui.host import RuntimeSettings

    models = tmp_path / "models"
    shutil.copytree(blip_dir, models / "my-blip")
    settings = RuntimeSettings(models_dirs=[models], providers="cpu")
    assert captioner_choices(settings)[0] == "my-blip"
    expected = get_captioner(str(blip_dir), device="cpu").caption([images[0]], CaptionOptions())
    assert caption_image(images[0], "my-blip", settings) == expected[0]

    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tagger.api import mount

    app = FastAPI()
    mount(app, models_dirs=[models], providers="cpu")
    client = TestClient(app)
    assert client.get("/tagger/v1/captioners").json()["models"][0] == "my-blip"
    png = io.BytesIO()
    images[0].save(png, format="PNG")
    body = {"image": base64.b64encode(png.getvalue()).decode(), "model": "my-blip"}
    reply = client.post("/tagger/v1/caption", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"model": "my-blip", "caption": expected[0]}
    unknown = client.post("/tagger/v1/caption", json={**body, "model": "no-such-captioner"})
    assert unknown.status_code == 404
    assert "my-blip" in unknown.json()["detail"]
