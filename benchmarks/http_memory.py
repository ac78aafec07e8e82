"""Peak memory of ``tagger serve`` under 16 parallel requests of small PNGs that decode to huge
images: the HTTP memory section of docs/benchmarks.md.

    python benchmarks/http_memory.py                        # this checkout, writes the section
    python benchmarks/http_memory.py --old-root DIR         # also a checkout from before the limits

Each scenario starts a fresh ``tagger serve`` (a subprocess, uvicorn on loopback, the tiny 32 px
test model so that inference costs nothing and decoding is what is measured), loads the model
with one small request, then sends the requests at once (a barrier) and reads the server's
peak resident memory (``VmHWM`` in /proc/PID/status) before and after. The images are one-colour
RGBA PNGs: a few hundred kB for 16.8 million pixels, 193 MB once decoded and made RGB on white.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from run import machine, replace_section  # noqa: E402
from tiny import make_model_dir  # noqa: E402

URL = "/tagger/v1"


@dataclass
class Scenario:
    """One server (a checkout and its flags) and the requests sent to it."""

    label: str
    root: Path
    flags: tuple[str, ...]
    side: int
    requests: int = 16
    noise: bool = False  # random RGB pixels: a file near the body limit instead of a few kB


def png(side: int, noise: bool = False) -> bytes:
    """A one-colour RGBA PNG of ``side`` x ``side`` pixels, or one of random RGB pixels (which
    does not compress: 3 bytes a pixel)."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=1)
    else:
        image = Image.new("RGBA", (side, side), (200, 30, 90, 128))
        image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def post(base: str, body: bytes) -> int:
    """POST a /tag request; its status."""
    request = urllib.request.Request(
        f"{base}{URL}/tag", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def run(scenario: Scenario, models: Path, work: Path) -> dict:
    """Start the server, warm it up, send the requests at once, read the peak memory."""
    import base64

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(scenario.root), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "tagger", "serve", "--port", str(port)]
    command += ["--models-dir", str(models), "--device", "cpu", "--log-level", "warning"]
    command += list(scenario.flags)
    server = subprocess.Popen(command, env=env, cwd=work, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}{URL}/interrogators", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(server.communicate()[1]) from None
                time.sleep(0.1)
        small = base64.b64encode(png(64)).decode()
        assert post(base, json.dumps({"image": small, "model": "tiny"}).encode()) == 200
        before = memory_kib(server.pid)
        data = base64.b64encode(png(scenario.side, scenario.noise)).decode()
        body = json.dumps({"image": data, "model": "tiny"}).encode()
        barrier = threading.Barrier(scenario.requests)
        statuses: list[int] = []

        def call() -> None:
            barrier.wait()
            statuses.append(post(base, body))

        start = time.perf_counter()
        threads = [threading.Thread(target=call) for _ in range(scenario.requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        after = memory_kib(server.pid)
    finally:
        server.terminate()
        server.communicate(timeout=60)
    return {
        "label": scenario.label,
        "side": scenario.side,
        "noise": scenario.noise,
        "requests": scenario.requests,
        "body_bytes": len(body),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "rss_before_mib": before["VmRSS"] / 1024,
        "peak_mib": after["VmHWM"] / 1024,
        "added_mib": (after["VmHWM"] - before["VmHWM"]) / 1024,
        "seconds": elapsed,
    }


def section(rows: list[dict], old_commit: str | None) -> str:
    """The HTTP memory section of docs/benchmarks.md."""
    m = machine()
    lines = [
        "<!-- http memory section: written by benchmarks/http_memory.py -->",
        f"Measured {m['date']} on {m['machine']}; Python {m['python']}, Pillow {m['Pillow']}. "
        "`tagger serve` with the tiny 32 px test model; 16 requests sent at once to `/tag`, "
        "each a PNG of the given side (one-colour RGBA: a few hundred kB; random RGB: near the "
        "body limit); peak = the server "
        "process's peak resident memory (VmHWM), added = peak minus the peak before the "
        "requests (model loaded)."
        + (
            f" Before: the same server at commit {old_commit}, before the limits."
            if old_commit
            else ""
        ),
        "",
        "| server | image | replies | RSS before | peak | added by the requests | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        replies = ", ".join(f"{count} x {status}" for status, count in r["statuses"].items())
        lines.append(
            f"| {r['label']} | {r['side']}² px {'random RGB' if r['noise'] else 'one colour'} "
            f"({r['body_bytes'] / 1e6:.2f} MB body) | "
            f"{replies} | {r['rss_before_mib']:.0f} MiB | {r['peak_mib']:.0f} MiB | "
            f"{r['added_mib']:.0f} MiB | {r['seconds']:.1f} s |"
        )
    lines.append("<!-- end of http memory section -->")
    return "\n".join(lines)


def available_mib() -> float:
    """Memory available to new processes (MemAvailable), MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-root", type=Path, help="A checkout from before the limits.")
    parser.add_argument("--old-commit", help="Its commit, for the report.")
    parser.add_argument("--side", type=int, default=4096, help="Largest admitted side.")
    parser.add_argument("--above", type=int, default=5000, help="A side above the limit.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="Print the section only.")
    parser.add_argument(
        "--large-bodies",
        action="store_true",
        help="Also 16 bodies near the body limit (random-pixel PNGs; about 4 GiB).",
    )
    args = parser.parse_args()
    scenarios = []
    if args.old_root:
        scenarios += [
            Scenario("before", args.old_root, (), args.side),
            Scenario("before", args.old_root, (), args.above),
        ]
    scenarios += [
        Scenario("after, defaults", ROOT, (), args.side),
        Scenario("after, defaults", ROOT, (), args.above),
        Scenario("after, --max-decodes 16 (no bound)", ROOT, ("--max-decodes", "16"), args.side),
        Scenario("after, --max-decodes 1", ROOT, ("--max-decodes", "1"), args.side),
    ]
    if args.large_bodies:
        scenarios.append(Scenario("after, defaults", ROOT, (), args.side, noise=True))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_model_dir(work / "models" / "tiny")
        for scenario in scenarios:
            # An unbounded server may hold 16 decoded images: 12 bytes a pixel for RGBA.
            need = scenario.requests * scenario.side**2 * (16 if scenario.noise else 12) / 2**20
            if available_mib() < 1.5 * need:
                print(f"skipped {scenario.label} {scenario.side}: needs about {need:.0f} MiB")
                continue
            row = run(scenario, work / "models", work)
            print(json.dumps(row))
            rows.append(row)
    text = section(rows, args.old_commit)
    print(text)
    if not args.no_write:
        replace_section(args.out, text, "http memory section")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
