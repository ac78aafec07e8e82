"""VLM captions through an OpenAI-compatible endpoint: concurrency and rate limits, one process.

    python benchmarks/vlm_api.py          # the VLM endpoint section of docs/benchmarks.md

The endpoint is the tests' fake server (``tests/vlm_server.py``, in a process of its own) on
127.0.0.1 with a fixed latency (200 ms a reply), answered by the real ``openai`` client through
``tagger caption``'s engine run (``BatchRun``: planning, decoding, writing caption files and a
manifest). Measured in one run: the one-at-a-time rate (``--concurrency 1``),
``--concurrency 8`` (target: at least 0.9 x 8 x the one-at-a-time rate), ``--rpm`` (the
server's arrival times: no two starts closer than 60 / rpm, so no window of a second holds more
than rpm / 60) and ``--tpm`` (the tokens the server reports, in every 60-second window of
arrivals: at most tpm; this phase takes a minute or two).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ROOT, WORK, machine, replace_section  # noqa: E402

LATENCY = 0.2


def images(folder: Path, count: int) -> Path:
    """``count`` small distinct PNGs in a fresh folder."""
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (64, 48), (i % 256, (i * 7) % 256, 90)).save(folder / f"i{i:04d}.png")
    return folder


def caption(server: object, folder: Path, **vlm: object) -> tuple[float, object]:
    """Caption ``folder`` through the engine; (seconds, summary)."""
    from tagger.batch import BatchRun, DeferredModel
    from tagger.captioners import get_captioner, unload_captioners
    from tagger.interrogate import Interrogator
    from tagger.options import BatchOptions, TagOptions
    from tagger.vlm.options import VlmOptions

    options = VlmOptions(url=server.url, model="bench", **vlm)

    def build() -> Interrogator:
        return Interrogator(None, get_captioner("vlm-api", vlm=options, load=False))

    batch = BatchOptions(caption_extension=".caption", jsonl=str(folder / "meta.jsonl"))
    run = BatchRun([folder], DeferredModel(build, ("caption",)), TagOptions(), batch)
    run.prepare()
    start = time.perf_counter()
    summary = run.run()
    elapsed = time.perf_counter() - start
    unload_captioners()
    return elapsed, summary


def window_max(points: list[tuple[float, float]], window: float) -> float:
    """The largest sum of weights of points whose times fall in one ``[t, t + window)``."""
    points = sorted(points)
    best = 0.0
    for i, (start, _) in enumerate(points):
        best = max(best, sum(w for t, w in points[i:] if t < start + window))
    return best


class RemoteServer:
    """The fake endpoint in a process of its own (so that it shares no CPU lock with the
    client), its records read over HTTP."""

    def __init__(self, latency: float) -> None:
        import subprocess

        script = ROOT / "tests" / "vlm_server.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(latency)], stdout=subprocess.PIPE, text=True
        )
        self.url = self.process.stdout.readline().strip()
        self.base = self.url.removesuffix("/v1")

    def records(self, reset: bool = False) -> dict[str, object]:
        """The requests since the last reset (and reset when asked)."""
        import json
        import urllib.request

        path = "/_reset" if reset else "/_records"
        with urllib.request.urlopen(self.base + path, timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        """End the server's process."""
        self.process.terminate()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def sends_recorded() -> Iterator[list[float]]:
    """The times the limiter let requests go out (the client's side of the spacing)."""
    from tagger.vlm.limits import RateLimiter

    sent: list[float] = []
    original = RateLimiter.wait

    def wait(self: RateLimiter, reservation: object) -> float:
        waited = original(self, reservation)
        sent.append(self.clock())
        return waited

    RateLimiter.wait = wait  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        RateLimiter.wait = original  # type: ignore[method-assign]


