"""The CLIP Interrogator against pharmapsychotic's clip-interrogator package itself: every mode's
prompt and the Analyze rankings, on the same tiny open_clip CLIP, the same small banks and the
same tiny BLIP caption model; plus the shortcut text encoder, the bank cache and the options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytest.importorskip("clip_interrogator")

from PIL import Image  # noqa: E402

from tagger.interrogator.options import InterrogatorOptions  # noqa: E402

# the package calls torch.cuda.amp.autocast, deprecated and off without CUDA
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
    pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning"),
]

CHUNK, INTERMEDIATE = 64, 32
CAPTIONS = [
    "a dog on the grass",
    "an oil painting of a man in a small house",  # may start with a medium
    # a caption near CLIP's 77-token limit: the chain's first candidates are cut to the context
    " ".join(["a red car on a street with a blue sky"] * 7),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from tiny_interrogator import one_torch_thread

    with one_torch_thread():
        yield


def options(**values) -> InterrogatorOptions:
    return InterrogatorOptions(chunk_size=CHUNK, intermediate_count=INTERMEDIATE, **values)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    out = []
    for index in range(4):
        size = (40 + 7 * index, 36 + 5 * index)
        out.append(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))
    return out


@pytest.fixture(scope="module")
def clip(ci_clip_dir: Path):
    from tagger.captioners.openclip import load_clip

    return load_clip(str(ci_clip_dir), None, device=torch.device("cpu"), half=False)


@pytest.fixture(scope="module")
def engine(clip, ci_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from tagger.interrogator.engine import ClipInterrogator
    from tagger.registry import resolve_captioner

    return ClipInterrogator.from_clip(
        resolve_captioner("clip-interrogator"),
        clip,
        "tiny",
        device="cpu",
        data_dir=ci_data_dir,
        cache_dir=tmp_path_factory.mktemp("ours"),
        download=False,
    )


@pytest.fixture(scope="module")
def package(clip, ci_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from tiny_interrogator import package_interrogator

    return package_interrogator(
        clip,
        ci_data_dir,
        tmp_path_factory.mktemp("package"),
        chunk_size=CHUNK,
        intermediate=INTERMEDIATE,
    )


def features(engine, image: Image.Image):
    return engine.image_features(engine.preprocess(image.convert("RGB"))[None])


def package_prompt(package, mode: str, image: Image.Image, caption: str) -> str:
    if mode == "classic":
        return package.interrogate_classic(image, caption=caption)
    if mode == "fast":
        return package.interrogate_fast(image, caption=caption)
    if mode == "negative":
        return package.interrogate_negative(image)
    return package.interrogate(image, caption=caption)


def test_image_features_are_the_packages(engine, package, pictures) -> None:
    for image in pictures:
        assert torch.equal(features(engine, image), package.image_to_features(image))


def test_bank_terms_and_embeddings_are_the_packages(engine, package) -> None:
    for name in ("artists", "flavors", "mediums", "movements", "trendings", "negative"):
        table, theirs = engine.bank(name, CHUNK), getattr(package, name)
        assert table.labels == theirs.labels, name
        ours, expected = table.blocks[0].numpy(), np.stack(theirs.embeds)
        assert ours.dtype == expected.dtype == np.float32
        # both are float16 values computed in float32 on sequences of other lengths: at most one
        # float16 step apart (or float32 rounding, for values near zero)
        step = np.maximum(
            np.spacing(np.abs(expected).astype(np.float16)),
            np.spacing(np.abs(ours).astype(np.float16)),
        ).astype(np.float32)
        assert np.all(np.abs(ours - expected) <= np.maximum(step, 1e-6)), name
        assert (ours == expected).all(axis=1).mean() > 0.8


@pytest.mark.parametrize("mode", ["classic", "fast", "best", "negative"])
def test_each_mode_equals_the_package(engine, package, pictures, mode: str) -> None:
    for index, image in enumerate(pictures):
        caption = CAPTIONS[index % len(CAPTIONS)]
        ours = engine.prompt(features(engine, image), caption, options(mode=mode))
        assert ours == package_prompt(package, mode, image, caption), (index, caption)


def test_modes_equal_the_package_with_its_own_embeddings(engine, package, pictures) -> None:
    """With the package's bank embeddings (read from its cache folder, as the library's own
    files are), every prompt is the package's: no float16 rounding step can differ."""
    from tagger.interrogator.engine import ClipInterrogator

    shared = ClipInterrogator.from_clip(
        engine.spec,
        engine.clip,
        package.config.clip_model_name.replace("/", "_"),
        device="cpu",
        data_dir=engine.data_dir,
        cache_dir=package.config.cache_path,
        download=False,
    )
    for name in ("artists", "flavors", "negative"):
        assert np.array_equal(
            shared.bank(name).blocks[0].numpy(), np.stack(getattr(package, name).embeds)
        )
    for index, image in enumerate(pictures[:3]):
        for mode in ("classic", "fast", "best", "negative"):
            caption = CAPTIONS[index]
            ours = shared.prompt(features(shared, image), caption, options(mode=mode))
            assert ours == package_prompt(package, mode, image, caption)


