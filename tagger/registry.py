"""The model registry: every known model as one declarative entry, plus local model folders.

A model is named by a registry key (``wd-vit-tagger-v3``), by an alias used by older tagger
extensions (``wd14-vit-v2``), by the name of a folder under a models directory, or by a path to a
folder. Registry models download through huggingface_hub at their pinned revision; local folders
are used as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tagger.errors import ModelNotFoundError

WD14_FILES = ("model.onnx", "selected_tags.csv")


@dataclass(frozen=True)
class ModelSpec:
    """One model: where its files come from and the defaults that suit it.

    ``repo_id``/``revision`` are set for registry models; ``path`` for local folders.
    ``input_size`` is informative (the real value is read from the ONNX input when loading).
    """

    key: str
    family: str
    repo_id: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = WD14_FILES
    input_size: int = 448
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    batch_dynamic: bool = True
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    path: Path | None = None
    #: Family-specific settings as (name, value) pairs (captioners: mapper, prefix length...).
    settings: tuple[tuple[str, object], ...] = ()

    def setting(self, name: str, default: object = None) -> object:
        """One of ``settings`` by name, or ``default``."""
        return dict(self.settings).get(name, default)

    @property
    def is_local(self) -> bool:
        """True for a model folder on disk, False for a registry (Hub) model."""
        return self.path is not None


def _wd14(
    key: str,
    *,
    revision: str,
    general_threshold: float = 0.35,
    batch_dynamic: bool = True,
    description: str,
    aliases: tuple[str, ...] = (),
) -> ModelSpec:
    """A SmilingWolf WD14 entry: repo ``SmilingWolf/<key>``, model.onnx + selected_tags.csv."""
    return ModelSpec(
        key=key,
        family="wd14",
        repo_id=f"SmilingWolf/{key}",
        revision=revision,
        general_threshold=general_threshold,
        batch_dynamic=batch_dynamic,
        description=description,
        aliases=aliases,
    )


# Revisions: the v2 repositories carry a ``v2.0`` tag (the release the older extensions pinned);
# the v1.4 and v3 repositories are pinned to their ``main`` branch until a commit hash has been
# verified against the Hub. Override per run with ``--revision``.
_REGISTRY_ENTRIES: tuple[ModelSpec, ...] = (
    # v3: trained on Danbooru up to 2024-02, 10,861 tags, dynamic batch axis, onnxruntime >= 1.17.
    _wd14(
        "wd-eva02-large-tagger-v3",
        revision="main",
        description="WD v3 EVA02-Large (most accurate, slowest)",
        aliases=("wd-eva02-large-v3", "wd14-eva02-large-v3"),
    ),
    _wd14(
        "wd-vit-large-tagger-v3",
        revision="main",
        description="WD v3 ViT-Large",
        aliases=("wd-vit-large-v3", "wd14-vit-large-v3"),
    ),
    _wd14(
        "wd-swinv2-tagger-v3",
        revision="main",
        description="WD v3 SwinV2 (the reference app's default)",
        aliases=(
            "wd-swinv2-v3",
            "wd14-swinv2-v3",
            "wd14-swinv2-v3-git",
            "wd-v1-4-swinv2-tagger.v3",
        ),
    ),
    _wd14(
        "wd-vit-tagger-v3",
        revision="main",
        description="WD v3 ViT-Base",
        aliases=("wd-vit-v3", "wd14-vit-v3", "wd14-vit-v3-git", "wd-v1-4-vit-tagger.v3"),
    ),
    _wd14(
        "wd-convnext-tagger-v3",
        revision="main",
        description="WD v3 ConvNeXt",
        aliases=(
            "wd-convnext-v3",
            "wd14-convnext-v3",
            "wd14-convnext-v3-git",
            "wd-v1-4-convnext-tagger.v3",
        ),
    ),
    # v2 (wd-v1-4-*-v2): 9,083 tags, ONNX fixed at batch 1.
    _wd14(
        "wd-v1-4-moat-tagger-v2",
        revision="v2.0",
        batch_dynamic=False,
        description="WD v1.4 MOAT v2",
        aliases=("wd14-moat-v2", "wd-v1-4-moat-v2", "wd-v1-4-moat-tagger.v2"),
    ),
    _wd14(
        "wd-v1-4-swinv2-tagger-v2",
        revision="v2.0",
        batch_dynamic=False,
        description="WD v1.4 SwinV2 v2",
        aliases=("wd14-swinv2-v2", "wd14-swinv2-v2-git", "wd14-swinv2-v1"),
    ),
    _wd14(
        "wd-v1-4-convnextv2-tagger-v2",
        revision="v2.0",
        batch_dynamic=False,
        description="WD v1.4 ConvNeXtV2 v2",
        aliases=("wd14-convnextv2-v2", "wd14-convnextv2-v2-git", "wd14-convnextv2.v1"),
    ),
    _wd14(
        "wd-v1-4-convnext-tagger-v2",
        revision="v2.0",
        batch_dynamic=False,
        description="WD v1.4 ConvNeXt v2",
        aliases=("wd14-convnext-v2", "wd14-convnext-v2-git", "wd14-convnext.v2"),
    ),
    _wd14(
        "wd-v1-4-vit-tagger-v2",
        revision="v2.0",
        batch_dynamic=False,
        description="WD v1.4 ViT v2",
        aliases=("wd14-vit-v2", "wd14-vit-v2-git", "wd14-vit.v2"),
    ),
    # v1.4 (first release).
    _wd14(
        "wd-v1-4-convnext-tagger",
        revision="main",
        batch_dynamic=False,
        description="WD v1.4 ConvNeXt (first release)",
        aliases=("wd14-convnext", "wd14-convnext-v1", "wd14-convnext.v1"),
    ),
    _wd14(
        "wd-v1-4-vit-tagger",
        revision="main",
        batch_dynamic=False,
        description="WD v1.4 ViT (first release)",
        aliases=("wd14-vit", "wd14-vit-v1", "wd14-vit.v1"),
    ),
)


def _family(
    key: str,
    family: str,
    repo_id: str,
    roles: dict[str, str],
    *,
    input_size: int = 448,
    description: str,
    aliases: tuple[str, ...] = (),
    gated: bool = False,
) -> ModelSpec:
    """A tagger of another family (``tagger.families``): its files by role (model, labels,
    stages, thresholds), downloaded from ``repo_id`` (paths may include a sub-folder)."""
    settings: tuple[tuple[str, object], ...] = tuple(
        (f"{role}_file", name) for role, name in roles.items()
    )
    if gated:
        settings += (("gated", True),)
    return ModelSpec(
        key=key,
        family=family,
        repo_id=repo_id,
        revision="main",
        files=tuple(roles.values()),
        input_size=input_size,
        description=description,
        aliases=aliases,
        settings=settings,
    )


# Further tagger families (tagger.families). Revisions follow ``main`` until a commit hash has
# been verified against the Hub (override with --revision).
_FAMILY_ENTRIES: tuple[ModelSpec, ...] = (
    _family(
        "pixai-tagger-v0.9",
        "pixai",
        "deepghs/pixai-tagger-v0.9-onnx",
        {
            "model": "model.onnx",
            "labels": "selected_tags.csv",
            "stages": "preprocess.json",
            "thresholds": "thresholds.csv",
        },
        description="PixAI tagger v0.9 (EVA02-Large, ~13.5k tags, per-category thresholds)",
        aliases=("pixai", "pixai-v0.9", "pixai-tagger"),
        gated=True,
    ),
    _family(
        "cl-tagger-1.02",
        "cl_tagger",
        "cella110n/cl_tagger",
        {
            "model": "cl_tagger_1_02/model_optimized.onnx",
            "labels": "cl_tagger_1_02/tag_mapping.json",
        },
        description="cl_tagger 1.02 (EVA02 fine-tune, 8 categories, quality and model tags)",
        aliases=("cl_tagger", "cl-tagger", "cl_tagger_1_02"),
    ),
    _family(
        "camie-tagger-v2",
        "camie",
        "Camais03/camie-tagger-v2",
        {"model": "camie-tagger-v2.onnx", "labels": "camie-tagger-v2-metadata.json"},
        input_size=512,
        description="Camie tagger v2 (ViT, 70,527 tags in 7 categories, threshold profiles)",
        aliases=("camie", "camie-v2"),
    ),
    _family(
        "z3d-e621-convnext",
        "z3d",
        "toynya/Z3D-E621-Convnext",
        {"model": "model.onnx", "labels": "tags-selected.csv"},
        description="Z3D-E621 ConvNeXt (e621 tags)",
        aliases=("Z3D-E621-Convnext", "z3d-e621", "e621"),
    ),
    _family(
        "idolsankaku-swinv2-tagger-v1",
        "idolsankaku",
        "deepghs/idolsankaku-swinv2-tagger-v1",
        {"model": "model.onnx", "labels": "selected_tags.csv"},
        description="IdolSankaku SwinV2 v1 (photos of people, Sankaku tags)",
        aliases=("idolsankaku-swinv2", "idolsankaku"),
    ),
    _family(
        "idolsankaku-eva02-large-tagger-v1",
        "idolsankaku",
        "deepghs/idolsankaku-eva02-large-tagger-v1",
        {"model": "model.onnx", "labels": "selected_tags.csv"},
        description="IdolSankaku EVA02-Large v1",
        aliases=("idolsankaku-eva02-large",),
    ),
    _family(
        "ml-danbooru-caformer",
        "mldanbooru",
        "deepghs/ml-danbooru-onnx",
        {"model": "ml_caformer_m36_dec-5-97527.onnx", "labels": "classes.json"},
        description="ML-Danbooru CAFormer m36 dec-5-97527 (general tags only)",
        aliases=("mld-caformer.dec-5-97527", "ml-danbooru"),
    ),
)
_REGISTRY_ENTRIES = (*_REGISTRY_ENTRIES, *_FAMILY_ENTRIES)

DEFAULT_MODEL = "wd-vit-tagger-v3"


def _index(entries: Iterable[ModelSpec]) -> dict[str, ModelSpec]:
    """Map every key and alias to its entry; a name used twice is a programming error."""
    table: dict[str, ModelSpec] = {}
    for spec in entries:
        for name in (spec.key, *spec.aliases):
            if name in table:
                raise ValueError(f"registry name {name!r} is used by two entries")
            table[name] = spec
    return table


REGISTRY: dict[str, ModelSpec] = {spec.key: spec for spec in _REGISTRY_ENTRIES}
_BY_NAME = _index(_REGISTRY_ENTRIES)


def registry_models() -> list[ModelSpec]:
    """Return the registry entries, in the order they are offered to users."""
    return list(_REGISTRY_ENTRIES)


def registry_lookup(name: str) -> ModelSpec | None:
    """The registry entry named by a key or an alias (any case), or None.

    >>> registry_lookup("wd14-vit.v2").key
    'wd-v1-4-vit-tagger-v2'
    """
    text = str(name).strip()
    return _BY_NAME.get(text) or _BY_NAME.get(text.lower())


def is_wd14_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding ``model.onnx`` and ``selected_tags.csv``."""
    return all((path / name).is_file() for name in WD14_FILES)


