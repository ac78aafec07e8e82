"""The one safe writer and the strict reader of users' text files: real files, real links."""

from __future__ import annotations

import doctest
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tagger.safeio
from tagger.errors import OutputError, TextEncodingError
from tagger.safeio import (
    TMP_SUFFIX,
    AtomicFile,
    TextStyle,
    atomic_write_text,
    decode_text,
    encode_text,
    new_file_mode,
    read_bytes_nofollow,
    read_many_nofollow,
    read_text_file,
    remove_stale_temps,
    temp_name,
    write_text_file,
)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_doctests() -> None:
    assert doctest.testmod(tagger.safeio).failed == 0


def test_a_link_planted_under_the_temporary_name_redirects_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = tmp_path / "allowed"
    folder.mkdir()
    # The attacker knows the next temporary name (the random part is forced here) and plants a
    # link under it; the writer must neither follow it nor give up.
    tokens = iter(["000000000000", "111111111111"])
    monkeypatch.setattr(tagger.safeio.secrets, "token_hex", lambda n: next(tokens))
    planted = folder / f".x.txt.{os.getpid()}-000000000000{TMP_SUFFIX}"
    planted.symlink_to(victim)
    atomic_write_text(folder / "x.txt", "1girl, solo\n")
    assert victim.read_text() == "precious\n"
    target = folder / "x.txt"
    assert not target.is_symlink()
    assert target.read_text() == "1girl, solo\n"
    assert planted.is_symlink()  # the planted link itself is left alone
    assert _files(folder) == sorted([planted.name, "x.txt"])


def test_an_existing_output_that_is_a_link_is_refused_and_kept(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "x.txt"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="is a symbolic link"):
        atomic_write_text(link, "1girl\n")
    with pytest.raises(OutputError, match="is a symbolic link"):
        read_text_file(link)
    assert link.is_symlink()
    assert victim.read_text() == "precious\n"
    dangling = tmp_path / "y.txt"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="is a symbolic link"):
        atomic_write_text(dangling, "1girl\n")
    assert not (tmp_path / "nowhere").exists()
    assert _files(tmp_path) == ["victim.txt", "x.txt", "y.txt"]  # no temporary file left


def test_a_folder_at_the_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_text(tmp_path / "x.txt", "a\n")
    with pytest.raises(OutputError, match="is a folder"):
        read_text_file(tmp_path / "x.txt")


