"""The command line is one package above the core: nothing else imports it, its sub-commands
do not import each other, and a sub-command is added by naming its module in COMMANDS."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import tagger.cli
from tagger.cli import COMMANDS, build_parser

PACKAGE = Path(tagger.cli.__file__).parent
ROOT = PACKAGE.parent


def _imported(path: Path) -> set[str]:
    """Every module a source file imports (``from a import b`` also counts ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if PACKAGE in path.parents or path == ROOT / "__main__.py":
            continue
        used = {name for name in _imported(path) if name.split(".")[:2] == ["tagger", "cli"]}
        if used:
            offenders.append((path.relative_to(ROOT.parent).as_posix(), sorted(used)))
    assert offenders == []


def test_sub_commands_do_not_import_each_other() -> None:
    for name in COMMANDS:
        others = {f"tagger.cli.{other}" for other in COMMANDS if other != name}
        assert _imported(PACKAGE / f"{name}.py") & others == set(), name


def test_the_tab_imports_without_the_cli() -> None:
    code = textwrap.dedent(
        """
        import sys
        import tagger.ui.form
        from tagger.ui.form import FieldSpec, from_widget

        spec = FieldSpec("replace_tags", "Replace tags", "mapping", "", {})
        assert from_widget(spec, "a,b;c\\\\,d,e") == {"a": "b", "c,d": "e"}
        spec = FieldSpec("exclude_tags", "Exclude tags", "list", "", [])
        assert from_widget(spec, " x, ,y ") == ["x", "y"]
        loaded = sorted(m for m in sys.modules if m == "tagger.cli" or m.startswith("tagger.cli."))
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_bad_replacement_in_the_tab_names_the_field() -> None:
    from tagger.errors import OptionsError
    from tagger.ui.form import FieldSpec, from_widget

    spec = FieldSpec("replace_tags", "Replace tags", "mapping", "", {})
    with pytest.raises(OptionsError, match=r"^Replace tags: tag replacement 'lonely' is not"):
        from_widget(spec, "lonely")


def test_a_command_is_one_entry_in_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = types.ModuleType("tagger.cli.extra")

    def add_command(sub):
        sub.add_parser("extra", help="an extra command").set_defaults(handler=lambda args: 7)

    extra.add_command = add_command
    monkeypatch.setitem(sys.modules, "tagger.cli.extra", extra)
    monkeypatch.setattr(tagger.cli, "COMMANDS", (*COMMANDS, "extra"))
    args = build_parser().parse_args(["extra", "-vv"])
    assert (args.handler(args), tagger.cli.verbosity(args)) == (7, 2)
    assert tagger.cli.main(["extra"]) == 7
