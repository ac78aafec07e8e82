"""Tests of tagger.registry: the registry entries, aliases, local model folders and name lookup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tagger.errors import ModelNotFoundError
from tagger.registry import (
    _BY_NAME,
    DEFAULT_MODEL,
    REGISTRY,
    WD14_FILES,
    ModelSpec,
    _index,
    default_models_dirs,
    is_wd14_folder,
    list_models,
    local_spec,
    registry_models,
    resolve_model,
    scan_models_dir,
)

V14 = ["wd-v1-4-vit-tagger", "wd-v1-4-convnext-tagger"]
V2 = [
    "wd-v1-4-vit-tagger-v2",
    "wd-v1-4-convnext-tagger-v2",
    "wd-v1-4-convnextv2-tagger-v2",
    "wd-v1-4-swinv2-tagger-v2",
    "wd-v1-4-moat-tagger-v2",
]
V3 = [
    "wd-vit-tagger-v3",
    "wd-convnext-tagger-v3",
    "wd-swinv2-tagger-v3",
    "wd-vit-large-tagger-v3",
    "wd-eva02-large-tagger-v3",
]
PACKAGE_MODELS = Path(__file__).resolve().parent.parent / "models"


def make_folder(path: Path, files: tuple[str, ...] = WD14_FILES) -> Path:
    """A folder holding empty files with the given names (enough for the registry's checks)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_bytes(b"")
    return path


# -- the registry entries ---------------------------------------------------------------------
@pytest.mark.parametrize("key", V14 + V2 + V3)
def test_every_smilingwolf_model_is_registered(key: str) -> None:
    spec = REGISTRY[key]
    assert spec.key == key
    assert spec.family == "wd14"
    assert spec.repo_id == f"SmilingWolf/{key}"
    assert isinstance(spec.revision, str)
    assert spec.revision.strip()
    assert spec.files == ("model.onnx", "selected_tags.csv")
    assert spec.path is None
    assert spec.is_local is False
    assert _BY_NAME[key] is spec


@pytest.mark.parametrize("key", V2)
def test_v2_models_have_a_fixed_batch(key: str) -> None:
    assert REGISTRY[key].batch_dynamic is False


@pytest.mark.parametrize("key", V3)
def test_v3_models_have_a_dynamic_batch(key: str) -> None:
    assert REGISTRY[key].batch_dynamic is True


#: The other tagger families' entries (tagger.families).
FAMILY_MODELS = [
    "pixai-tagger-v0.9",
    "cl-tagger-1.02",
    "camie-tagger-v2",
    "z3d-e621-convnext",
    "idolsankaku-swinv2-tagger-v1",
    "idolsankaku-eva02-large-tagger-v1",
    "ml-danbooru-caformer",
]


def test_registry_holds_exactly_the_known_models() -> None:
    assert sorted(REGISTRY) == sorted(V14 + V2 + V3 + FAMILY_MODELS)
    assert [spec.key for spec in registry_models()] == list(REGISTRY)
    assert DEFAULT_MODEL == "wd-vit-tagger-v3"
    assert DEFAULT_MODEL in REGISTRY


def test_registry_models_returns_a_copy() -> None:
    models = registry_models()
    models.clear()
    assert len(registry_models()) == len(REGISTRY)


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("wd14-vit-v2", "wd-v1-4-vit-tagger-v2"),
        ("wd14-vit-v2-git", "wd-v1-4-vit-tagger-v2"),
        ("wd14-vit.v2", "wd-v1-4-vit-tagger-v2"),
        ("wd14-moat-v2", "wd-v1-4-moat-tagger-v2"),
        ("wd14-convnext-v2", "wd-v1-4-convnext-tagger-v2"),
        ("wd14-convnextv2-v2", "wd-v1-4-convnextv2-tagger-v2"),
        ("wd14-swinv2-v2", "wd-v1-4-swinv2-tagger-v2"),
        ("wd14-vit", "wd-v1-4-vit-tagger"),
        ("wd14-convnext", "wd-v1-4-convnext-tagger"),
        ("wd-swinv2-v3", "wd-swinv2-tagger-v3"),
        ("wd14-eva02-large-v3", "wd-eva02-large-tagger-v3"),
    ],
)
def test_aliases_resolve(alias: str, key: str, tmp_path: Path) -> None:
    assert _BY_NAME[alias] is REGISTRY[key]
    assert resolve_model(alias, models_dirs=[tmp_path]) is REGISTRY[key]


