"""Ctrl-C in a real ``tagger tag`` process: the second one stops it at once, even while the
main thread is inside onnxruntime, and every file it leaves is whole."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import make_image, write_labels

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").is_file() or sys.platform != "linux",
    reason="watches signal delivery in /proc (Linux)",
)


def build_slow_model(folder: Path, layers: int = 300, width: int = 256, size: int = 32) -> Path:
    """A WD14-conventions model whose forward is long (a chain of ``layers`` matrix products on
    every pixel), so a Ctrl-C lands while the main thread is inside onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    tags = len(write_labels(folder / "selected_tags.csv"))
    rng = np.random.default_rng(0)
    mix, _ = np.linalg.qr(rng.normal(size=(width, width)))  # orthogonal: no overflow
    nodes = [
        helper.make_node("Reshape", ["input_1:0", "pixels_shape"], ["pixels"]),
        helper.make_node("MatMul", ["pixels", "lift"], ["h0"]),
    ]
    nodes += [helper.make_node("MatMul", [f"h{i}", "mix"], [f"h{i + 1}"]) for i in range(layers)]
    nodes += [
        helper.make_node("Reshape", [f"h{layers}", "rows_shape"], ["per_image"]),
        helper.make_node("ReduceMean", ["per_image", "axis"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "head"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"]),
    ]
    initializers = {
        "pixels_shape": np.array([-1, 3], dtype=np.int64),
        "rows_shape": np.array([-1, size * size, width], dtype=np.int64),
        "axis": np.array([1], dtype=np.int64),
        "lift": (rng.normal(size=(3, width)) / 255).astype(np.float32),
        "mix": mix.astype(np.float32),
        "head": (rng.normal(size=(width, tags)) * 0.05).astype(np.float32),
    }
    graph = helper.make_graph(
        nodes,
        "slow_wd14",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", tags])],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def _pending(pid: int) -> int:
    """The process's pending signal mask (process-wide and per-thread)."""
    mask = 0
    paths = [Path(f"/proc/{pid}/status"), *Path(f"/proc/{pid}/task").glob("*/status")]
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("SigPnd:", "ShdPnd:")):
                mask |= int(line.split()[1], 16)
    return mask


def _interrupt_delivered(pid: int, deadline: float) -> None:
    """Send SIGINT and wait until the kernel has handed it to the process."""
    os.kill(pid, signal.SIGINT)
    bit = 1 << (signal.SIGINT - 1)
    while _pending(pid) & bit:
        assert time.monotonic() < deadline, "SIGINT never delivered"
        time.sleep(0.0005)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_second_ctrl_c_stops_at_once_and_leaves_whole_files(tmp_path: Path) -> None:
    model = build_slow_model(tmp_path / "models" / "slow-v3")
    source = tmp_path / "source"
    for i in range(12):
        make_image(source / f"img{i:02d}.png", (64, 48), seed=i)
    stopped, clean = tmp_path / "stopped", tmp_path / "clean"
    shutil.copytree(source, stopped)
    shutil.copytree(source, clean)
    args = ["--model", str(model), "--json", "--no-progress", "--batch-size", "4",
            "--workers", "1", "--threads", "1"]  # fmt: skip

    proc = subprocess.Popen(
        [sys.executable, "-m", "tagger", "tag", str(stopped), "--jsonl",
         str(stopped / "metadata.jsonl"), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while len(list(stopped.glob("*.txt"))) < 4 or len(list(stopped.glob("*.json"))) < 4:
        assert proc.poll() is None, "the run ended early"  # the first batch is written ...
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # ... and the second batch's forward (seconds long) is running: two Ctrl-C, the second
    # once the first reached the process. (Where else they can land is scripted below.)
    time.sleep(0.3)
    _interrupt_delivered(proc.pid, deadline)
    _interrupt_delivered(proc.pid, deadline)
    assert proc.wait(timeout=60) == 130
    reader.join(timeout=10)
    stderr = []
    while not lines.empty():
        stderr.append(lines.get())
    text = "".join(stderr)
    assert "tagger: stopped at once (" in text, text
    assert "rerun to finish the rest" in text
    assert not any(line.startswith("interrupted: ") for line in stderr), text  # no summary
    written = sorted(p.name for p in stopped.glob("*.txt"))
    assert 4 <= len(written) < 12, written
    for caption in stopped.glob("*.txt"):
        assert caption.read_text(encoding="utf-8").endswith("\n")
    for sidecar in stopped.glob("*.json"):
        json.loads(sidecar.read_text(encoding="utf-8"))

    rerun = subprocess.run(
        [sys.executable, "-m", "tagger", "tag", str(stopped), "--jsonl",
         str(stopped / "metadata.jsonl"), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    full = subprocess.run(
        [sys.executable, "-m", "tagger", "tag", str(clean), "--jsonl",
         str(clean / "metadata.jsonl"), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert _tree(stopped) == _tree(clean)
    assert len(list(clean.glob("*.txt"))) == 12


def test_one_ctrl_c_finishes_the_batch_and_prints_the_summary(tmp_path: Path) -> None:
    model = build_slow_model(tmp_path / "models" / "slow-v3", layers=60)
    folder = tmp_path / "images"
    for i in range(40):
        make_image(folder / f"img{i:02d}.png", (64, 48), seed=i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagger", "tag", str(folder), "--model", str(model),
         "--no-progress", "--batch-size", "4", "--workers", "1", "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(folder.glob("*.txt"))) < 4:
        assert proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    _interrupt_delivered(proc.pid, deadline)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupt: finishing the current batch" in stderr
    summary = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    assert len(summary) == 1, stderr
    written = len(list(folder.glob("*.txt")))
    assert f", {written} written," in summary[0]
    assert written % 4 == 0  # whole batches only
    assert 4 <= written < 40


def test_the_watch_sees_each_interrupt_as_it_arrives() -> None:
    from tagger.cli.common import InterruptWatch

    second = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    watch = InterruptWatch(second.set)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while watch.seen < 1:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert not second.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert second.wait(10)
        assert watch.seen == 2
    finally:
        watch.stop()
        signal.signal(signal.SIGINT, previous)
    assert signal.set_wakeup_fd(-1) == -1  # the previous wakeup fd (none) was put back


def test_outside_the_main_thread_the_watch_stands_aside() -> None:
    from tagger.cli.common import InterruptWatch

    seen = []

    def build() -> None:
        watch = InterruptWatch(lambda: None)
        seen.append(watch.seen)
        watch.stop()

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    assert seen == [0]


SCRIPTED_RUN = """
import argparse, os, signal, sys, time
from tagger.cli import common

delay, when = float(sys.argv[1]), sys.argv[2]
watch = common.InterruptWatch._watch
def late_watch(self, reader):  # the watcher thread reads the wakeup fd late
    time.sleep(delay)
    watch(self, reader)
common.InterruptWatch._watch = late_watch

def spin():  # Python code: the main thread's handler runs at once
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pass
    raise SystemExit("not stopped")

class WindingDown:  # the part of a Summary the summary line reads first
    cancelled = True

    @property
    def providers(self):  # read first by the summary: the second Ctrl-C lands here
        os.kill(os.getpid(), signal.SIGINT)
        spin()

class Run:
    def run(self):
        os.kill(os.getpid(), signal.SIGINT)
        if when == "run":
            os.kill(os.getpid(), signal.SIGINT)
            spin()
        return WindingDown()

args = argparse.Namespace(no_progress=True, top_tags=0)
common.run_with_progress(lambda **hooks: Run(), 4, args, "interrupt: finishing")
"""


@pytest.mark.parametrize("when", ["run", "summary"])
@pytest.mark.parametrize("watcher_delay", [0.0, 3.0])
def test_the_second_ctrl_c_stops_at_once_wherever_it_lands(watcher_delay: float, when: str) -> None:
    """Two races, scripted: the main thread's handler can see the second SIGINT before the
    watcher thread reads it (``watcher_delay``), and the second can land while a cancelled run
    winds down (``summary``). Each stops at once, with the one line and status 130."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPTED_RUN, str(watcher_delay), when],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.count("tagger: stopped at once") == 1, proc.stderr
    assert proc.stderr.startswith("interrupt: finishing\n"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "interrupted:" not in proc.stderr  # no summary
    if watcher_delay:  # the main thread stopped it, without waiting for the late watcher
        assert time.monotonic() - started < watcher_delay


def test_fire_runs_on_second_once_from_any_thread() -> None:
    from tagger.cli.common import InterruptWatch

    calls: list[str] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    watch = InterruptWatch(lambda: calls.append(threading.current_thread().name))
    try:
        threads = [threading.Thread(target=watch.fire, name=f"t{i}") for i in range(8)]
        for thread in threads:
            thread.start()
        watch.fire()
        for thread in threads:
            thread.join()
    finally:
        watch.stop()
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 1
