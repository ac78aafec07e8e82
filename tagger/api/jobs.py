"""Batch jobs over server folders: ``tagger.batch.BatchRun`` in a background thread.

A job is checked before it starts (allowed folders, inputs that exist, a known model whose files
are available), then counts its images, then tags them; its progress, its summary and a cancel
event are kept here. The model is taken from the shared cache for every batch and run under the
service's lock, so a webui's generation can interleave with a long job and an unload request
only waits for the batch in progress.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.errors import TaggerError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from tagger.api.paths import AllowList
    from tagger.api.service import TaggerService
    from tagger.batch import BatchRun, Progress, Summary
    from tagger.options import BatchOptions, TagOptions
    from tagger.registry import ModelSpec
    from tagger.tags import Labels, TagResult

log = logging.getLogger("tagger")

#: Jobs that may count or run at the same time; more are refused until one ends.
MAX_ACTIVE_JOBS = 4
#: Finished jobs remembered (the oldest are forgotten first).
MAX_FINISHED_JOBS = 100
#: Failed images listed in a job's summary (all are counted).
MAX_FAILURES_SHOWN = 100

ACTIVE_STATES = frozenset({"queued", "counting", "running"})


class JobNotFoundError(TaggerError, LookupError):
    """No job has this id (or it finished long ago and was forgotten)."""


class TooManyJobsError(TaggerError):
    """The server is already running as many jobs as it allows."""


class JobModel:
    """A batch job's view of a model: loaded through the shared cache, run under the lock.

    It satisfies ``tagger.batch.BatchModel``. The input size, batch size and labels are read
    once when the job loads the model; ``forward`` fetches the cached model again for every
    batch, so an unload between two batches only makes the next one reload it.
    """

    def __init__(self, service: TaggerService, spec: ModelSpec) -> None:
        self.service = service
        self.spec = spec
        self._size = spec.input_size
        self._fixed: int | None = None
        self._providers: list[str] = []
        self._labels: Labels | None = None

    @property
    def fixed_batch(self) -> int | None:
        """The model's fixed batch size, or None."""
        return self._fixed

    @property
    def active_providers(self) -> list[str]:
        """The providers the model runs on."""
        return self._providers

    def load(self) -> JobModel:
        """Load the model (under the lock) and remember what the engine asks about."""
        with self.service.running():
            model = self.service.tagger(self.spec)
            from tagger.families.model import preprocessor

            self._prepare = preprocessor(model)  # the model's family's preprocessing
            self._size = model.input_size
            self._fixed = model.fixed_batch
            self._providers = model.active_providers
            self._labels = model.labels
        return self

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """Prepare one image (CPU, in the engine's decode threads; no lock)."""
        prepare = getattr(self, "_prepare", None)
        if prepare is None:
            from tagger.wd14 import prepare_image

            return prepare_image(image, self._size)
        return prepare(image)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch under the lock."""
        with self.service.running():
            return self.service.tagger(self.spec).forward(batch)

    def postprocess(self, scores: np.ndarray, options: TagOptions) -> TagResult:
        """Select the kept tags of one image."""
        from tagger.tags import tag_scores

        labels = self._labels if self._labels is not None else self.load()._labels
        if labels is None:  # pragma: no cover - load() sets them
            raise TaggerError(f"{self.spec.key}: labels are not loaded")
        return tag_scores(scores.tolist(), labels, options)


@dataclass
class Job:
    """One batch job and what is known about it."""

    id: str
    model: str
    inputs: list[str]
    run: BatchRun
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: dict[str, Any] = field(
        default_factory=lambda: {
            "done": 0,
            "total": None,
            "written": 0,
            "skipped": 0,
            "failed": 0,
            "current": None,
        }
    )
    error: str | None = None
    summary: Summary | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def on_progress(self, progress: Progress) -> None:
        """The engine's progress callback."""
        self.progress = {
            "done": progress.done,
            "total": progress.total,
            "written": progress.written,
            "skipped": progress.skipped,
            "failed": progress.failed,
            "current": str(progress.current) if progress.current is not None else None,
        }

    def status(self) -> dict[str, Any]:
        """The job as the API shows it."""
        return {
            "id": self.id,
            "state": self.state,
            "model": self.model,
            "inputs": list(self.inputs),
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "progress": dict(self.progress),
            "summary": summary_record(self.summary) if self.summary is not None else None,
            "error": self.error,
        }