def test_names_are_case_insensitive(tmp_path: Path) -> None:
    assert resolve_model("WD14-ViT-v2", models_dirs=[tmp_path]) is REGISTRY["wd-v1-4-vit-tagger-v2"]
    assert resolve_model("  wd-vit-tagger-v3 ", models_dirs=[tmp_path]) is REGISTRY[DEFAULT_MODEL]


def test_every_alias_belongs_to_one_entry() -> None:
    names = [name for spec in registry_models() for name in (spec.key, *spec.aliases)]
    assert len(names) == len(set(names))
    assert len(_BY_NAME) == len(names)


def test_index_refuses_a_name_used_twice() -> None:
    one = ModelSpec(key="a", family="wd14", aliases=("shared",))
    two = ModelSpec(key="b", family="wd14", aliases=("shared",))
    with pytest.raises(ValueError, match="'shared' is used by two entries"):
        _index([one, two])


def test_index_refuses_an_alias_equal_to_another_key() -> None:
    one = ModelSpec(key="a", family="wd14")
    two = ModelSpec(key="b", family="wd14", aliases=("a",))
    with pytest.raises(ValueError, match="'a'"):
        _index([one, two])


def test_index_maps_keys_and_aliases() -> None:
    one = ModelSpec(key="a", family="wd14", aliases=("x", "y"))
    two = ModelSpec(key="b", family="wd14")
    assert _index([one, two]) == {"a": one, "x": one, "y": one, "b": two}


# -- local folders ----------------------------------------------------------------------------
def test_local_spec_describes_a_model_folder(model_dir: Path) -> None:
    spec = local_spec(model_dir)
    assert spec.key == "tiny-v3"
    assert spec.family == "wd14"
    assert spec.path == model_dir.resolve()
    assert spec.is_local is True
    assert spec.repo_id is None
    assert spec.revision is None
    assert local_spec(model_dir, key="other").key == "other"


def test_local_spec_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        local_spec(tmp_path / "nowhere")


def test_is_wd14_folder(tmp_path: Path) -> None:
    assert is_wd14_folder(make_folder(tmp_path / "full")) is True
    assert is_wd14_folder(make_folder(tmp_path / "half", ("model.onnx",))) is False
    assert is_wd14_folder(tmp_path / "nowhere") is False
    dir_named_file = make_folder(tmp_path / "odd", ("model.onnx",))
    (dir_named_file / "selected_tags.csv").mkdir()
    assert is_wd14_folder(dir_named_file) is False


def test_scan_models_dir_skips_what_is_not_a_model(tmp_path: Path) -> None:
    make_folder(tmp_path / "zeta")
    make_folder(tmp_path / "alpha")
    make_folder(tmp_path / "Mid")
    make_folder(tmp_path / "no-labels", ("model.onnx",))
    make_folder(tmp_path / "no-model", ("selected_tags.csv",))
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "selected_tags.csv").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    specs = list(scan_models_dir(tmp_path))
    assert [spec.key for spec in specs] == ["Mid", "alpha", "zeta"]
    assert [spec.path for spec in specs] == [
        (tmp_path / name).resolve() for name in ("Mid", "alpha", "zeta")
    ]


def test_scan_models_dir_of_nothing(tmp_path: Path) -> None:
    assert list(scan_models_dir(None)) == []
    assert list(scan_models_dir(tmp_path / "nowhere")) == []
    (tmp_path / "file").write_bytes(b"")
    assert list(scan_models_dir(tmp_path / "file")) == []


def test_default_models_dirs_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    monkeypatch.setenv("TAGGER_MODELS_DIR", f"{first}{os.pathsep}{os.pathsep}{second}")
    assert default_models_dirs() == [first, second, PACKAGE_MODELS]


def test_default_models_dirs_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGGER_MODELS_DIR", raising=False)
    assert default_models_dirs() == [PACKAGE_MODELS]
    monkeypatch.setenv("TAGGER_MODELS_DIR", "")
    assert default_models_dirs() == [PACKAGE_MODELS]


def test_list_models_puts_local_models_first(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    make_folder(first / "mine")
    make_folder(first / "wd-vit-tagger-v3")
    make_folder(second / "mine")
    make_folder(second / "theirs")
    models = list_models([first, second])
    keys = [spec.key for spec in models]
    assert keys[:3] == ["mine", "wd-vit-tagger-v3", "theirs"]
    assert len(keys) == len(set(keys))
    assert models[0].path == (first / "mine").resolve()
    assert models[1].is_local
    assert keys[3:] == [spec.key for spec in registry_models() if spec.key != "wd-vit-tagger-v3"]


def test_list_models_uses_the_default_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "from-env")
    monkeypatch.setenv("TAGGER_MODELS_DIR", str(tmp_path))
    assert list_models()[0].key == "from-env"
    assert [spec.key for spec in list_models([])] == list(REGISTRY)


