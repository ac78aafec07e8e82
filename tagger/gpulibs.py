"""The shared libraries a GPU provider needs: read from its ELF file, found, and preloaded.

onnxruntime's CUDA provider (``libonnxruntime_providers_cuda.so``) links the CUDA runtime,
cuBLAS, cuFFT, cuRAND and cuDNN by soname (``libcudart.so.12``, ``libcudnn.so.9``...). When one
is missing, or only another major version is there, the provider does not load and onnxruntime
falls back to the CPU. This module answers, without a GPU and without loading anything:

- which libraries a provider needs (``read_elf``: its ``DT_NEEDED`` entries, plus the ones
  onnxruntime opens itself at run time, passed in by the caller);
- where each one resolves, the way the dynamic loader would look (``resolve``): a library
  already loaded in this process, the NVIDIA wheels' folders in ``site-packages`` (where torch
  keeps them), tagger's own folder of extra libraries (``gpu-libs``), ``LD_LIBRARY_PATH``, the
  system's library cache and folders;
- and it loads those libraries by path (``preload``) so that onnxruntime finds them by soname.

Standard library only, and no import of the rest of ``tagger``: ``install.py`` loads this file
by path inside the webui before ``tagger`` is importable.
"""

# Paths stay strings here on purpose: the loader compares unresolved path strings and file
# names, which pathlib would normalise differently.
# ruff: noqa: PTH112, PTH113, PTH118, PTH119, PTH120

from __future__ import annotations

import ctypes
import glob
import os
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Sonames of the CUDA toolkit and cuDNN families (the libraries this module resolves).
CUDA_PREFIXES = (
    "libcudart",
    "libcublas",
    "libcublasLt",
    "libcufft",
    "libcurand",
    "libcudnn",
    "libnvrtc",
    "libnvJitLink",
    "libcusparse",
    "libcusolver",
    "libcupti",
    "libnvToolsExt",
    "libcuda",
)
#: The driver's library: installed with the NVIDIA driver, never by pip.
DRIVER_LIBRARY = "libcuda.so.1"
#: Folders the loader searches when nothing else names the library (x86_64 and aarch64 Linux).
DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/cuda/lib64",
    "/usr/lib/wsl/lib",
)

_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH, _DT_STRTAB, _DT_STRSZ = 1, 14, 15, 29, 5, 10
_PT_LOAD, _PT_DYNAMIC = 1, 2


class ElfError(ValueError):
    """A file is not an ELF shared object this reader understands."""


@dataclass(frozen=True)
class ElfInfo:
    """The dynamic section of a shared library: its soname and what it links.

    ``needed`` keeps the file's order; ``rpath``/``runpath`` are the raw strings (``$ORIGIN``
    unexpanded), empty when absent.
    """

    path: str
    soname: str
    needed: tuple[str, ...]
    rpath: str = ""
    runpath: str = ""
    machine: int = 0


