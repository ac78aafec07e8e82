"""``tagger doctor``: is onnxruntime's GPU provider usable beside this torch, and the fix if not
(the report and its command are defined with the check, in ``tagger.doctor``)."""

from __future__ import annotations

from typing import Any


def add_command(sub: Any) -> None:
    """Register ``tagger doctor``."""
    from tagger.doctor import add_doctor_command

    add_doctor_command(sub)