def test_analyze_equals_the_extensions_rankings(engine, package, pictures) -> None:
    for image in pictures:
        image_features = package.image_to_features(image)
        expected = {}
        for key, table in (
            ("medium", package.mediums),
            ("artist", package.artists),
            ("movement", package.movements),
            ("trending", package.trendings),
            ("flavor", package.flavors),
        ):  # clip-interrogator-ext's image_analysis
            top = table.rank(image_features, 5)
            expected[key] = dict(zip(top, package.similarities(image_features, top), strict=True))
        ours = engine.analyze(features(engine, image), options())
        assert ours == expected
        assert list(ours) == ["medium", "artist", "movement", "trending", "flavor"]


def test_the_slow_path_gives_the_same_prompts(engine, package, pictures) -> None:
    """Without the shortcut encoder (a text tower it does not cover) every candidate is encoded
    in full, the library's way: the same prompts."""
    saved, engine.encoder = engine.encoder, None
    try:
        image = pictures[0]
        for mode in ("best", "negative"):
            ours = engine.prompt(features(engine, image), CAPTIONS[0], options(mode=mode))
            assert ours == package_prompt(package, mode, image, CAPTIONS[0])
        assert not engine.at_max_len("a dog")
        assert engine.at_max_len(CAPTIONS[2] * 2)
    finally:
        engine.encoder = saved


def test_chain_stops_at_the_token_limit_and_ties_go_to_the_first(engine, package, pictures) -> None:
    image = pictures[1]
    f = features(engine, image)
    variants = ["misty neon", "Misty Neon", "MISTY NEON"]  # one token list: exact ties
    pool = [*variants, "rock & roll", "café—noir", "8k!", "artist's dream"]
    ours = engine.chain(f, pool, CAPTIONS[0], engine.similarity(f, CAPTIONS[0]), 3, 5)
    theirs = package.chain(
        package.image_to_features(image),
        pool,
        CAPTIONS[0],
        package.similarity(package.image_to_features(image), CAPTIONS[0]),
        3,
        5,
    )
    assert ours == theirs
    assert sum(v in ours.split(", ") for v in variants) >= 1
    long = engine.chain(f, pool, CAPTIONS[2], engine.similarity(f, CAPTIONS[2]), 3, 5)
    assert long == package.chain(
        package.image_to_features(image),
        pool,
        CAPTIONS[2],
        package.similarity(package.image_to_features(image), CAPTIONS[2]),
        3,
        5,
    )


def test_truncate_and_token_limit_match_the_library(engine, package) -> None:
    from clip_interrogator.clip_interrogator import _prompt_at_max_len, _truncate_to_fit

    texts = [CAPTIONS[2], CAPTIONS[2] + ", red, blue, soft", "a cat, " + ", ".join(["green"] * 80)]
    for text in texts:
        assert engine.truncate(text) == _truncate_to_fit(text, package.tokenize)
        assert engine.at_max_len(text) == bool(_prompt_at_max_len(text, package.tokenize))


