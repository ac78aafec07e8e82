"""The one way tagger writes a file, and the one way it reads a user's text file.

**Writing.** Every file tagger writes (captions, JSON sidecars, manifests, presets, caches, job
outputs) is written by ``AtomicFile``: the bytes go to a new temporary file created *exclusively*
in the target's own folder (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random hidden name: never an
existing file, never through a symbolic link), are flushed (and ``fsync``-ed unless the caller
opts out), get the permission bits of the file they replace (or the umask's for a new file), and
are then renamed over the target. A reader therefore sees the old file or the new one, never half
of one, and a link planted in a writable folder cannot redirect a write anywhere.

An existing target that is a symbolic link is refused (``OutputError``): tagger never writes
through a link and never replaces one with a file, so a link a user made on purpose is kept and a
link planted by someone else leads nowhere. Hard links are not followed either: the rename gives
the target name a new file, other names keep the old content.

**Reading.** A user's caption file is read strictly: UTF-8, with a byte order mark accepted and
remembered, line endings remembered. A file that is not valid UTF-8 raises
``TextEncodingError`` naming the file; tagger never rewrites it (decoding with replacement
characters would destroy Latin-1 or Shift-JIS text for good).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from tagger.errors import OutputError, TextEncodingError

#: Every temporary name ends with this (hidden files are skipped by tagger's folder walks).
TMP_SUFFIX = ".tagger-tmp"
UTF8_BOM = b"\xef\xbb\xbf"
_NAME_ROOM = 200  # bytes of the target's name kept in the temporary name (names are <= 255)
# os.replace is renameat(2) where os.rename is (supports_dir_fd lists only os.rename)
_DIR_FDS = {os.open, os.rename, os.stat, os.unlink} <= os.supports_dir_fd
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
#: Whether ``os.open`` and ``os.lstat`` take ``dir_fd`` here (POSIX, not Windows).
_READ_AT = os.open in os.supports_dir_fd and os.lstat in os.supports_dir_fd


# -- permission bits -----------------------------------------------------------------------------

_umask_lock = threading.Lock()
_umask: int | None = None


def _read_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), else by
    setting and restoring it once (under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def new_file_mode() -> int:
    """Permission bits of a new file: ``0o666`` less the umask, as ``open()`` would create it.

    >>> new_file_mode() & ~0o666
    0
    """
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = _read_umask()
        return 0o666 & ~_umask


# -- the writer ----------------------------------------------------------------------------------


def temp_name(name: str) -> str:
    """A fresh temporary name for a file called ``name``: hidden, with this process's id and a
    random part (``remove_stale_temps`` recognises those of processes that died).

    >>> n = temp_name("a.txt"); n.startswith(".a.txt.") and n.endswith(".tagger-tmp")
    True
    >>> temp_name("a.txt") != temp_name("a.txt")
    True
    """
    head = os.fsencode(name)[:_NAME_ROOM].decode(sys.getfilesystemencoding(), "ignore")
    return f".{head}.{os.getpid()}-{secrets.token_hex(6)}{TMP_SUFFIX}"


_TEMP = re.compile(r"^\..*\.(\d+)-[0-9a-f]{12}" + re.escape(TMP_SUFFIX) + "$", re.DOTALL)


def temp_owner(name: str) -> int | None:
    """The process id in a temporary name ``temp_name`` made, or None for any other name.

    >>> temp_owner(".a.txt.4242-0123456789ab.tagger-tmp"), temp_owner("a.txt")
    (4242, None)
    """
    match = _TEMP.match(name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (or the answer is unknown)."""
    if os.name != "posix":  # os.kill would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files that tagger processes which no longer run left in ``folder``
    (a run killed with SIGKILL, a power cut); returns how many. The files of running processes,
    this one included, and every other file are left alone. POSIX only (elsewhere: 0)."""
    removed = 0
    if os.name != "posix":
        return 0
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.endswith(TMP_SUFFIX)]
    except OSError:
        return 0
    for name in names:
        pid = temp_owner(name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        try:
            (Path(folder) / name).unlink()  # a link is removed itself, never followed
            removed += 1
        except OSError:
            pass
    return removed


def _existing(path: Path, dir_fd: int | None) -> os.stat_result | None:
    """``lstat`` of the target, or None when there is none; refuses links and folders."""
    try:
        where = path.name if dir_fd is not None else path
        info = os.stat(where, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise link_error(path)
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(str(path), "is a folder, not a file")
    return info


class AtomicFile:
    """A file written under a temporary name and renamed into place by ``commit()``.

    Use it as a context manager (committed when the block ends normally, removed when it
    raises) or call ``commit()`` / ``abort()``. ``handle`` is a binary file. With ``fsync`` the
    data reaches the disk before the rename, so even a power cut leaves the old file or the
    whole new one (it costs about 0.3 ms per file on a virtio SSD; docs/benchmarks.md).

    Raises ``OutputError`` when the target is a symbolic link or a folder, ``OSError`` when the
    folder cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._dir_fd: int | None = None
        if _DIR_FDS:
            # the temporary file and the rename happen in this very folder, even if a path
            # component is swapped for a link meanwhile
            self._dir_fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            info = _existing(self.path, self._dir_fd)
            self.mode = stat.S_IMODE(info.st_mode) if info is not None else new_file_mode()
            self._tmp, fd = self._create_temp()
        except BaseException:
            self._close_dir()
            raise
        self.handle: IO[bytes] = os.fdopen(fd, "wb")
        self._open = True

    def _create_temp(self) -> tuple[str, int]:
        """Create the temporary file exclusively (a name that exists is never reused)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
        for _ in range(16):
            name = temp_name(self.path.name)
            where = name if self._dir_fd is not None else os.fspath(self.path.parent / name)
            try:
                return where, os.open(where, flags, 0o600, dir_fd=self._dir_fd)
            except FileExistsError:
                continue
        raise OutputError(str(self.path), "could not create a temporary file beside it")

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def write(self, data: bytes) -> None:
        """Write bytes to the temporary file."""
        self.handle.write(data)

    def commit(self) -> None:
        """Flush, keep the permission bits, sync, and rename over the target."""
        if not self._open:
            raise ValueError(f"{self.path}: already committed or aborted")
        try:
            self.handle.flush()
            fd = self.handle.fileno()
            if hasattr(os, "fchmod"):
                os.fchmod(fd, self.mode)
            if self.fsync:
                os.fsync(fd)
            self.handle.close()
            if not hasattr(os, "fchmod"):  # Windows: only the read-only bit exists
                Path(self._tmp).chmod(self.mode)
            if self._dir_fd is not None:
                # a link planted at the target meanwhile is replaced itself, never followed
                os.replace(
                    self._tmp, self.path.name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd
                )
            else:
                os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._open = False
        self._close_dir()

    def abort(self) -> None:
        """Remove the temporary file; the target is left as it was."""
        if not self._open:
            return
        self._open = False
        try:
            self.handle.close()
        except OSError:
            pass
        try:
            os.unlink(self._tmp, dir_fd=self._dir_fd)
        except OSError:
            pass
        self._close_dir()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through ``AtomicFile``."""
    with AtomicFile(path, fsync=fsync) as out:
        out.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` as UTF-8, exactly as given (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


# -- a user's text files ---------------------------------------------------------------------


@dataclass(frozen=True)
class TextStyle:
    """How a text file is laid out on disk: byte order mark, line ending, final line ending."""

    bom: bool = False
    newline: str = "\n"
    final_newline: bool = True


#: Files tagger creates: UTF-8 without a BOM, ``\n``, a final line ending.
NEW_FILE_STYLE = TextStyle()
_NO_FINAL_NEWLINE = TextStyle(final_newline=False)


@dataclass(frozen=True)
class TextFile:
    """A decoded text file: ``text`` without the BOM and with ``\\n`` line endings."""

    text: str
    style: TextStyle


def sniff_style(data: bytes) -> TextStyle:
    """The layout of a file's bytes, whatever their encoding (the first line ending decides).

    >>> sniff_style(b"\\xef\\xbb\\xbfa\\r\\nb\\r\\n")
    TextStyle(bom=True, newline='\\r\\n', final_newline=True)
    >>> sniff_style(b"a, b")
    TextStyle(bom=False, newline='\\n', final_newline=False)
    >>> sniff_style(b"")
    TextStyle(bom=False, newline='\\n', final_newline=True)
    """
    if b"\r" not in data and not data.startswith(UTF8_BOM):  # the usual file: shared styles
        return NEW_FILE_STYLE if not data or data.endswith(b"\n") else _NO_FINAL_NEWLINE
    bom = data.startswith(UTF8_BOM)
    body = data[len(UTF8_BOM) :] if bom else data
    if not body:
        return TextStyle(bom=bom)
    newline = "\n"
    first_cr = body.find(b"\r")
    if first_cr != -1:
        first_lf = body.find(b"\n", 0, first_cr)
        if first_lf == -1:  # a carriage return comes first
            newline = "\r\n" if body[first_cr + 1 : first_cr + 2] == b"\n" else "\r"
    return TextStyle(bom=bom, newline=newline, final_newline=body.endswith((b"\n", b"\r")))


def decode_text(data: bytes, source: str) -> TextFile:
    """Decode a text file's bytes strictly as UTF-8 (raises ``TextEncodingError``).

    >>> decode_text(b"\\xef\\xbb\\xbf1girl, solo\\r\\n", "a.txt")
    TextFile(text='1girl, solo\\n', style=TextStyle(bom=True, newline='\\r\\n', final_newline=True))
    >>> decode_text(b"caf\\xe9", "a.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tagger.errors.TextEncodingError: a.txt: is not UTF-8 text (byte 0xe9 at offset 3); ...
    """
    style = sniff_style(data)
    return TextFile(decode_body(data, style, source), style)


def decode_body(data: bytes, style: TextStyle, source: str) -> str:
    """The text of a file's bytes laid out as ``style`` says (``sniff_style``): without the
    BOM, with ``\\n`` line endings; strict UTF-8 (raises ``TextEncodingError``)."""
    body = data[len(UTF8_BOM) :] if style.bom else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(UTF8_BOM) if style.bom else 0)
        raise TextEncodingError(
            source,
            f"is not UTF-8 text (byte 0x{body[exc.start]:02x} at offset {offset}); tagger "
            f"leaves it untouched: convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8) or use "
            f"--on-existing overwrite to replace it",
        ) from None
    if style.newline != "\n":
        text = text.replace(style.newline, "\n")
    return text


def encode_text(text: str, style: TextStyle) -> bytes:
    """Encode text with ``\\n`` line endings back into a file's layout (the final line ending
    added or left out as the style says).

    >>> encode_text("a, b\\n", TextStyle(bom=True, newline="\\r\\n", final_newline=True))
    b'\\xef\\xbb\\xbfa, b\\r\\n'
    >>> encode_text("a, b", TextStyle(final_newline=True))
    b'a, b\\n'
    >>> encode_text("a, b\\n", TextStyle(final_newline=False))
    b'a, b'
    """
    body = text.rstrip("\n") if not style.final_newline else text
    if style.final_newline and not body.endswith("\n"):
        body += "\n"
    if style.newline != "\n":
        body = body.replace("\n", style.newline)
    return (UTF8_BOM if style.bom else b"") + body.encode("utf-8")


def _open_fd_nofollow(
    path: str | os.PathLike[str], at: tuple[int, str] | None = None
) -> int | None:
    """A read-only descriptor of a file, or None when it does not exist; a symbolic link
    raises ``OutputError`` (tagger reads a caption or manifest only where it would write one).
    ``at``: open this (folder descriptor, name) instead, ``path`` being what errors name.
    The caller tells a folder apart (``_file_size``, ``_read_all``)."""
    flags = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
    target, dir_fd = (path, None) if at is None else (at[1], at[0])
    try:
        fd = os.open(target, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if _is_link(target, dir_fd):  # a dangling link
            raise link_error(path) from None
        return None
    except OSError as exc:
        if _is_link(target, dir_fd):  # ELOOP from O_NOFOLLOW
            raise link_error(path) from None
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    return fd


def _is_link(path: str | os.PathLike[str], dir_fd: int | None = None) -> bool:
    """Whether ``path`` (a name in the folder open at ``dir_fd`` when given) is a link."""
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _file_size(fd: int, path: str | os.PathLike[str]) -> int:
    """The size of the file open at ``fd``; ``OutputError`` when it is a folder."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise _folder_error(path)
    return info.st_size


def _folder_error(path: str | os.PathLike[str]) -> OutputError:
    """The error for a caption or manifest path that is a folder."""
    return OutputError(os.fspath(path), "is a folder, not a file")


def open_nofollow(path: str | os.PathLike[str]) -> IO[bytes] | None:
    """Open a file for reading, or None when it does not exist; a symbolic link raises
    ``OutputError`` (tagger reads a caption or manifest only where it would write one), a
    folder too."""
    fd = _open_fd_nofollow(path)
    if fd is None:
        return None
    try:
        _file_size(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


#: What one ``os.read`` asks for: a caption fits, so a file costs open, one read and close.
_READ_CHUNK = 65536


def _read_all(fd: int, path: str | os.PathLike[str]) -> bytes:
    """Everything left in the file open at ``fd`` (``OutputError`` for a folder); closes it.

    A read that returns less than it asked for reached the end of a regular file, so a small
    file takes one ``read`` call and no ``fstat``."""
    try:
        try:
            first = os.read(fd, _READ_CHUNK)
        except IsADirectoryError:
            raise _folder_error(path) from None
        if len(first) < _READ_CHUNK:
            return first
        parts = [first]
        while chunk := os.read(fd, _READ_CHUNK * 4):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_bytes_nofollow(path: str | os.PathLike[str]) -> bytes | None:
    """A file's bytes, or None when it does not exist (see ``open_nofollow``); read straight
    from the descriptor (a dataset pass reads millions of small captions)."""
    fd = _open_fd_nofollow(path)
    return None if fd is None else _read_all(fd, path)


def read_many_nofollow(
    folder: str, names: Sequence[str | None]
) -> list[bytes | OutputError | OSError | None]:
    """The bytes of each file ``names`` gives in ``folder``, as ``read_bytes_nofollow`` reads
    one: None for a None name or a file that does not exist, and the error, returned instead
    of raised, for a link, a folder or a failed read.

    The folder is opened once and each name opened in it (``openat``): the kernel looks up
    one name per file instead of the whole path, a good part of the cost of reading a small
    cached caption. Where that is not available, each file is read by its path.
    """
    sep = "" if folder.endswith(os.sep) else os.sep
    dir_fd: int | None = None
    if _READ_AT:
        try:
            dir_fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError:
            dir_fd = None
    results: list[bytes | OutputError | OSError | None] = []
    append = results.append
    try:
        for name in names:
            if name is None:
                append(None)
                continue
            path = folder + sep + name
            try:
                fd = _open_fd_nofollow(path, None if dir_fd is None else (dir_fd, name))
                append(None if fd is None else _read_all(fd, path))
            except (OutputError, OSError) as exc:
                append(exc)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return results


def link_error(path: str | os.PathLike[str]) -> OutputError:
    """The error for an output or caption that is a symbolic link."""
    return OutputError(
        os.fspath(path),
        "is a symbolic link; tagger never reads, writes through or replaces a link (remove "
        "it, or write the outputs elsewhere with --output-dir)",
    )


def read_text_file(path: str | os.PathLike[str]) -> TextFile | None:
    """Read a user's text file strictly (UTF-8, BOM and line endings remembered); None when it
    does not exist. Raises ``TextEncodingError`` for other encodings, ``OutputError`` for a
    link."""
    data = read_bytes_nofollow(path)
    return None if data is None else decode_text(data, os.fspath(path))


def write_text_file(
    path: str | os.PathLike[str],
    text: str,
    style: TextStyle = NEW_FILE_STYLE,
    *,
    fsync: bool = True,
) -> None:
    """Write text with ``\\n`` line endings in a file's layout, through ``AtomicFile``."""
    atomic_write_bytes(path, encode_text(text, style), fsync=fsync)


# -- read-modify-write under a lock --------------------------------------------------------------

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on a folder while its files are read, changed and written back.

    Every writer that reads a caption and writes a new version of it (the batch engine's
    skip/append/prepend decisions, the dataset workbench's edits and undo) holds the lock of
    the caption's folder from the read to the rename, so two of them never interleave and
    neither loses the other's write. On POSIX the lock is ``flock`` on the folder itself: it
    holds between processes and between threads (each call opens its own descriptor).
    Elsewhere a lock per folder path serialises the threads of this process only.

    A folder that does not exist yet is created (its parents too), as ``AtomicFile`` would.
    """
    path = os.fspath(folder) or "."
    Path(path).mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        key = os.path.normcase(os.path.abspath(path))
        with _thread_locks_guard:
            lock = _thread_locks.setdefault(key, threading.Lock())
        with lock:
            yield
        return
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def move_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move a file (or a link, as the link) to ``target`` without replacing anything there.

    The dataset workbench's trash and its undo move whole files instead of rewriting them, so
    the bytes, mode and times stay as they were. The target's folder is created; a target that
    already exists (a file, a link, even a dangling one) is refused with ``FileExistsError``,
    never overwritten. On one file system this is a rename; elsewhere ``OSError`` (``EXDEV``)
    is raised and nothing moves.
    """
    dst = Path(target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "a file is already there; nothing was moved", str(dst))
    Path(source).rename(dst)