# -- resolve_model -----------------------------------------------------------------------------
def test_resolve_a_folder_path(model_dir: Path, tmp_path: Path) -> None:
    spec = resolve_model(str(model_dir), models_dirs=[tmp_path])
    assert spec.is_local
    assert spec.path == model_dir.resolve()
    assert spec.key == "tiny-v3"


def test_resolve_a_relative_folder_path(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(model_dir.parent)
    spec = resolve_model("./tiny-v3", models_dirs=[tmp_path])
    assert spec.path == model_dir.resolve()


def test_resolve_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere" / "model"), models_dirs=[tmp_path])


def test_resolve_a_folder_lacking_the_labels(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "half", ("model.onnx",))
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(str(folder), models_dirs=[tmp_path])
    message = str(info.value)
    assert "lacks selected_tags.csv" in message
    assert str(folder) in message
    assert "lacks model.onnx" not in message


def test_resolve_a_folder_lacking_both_files(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "empty", ())
    with pytest.raises(ModelNotFoundError, match=r"lacks model\.onnx, selected_tags\.csv"):
        resolve_model(str(folder), models_dirs=[tmp_path])


def test_resolve_a_local_name_in_a_models_dir(tmp_path: Path) -> None:
    make_folder(tmp_path / "one" / "mine")
    make_folder(tmp_path / "two" / "mine")
    spec = resolve_model("mine", models_dirs=[tmp_path / "one", tmp_path / "two"])
    assert spec.key == "mine"
    assert spec.path == (tmp_path / "one" / "mine").resolve()


def test_resolve_skips_a_non_model_folder_of_that_name(tmp_path: Path) -> None:
    make_folder(tmp_path / "one" / "mine", ("model.onnx",))
    make_folder(tmp_path / "two" / "mine")
    spec = resolve_model("mine", models_dirs=[tmp_path / "one", tmp_path / "two"])
    assert spec.path == (tmp_path / "two" / "mine").resolve()


def test_resolve_a_local_name_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(tmp_path / "mine")
    monkeypatch.setenv("TAGGER_MODELS_DIR", str(tmp_path))
    assert resolve_model("mine").path == (tmp_path / "mine").resolve()


def test_a_local_folder_shadows_the_registry(tmp_path: Path) -> None:
    make_folder(tmp_path / "wd-vit-tagger-v3")
    spec = resolve_model("wd-vit-tagger-v3", models_dirs=[tmp_path])
    assert spec.is_local
    assert spec.key == "wd-vit-tagger-v3"
    assert spec.path == (tmp_path / "wd-vit-tagger-v3").resolve()
    assert spec is not REGISTRY["wd-vit-tagger-v3"]


def test_a_registry_key_without_a_local_folder(tmp_path: Path) -> None:
    assert resolve_model("wd-vit-tagger-v3", models_dirs=[tmp_path]) is REGISTRY[DEFAULT_MODEL]


def test_an_unknown_name_lists_the_valid_ones(tmp_path: Path) -> None:
    make_folder(tmp_path / "mine")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("no-such-model", models_dirs=[tmp_path])
    message = str(info.value)
    assert "'no-such-model'" in message
    assert "model.onnx and selected_tags.csv" in message
    valid = message.split("or one of: ", 1)[1]
    assert valid.split(", ") == ["mine", *REGISTRY]


def test_an_unknown_name_is_a_lookup_error(tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        resolve_model("no-such-model", models_dirs=[tmp_path])


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_an_empty_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model named"):
        resolve_model(name, models_dirs=[tmp_path])


@pytest.mark.parametrize("processor", ["preprocessor_config.json", "processor_config.json", None])
def test_a_local_blip_folder_is_on_disk_whichever_processor_file_it_has(
    tmp_path: Path, processor: str | None
) -> None:
    from tagger.hub import is_downloaded
    from tagger.registry import local_captioner_spec

    folder = tmp_path / "my-blip"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "blip"}')
    for name in ("tokenizer_config.json", "vocab.txt", *([processor] if processor else [])):
        (folder / name).write_text("{}")
    spec = local_captioner_spec(folder)
    assert spec.family == "blip"
    assert is_downloaded(spec) is (processor is not None)