def test_skipped_banks_leave_the_prompt(engine, pictures) -> None:
    f = features(engine, pictures[2])
    skip = options(mode="fast", skip_categories=["artists", "trendings"])
    artists = set(engine.bank("artists").labels)
    trendings = set(engine.bank("trendings").labels)
    for mode in ("fast", "best", "classic"):
        prompt = engine.prompt(
            f, "a cat", options(mode=mode, skip_categories=["artists", "trendings"])
        )
        parts = set(prompt.split(", "))
        assert not parts & artists, mode
        assert not parts & trendings, mode
    assert engine.prompt(f, "a cat", skip) != engine.prompt(f, "a cat", options(mode="fast"))
    analysis = engine.analyze(f, skip)
    assert list(analysis) == ["medium", "movement", "flavor"]


def test_without_artists_fast_equals_the_package_with_no_artists(
    clip, ci_data_dir, engine, pictures, tmp_path: Path
) -> None:
    """The package has no switch for a bank; given an empty artists file, its fast prompt is
    ours without artists (its classic, and so its best, fail on an empty bank)."""
    import shutil

    from tiny_interrogator import package_interrogator

    data = tmp_path / "data"
    shutil.copytree(ci_data_dir, data)
    (data / "artists.txt").write_text("", encoding="utf-8")
    package = package_interrogator(
        clip, data, tmp_path / "cache", chunk_size=CHUNK, intermediate=INTERMEDIATE
    )
    for index, image in enumerate(pictures):
        ours = engine.prompt(
            features(engine, image),
            CAPTIONS[index % 3],
            options(mode="fast", skip_categories=["artists"]),
        )
        assert ours == package.interrogate_fast(image, caption=CAPTIONS[index % 3])


def test_a_bank_of_your_own(engine, pictures) -> None:
    f = features(engine, pictures[0])
    mine = {"palette": ["sepia tones", "teal and orange", "black and white"]}
    analysis = engine.analyze(f, options(extra_banks=mine))
    assert set(analysis["palette"]) <= set(mine["palette"])
    classic = engine.prompt(f, "a cat", options(mode="classic", extra_banks=mine))
    assert any(term in classic.split(", ") for term in mine["palette"])
    from tagger.errors import OptionsError

    with pytest.raises(OptionsError, match="one of the library's"):
        engine.tables(options(extra_banks={"flavors": ["x"]}))


def test_no_caption_part(engine, pictures) -> None:
    f = features(engine, pictures[0])
    fast = engine.prompt(f, None, options(mode="fast"))
    assert fast
    assert not fast.startswith(", ")
    classic = engine.prompt(f, None, options(mode="classic"))
    assert classic
    assert not classic.startswith(", ")
    assert engine.prompt(f, None, options(mode="best"))
    assert engine.prompt(f, None, options(mode="caption")) == ""


def test_an_empty_caption_follows_the_library(engine, package, pictures, monkeypatch) -> None:
    """A caption model that writes nothing: the library's layouts with the empty caption."""
    monkeypatch.setattr(package, "generate_caption", lambda image: "")
    image = pictures[1]
    for mode in ("fast", "classic", "best"):
        ours = engine.prompt(features(engine, image), "", options(mode=mode))
        assert ours == package_prompt(package, mode, image, "")
    assert engine.prompt(features(engine, image), "", options(mode="fast")).startswith(", ")


def test_bank_embeddings_are_cached_and_reused(
    clip, ci_data_dir, tmp_path: Path, monkeypatch
) -> None:
    from tagger.interrogator import banks
    from tagger.interrogator.engine import ClipInterrogator
    from tagger.registry import resolve_captioner

    spec = resolve_captioner("clip-interrogator")
    first = ClipInterrogator.from_clip(
        spec, clip, "m", data_dir=ci_data_dir, cache_dir=tmp_path, download=False
    )
    embeds = first.bank("mediums").blocks[0]
    files = sorted(p.name for p in tmp_path.iterdir())
    digest = banks.terms_hash(first.bank("mediums").labels)
    assert f"m_mediums-{digest[:16]}.safetensors" in files
    second = ClipInterrogator.from_clip(
        spec, clip, "m", data_dir=ci_data_dir, cache_dir=tmp_path, download=False
    )
    monkeypatch.setattr(second.encoder, "encode_tokens", lambda *a: pytest.fail("recomputed"))
    assert torch.equal(second.bank("mediums").blocks[0], embeds)
    # other terms (an edited data file): the hash differs, so they are embedded again
    data = tmp_path / "data"
    data.mkdir()
    for name in banks.BANK_FILES.values():
        (data / name).write_text((ci_data_dir / name).read_text("utf-8"), encoding="utf-8")
    (data / "mediums.txt").write_text("a watercolor\na photo\n", encoding="utf-8")
    third = ClipInterrogator.from_clip(
        spec, clip, "m", data_dir=data, cache_dir=tmp_path, download=False
    )
    assert third.bank("mediums").labels == ["a watercolor", "a photo"]