def read_elf(path: str | os.PathLike[str]) -> ElfInfo:
    """Read a shared library's ``DT_NEEDED``, ``DT_SONAME``, ``DT_RPATH`` and ``DT_RUNPATH``.

    Reads the program headers and the dynamic segment only (a few kilobytes of a file that may
    be hundreds of megabytes). Raises ``ElfError`` naming the file when it is not ELF.
    """
    name = os.fspath(path)
    with open(name, "rb") as handle:
        ident = handle.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ElfError(f"{name} is not an ELF file (it starts with {ident[:4]!r})")
        wide = {1: False, 2: True}.get(ident[4])
        order = {1: "<", 2: ">"}.get(ident[5])
        if wide is None or order is None:
            raise ElfError(f"{name}: unknown ELF class {ident[4]} or byte order {ident[5]}")
        header = handle.read(48 if wide else 36)
        if wide:
            machine = struct.unpack_from(order + "H", header, 2)[0]
            phoff = struct.unpack_from(order + "Q", header, 16)[0]
            phentsize, phnum = struct.unpack_from(order + "HH", header, 38)
            ph_format, dyn_format = order + "IIQQQQQQ", order + "qQ"
        else:
            machine = struct.unpack_from(order + "H", header, 2)[0]
            phoff = struct.unpack_from(order + "I", header, 12)[0]
            phentsize, phnum = struct.unpack_from(order + "HH", header, 26)
            ph_format, dyn_format = order + "IIIIIIII", order + "iI"
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dynamic: tuple[int, int] | None = None
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
        for index in range(phnum):
            entry = struct.unpack_from(ph_format, table, index * phentsize)
            if wide:
                p_type, _, p_offset, p_vaddr, _, p_filesz = entry[:6]
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = entry[:5]
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return ElfInfo(name, "", (), machine=machine)
        handle.seek(dynamic[0])
        raw = handle.read(dynamic[1])
        size = struct.calcsize(dyn_format)
        entries = [
            struct.unpack_from(dyn_format, raw, o) for o in range(0, len(raw) - size + 1, size)
        ]
        tags: dict[int, list[int]] = {}
        for tag, value in entries:
            if tag == 0:
                break
            tags.setdefault(tag, []).append(value)
        if _DT_STRTAB not in tags:
            raise ElfError(f"{name}: the dynamic section has no string table")
        strtab = _file_offset(tags[_DT_STRTAB][0], loads, name)
        handle.seek(strtab)
        strings = handle.read(tags.get(_DT_STRSZ, [1 << 20])[0])

    def text(offset: int) -> str:
        end = strings.find(b"\0", offset)
        return strings[offset : end if end >= 0 else None].decode("utf-8", "replace")

    return ElfInfo(
        path=name,
        soname=text(tags[_DT_SONAME][0]) if _DT_SONAME in tags else "",
        needed=tuple(text(v) for v in tags.get(_DT_NEEDED, [])),
        rpath=text(tags[_DT_RPATH][0]) if _DT_RPATH in tags else "",
        runpath=text(tags[_DT_RUNPATH][0]) if _DT_RUNPATH in tags else "",
        machine=machine,
    )


def _file_offset(vaddr: int, loads: Sequence[tuple[int, int, int]], name: str) -> int:
    """The file offset of a virtual address (through the PT_LOAD segment that holds it)."""
    for start, offset, size in loads:
        if start <= vaddr < start + size:
            return vaddr - start + offset
    raise ElfError(f"{name}: address {vaddr:#x} lies in no loadable segment")


def is_cuda_library(soname: str) -> bool:
    """True for a CUDA toolkit, cuDNN or driver soname.

    >>> is_cuda_library("libcudnn.so.9"), is_cuda_library("libstdc++.so.6")
    (True, False)
    """
    stem = soname.split(".so")[0]
    return any(stem == p or stem.startswith(p + "_") for p in CUDA_PREFIXES)


def soname_major(soname: str) -> int | None:
    """The major version a soname carries (``libcudart.so.11.0`` -> 11), None when it has none.

    >>> soname_major("libcudart.so.11.0"), soname_major("libcublasLt.so.12"), soname_major("x.so")
    (11, 12, None)
    """
    _, _, tail = soname.partition(".so.")
    head = tail.split(".")[0]
    return int(head) if head.isdigit() else None


