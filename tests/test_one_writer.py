"""Every file the project writes goes through ``tagger.safeio``: no other module opens a file for
writing, renames one into place or saves one by path (a new writer would bypass the rules of
docs/files.md: exclusive temporary files, no links followed, modes kept, fsync)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tagger"
#: The writer itself, and the manifest, the one file appended to in place (opened without
#: following a link; rewritten through the writer).
ALLOWED = {"safeio.py", "writers.py"}
WRITING_CALLS = {"write_text", "write_bytes", "replace", "rename", "save", "savez", "mkstemp",
                 "copy", "copy2", "copyfile", "move", "symlink_to", "hardlink_to"}  # fmt: skip


def _mode(call: ast.Call) -> str | None:
    """The literal mode of an ``open(...)`` call, or None."""
    args = call.args[1:2] if isinstance(call.func, ast.Name) else call.args[:1]
    for node in [*args, *(k.value for k in call.keywords if k.arg == "mode")]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
    return None


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each call that writes a file by itself."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in {"open", "fdopen"}:
            mode = _mode(node)
            if mode is not None and set(mode) & set("wax+"):
                found.append((node.lineno, f"{name}(..., {mode!r})"))
            owner = getattr(func, "value", None)
            if name == "open" and isinstance(owner, ast.Name) and owner.id == "os":
                found.append((node.lineno, "os.open(...)"))
        elif name in WRITING_CALLS:
            owner = getattr(func, "value", None)
            # str.replace / dict-style .replace(...) with a keyword are not file operations
            is_os = isinstance(owner, ast.Name) and owner.id in {"os", "shutil", "np", "torch"}
            first = node.args[0] if node.args else None
            into_writer = isinstance(first, ast.Attribute) and first.attr == "handle"  # AtomicFile
            if into_writer:
                continue
            if name in {"write_text", "write_bytes", "symlink_to", "hardlink_to"} or is_os:
                found.append((node.lineno, f"{name}(...)"))
    return found


def test_only_the_safe_writer_writes_files() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ALLOWED and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(PACKAGE)}:{line}: {what}" for line, what in _writes(tree)]
    assert offenders == [], "write through tagger.safeio instead:\n" + "\n".join(offenders)


def test_the_check_finds_a_plain_write() -> None:
    tree = ast.parse(
        "open(p, 'w').write(x)\nPath(p).write_text(x)\nos.replace(a, b)\n"
        "np.save(p, a)\nos.open(p, os.O_WRONLY)\nopen(p).read()\n'a'.replace('b', 'c')\n"
        "np.save(out.handle, a)\n"
    )
    assert sorted(line for line, _ in _writes(tree)) == [1, 2, 3, 4, 5]
