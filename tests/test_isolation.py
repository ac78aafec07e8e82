"""The core imports without the host and without heavy libraries."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from isolation import assert_light_imports

CORE_MODULES = [
    "tagger", "tagger.batch", "tagger.cache", "tagger.cli", "tagger.errors", "tagger.hub",
    "tagger.image", "tagger.options", "tagger.registry", "tagger.runtime", "tagger.tags",
    "tagger.wd14", "tagger.writers", "tagger.__main__", "tagger.ray_engine",
    "tagger.captioners", "tagger.captioners.base", "tagger.captioners.common",
    "tagger.captioners.blip", "tagger.captioners.clipcap", "tagger.captioners.clip_filter",
    "tagger.captioners.openclip", "tagger.interrogate", "tagger.cli.common", "tagger.cli.tag",
    "tagger.cli.caption", "tagger.cli.models", "tagger.cli.serve", "tagger.cli.ui",
    "tagger.cli.kohya", "tagger.option_text",
    "tagger.captioners.sbg", "tagger.captioners.sbg_vocab", "tagger.keywords",
    "tagger.keywords.extract", "tagger.keywords.options", "tagger.keywords.output",
    "tagger.keywords.pipeline", "tagger.cli.keywords",
]  # fmt: skip
CORE_MODULES += [f"tagger.vlm.{name}" for name in (
    "options", "templates", "clean", "limits", "images", "usage", "base", "api", "local", "dryrun",
)] + ["tagger.vlm", "tagger.cli.vlm_flags"]  # fmt: skip
HEAVY = ["onnxruntime", "torch", "transformers", "numpy", "PIL", "huggingface_hub", "onnx", "tqdm",
         "open_clip", "safetensors", "torchvision"]  # fmt: skip
HEAVY += ["ray", "pyarrow", "pandas"]  # only with --engine ray
HEAVY += ["keybert", "sentence_transformers", "sklearn"]  # only for keyphrases
HEAVY += ["openai", "httpx"]  # only when a VLM endpoint captioner loads


def test_core_imports_with_host_and_gradio_blocked_and_nothing_heavy() -> None:
    assert_light_imports(CORE_MODULES, HEAVY)


def test_cli_parses_engine_ray_without_importing_ray() -> None:
    code = textwrap.dedent(
        """
        import sys
        from tagger.cli import build_parser

        args = build_parser().parse_args(["tag", "x", "--engine", "ray", "--ray-address", "auto"])
        assert (args.engine, args.ray_address) == ("ray", "auto")
        heavy = [m for m in ("ray", "pyarrow", "pandas") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