#: Longest model name accepted (a folder name's limit on common filesystems).
MAX_NAME_LENGTH = 255
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


def name_problem(name: str) -> str | None:
    r"""Why ``name`` is not a plain model name but something that points at the disk, or None.

    A plain name is what a models folder's entry or a registry key looks like: no path
    separator (``/``, ``\``), no drive or stream (``:``), no leading ``.`` (``.``, ``..``,
    hidden folders) or ``~`` (home folders), no trailing ``.``, no control character (NUL...),
    not a Windows device (``NUL``, ``COM1``...), at most 255 characters. Used where a name
    comes from someone who must not reach folders on the machine (the HTTP API).

    >>> name_problem("wd-vit-tagger-v3") is None
    True
    >>> [name_problem(n) is None for n in ("~", "~root", "../x", "a/b", "C:x", "a\\b", ".x")]
    [False, False, False, False, False, False, False]
    """
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "it contains a control character"
    if any(char in name for char in "/\\:"):
        return "it contains a path separator or a drive"
    if name[0] in ".~":
        return f"it starts with {name[0]!r}"
    if name[-1] in ". ":
        return f"it ends with {name[-1]!r}"
    if name.split(".")[0].strip().lower() in _WINDOWS_DEVICES:
        return "it is a Windows device name"
    return None


