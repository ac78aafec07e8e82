"""The dataset workbench over HTTP: statistics, edits (dry run, undo), checks, trash.

Routes under ``/tagger/v1/dataset/``; every path must be inside the folders the server allows,
exactly as for batch jobs (``tagger.api.paths.AllowList``): the inputs are checked before
anything is read, and each image or caption found is checked again, so a symbolic link inside
an allowed folder that leads elsewhere is left out (stats, checks) or fails (edits). Checks run
in the background (``POST /dataset/checks`` answers 202 with the job; poll
``GET /dataset/checks/{id}``), at most ``MAX_RUNNING`` at once.
"""

from __future__ import annotations

# ruff: noqa: PTH112, PTH117, PTH120
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import Field, StrictStr

from tagger.api.jobs import JobNotFoundError, TooManyJobsError
from tagger.dataset.options import CheckOptions, DatasetOptions, EditSpec
from tagger.dataset.reader import Entry, iter_entries
from tagger.errors import OptionsError, PathNotAllowedError
from tagger.options import StrictModel

MAX_RUNNING = 2
KEPT_JOBS = 32
INPUTS = (
    "Absolute paths on the server: dataset folders or images, all inside the folders the "
    "server allows. The first one holds the journal (.tagger/journal) and the trash."
)


class DatasetRequest(StrictModel):
    """Which dataset."""

    inputs: list[StrictStr] = Field(..., description=INPUTS)
    dataset: DatasetOptions = Field(default_factory=DatasetOptions, description="The files.")


class StatsRequest(DatasetRequest):
    """``POST /dataset/stats``."""

    tags: list[StrictStr] = Field(
        default_factory=list, description="Tags whose co-occurring tags and images are listed."
    )
    top: int = Field(0, ge=0, le=1_000_000, description="Tags listed (0: all).")
    examples: int = Field(20, ge=0, le=10_000, description="Example paths per finding.")
    token_limit: int = Field(75, ge=1, le=10_000, description="Flag captions above this.")


class EditRequest(DatasetRequest):
    """``POST /dataset/edit``."""

    edit: EditSpec = Field(..., description="The edit.")
    where: StrictStr = Field("", description="Only captions matching this filter.")
    dry_run: bool = Field(False, description="Return the changes; write nothing.")
    diffs: int = Field(200, ge=0, le=100_000, description="Changes returned in full.")


class UndoRequest(DatasetRequest):
    """``POST /dataset/undo``."""

    journal: StrictStr | None = Field(None, description="The journal id (default: the last).")
    force: bool = Field(False, description="Restore files changed since the edit too.")
    dry_run: bool = Field(False, description="Say what would be restored.")


class CheckRequest(DatasetRequest):
    """``POST /dataset/checks``."""

    options: CheckOptions = Field(default_factory=CheckOptions, description="The checks.")
    report: StrictStr | None = Field(
        None, description="Also write the HTML report to this absolute .html path (allowed)."
    )


class TrashRequest(DatasetRequest):
    """``POST /dataset/trash``."""

    files: list[StrictStr] = Field(
        ..., description="Images relative to the first input; each moves with its caption."
    )


def allowed_entries(
    allow: Any, inputs: list[str], dataset: DatasetOptions
) -> Callable[[], Iterator[Entry]]:
    """The dataset's entries whose image and caption really are inside the allowed folders."""
    for path in inputs:
        allow.check(path, "dataset path")
    real = os.path.realpath

    def inside(path: str) -> bool:
        return allow.contains(Path(real(path)))

    def walk() -> Iterator[Entry]:
        for entry in iter_entries(
            inputs, extension=dataset.caption_extension, recursive=dataset.recursive
        ):
            if entry.image and not inside(entry.image):
                continue
            if not inside(os.path.dirname(entry.caption) or "."):
                continue
            if os.path.lexists(entry.caption) and not inside(entry.caption):
                continue
            yield entry

    return walk


class CheckJobs:
    """The background check runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}

    def start(self, run: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Run ``run(job)`` in a thread; 429 when ``MAX_RUNNING`` already run."""
        with self.lock:
            running = sum(1 for job in self.jobs.values() if job["state"] == "running")
            if running >= MAX_RUNNING:
                raise TooManyJobsError(
                    f"{running} dataset checks are running; wait for one to finish"
                )
            ident = secrets.token_hex(8)
            job: dict[str, Any] = {
                "id": ident,
                "state": "running",
                "done": 0,
                "started": time.time(),
                "result": None,
                "error": None,
            }
            self.jobs[ident] = job
            for old in [k for k, v in self.jobs.items() if v["state"] != "running"][:-KEPT_JOBS]:
                del self.jobs[old]

        def work() -> None:
            try:
                job["result"] = run(job)
                job["state"] = "done"
            except Exception as exc:  # reported in the job, never raised in the thread
                job["error"] = str(exc)
                job["state"] = "failed"

        threading.Thread(target=work, name=f"tagger-check-{ident}", daemon=True).start()
        return self.view(job)

    def get(self, ident: str) -> dict[str, Any]:
        """The job (404 when unknown)."""
        with self.lock:
            job = self.jobs.get(ident)
        if job is None:
            raise JobNotFoundError(f"no dataset check {ident!r} (finished long ago, or never)")
        return self.view(job)

    @staticmethod
    def view(job: dict[str, Any]) -> dict[str, Any]:
        """What the routes answer."""
        return {key: job[key] for key in ("id", "state", "done", "started", "result", "error")}