def test_published_embeddings_are_used_when_they_match(
    clip, ci_data_dir, tmp_path: Path, monkeypatch
) -> None:
    """A file of the library's precomputed embeddings in the Hugging Face cache (offline) is
    used when its hash is the terms'; one with another hash is not."""
    from tagger.interrogator import banks
    from tagger.interrogator.engine import ClipInterrogator, ClipSource
    from tagger.registry import resolve_captioner

    hub = tmp_path / "hub"
    snapshot = hub / "models--pharmapsychotic--ci-preprocess" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (hub / "models--pharmapsychotic--ci-preprocess" / "refs").mkdir()
    (hub / "models--pharmapsychotic--ci-preprocess" / "refs" / "main").write_text("0" * 40)
    terms = banks.load_bank("mediums", ci_data_dir)
    marked = np.zeros((len(terms), 16), dtype=np.float16)
    marked[:, 0] = 1.0  # recognisable embeddings
    banks.write_embeddings(
        snapshot / "ViT-X_tiny_mediums.safetensors", marked, banks.terms_hash(terms)
    )
    wrong = banks.load_bank("movements", ci_data_dir)
    banks.write_embeddings(
        snapshot / "ViT-X_tiny_movements.safetensors",
        np.zeros((len(wrong), 16), np.float16),
        banks.terms_hash(["other"]),
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = ClipSource(clip.name, None, "ViT-X_tiny", True, "x")
    engine = ClipInterrogator(
        resolve_captioner("clip-interrogator"),
        source,
        data_dir=ci_data_dir,
        cache_dir=tmp_path / "c",
        hf_cache=hub,
    )
    engine.clip = clip
    from tagger.interrogator.textenc import TextEncoder

    engine.encoder = TextEncoder.build(clip.model, clip.tokenizer)
    assert torch.equal(engine.bank("mediums").blocks[0], torch.from_numpy(marked).float())
    movements = engine.bank("movements").blocks[0]
    assert movements.abs().sum() > 0  # computed, not the zeros of the file with another hash
    engine.download = False
    engine._tables.clear()
    assert not torch.equal(engine.bank("mediums").blocks[0], torch.from_numpy(marked).float())


def test_trending_terms_are_the_packages(package) -> None:
    from tagger.interrogator.banks import trending_terms

    assert trending_terms() == package.trendings.labels


def test_a_merged_tables_rows_are_gathered_block_by_block() -> None:
    """``Table.take`` on a merged table (one block per bank) returns exactly the rows a single
    concatenated matrix would, in the order asked, repeats included; bad indices raise."""
    from tagger.interrogator.engine import Table

    gen = torch.Generator().manual_seed(0)
    blocks = [torch.randn(n, 4, generator=gen) for n in (3, 1, 5, 2)]
    whole = torch.cat(blocks)
    table = Table.merge(
        [Table([f"{n}-{i}" for i in range(len(b))], [b]) for n, b in enumerate(blocks)]
    )
    for indices in ([0, 3, 4, 9, 10, 2, 2, 5], [10], [4, 3, 0], []):
        expected = whole[torch.tensor(indices, dtype=torch.long)]
        assert torch.equal(table.take(indices), expected), indices
    for bad in ([11], [-1]):
        with pytest.raises(IndexError, match="11 rows"):
            table.take(bad)


def test_options_validation_and_low_vram() -> None:
    from pydantic import ValidationError

    from tagger.interrogator.options import effective

    with pytest.raises(ValidationError):
        InterrogatorOptions(mode="worst")
    with pytest.raises(ValidationError):
        InterrogatorOptions(skip_categories=["painters"])
    with pytest.raises(ValidationError):
        InterrogatorOptions(unknown=1)
    low = effective(InterrogatorOptions(low_vram=True, caption_model="blip-large"))
    assert (low.caption_model, low.chunk_size, low.intermediate_count) == ("blip-base", 1024, 1024)
    assert (
        effective(InterrogatorOptions(low_vram=True, caption_model="mine")).caption_model == "mine"
    )


def test_resolve_clip_names(ci_clip_dir: Path, tmp_path: Path) -> None:
    from tagger.errors import ModelNotFoundError
    from tagger.interrogator.engine import resolve_clip

    named = resolve_clip("ViT-L-14/openai")
    assert (named.model, named.pretrained, named.cache_name, named.published) == (
        "ViT-L-14",
        "openai",
        "ViT-L-14_openai",
        True,
    )
    folder = resolve_clip(str(ci_clip_dir))
    assert folder.model == str(ci_clip_dir.resolve())
    assert not folder.published
    by_name = resolve_clip(ci_clip_dir.name, [ci_clip_dir.parent], allow_paths=False)
    assert by_name.model == folder.model
    with pytest.raises(ModelNotFoundError, match="names no pretrained weights"):
        resolve_clip("ViT-L-14")
    with pytest.raises(ModelNotFoundError, match="unknown CLIP model"):
        resolve_clip("ViT-Nope/openai")
    with pytest.raises(ModelNotFoundError):
        resolve_clip(str(ci_clip_dir), allow_paths=False)


# -- the captioner: caption part + CLIP, through get_captioner -------------------------------


@pytest.fixture(scope="module")
def blip_parts(blip_dir: Path):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    return (
        BlipForConditionalGeneration.from_pretrained(blip_dir).eval(),
        BlipProcessor.from_pretrained(blip_dir),
    )


def ci_spec(ci_clip_dir, ci_data_dir, cache, blip_dir, **values):
    from tagger.interrogator.captioner import interrogator_spec
    from tagger.registry import resolve_captioner

    return interrogator_spec(
        resolve_captioner("clip-interrogator"),
        options(clip_model=str(ci_clip_dir), caption_model=str(blip_dir), **values),
        data_dir=ci_data_dir,
        cache_dir=cache,
        download=False,
    )


@pytest.mark.parametrize("mode", ["classic", "fast", "best", "negative"])
def test_the_captioner_with_blip_equals_the_package(
    ci_clip_dir, ci_data_dir, blip_dir, blip_parts, clip, pictures, tmp_path: Path, mode: str
) -> None:
    """The whole interrogator (BLIP caption with the library's decoding, then CLIP) against the
    package's own ``generate_caption`` + interrogation with the same BLIP."""
    from tiny_interrogator import package_interrogator

    from tagger.captioners import get_captioner

    spec = ci_spec(
        ci_clip_dir, ci_data_dir, tmp_path / "ours", blip_dir, mode=mode, caption_decoding="library"
    )
    captioner = get_captioner(spec, device="cpu", half=False)
    model, processor = blip_parts
    package = package_interrogator(
        captioner.engine.clip,
        ci_data_dir,
        tmp_path / "pkg",
        caption_model=model,
        caption_processor=processor,
        chunk_size=CHUNK,
        intermediate=INTERMEDIATE,
    )
    images = pictures[:3]
    prompts = captioner.caption(images)
    for image, prompt in zip(images, prompts, strict=True):
        expected = {
            "classic": package.interrogate_classic,
            "fast": package.interrogate_fast,
            "best": package.interrogate,
            "negative": package.interrogate_negative,
        }[mode](image)
        assert prompt == expected
    if mode != "negative":
        records = captioner.interrogate(images[:1])
        assert records[0]["caption"] == package.generate_caption(images[0])


def test_the_captioner_shares_clip_across_modes_and_reports_details(
    ci_clip_dir, ci_data_dir, blip_dir, pictures, tmp_path: Path
) -> None:
    from tagger.captioners import get_captioner, loaded_captioners
    from tagger.options import CaptionOptions

    fast = get_captioner(
        ci_spec(ci_clip_dir, ci_data_dir, tmp_path, blip_dir, mode="fast"), device="cpu"
    )
    best = get_captioner(
        ci_spec(ci_clip_dir, ci_data_dir, tmp_path, blip_dir, mode="best", analyze=True),
        device="cpu",
    )
    assert fast is not best
    assert fast.engine is best.engine  # one CLIP, two configurations
    assert fast.part is best.part  # one caption model
    row = best.forward(best.collate([best.preprocess(pictures[0])]), CaptionOptions())[0]
    details = best.details(row, CaptionOptions())["interrogator"]
    assert details["mode"] == "best"
    assert details["caption"] == row["caption"]
    assert set(details["analyze"]) == {"medium", "artist", "movement", "trending", "flavor"}
    # run decoding: the caption is the BLIP captioner's own, with the run's options
    blip = get_captioner(str(blip_dir), device="cpu")
    assert row["caption"] == blip.caption([pictures[0]], CaptionOptions())[0]
    assert "clip-interrogator" in loaded_captioners()
    from tagger.cache import unload_all

    assert unload_all() >= 3
    assert not fast.loaded


def test_the_caption_part_can_be_none_or_any_captioner(
    ci_clip_dir, ci_data_dir, clipcap_dir, pictures, tmp_path: Path
) -> None:
    from tagger.captioners import get_captioner

    none = get_captioner(
        ci_spec(ci_clip_dir, ci_data_dir, tmp_path, "none", mode="fast"), device="cpu"
    )
    assert none.part is None
    record = none.interrogate(pictures[:1])[0]
    assert record["caption"] == ""
    assert record["prompt"]
    clipcap = get_captioner(
        ci_spec(ci_clip_dir, ci_data_dir, tmp_path, clipcap_dir, mode="classic"), device="cpu"
    )
    caption = get_captioner(str(clipcap_dir), device="cpu").caption(pictures[:1])[0]
    assert clipcap.interrogate(pictures[:1])[0]["caption"] == caption
    from tagger.errors import OptionsError

    with pytest.raises(OptionsError, match="cannot be the interrogator"):
        get_captioner(
            ci_spec(ci_clip_dir, ci_data_dir, tmp_path, "clip-interrogator"), device="cpu"
        )


def test_spec_settings_round_trip(ci_clip_dir, ci_data_dir, blip_dir, tmp_path: Path) -> None:
    from tagger.interrogator.captioner import spec_options
    from tagger.options import dump

    spec = ci_spec(
        ci_clip_dir, ci_data_dir, tmp_path, blip_dir, mode="negative", skip_categories=["artists"]
    )
    assert dump(spec_options(spec))["mode"] == "negative"
    assert spec_options(spec).skip_categories == ["artists"]
    assert hash(spec) == hash(
        ci_spec(
            ci_clip_dir,
            ci_data_dir,
            tmp_path,
            blip_dir,
            mode="negative",
            skip_categories=["artists"],
        )
    )
    data = json.loads(dict(spec.settings)["interrogator"])
    assert data["clip_model"] == str(ci_clip_dir)


def test_data_files_come_from_the_package_or_a_folder(tmp_path: Path) -> None:
    from tagger.errors import OptionsError
    from tagger.interrogator import banks

    found = banks.package_data_dir()
    assert found is not None
    assert (found / "flavors.txt").is_file()
    assert banks.data_dir() == found
    with pytest.raises(OptionsError, match="does not exist"):
        banks.data_dir(tmp_path / "nowhere")
    assert len(banks.load_bank("artists", found)) == 2 * len(
        banks.read_data_file(found / "artists.txt")
    )
    file = tmp_path / "mine.txt"
    file.write_text("a\n\n b \na\n", encoding="utf-8")
    assert banks.read_terms_file(file) == ["a", "b"]
    file.write_bytes(b"\xff\xfe bad")
    with pytest.raises(OptionsError, match="cannot be read"):
        banks.read_terms_file(file)
