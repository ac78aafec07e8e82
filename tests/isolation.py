"""One check for the isolation tests: modules import in a fresh interpreter with the webui host
and Gradio blocked, and leave no heavy library imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence


def assert_light_imports(modules: Sequence[str], heavy: Sequence[str]) -> None:
    """Import ``modules`` in a subprocess that blocks ``modules``, ``gradio`` and ``launch``
    (the host); fail when an import fails or any of ``heavy`` ends up in ``sys.modules``."""
    code = textwrap.dedent(
        f"""
        import importlib, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {{"modules", "gradio", "launch"}}:
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        for name in {list(modules)!r}:
            importlib.import_module(name)
        heavy = [m for m in {list(heavy)!r} if m in sys.modules]
        assert not heavy, heavy
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