def _root_allowed(allow: Any, inputs: list[str]) -> None:
    """The first input is where journals and the trash go: it must be an allowed folder."""
    if not inputs:
        raise OptionsError("inputs is empty: name the dataset folder")
    first = inputs[0]
    base = first if os.path.isdir(first) else os.path.dirname(first)
    allow.check(base, "dataset folder")


def add_routes(router: APIRouter, api: Any) -> None:
    """The dataset routes (a route group of ``tagger.api.routes``)."""
    from tagger.api.routes import _errors

    allow = api.jobs.allow
    jobs = CheckJobs()

    def entries(req: DatasetRequest) -> Callable[[], Iterator[Entry]]:
        allow.require_enabled()
        _root_allowed(allow, list(req.inputs))
        return allowed_entries(allow, list(req.inputs), req.dataset)

    @router.post(
        "/dataset/stats",
        summary="Statistics of a dataset's captions",
        responses=_errors(403, 422),
    )
    def post_stats(req: StatsRequest) -> dict[str, Any]:
        """Tag frequency (overall, per folder), co-occurrence, caption lengths in CLIP tokens,
        untagged images, tags seen once, spelling variants (``tagger dataset stats --json``)."""
        from tagger.dataset.stats import dataset_stats

        walk = entries(req)
        stats = dataset_stats(
            req.inputs,
            separator=req.dataset.separator,
            cooccurrence=req.tags,
            token_limit=req.token_limit,
            examples=req.examples,
            entries=walk(),
        )
        return stats.to_dict(top=req.top)

    @router.post(
        "/dataset/edit",
        summary="Bulk-edit captions (dry run, journaled)",
        responses=_errors(403, 422),
    )
    def post_edit(req: EditRequest) -> dict[str, Any]:
        """Apply the edit to every caption (or those matching ``where``); with ``dry_run``
        only the changes are returned. The reply's ``journal`` is what ``undo`` takes."""
        from tagger.dataset.edits import run_edit

        walk = entries(req)

        def check(path: str) -> None:
            if not allow.contains(Path(os.path.realpath(path))):
                raise PathNotAllowedError(f"{path} leads outside the allowed folders")

        result = run_edit(
            req.inputs,
            req.edit,
            req.dataset,
            dry_run=req.dry_run,
            where=req.where,
            entries=walk,
            diffs=req.diffs,
            check=check,
        )
        return result.to_dict()

    @router.post(
        "/dataset/undo",
        summary="Undo an edit or a move to the trash",
        responses=_errors(403, 422),
    )
    def post_undo(req: UndoRequest) -> dict[str, Any]:
        """Restore every file the journal changed that still holds what it wrote; the others
        are listed as conflicts (``force`` restores them too)."""
        from tagger.dataset.journal import journal_dir, undo

        entries(req)
        where = journal_dir(req.inputs)
        return undo(where, req.journal, force=req.force, dry_run=req.dry_run).to_dict()

    @router.post(
        "/dataset/journals",
        summary="The journals of a dataset",
        responses=_errors(403, 422),
    )
    def post_journals(req: DatasetRequest) -> dict[str, Any]:
        """Every edit and move recorded, oldest first, with its state."""
        from tagger.dataset.journal import journal_dir, list_journals

        entries(req)
        return {"journals": [j.summary() for j in list_journals(journal_dir(req.inputs))]}

    @router.post(
        "/dataset/trash",
        summary="Move images (with their captions) to the dataset's trash",
        responses=_errors(403, 422),
    )
    def post_trash(req: TrashRequest) -> dict[str, Any]:
        """Move the images named (relative to the first input) into ``.tagger/trash``; the
        reply's ``journal`` undoes it."""
        from tagger.dataset.fixes import trash_images

        entries(req)
        for name in req.files:
            if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
                raise OptionsError(f"file {name!r}: give a path relative to the dataset folder")
        return trash_images(req.inputs, list(req.files), req.dataset)

    @router.post(
        "/dataset/checks",
        status_code=202,
        summary="Start the checks of a dataset",
        responses=_errors(403, 422, 429),
    )
    def post_checks(req: CheckRequest) -> dict[str, Any]:
        """Duplicates, near duplicates, broken, small, extreme, text, CLIP checks (see
        ``CheckOptions``), in the background; poll ``GET /dataset/checks/{id}``."""
        from tagger.dataset.checks import expand_checks

        walk = entries(req)
        expand_checks(req.options.checks)
        report = req.report
        if report is not None:
            allow.check(report, "report")
            if not report.endswith(".html"):
                raise OptionsError(f"report {report!r}: name an .html file")

        def run(job: dict[str, Any]) -> dict[str, Any]:
            from tagger.dataset.checks import run_checks

            def progress(done: int, total: int | None) -> None:
                job["done"] = done

            result = run_checks(
                req.inputs, req.options, req.dataset, entries=walk, progress=progress
            )
            if report is not None:
                from tagger.dataset.report import write_report
                from tagger.dataset.stats import dataset_stats

                stats = dataset_stats(req.inputs, separator=req.dataset.separator, entries=walk())
                write_report(report, stats, result, paths=req.inputs)
            return result.to_dict()

        return jobs.start(run)

    @router.get(
        "/dataset/checks/{job_id}",
        summary="A dataset check's state and findings",
        responses=_errors(404),
    )
    def get_checks(job_id: str) -> dict[str, Any]:
        """``running`` (with ``done`` images), ``done`` (with ``result``) or ``failed``."""
        return jobs.get(job_id)