def find_model_by_name(
    name: str, models_dirs: Iterable[str | os.PathLike[str]]
) -> ModelSpec | None:
    """The model a plain name (see ``name_problem``) stands for, or None: the folder of that
    name directly inside one of ``models_dirs`` when it holds a tagger (any family), else the
    registry entry with that key or alias. Never reads anything but those folders' entries."""
    if name_problem(name) is not None:
        return None
    for folder in models_dirs:
        path = Path(folder).expanduser() / name
        if is_tagger_folder(path):
            return local_spec(path)
    return registry_lookup(name)


def tagger_family(path: Path) -> str | None:
    """The tagger family of a local folder (``tagger.families.layouts.detect_family``)."""
    from tagger.families.layouts import detect_family

    return detect_family(path)


def is_tagger_folder(path: Path) -> bool:
    """True when ``path`` is a model folder of any tagger family (WD14's layout included)."""
    return path.is_dir() and (is_wd14_folder(path) or tagger_family(path) is not None)


def local_spec(path: str | os.PathLike[str], key: str | None = None) -> ModelSpec:
    """Describe a local tagger folder of any family (raises ModelNotFoundError if it is not
    one)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(f"model folder {str(folder)!r} does not exist")
    missing = [name for name in WD14_FILES if not (folder / name).is_file()]
    family = tagger_family(folder) if missing or (folder / "preprocess.json").is_file() else None
    if family is not None and family != "wd14":
        from tagger.families.layouts import family_folder_settings

        settings = family_folder_settings(folder, family)
        return ModelSpec(
            key=key or folder.name,
            family=family,
            path=folder.resolve(),
            files=tuple(str(value) for _, value in settings),
            description=f"local {family} folder {folder}",
            settings=settings,
        )
    if missing:
        raise ModelNotFoundError(
            f"{str(folder)!r} is not a WD14 model folder: it lacks {', '.join(missing)} "
            f"(a model folder holds {' and '.join(WD14_FILES)}, or another family's files: "
            "see docs/families.md)"
        )
    return ModelSpec(
        key=key or folder.name,
        family="wd14",
        path=folder.resolve(),
        description=f"local folder {folder}",
    )


def scan_models_dir(models_dir: str | os.PathLike[str] | None) -> Iterator[ModelSpec]:
    """Yield a spec for every sub-folder of ``models_dir`` that is a model folder, by name."""
    if models_dir is None:
        return
    root = Path(models_dir).expanduser()
    if not root.is_dir():
        return
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if child.is_dir() and is_tagger_folder(child):
            yield local_spec(child)


def default_models_dirs() -> list[Path]:
    """Folders searched for local models: ``$TAGGER_MODELS_DIR`` (os.pathsep-separated) and the
    ``models/`` folder next to the package (the extension's own models folder)."""
    dirs = [Path(p) for p in os.environ.get("TAGGER_MODELS_DIR", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    return dirs


def list_models(models_dirs: Iterable[str | os.PathLike[str]] | None = None) -> list[ModelSpec]:
    """Return local models (first found wins per name) followed by the registry entries."""
    seen: dict[str, ModelSpec] = {}
    for folder in default_models_dirs() if models_dirs is None else models_dirs:
        for spec in scan_models_dir(folder):
            seen.setdefault(spec.key, spec)
    return [*seen.values(), *(spec for spec in _REGISTRY_ENTRIES if spec.key not in seen)]


def resolve_model(
    name: str, models_dirs: Iterable[str | os.PathLike[str]] | None = None
) -> ModelSpec:
    """Find the model a user named: a folder path, a local model's name, a key or an alias.

    A path wins over a name, and a local folder over a registry entry of the same name, so a user
    can shadow a registry model with their own copy. Unknown names raise ``ModelNotFoundError``
    listing the valid ones.
    """
    text = str(name).strip()
    if not text:
        raise ModelNotFoundError("no model named: pass a registry key or a model folder")
    candidate = Path(text).expanduser()
    looks_like_path = os.sep in text or "/" in text or text.startswith(".")
    if candidate.is_dir() or looks_like_path:
        return local_spec(candidate)
    dirs = default_models_dirs() if models_dirs is None else list(models_dirs)
    spec = find_model_by_name(text, dirs)
    if spec is not None:
        return spec
    local = [spec.key for folder in dirs for spec in scan_models_dir(folder)]
    valid = ", ".join([*local, *REGISTRY])
    raise ModelNotFoundError(
        f"unknown model {text!r}: use a model folder (holding {' and '.join(WD14_FILES)}) "
        f"or one of: {valid}"
    )


# -- captioners -----------------------------------------------------------------------------------

BLIP_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.txt")
#: transformers 5 saves the image processor's settings as ``processor_config.json``.
BLIP_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def blip_folder_files(folder: Path) -> tuple[str, ...]:
    """The files a local BLIP folder must hold, with the processor file it was saved with."""
    processor = next(
        (name for name in BLIP_PROCESSOR_FILES if (folder / name).is_file()),
        BLIP_PROCESSOR_FILES[0],
    )
    return tuple(processor if name == BLIP_PROCESSOR_FILES[0] else name for name in BLIP_FILES)


CLIPCAP_CONFIG = "clipcap.json"
SBG_CONFIG = "sbg.json"
GPT2_TOKENIZER_REPO = "openai-community/gpt2"
GPT2_TOKENIZER_FILES = ("vocab.json", "merges.txt")


def _blip(
    key: str, repo_id: str, revision: str, description: str, aliases: tuple[str, ...]
) -> ModelSpec:
    """A Salesforce BLIP captioner in transformers' layout."""
    return ModelSpec(
        key=key,
        family="blip",
        repo_id=repo_id,
        revision=revision,
        files=BLIP_FILES,
        input_size=384,
        description=description,
        aliases=aliases,
    )


def _clipcap(
    key: str,
    repo_id: str | None,
    file: str,
    *,
    clip_model: str,
    prefix_size: int,
    normalize: bool,
    description: str,
    aliases: tuple[str, ...] = (),
) -> ModelSpec:
    """A CLIP-prefix GPT-2 captioner: one full checkpoint (MLP mapper + GPT-2), prefix 10."""
    return ModelSpec(
        key=key,
        family="clipcap",
        repo_id=repo_id,
        revision="main" if repo_id else None,
        files=(file,),
        input_size=224,
        description=description,
        aliases=aliases,
        settings=(
            ("checkpoint", file),
            ("mapper", "mlp"),
            ("prefix_length", 10),
            ("prefix_size", prefix_size),
            ("normalize", normalize),
            ("clip_model", clip_model),
            ("clip_pretrained", "openai"),
        ),
    )


# Revisions: blip-large is pinned to the commit of 2023-08-01 (the last one listed on the Hub's
# commit history that was seen); the others follow ``main`` until a commit hash has been verified
# against the Hub. Override per run with ``--revision``.
_CAPTIONER_ENTRIES: tuple[ModelSpec, ...] = (
    _blip(
        "blip-base",
        "Salesforce/blip-image-captioning-base",
        "main",
        "BLIP ViT-B/16 COCO captioner (transformers)",
        ("blip-image-captioning-base",),
    ),
    _blip(
        "blip-large",
        "Salesforce/blip-image-captioning-large",
        "e33defe055114d86bec9c0705b71e590cfc0694c",
        "BLIP ViT-L/16 COCO captioner (transformers)",
        ("blip-image-captioning-large", "blip"),
    ),
    *(
        _clipcap(
            f"clip-prefix-{name.replace('_', '-')}",
            "Anshler/clip-prefix",
            f"{name}.pt",
            clip_model="ViT-L-14",
            prefix_size=768,
            normalize=True,
            description=f"CLIP-prefix GPT-2 (Huynh et al. 2024), {name}, CLIP ViT-L/14",
            aliases=(f"clip-prefix-{name}",) if "_" in name else (),
        )
        for name in ("flickr8k", "flickr8k_gradient", "flickr30k", "flickr30k_gradient")
    ),
    _clipcap(
        "clipcap-conceptual",
        "OpenShape/clipcap-cc",
        "conceptual_weights.pt",
        clip_model="ViT-B-32",
        prefix_size=512,
        normalize=False,
        description="ClipCap MLP, Conceptual Captions, CLIP ViT-B/32 (Hub mirror)",
    ),
    _clipcap(
        "clipcap-coco",
        None,
        "coco_weights.pt",
        clip_model="ViT-B-32",
        prefix_size=512,
        normalize=False,
        description="ClipCap MLP, COCO, CLIP ViT-B/32 (Google Drive only: put coco_weights.pt "
        "in models/clipcap-coco/)",
    ),
    # The CLIP Interrogator (tagger.interrogator): a caption plus the bank terms CLIP finds
    # closest to the image. Its CLIP model, caption model and mode are InterrogatorOptions; its
    # files are those of its parts (open_clip weights, the captioner, clip-interrogator's banks).
    ModelSpec(
        key="clip-interrogator",
        family="clip-interrogator",
        files=(),
        input_size=224,
        description="CLIP Interrogator: a caption plus the artists, mediums, movements, "
        "trending sites and flavors CLIP ranks closest (modes best, classic, fast, negative)",
        aliases=("clip_interrogator", "interrogator"),
    ),
)

# Selective Blind Guessing (Huynh et al. 2024): the label list and the encyclopedia as the paper's
# WebUI extension publishes them (its repository at a fixed commit, checked by SHA-256), the
# fine-tuned GPT-2 from the paper's Hub repository (``main``: no commit hash was verified).
SBG_FILES_COMMIT = "dc0668edb47028a12641947d91bbab3f51c0b3c5"
_CAPTIONER_ENTRIES += (
    ModelSpec(
        key="sbg-flickr8k",
        family="sbg",
        repo_id="Anshler/selective-blind-guessing",
        revision="main",
        files=(
            "all_labels.pkl",
            "encyclopedia.pkl",
            "top_hierarchy/config.json",
            "top_hierarchy/model.safetensors",
        ),
        input_size=224,
        description="Selective Blind Guessing (Huynh et al. 2024), Flickr8k: CLIP ViT-L/14 "
        "keywords, GPT-2 candidates, CLIP rerank",
        aliases=("sbg", "sbg-8k", "selective-blind-guessing"),
        settings=(
            (
                "files_url",
                "https://raw.githubusercontent.com/Anshler/ICG_sd_extension/"
                f"{SBG_FILES_COMMIT}/scripts/",
            ),
            ("labels_sha256", "4463b673465ee4c5a9e185e2cf77482ed1f2bcaba7bc0196e591a0059925c53a"),
            (
                "encyclopedia_sha256",
                "921df5859cc65a621197e1d8386f32b8c628891c3356a9653266e8a9151f147a",
            ),
        ),
    ),
)


# -- vision-language models (tagger.vlm) ----------------------------------------------------------

#: The captioner that asks any OpenAI-compatible endpoint (``--vlm-url``, ``--vlm-model``).
VLM_API_KEY = "vlm-api"
#: ``config.json`` ``model_type`` -> captioner family of local VLM folders.
VLM_MODEL_TYPES = {
    "florence2": "florence2",
    "llava": "llava",
    "qwen2_vl": "qwen2-vl",
    "qwen2_5_vl": "qwen2-vl",
}


def _vlm(
    key: str,
    family: str,
    repo_id: str | None,
    revision: str | None,
    description: str,
    aliases: tuple[str, ...] = (),
) -> ModelSpec:
    """A local vision-language model in transformers' layout (native classes only); without a
    repository, a folder the user converts (``config.json`` and ``model.safetensors``)."""
    return ModelSpec(
        key=key,
        family=family,
        repo_id=repo_id,
        revision=revision,
        files=("config.json",) if repo_id else ("config.json", "model.safetensors"),
        input_size=0,
        description=description,
        aliases=aliases,
    )


# Revisions: commit hashes that public pages cite for these repositories (not checked against
# the Hub from here); Florence-2-large follows ``main``. The PromptGen entries have no download:
# their published files are in the original remote-code layout, which transformers' native
# Florence-2 does not load; a converted folder under models/<key>/ is used (docs/vlm.md).
_VLM_ENTRIES: tuple[ModelSpec, ...] = (
    ModelSpec(
        key=VLM_API_KEY,
        family="vlm-api",
        files=(),
        input_size=0,
        description="any OpenAI-compatible chat-completions endpoint (--vlm-url, --vlm-model)",
        aliases=("openai-compatible", "vlm", "api"),
    ),
    _vlm(
        "florence2-base",
        "florence2",
        "florence-community/Florence-2-base",
        "00921df66db728a9ceb750f5eca43e5c203a2051",
        "Florence-2 base (0.23B), transformers' native port",
        ("florence-2-base",),
    ),
    _vlm(
        "florence2-large",
        "florence2",
        "florence-community/Florence-2-large",
        "main",
        "Florence-2 large (0.77B), transformers' native port",
        ("florence-2-large",),
    ),
    _vlm(
        "florence2-promptgen-base",
        "florence2",
        None,
        None,
        "MiaoshouAI Florence-2 base PromptGen v2.0 (no download: put the checkpoint, converted to "
        "transformers' Florence-2 layout, in models/florence2-promptgen-base/)",
    ),
    _vlm(
        "florence2-promptgen-large",
        "florence2",
        None,
        None,
        "MiaoshouAI Florence-2 large PromptGen v2.0 (no download: put the converted checkpoint "
        "in models/florence2-promptgen-large/)",
    ),
    _vlm(
        "joycaption-beta-one",
        "llava",
        "fancyfeast/llama-joycaption-beta-one-hf-llava",
        "ebf414ea497a020da0f82df3913e5b6cb8e9663a",
        "JoyCaption Beta One (LLaVA: SigLIP + Llama 3.1 8B)",
        ("joycaption",),
    ),
    _vlm(
        "qwen2-vl-2b",
        "qwen2-vl",
        "Qwen/Qwen2-VL-2B-Instruct",
        "895c3a49bc3fa70a340399125c650a463535e71c",
        "Qwen2-VL 2B Instruct",
    ),
    _vlm(
        "qwen2.5-vl-3b",
        "qwen2-vl",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "66285546d2b821cf421d4f5eb2576359d3770cd3",
        "Qwen2.5-VL 3B Instruct",
    ),
    _vlm(
        "qwen2.5-vl-7b",
        "qwen2-vl",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "cc594898137f460bfe9f0759e9844b3ce807cfb5",
        "Qwen2.5-VL 7B Instruct",
    ),
)
_CAPTIONER_ENTRIES = (*_CAPTIONER_ENTRIES, *_VLM_ENTRIES)

CAPTIONER_REGISTRY: dict[str, ModelSpec] = {spec.key: spec for spec in _CAPTIONER_ENTRIES}
_CAPTIONER_BY_NAME = _index(_CAPTIONER_ENTRIES)
DEFAULT_CAPTIONER = "blip-large"


def captioner_models() -> list[ModelSpec]:
    """Return the captioner registry entries, in the order they are offered to users."""
    return list(_CAPTIONER_ENTRIES)


def captioner_family(folder: Path) -> str | None:
    """``"blip"`` for a transformers BLIP save folder, ``"clipcap"`` for a CLIP-prefix folder
    (``clipcap.json``), else None."""
    if (folder / CLIPCAP_CONFIG).is_file():
        return "clipcap"
    if (folder / SBG_CONFIG).is_file():
        return "sbg"
    config = folder / "config.json"
    if config.is_file():
        import json

        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and data.get("model_type") == "blip":
            if "BlipForImageTextRetrieval" in (data.get("architectures") or []):
                return None  # an image-text matching model (tagger.scoring), not a captioner
            return "blip"
        if isinstance(data, dict) and data.get("model_type") in VLM_MODEL_TYPES:
            return VLM_MODEL_TYPES[data["model_type"]]
    return None


def local_captioner_spec(path: str | os.PathLike[str], key: str | None = None) -> ModelSpec:
    """Describe a local captioner folder (raises ModelNotFoundError if it is not one)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(f"captioner folder {str(folder)!r} does not exist")
    family = captioner_family(folder)
    if family == "sbg":  # Selective Blind Guessing: a folder with sbg.json
        files, where = (SBG_CONFIG,), f"local sbg folder {folder}"
        return ModelSpec(
            key or folder.name, "sbg", path=folder.resolve(), files=files, description=where
        )
    if family is None:
        raise ModelNotFoundError(
            f"{str(folder)!r} is not a captioner folder: a BLIP folder is a transformers save "
            f"(config.json with model_type 'blip', weights, processor and tokenizer files); a "
            f"CLIP-prefix folder holds {CLIPCAP_CONFIG} (see docs/captioners.md); a VLM folder "
            f"is a transformers save whose config.json has model_type "
            f"{', '.join(VLM_MODEL_TYPES)} (see docs/vlm.md)"
        )
    return ModelSpec(
        key=key or folder.name,
        family=family,
        path=folder.resolve(),
        files=blip_folder_files(folder)
        if family == "blip"
        else ("config.json",)
        if family in VLM_MODEL_TYPES.values()
        else (CLIPCAP_CONFIG,),
        description=f"local {family} folder {folder}",
    )


def list_captioners(
    models_dirs: Iterable[str | os.PathLike[str]] | None = None,
) -> list[ModelSpec]:
    """Return local captioner folders (first found wins per name), then the registry entries."""
    seen: dict[str, ModelSpec] = {}
    for folder in default_models_dirs() if models_dirs is None else models_dirs:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir(), key=lambda p: p.name):
            if child.is_dir() and captioner_family(child) is not None:
                seen.setdefault(child.name, local_captioner_spec(child))
    return [*seen.values(), *(s for s in _CAPTIONER_ENTRIES if s.key not in seen)]


def find_captioner_by_name(
    name: str, models_dirs: Iterable[str | os.PathLike[str]]
) -> ModelSpec | None:
    """The captioner a plain name (see ``name_problem``) stands for, or None: a BLIP or
    CLIP-prefix folder of that name directly inside one of ``models_dirs``, a folder there
    named like a registry entry that holds its files (that entry, read from disk), else the
    registry entry with that key or alias."""
    if name_problem(name) is not None:
        return None
    spec = _CAPTIONER_BY_NAME.get(name) or _CAPTIONER_BY_NAME.get(name.lower())
    for folder in models_dirs:
        path = Path(folder).expanduser() / name
        if not path.is_dir():
            continue
        if captioner_family(path) is not None:
            return local_captioner_spec(path)
        if spec is not None and all((path / f).is_file() for f in spec.files):
            from dataclasses import replace

            return replace(spec, path=path.resolve(), description=f"{spec.key} from {path}")
    return spec


def resolve_captioner(
    name: str, models_dirs: Iterable[str | os.PathLike[str]] | None = None
) -> ModelSpec:
    """Find the captioner a user named: a folder path, a local folder's name, a key or an alias.

    A folder under a models directory named like a registry CLIP-prefix entry and holding that
    entry's checkpoint (``models/clipcap-coco/coco_weights.pt``) is that entry read from disk.
    """
    text = str(name).strip()
    if not text:
        raise ModelNotFoundError("no captioner named: pass a registry key or a model folder")
    candidate = Path(text).expanduser()
    if candidate.is_dir() or os.sep in text or "/" in text or text.startswith("."):
        return local_captioner_spec(candidate)
    dirs = default_models_dirs() if models_dirs is None else list(models_dirs)
    spec = find_captioner_by_name(text, dirs)
    if spec is not None:
        return spec
    valid = ", ".join(s.key for s in list_captioners(dirs))
    raise ModelNotFoundError(
        f"unknown captioner {text!r}: use a BLIP or CLIP-prefix folder or one of: {valid}"
    )