def expand_origin(paths: str, origin: str) -> list[str]:
    """Split an RPATH/RUNPATH string and expand ``$ORIGIN`` / ``${ORIGIN}``.

    >>> expand_origin("$ORIGIN:$ORIGIN/../../nvidia/cudnn/lib", "/x/torch/lib")
    ['/x/torch/lib', '/x/nvidia/cudnn/lib']
    """
    out = []
    for item in paths.split(":"):
        if item:
            out.append(
                os.path.normpath(item.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
            )
    return out


def site_packages() -> list[str]:
    """The ``site-packages`` folders this interpreter imports from (on ``sys.path``)."""
    found = []
    for folder in sys.path:
        wanted = folder.endswith(("site-packages", "dist-packages")) and folder not in found
        if wanted and os.path.isdir(folder):
            found.append(folder)
    return found


def nvidia_dirs(roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The library folders of NVIDIA's pip wheels under each root (a site-packages or target).

    CUDA 12 and older wheels install one folder per component (``nvidia/cublas/lib``); CUDA 13
    wheels share ``nvidia/cu13/lib``; on Windows the DLLs are under ``bin``.
    """
    dirs: list[str] = []
    for root in roots:
        for pattern in ("nvidia/*/lib", "nvidia/*/bin", "nvidia/*/bin/x86_64"):
            for folder in sorted(glob.glob(os.path.join(os.fspath(root), pattern))):
                if os.path.isdir(folder) and folder not in dirs:
                    dirs.append(folder)
    return dirs


def gpu_libs_dir() -> Path:
    """tagger's own folder of extra GPU libraries: ``$TAGGER_GPU_LIBS``, else
    ``$TAGGER_CACHE_DIR/gpu-libs``, else ``~/.cache/tagger/gpu-libs``.

    Libraries that must not go into ``site-packages`` (another major version of a library torch
    already ships under the same file name) are installed here with ``pip install --target``.
    """
    explicit = os.environ.get("TAGGER_GPU_LIBS")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("TAGGER_CACHE_DIR")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "tagger"
    return base / "gpu-libs"


def search_dirs(
    *,
    roots: Iterable[str | os.PathLike[str]] | None = None,
    extra: Iterable[str | os.PathLike[str]] | None = None,
    environ: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The folders searched, in order, each with where it comes from.

    ``roots`` defaults to this interpreter's site-packages; ``extra`` to ``gpu_libs_dir()``.
    Returns ``(folder, origin)`` pairs; origin is ``site-packages``, ``torch``, ``gpu-libs``,
    ``LD_LIBRARY_PATH`` or ``system``.
    """
    env = os.environ if environ is None else environ
    roots = site_packages() if roots is None else [os.fspath(r) for r in roots]
    extra = [gpu_libs_dir()] if extra is None else list(extra)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(folder: str, origin: str) -> None:
        folder = os.path.normpath(folder)
        if folder not in seen and os.path.isdir(folder):
            seen.add(folder)
            pairs.append((folder, origin))

    for folder in nvidia_dirs(roots):
        add(folder, "site-packages")
    for root in roots:
        add(os.path.join(root, "torch", "lib"), "torch")
    for folder in nvidia_dirs(extra):
        add(folder, "gpu-libs")
    for item in env.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if item:
            add(item, "LD_LIBRARY_PATH")
    for folder in _ld_cache_dirs():
        add(folder, "system")
    for folder in DEFAULT_DIRS:
        add(folder, "system")
    return pairs


def _ld_cache_dirs() -> list[str]:
    """Folders named in ``/etc/ld.so.conf`` (and its includes), the system loader's list."""
    dirs: list[str] = []

    def read(conf: str, depth: int = 0) -> None:
        try:
            lines = Path(conf).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include") and depth < 4:
                for name in sorted(glob.glob(line.split(None, 1)[1].strip())):
                    read(name, depth + 1)
            elif line:
                dirs.append(line)

    read("/etc/ld.so.conf")
    return dirs


def loaded_libraries() -> dict[str, str]:
    """Shared libraries mapped into this process: file name and SONAME -> path (Linux
    ``/proc``; a library loaded through a symlink maps under its real file name, so its SONAME
    is what the loader matches)."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
            path = parts[5].strip()
            if os.path.basename(path) in found:
                continue
            found[os.path.basename(path)] = path
            try:
                soname = _soname_of(path)
            except (OSError, ElfError):
                continue
            if soname:
                found.setdefault(soname, path)
    return found


_SONAMES: dict[str, str] = {}


def _soname_of(path: str) -> str:
    """The SONAME of a mapped library (remembered: a process maps the same files for life)."""
    if path not in _SONAMES:
        _SONAMES[path] = read_elf(path).soname
    return _SONAMES[path]


@dataclass(frozen=True)
class Resolved:
    """Where one needed library was found: ``path`` is None when it is missing.

    ``origin`` says how: ``loaded`` (already in this process), or the origin of the folder
    (see ``search_dirs``). ``soname`` of the file found is checked against the name asked for.
    """

    name: str
    path: str | None
    origin: str = ""

    @property
    def found(self) -> bool:
        """True when the library resolves."""
        return self.path is not None


def resolve(
    name: str,
    dirs: Sequence[tuple[str, str]],
    *,
    loaded: dict[str, str] | None = None,
) -> Resolved:
    """Find ``name`` (a soname such as ``libcudnn.so.9``) as the loader would.

    A library already loaded under that soname wins (the loader reuses it); else the first
    folder holding a file of that name whose own ``SONAME`` is the same (or that has none).
    """
    if loaded and name in loaded:
        return Resolved(name, loaded[name], "loaded")
    for folder, origin in dirs:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            try:
                soname = read_elf(candidate).soname
            except (OSError, ElfError):
                continue
            if soname in ("", name):
                return Resolved(name, candidate, origin)
    return Resolved(name, None)


@dataclass
class ProviderCheck:
    """The libraries one provider library needs and where each resolved."""

    provider: str
    needed: list[str]
    resolved: list[Resolved] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Needed libraries that resolve nowhere (the driver's ``libcuda.so.1`` included)."""
        return [r.name for r in self.resolved if not r.found]


def check_provider(
    provider: str | os.PathLike[str],
    *,
    runtime_loaded: Sequence[str] = (),
    dirs: Sequence[tuple[str, str]] | None = None,
    loaded: dict[str, str] | None = None,
) -> ProviderCheck:
    """Resolve every CUDA/cuDNN library ``provider`` needs: its ``DT_NEEDED`` entries of the
    CUDA families plus ``runtime_loaded`` (libraries onnxruntime opens itself, such as
    ``libcudnn.so.9`` from 1.28 on). The provider's own RPATH/RUNPATH folders are searched after
    the environment's folders and before ``LD_LIBRARY_PATH`` and the system's.
    """
    info = read_elf(provider)
    needed = [n for n in info.needed if is_cuda_library(n)]
    needed += [n for n in runtime_loaded if n not in needed]
    origin = os.path.dirname(os.path.abspath(os.fspath(provider)))
    own = [(d, "provider rpath") for d in expand_origin(info.runpath or info.rpath, origin)]
    folders = list(search_dirs() if dirs is None else dirs)
    # the environment's own libraries (torch's wheels, gpu-libs) first, then the provider's
    # RPATH/RUNPATH (which may name a system CUDA such as /usr/local/cuda-12.2/lib), then the
    # library path and the system folders
    at = next((i for i, (_, o) in enumerate(folders) if o in ("LD_LIBRARY_PATH", "system")), None)
    at = len(folders) if at is None else at
    folders[at:at] = own
    current = loaded_libraries() if loaded is None else loaded
    check = ProviderCheck(os.fspath(provider), needed)
    check.resolved = [resolve(name, folders, loaded=current) for name in needed]
    return check


def preload(check: ProviderCheck) -> list[str]:
    """Load every resolved library of ``check`` that is not loaded yet, by path, and return
    their paths. ``RTLD_LOCAL``: the symbols stay out of the global scope, so torch's own
    libraries (another cuDNN major, say) are never interposed; onnxruntime finds each one by
    soname when it loads the provider. Each library's own CUDA dependencies that resolve in
    the same folders are loaded before it.
    """
    done: list[str] = []
    for item in check.resolved:
        if item.found and item.origin != "loaded":
            _load_with_deps(item.path, done, set())  # type: ignore[arg-type]
    return done


def _load_with_deps(path: str, done: list[str], visiting: set[str]) -> None:
    """Load ``path`` after its CUDA-family ``DT_NEEDED`` found in its own folder."""
    if path in done or path in visiting:
        return
    visiting.add(path)
    folder = os.path.dirname(path)
    try:
        needed = read_elf(path).needed
    except (OSError, ElfError):
        needed = ()
    for name in needed:
        sibling = os.path.join(folder, name)
        if is_cuda_library(name) and name != DRIVER_LIBRARY and os.path.isfile(sibling):
            _load_with_deps(sibling, done, visiting)
    if os.path.basename(path) not in loaded_libraries():
        ctypes.CDLL(path, mode=getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 2))
    done.append(path)
