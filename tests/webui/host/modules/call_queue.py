"""Stand-in for ``modules.call_queue``: the queue lock and the handler wrappers."""

import html
import threading
import time
from functools import wraps

from modules import shared

queue_lock = threading.Lock()
tasks = []  # test-only: task ids seen by wrap_gradio_gpu_call


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            res = func(*args, **kwargs)
        return res

    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    @wraps(func)
    def f(*args, **kwargs):
        # a first argument "task(...)" is the job id the page's progress bar polls
        if args and type(args[0]) is str and args[0].startswith("task(") and args[0].endswith(")"):
            id_task = args[0]
            tasks.append(id_task)
        else:
            id_task = None
        with queue_lock:
            shared.state.begin(job=id_task)
            try:
                res = func(*args, **kwargs)
            finally:
                shared.state.end()
        return res

    return wrap_gradio_call(f, extra_outputs=extra_outputs, add_stats=True)


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    @wraps(func)
    def f(*args, extra_outputs_array=extra_outputs, **kwargs):
        t = time.perf_counter()
        try:
            res = list(func(*args, **kwargs))
        except Exception as e:
            shared.state.job = ""
            shared.state.job_count = 0
            if extra_outputs_array is None:
                extra_outputs_array = [None, ""]
            error_message = f"{type(e).__name__}: {e}"
            res = list(extra_outputs_array) + [
                f"<div class='error'>{html.escape(error_message)}</div>"
            ]

        shared.state.skipped = False
        shared.state.interrupted = False
        shared.state.job_count = 0

        if not add_stats:
            return tuple(res)

        elapsed = time.perf_counter() - t
        res[-1] += (
            "<div class='performance'><p class='time'>Time taken: <wbr>"
            f"<span class='measurement'>{elapsed:.1f} sec.</span></p></div>"
        )
        return tuple(res)

    return f
