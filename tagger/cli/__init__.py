"""The command line: ``tagger`` and ``python -m tagger``.

One module per sub-command (``tagger.cli.tag``, ``caption``, ``models``, ``serve``, ``ui``,
``doctor``), each with ``add_command(sub)`` registering its parser and handler; the flags and
helpers they share live in ``tagger.cli.common``. A sub-command is added by naming its module
in ``COMMANDS``.

Exit status: 0 when every image was written (or already done), 1 when some images failed, 2
when the run could not start (bad arguments, unknown or unavailable model, outputs that cannot
be written), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tagger import __version__
from tagger.errors import TaggerError

log = logging.getLogger("tagger")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The sub-commands, in --help order: modules of this package, each with ``add_command(sub)``.
COMMANDS = (
    "tag",
    "models",
    "caption",
    "serve",
    "ui",
    "doctor",
    "dataset",
    "keywords",
    "score",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tagger`` command: one sub-command per ``COMMANDS`` entry,
    each also taking ``-v`` after its name."""
    from tagger.cli.common import CommandParser, add_verbose_option

    parser = CommandParser(
        prog="tagger", description="Tag and caption images and write caption files."
    )
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    add_verbose_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"tagger.cli.{name}").add_command(sub)
    for command in sub.choices.values():
        add_verbose_option(command, dest="command_verbose")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tagger`` command; returns the exit status."""
    from tagger.cli.common import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    restore_logging = configure_logging(verbosity(args))
    try:
        for note in getattr(args, "kohya_notes", ()):
            log.warning("%s", note)
        return args.handler(args)
    except TaggerError as exc:
        print(f"tagger: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file or folder the run needs cannot be used
        log.debug("the run stopped on an OS error", exc_info=True)
        print(f"tagger: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if _is_validation_error(exc):
            print(f"tagger: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise
    finally:
        restore_logging()


def verbosity(args: argparse.Namespace) -> int:
    """How many ``-v`` were given, before and after the sub-command together."""
    return args.verbose + getattr(args, "command_verbose", 0)


def _is_validation_error(exc: Exception) -> bool:
    """True for pydantic's ValidationError (options out of range)."""
    return type(exc).__name__ == "ValidationError" and "pydantic" in type(exc).__module__