def measure(count: int, rpm: float, tpm: float, tpm_images: int) -> dict[str, object]:
    """Every phase's figures."""
    import openai  # noqa: F401  (imported before the clocks start)

    server = RemoteServer(LATENCY)
    out: dict[str, object] = {}
    try:
        one = max(8, count // 4)
        seconds, summary = caption(server, images(WORK / "vlm-1", one), concurrency=1)
        out["one"] = (one, seconds, summary.written)
        server.records(reset=True)
        seconds, summary = caption(server, images(WORK / "vlm-8", count), concurrency=8)
        out["eight"] = (
            count,
            seconds,
            summary.written,
            server.records(reset=True)["max_in_flight"],
        )
        with sends_recorded() as sent:
            seconds, summary = caption(
                server, images(WORK / "vlm-rpm", count), concurrency=8, rpm=rpm
            )
        starts = sorted(r["start"] for r in server.records(reset=True)["requests"])
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        per_second = window_max([(s, 1.0) for s in starts], 1.0)
        sent_gaps = [b - a for a, b in itertools.pairwise(sorted(sent))]
        sent_second = window_max([(s, 1.0) for s in sent], 1.0)
        out["rpm"] = (count, seconds, summary.written, min(gaps), per_second)
        out["rpm sent"] = (len(sent), min(sent_gaps), sent_second)
        seconds, summary = caption(
            server, images(WORK / "vlm-tpm", tpm_images), concurrency=8, tpm=tpm, max_tokens=16
        )
        rows = server.records(reset=True)["requests"]
        tokens = [(r["start"], float(sum(r["tokens"]))) for r in rows]
        out["tpm"] = (tpm_images, seconds, summary.written, window_max(tokens, 60.0), summary.usage)
    finally:
        server.stop()
    return out


def section(figures: dict[str, object], rpm: float, tpm: float) -> str:
    """The VLM endpoint section of docs/benchmarks.md."""
    m = machine()
    import openai

    n1, s1, w1 = figures["one"]
    n8, s8, w8, inflight = figures["eight"]
    nr, sr, wr, gap, window = figures["rpm"]
    ns, sent_gap, sent_window = figures["rpm sent"]
    nt, st, wt, tokens, usage = figures["tpm"]
    rate1, rate8, rater = n1 / s1, n8 / s8, nr / sr
    lines = [
        "<!-- vlm endpoint section: written by benchmarks/vlm_api.py -->",
        f"Measured {m['date']} on {m['machine']}; Python {m['python']}, openai "
        f"{openai.__version__}. The tests' OpenAI-compatible server on 127.0.0.1 answering after "
        f"{LATENCY * 1000:.0f} ms, the real `openai` client, `tagger caption`'s engine run "
        "(caption files and a manifest written):",
        "",
        "| run | images | written | seconds | images/s | against one at a time |",
        "|---|---|---|---|---|---|",
        f"| `--concurrency 1` | {n1} | {w1} | {s1:.2f} | {rate1:.2f} | 1.00 |",
        f"| `--concurrency 8` | {n8} | {w8} | {s8:.2f} | {rate8:.2f} | {rate8 / rate1:.2f} "
        f"(target 0.9 x 8 = 7.2; {inflight} requests in flight at most) |",
        f"| `--concurrency 8 --rpm {rpm:g}` | {nr} | {wr} | {sr:.2f} | {rater:.2f} | "
        f"{rater / rate1:.2f} (the limit allows {rpm / 60:.2f}/s) |",
        f"| `--concurrency 8 --tpm {tpm:g} --vlm-max-tokens 16` | {nt} | {wt} | {st:.2f} | "
        f"{nt / st:.2f} | - |",
        "",
        f"- `--rpm {rpm:g}`, as sent: the closest two of the {ns} requests left the client "
        f"{sent_gap * 1000:.1f} ms apart (the limit's spacing: {60000 / rpm:.1f} ms), at most "
        f"{sent_window:.0f} in any 1-second window ({rpm / 60:g} allowed), so no 60-second "
        f"window holds more than {rpm:g}.",
        f"- `--rpm {rpm:g}`, as the server saw them: the closest two arrivals were "
        f"{gap * 1000:.1f} ms apart and at most {window:.0f} arrived in one second: the time "
        "between a request leaving the limiter and the server's handler starting varies (both "
        "processes share the machine's cores), so arrivals bunch by a request or two: a "
        "server's own count in a window can pass the limit by those, so set `--rpm` a little "
        "under a hard server limit.",
        f"- `--tpm {tpm:g}`: at most {tokens:.0f} tokens (as the server counted them) in any "
        f"60-second window of arrivals (limit {tpm:g}); the run's total was "
        f"{usage.get('prompt_tokens', 0) + usage.get('completion_tokens', 0):.0f} tokens, so "
        "the second minute's requests waited for the first minute's to leave the window.",
        "<!-- end of vlm endpoint section -->",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=160, help="images of the concurrent runs")
    parser.add_argument("--rpm", type=float, default=1200.0)
    parser.add_argument("--tpm", type=float, default=6000.0)
    parser.add_argument("--tpm-images", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    figures = measure(args.images, args.rpm, args.tpm, args.tpm_images)
    text = section(figures, args.rpm, args.tpm)
    print(text)
    replace_section(args.out, text, "vlm endpoint section")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
