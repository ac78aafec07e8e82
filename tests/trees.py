"""Image trees for the engine comparisons, and their files read back byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiny import make_image


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) -> its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def dataset(root: Path, count: int, side: int = 0) -> Path:
    """Nested folders of images, a broken file and a same-stem pair (a.png, a.jpg)."""
    for i in range(count):
        sub = root / ("a/b" if i % 3 == 0 else "a" if i % 3 == 1 else "c")
        size = (side, side + i) if side else (20 + i, 30 + i % 7)
        make_image(sub / f"img{i:03d}.png", size, seed=i)
    (root / "a" / "broken.png").write_bytes(b"not an image at all")
    make_image(root / "c" / "same.png", (40, 40), seed=100)
    make_image(root / "c" / "same.jpg", (40, 40), seed=101)
    (root / ".hidden").mkdir()
    make_image(root / ".hidden" / "skipped.png", (40, 40), seed=102)
    return root


def twins(tmp_path: Path, count: int, side: int = 0) -> tuple[Path, Path]:
    """Two identical image trees: one for the local engine, one for Ray."""
    local = dataset(tmp_path / "local", count, side)
    remote = tmp_path / "ray"
    shutil.copytree(local, remote)
    return local, remote