def test_permission_bits_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old\n")
    target.chmod(0o640)
    atomic_write_text(target, "new\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    target.chmod(0o444)  # read-only files are replaced too (the folder is writable), and stay so
    atomic_write_text(target, "newer\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    assert target.read_text() == "newer\n"


def test_a_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    code = (
        "import os, stat, sys; os.umask(0o027); from tagger.safeio import atomic_write_text; "
        "atomic_write_text(sys.argv[1], 'x'); "
        "print(oct(stat.S_IMODE(os.stat(sys.argv[1]).st_mode)))"
    )
    target = tmp_path / "new.txt"
    done = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0o640"
    assert new_file_mode() == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tagger.safeio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert _files(tmp_path) == ["x.txt"]

    def interrupted() -> None:
        with AtomicFile(target, fsync=False) as out:
            out.write(b"half")
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        interrupted()
    assert target.read_text() == "old\n"
    assert _files(tmp_path) == ["x.txt"]


def test_the_rename_happens_in_the_folder_that_was_opened(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = AtomicFile(folder / "x.txt", fsync=False)
    out.write(b"1girl\n")
    # the folder is swapped for a link to another folder before the rename
    folder.rename(tmp_path / "moved")
    folder.symlink_to(elsewhere)
    out.commit()
    assert (tmp_path / "moved" / "x.txt").read_bytes() == b"1girl\n"
    assert _files(elsewhere) == []


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".x.txt.{dead_pid}-0123456789ab{TMP_SUFFIX}"
    stale.write_text("half")
    stale_link = tmp_path / f".y.txt.{dead_pid}-0123456789ab{TMP_SUFFIX}"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    stale_link.symlink_to(victim)
    mine = tmp_path / temp_name("z.txt")
    mine.write_text("in progress")
    living = tmp_path / f".w.txt.{os.getppid()}-0123456789ab{TMP_SUFFIX}"
    living.write_text("another run's")
    other = tmp_path / f".notes.txt{TMP_SUFFIX}"  # not a name tagger makes: not touched
    other.write_text("user's")
    assert remove_stale_temps(tmp_path) == 2
    assert _files(tmp_path) == sorted([mine.name, living.name, other.name, "victim"])
    assert victim.read_text() == "precious"


# -- users' text files -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 300, 65536, 65537, 3 * 65536 + 5])
def test_read_bytes_returns_the_whole_file(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    path = tmp_path / "x.bin"
    path.write_bytes(data[:size])
    assert read_bytes_nofollow(path) == data[:size]
    assert read_bytes_nofollow(tmp_path / "missing") is None
    with pytest.raises(OutputError, match="is a folder"):
        read_bytes_nofollow(tmp_path)


def _read_one(path: Path) -> bytes | Exception | None:
    """``read_bytes_nofollow``, the error it raises returned."""
    try:
        return read_bytes_nofollow(path)
    except (OutputError, OSError) as exc:
        return exc


@pytest.mark.parametrize("openat", [True, False])
def test_reading_many_files_of_a_folder_reads_each_like_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openat: bool
) -> None:
    """``read_many_nofollow`` gives what ``read_bytes_nofollow`` gives or raises, file by file,
    through the folder's descriptor and by each path (where ``openat`` is missing)."""
    import tagger.safeio as safeio

    monkeypatch.setattr(safeio, "_READ_AT", openat and safeio._READ_AT)
    folder = tmp_path / "captions"
    folder.mkdir()
    for size in (0, 1, 300, 65535, 65536, 65537, 3 * 65536 + 5):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        (folder / f"f{size}.txt").write_bytes(data)
    (folder / "victim.txt").write_text("precious")
    (folder / "link.txt").symlink_to(folder / "victim.txt")
    (folder / "dangling.txt").symlink_to(tmp_path / "nowhere")
    (folder / "sub.txt").mkdir()
    names = [*sorted(p.name for p in folder.iterdir()), "missing.txt", None]
    got = read_many_nofollow(str(folder), names)
    assert len(got) == len(names)
    for name, result in zip(names, got, strict=True):
        if name is None:
            assert result is None
            continue
        expected = _read_one(folder / name)
        if isinstance(expected, Exception):
            assert type(result) is type(expected), name
            assert str(result) == str(expected), name  # the whole path named, the same words
            assert str(folder / name) in str(result)
        else:
            assert result == expected, name
    assert got[names.index("f65537.txt")] == (folder / "f65537.txt").read_bytes()
    assert "symbolic link" in str(got[names.index("link.txt")])
    assert "symbolic link" in str(got[names.index("dangling.txt")])
    assert "is a folder" in str(got[names.index("sub.txt")])
    assert got[names.index("missing.txt")] is None
    assert (folder / "victim.txt").read_text() == "precious"
    # a folder that cannot be opened: each file is read by its path, with its own answer
    assert read_many_nofollow(str(tmp_path / "gone"), ["a.txt"]) == [None]


@pytest.mark.parametrize(
    ("data", "text", "style"),
    [
        (b"a, b\n", "a, b\n", TextStyle()),
        (b"\xef\xbb\xbfa, b\r\n", "a, b\n", TextStyle(bom=True, newline="\r\n")),
        (b"a, b", "a, b", TextStyle(final_newline=False)),
        (b"a\rb\r", "a\nb\n", TextStyle(newline="\r")),
        ("猫, 犬\n".encode(), "猫, 犬\n", TextStyle()),
        (b"\n", "\n", TextStyle()),
        (b"a\nb\r\n", "a\nb\r\n", TextStyle()),  # the first line ending decides
    ],
)
def test_text_files_round_trip_byte_for_byte(data: bytes, text: str, style: TextStyle) -> None:
    decoded = decode_text(data, "x.txt")
    assert (decoded.text, decoded.style) == (text, style)
    assert encode_text(decoded.text, decoded.style) == data


@pytest.mark.parametrize(
    "data",
    ["café, naïve\n".encode("latin-1"), "猫耳, 少女\n".encode("shift_jis"), b"\xef\xbb\xbf\xff"],
    ids=["latin-1", "shift-jis", "bom-then-garbage"],
)
def test_text_that_is_not_utf8_is_refused_with_the_file_named(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(data)
    with pytest.raises(TextEncodingError, match=r"x\.txt: is not UTF-8 text") as info:
        read_text_file(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == data


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
        max_size=40,
    ),
    st.integers(0, 3),
    st.booleans(),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
def test_any_text_and_layout_round_trip(
    line: str, lines: int, bom: bool, newline: str, final: bool
) -> None:
    text = "\n".join([line] * (lines + 1))
    style = TextStyle(bom=bom, newline=newline, final_newline=final)
    data = encode_text(text, style)
    if not data.removeprefix(b"\xef\xbb\xbf"):
        return  # an empty file has no layout: it is read as a new file's (with a line ending)
    decoded = decode_text(data, "x")
    assert encode_text(decoded.text, decoded.style) == data
    assert decoded.text.rstrip("\n") == text.rstrip("\n")
    if text.strip("\n"):
        assert decoded.style.bom == bom
        assert decoded.style.final_newline == final
    if "\n" in text.strip("\n") or (final and text):
        assert decoded.style.newline == newline


def test_write_text_file_in_a_layout(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    write_text_file(path, "a, b", TextStyle(bom=True, newline="\r\n"))
    assert path.read_bytes() == b"\xef\xbb\xbfa, b\r\n"
