"""A run that cannot write its outputs stops with exit status 2 and one line, before model work.

Every case runs the real command line with a model folder whose ``model.onnx`` is not a model:
a run that reached model work would fail with a model error instead of the expected line. The
read-only folders are real: as root (who may write anywhere), the command runs in a private
mount namespace where they are bind-mounted read-only, as a read-only disk would be; as another
user, they are made read-only with their permission bits.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny import make_image

UNSHARE = shutil.which("unshare")


@pytest.fixture
def place(model_dir: Path) -> Iterator[Path]:
    """A folder every user can read (an unprivileged run needs the model and the images)."""
    root = Path(tempfile.mkdtemp(prefix="tagger-places-"))
    root.chmod(0o755)
    broken = root / "broken-model"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"this is not an ONNX model")
    shutil.copy(model_dir / "selected_tags.csv", broken / "selected_tags.csv")
    good = root / "model"
    shutil.copytree(model_dir, good)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    for path in root.rglob("*"):  # read-only folders are made writable again to be removed
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(root)


def _read_only_command(command: list[str], folders: list[Path]) -> list[str]:
    """``command`` with ``folders`` read-only for it."""
    if os.geteuid() != 0:
        for folder in folders:
            folder.chmod(0o555)
        return command
    if UNSHARE is None:
        pytest.skip("needs util-linux's unshare to make a folder read-only for root")
    probe = subprocess.run([UNSHARE, "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    mounts = " ".join(
        f"mount --bind {shlex.quote(str(f))} {shlex.quote(str(f))} && "
        f"mount -o remount,bind,ro {shlex.quote(str(f))} &&"
        for f in folders
    )
    script = f"{mounts} exec {shlex.join(command)}"
    return [UNSHARE, "-m", "--propagation", "private", "sh", "-c", script]


def tagger_cmd(
    *args: str, root: Path, read_only: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    """``python -m tagger`` as a user would run it, with some folders read-only."""
    env = {**os.environ, "HOME": str(root), "TAGGER_MODELS_DIR": "", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "tagger", *args]
    if read_only:
        command = _read_only_command(command, list(read_only))
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=root
    )


def _error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line of a run that could not start."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def _images(folder: Path, count: int = 2) -> Path:
    for index in range(count):
        make_image(folder / f"x{index}.png", (24, 24), seed=index)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def test_output_dir_naming_a_file(place: Path) -> None:
    images = _images(place / "ds")
    (place / "out").write_text("a file")
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"),
                      "--output-dir", str(place / "out"), root=place)  # fmt: skip
    assert (
        _error_line(done) == f"tagger: error: output folder {place / 'out'} is a file, not a folder"
    )


def test_output_dir_inside_a_file(place: Path) -> None:
    images = _images(place / "ds")
    (place / "file").write_text("a file")
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"),
                      "--output-dir", str(place / "file" / "out"), root=place)  # fmt: skip
    assert _error_line(done) == (
        f"tagger: error: cannot write the outputs into {place / 'file' / 'out'}: "
        f"{place / 'file'} is a file, not a folder"
    )


def test_manifest_naming_a_folder_or_a_link(place: Path) -> None:
    images = _images(place / "ds")
    (place / "m").mkdir()
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"),
                      "--jsonl", str(place / "m"), root=place)  # fmt: skip
    assert (
        _error_line(done)
        == f"tagger: error: manifest {place / 'm'} is a folder; name a file (.jsonl)"
    )
    (place / "link.jsonl").symlink_to(place / "elsewhere.jsonl")
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"),
                      "--jsonl", str(place / "link.jsonl"), root=place)  # fmt: skip
    assert "is a symbolic link" in _error_line(done)
    assert not (place / "elsewhere.jsonl").exists()


def test_manifest_in_a_read_only_folder(place: Path) -> None:
    images = _images(place / "ds")
    locked = place / "locked"
    locked.mkdir()
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"),
                      "--jsonl", str(locked / "metadata.jsonl"), root=place,
                      read_only=(locked,))  # fmt: skip
    assert _error_line(done) == (
        f"tagger: error: cannot write the manifest {locked / 'metadata.jsonl'}: cannot write in "
        f"{locked} (read-only or no permission)"
    )
    assert list(images.glob("*.txt")) == []


def test_output_dir_in_a_read_only_folder(place: Path) -> None:
    images = _images(place / "ds")
    locked = place / "locked"
    locked.mkdir()
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"),
                      "--output-dir", str(locked / "out"), root=place,
                      read_only=(locked,))  # fmt: skip
    assert _error_line(done) == (
        f"tagger: error: cannot write the outputs into {locked / 'out'}: cannot write in "
        f"{locked} (read-only or no permission)"
    )


def test_images_in_a_read_only_folder(place: Path) -> None:
    images = _images(place / "ds")
    done = tagger_cmd("tag", str(images), "--model", str(place / "broken-model"), root=place,
                      read_only=(images,))  # fmt: skip
    assert _error_line(done) == (
        f"tagger: error: cannot write any output: cannot write in {images} (read-only or no "
        f"permission); write them elsewhere with --output-dir"
    )


def test_a_read_only_sub_folder_fails_its_images_only(place: Path) -> None:
    writable = _images(place / "ds" / "a")
    locked = _images(place / "ds" / "b")
    done = tagger_cmd("tag", str(place / "ds"), "--recursive", "--model", str(place / "model"),
                      "--no-progress", root=place, read_only=(locked,))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert sorted(p.name for p in writable.glob("*.txt")) == ["x0.txt", "x1.txt"]
    assert list(locked.glob("*.txt")) == []
    assert f"failed: {locked / 'x0.png'}: cannot write in {locked} (read-only" in done.stderr


def test_nothing_to_write_in_a_read_only_folder_is_not_an_error(place: Path) -> None:
    images = _images(place / "ds")
    for index in range(2):
        (images / f"x{index}.txt").write_text("done\n")
    done = tagger_cmd("tag", str(images), "--model", str(place / "model"), "--no-progress",
                      root=place, read_only=(images,))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 skipped" in done.stderr
