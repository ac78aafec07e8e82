"""The API package imports without FastAPI, and ``tagger serve`` explains what is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

API_MODULES = [
    "tagger.api", "tagger.api.errors", "tagger.api.folders", "tagger.api.jobs", "tagger.api.models",
    "tagger.api.paths", "tagger.api.server", "tagger.api.service", "tagger.cli",
]  # fmt: skip
HEAVY = ["fastapi", "starlette", "uvicorn", "onnxruntime", "numpy", "PIL", "gradio", "modules"]

BLOCK = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"modules", "gradio", "launch", "fastapi", "uvicorn"}:
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCK) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_api_modules_import_without_fastapi_and_nothing_heavy() -> None:
    done = _python(
        f"""
        import importlib
        for name in {API_MODULES!r}:
            importlib.import_module(name)
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        assert not heavy, heavy
        import tagger.api, inspect
        print(inspect.signature(tagger.api.mount))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "(app: 'Any', *, lock: 'Any' = None, dependencies: 'Sequence[Any]' = (), "
        "models_dirs: 'Iterable[str | os.PathLike[str]]' = (), "
        "hf_cache: 'str | os.PathLike[str] | None' = None, "
        "providers: 'str | list[str] | None' = 'auto', device_id: 'int' = 0, "
        "allowed_dirs: 'Iterable[str | os.PathLike[str]]' = (), "
        "max_pixels: 'int | None' = None, max_body_bytes: 'int | None' = None, "
        "max_decodes: 'int | None' = None) -> 'None'"
    )


def test_serve_without_fastapi_says_what_to_install() -> None:
    done = _python(
        """
        from tagger.cli import main
        sys.exit(main(["serve", "--port", "1"]))
        """
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'tagger[api]'" in done.stderr
    assert "Traceback" not in done.stderr
