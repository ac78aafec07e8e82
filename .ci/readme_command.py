"""Print the shell command of a README section's first ``bash`` block (CI runs exactly that).

    python3 .ci/readme_command.py "Run the tests"

Exits 1, naming the section, when the section or its command is missing, so that CI fails
instead of running something else.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def command(readme: str, section: str) -> str:
    """The first ```bash block after the heading ``section`` (any level), before the next one."""
    heading = re.search(rf"^#+ {re.escape(section)}\s*$", readme, re.MULTILINE)
    if heading is None:
        raise LookupError(f"the README has no section {section!r}")
    rest = readme[heading.end() :]
    following = re.search(r"^#+ ", rest, re.MULTILINE)
    body = rest[: following.start()] if following else rest
    block = re.search(r"^```bash\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    if block is None or not block.group(1).strip():
        raise LookupError(f"the README's section {section!r} has no bash command block")
    return block.group(1).strip()


def main() -> int:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    try:
        print(command(readme, sys.argv[1]))
    except (LookupError, IndexError) as exc:
        print(f"readme_command: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