def summary_record(summary: Summary) -> dict[str, Any]:
    """A run's summary as the API shows it."""
    return {
        "found": summary.found,
        "written": summary.written,
        "skipped": summary.skipped,
        "failed_count": summary.failed_count,
        "failed": [
            {"path": path, "reason": reason} for path, reason in summary.failed[:MAX_FAILURES_SHOWN]
        ],
        "tagged": summary.tagged,
        "elapsed": summary.elapsed,
        "images_per_second": summary.images_per_second,
        "cancelled": summary.cancelled,
        "batch_size": summary.batch_size,
        "providers": list(summary.providers),
        "top_tags": dict(summary.most_common(20)),
    }


class JobManager:
    """Starts, tracks and cancels the batch jobs of one mounted API."""

    def __init__(self, service: TaggerService, allow: AllowList) -> None:
        self.service = service
        self.allow = allow
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def start(
        self,
        inputs: list[str],
        model: str,
        tag_options: TagOptions,
        batch_options: BatchOptions,
    ) -> Job:
        """Check a job and start it in a background thread; raises the core's errors."""
        from tagger.batch import BatchRun, check_inputs

        self.allow.require_enabled()
        for path in inputs:
            self.allow.check(path, "input", pattern=True)
        if batch_options.output_dir:
            self.allow.check(batch_options.output_dir, "output_dir")
        if batch_options.jsonl:
            self.allow.check(batch_options.jsonl, "jsonl")
        check_inputs(inputs)
        spec = self.service.resolve(model)
        self._check_available(spec)
        job_id = uuid.uuid4().hex
        holder: dict[str, Job] = {}
        run = BatchRun(
            inputs,
            JobModel(self.service, spec),
            tag_options,
            batch_options,
            progress=lambda progress: holder["job"].on_progress(progress),
            check=self.allow.item_check,
        )
        job = Job(id=job_id, model=spec.key, inputs=list(inputs), run=run, cancel=run.cancel)
        holder["job"] = job
        with self._lock:
            active = sum(1 for j in self._jobs.values() if j.state in ACTIVE_STATES)
            if active >= MAX_ACTIVE_JOBS:
                raise TooManyJobsError(
                    f"{active} jobs are already running (the limit is {MAX_ACTIVE_JOBS}): wait for "
                    "one to finish or cancel one"
                )
            self._jobs[job_id] = job
            self._forget_old()
        job.thread = threading.Thread(
            target=self._run, args=(job,), name=f"tagger-job-{job_id[:8]}", daemon=True
        )
        job.thread.start()
        return job

    def _check_available(self, spec: ModelSpec) -> None:
        """Refuse at once a registry model that is not on disk when it cannot be downloaded
        now (offline, or the Hub does not answer): the core's ``ModelFilesMissingError`` says
        which files to put where. A model that can be downloaded is, by the job's thread."""
        from tagger.hub import check_downloadable

        with self.service.where_to_put(spec):
            check_downloadable(spec, cache_dir=self.service.hf_cache)

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond ``MAX_FINISHED_JOBS`` (call with the lock)."""
        finished = [j.id for j in self._jobs.values() if j.state not in ACTIVE_STATES]
        for job_id in finished[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del self._jobs[job_id]

    def _run(self, job: Job) -> None:
        """The job's thread: plan the run (the image count), run it, record the outcome."""
        try:
            job.state = "counting"
            # the run's plan: the total, colliding outputs, output places checked before the model
            total = job.run.prepare().total
            job.progress = {**job.progress, "total": total}
            if job.cancel.is_set():
                job.state = "cancelled"
                return
            job.state = "running"
            job.started = time.time()
            summary = job.run.run()
            job.summary = summary
            job.state = "cancelled" if summary.cancelled else "done"
        except TaggerError as exc:
            job.error = str(exc)
            job.state = "failed"
        except Exception as exc:  # reported in the job, never lost in a thread
            log.exception("batch job %s failed", job.id)
            job.error = f"the job stopped on an unexpected error ({type(exc).__name__}: {exc})"
            job.state = "failed"
        finally:
            job.finished = time.time()
            with self._lock:
                self._forget_old()

    def get(self, job_id: str) -> Job:
        """The job with this id."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} (finished jobs are kept for a while only)")
        return job

    def list(self) -> list[Job]:
        """Every job known, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop after its current batch (finished jobs are left as they are)."""
        job = self.get(job_id)
        if job.state in ACTIVE_STATES:
            job.cancel.set()
        return job
