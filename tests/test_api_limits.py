"""Memory under hostile input: the body limit (checked before the body is read), the pixel limit
(checked from the image's header before decoding) and the decode pool (parallel requests of
small files that decode to huge images wait their turn), on a real uvicorn server where the
point is HTTP."""

from __future__ import annotations

import base64
import json
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from apiutil import b64, client, make_app, png_header_only, sample_image, served, solid_png
from fastapi import Request

from tagger.api.errors import BodyGate, body_reservation
from tagger.api.service import (
    HTTP_MAX_PIXELS,
    DecodePool,
    Limits,
    default_max_body_bytes,
    default_max_decodes,
)
from tagger.errors import OptionsError

URL = "/tagger/v1"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return sample_image(tmp_path)


# -- the limits and their defaults ----------------------------------------------------------------


def test_default_limits() -> None:
    limits = Limits()
    assert limits.max_pixels == HTTP_MAX_PIXELS == 4096 * 4096 == 16_777_216
    assert limits.max_body_bytes == default_max_body_bytes(HTTP_MAX_PIXELS) == 68_157_440
    assert limits.max_image_bytes == 51_118_080
    assert limits.max_decodes == default_max_decodes(HTTP_MAX_PIXELS)


def test_the_default_body_fits_the_largest_uncompressed_rgb_image_in_base64() -> None:
    pixels = 4096 * 4096
    largest_file = pixels * 3 + 4096 * (1 + 64)  # stored PNG: a filter byte a row, block headers
    assert len(base64.b64encode(b"\0" * 3000)) == 4000
    assert largest_file * 4 // 3 < default_max_body_bytes(pixels)


@pytest.mark.parametrize(
    ("max_pixels", "cores", "expected"),
    [
        (4096 * 4096, 1, 1),
        (4096 * 4096, 2, 2),
        (4096 * 4096, 64, 2),  # 2 x 16.8 MP x 24 bytes < 1 GiB < 3 x ...
        (2048 * 2048, 64, 10),
        (1024 * 1024, 8, 8),
        (178_956_970, 64, 1),
        (10**12, 4, 1),
    ],
)
def test_default_max_decodes(max_pixels: int, cores: int, expected: int) -> None:
    assert default_max_decodes(max_pixels, cores=cores) == expected


@pytest.mark.parametrize(
    "kwargs",
    [{"max_pixels": 0}, {"max_pixels": -5}, {"max_body_bytes": -1}, {"max_decodes": 1.5}],
)
def test_invalid_limits_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(OptionsError):
        Limits(**kwargs)


def test_mount_passes_the_limits(model_dir: Path) -> None:
    app = make_app(models_dirs=[model_dir.parent], max_pixels=1000, max_decodes=3)
    service = app.state.tagger_api.service
    assert service.limits == Limits(max_pixels=1000, max_body_bytes=4000 + 2**20, max_decodes=3)
    assert service.decodes.size == 3
    app = make_app(models_dirs=[model_dir.parent], max_body_bytes=12345)
    assert app.state.tagger_api.service.limits.max_body_bytes == 12345


def test_serve_flags(tmp_path: Path) -> None:
    from tagger.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["serve", "--max-pixels", "25_000_000", "--max-body-bytes", "1,000", "--max-decodes", "4"]
    )
    assert (args.max_pixels, args.max_body_bytes, args.max_decodes) == (25_000_000, 1000, 4)
    defaults = parser.parse_args(["serve"])
    assert (defaults.max_pixels, defaults.max_body_bytes, defaults.max_decodes) == (None,) * 3
    for bad in (["--max-pixels", "0"], ["--max-decodes", "many"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", *bad])


# -- the decode pool -------------------------------------------------------------------------------


def _wait_until(condition: Any) -> None:
    """Poll a state until it holds (a safety net of 30 s, not a timing assertion)."""
    import time

    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.005)


def test_the_pool_runs_one_at_a_time_in_order_in_its_own_thread() -> None:
    pool = DecodePool(1)
    order: list[str] = []
    release = threading.Event()
    threads_seen: set[str] = set()

    def work(name: str) -> Any:
        def run() -> str:
            threads_seen.add(threading.current_thread().name)
            order.append(f"{name} in")
            if name == "first":
                release.wait(30)
            order.append(f"{name} out")
            return name

        return run

    results: list[str] = []
    callers = [threading.Thread(target=lambda: results.append(pool.run(work("first"))))]
    callers[0].start()
    _wait_until(lambda: pool.active == 1)
    for queued, name in enumerate(("second", "third"), start=1):
        callers.append(threading.Thread(target=lambda n=name: results.append(pool.run(work(n)))))
        callers[-1].start()
        _wait_until(lambda q=queued: pool.waiting == q)
    assert order == ["first in"]
    release.set()
    for caller in callers:
        caller.join(30)
    assert order == [f"{n} {w}" for n in ("first", "second", "third") for w in ("in", "out")]
    assert sorted(results) == ["first", "second", "third"]
    assert pool.peak == 1
    assert (pool.active, pool.waiting) == (0, 0)
    assert len(threads_seen) == 1
    assert next(iter(threads_seen)).startswith("tagger-decode")
    pool.shutdown()


def test_the_pool_passes_errors_back() -> None:
    pool = DecodePool(2)

    def broken() -> None:
        raise ValueError("the decode failed")

    with pytest.raises(ValueError, match="the decode failed"):
        pool.run(broken)
    assert pool.run(lambda: 42) == 42
    assert (pool.active, pool.waiting) == (0, 0)
    with pytest.raises(OptionsError):
        DecodePool(0)
    pool.shutdown()


# -- the body limit --------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(model_dir: Path, image: Path) -> None:
    body = json.dumps({"image": b64(image), "model": "tiny-v3"}).encode()
    exact = client(make_app(models_dirs=[model_dir.parent], max_body_bytes=len(body)))
    headers = {"content-type": "application/json"}
    assert exact.post(f"{URL}/interrogate", content=body, headers=headers).status_code == 200
    tight = client(make_app(models_dirs=[model_dir.parent], max_body_bytes=len(body) - 1))
    for route in ("interrogate", "tag", "caption", "jobs"):
        response = tight.post(f"{URL}/{route}", content=body, headers=headers)
        assert response.status_code == 413, route
        detail = response.json()["detail"]
        assert f"({len(body):,} bytes) is larger than this server accepts" in detail
        assert f"({len(body) - 1:,} bytes)" in detail
        assert "tagger serve --max-body-bytes" in detail


def test_a_chunked_body_is_counted_as_it_streams(model_dir: Path, image: Path) -> None:
    body = json.dumps({"image": b64(image), "model": "tiny-v3"}).encode()

    def chunks() -> Any:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    headers = {"content-type": "application/json"}
    roomy = client(make_app(models_dirs=[model_dir.parent], max_body_bytes=len(body)))
    response = roomy.post(f"{URL}/tag", content=chunks(), headers=headers)
    assert response.status_code == 200, response.text
    tight = client(make_app(models_dirs=[model_dir.parent], max_body_bytes=len(body) - 1))
    response = tight.post(f"{URL}/tag", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert "is larger than this server accepts" in response.json()["detail"]


def _raw_request(url: str, head: bytes, parts: list[bytes] = ()) -> tuple[bytes, int]:
    """Send a request's head (and body parts) on a socket; the reply and the bytes sent."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sent = len(head)
        reply = b""
        for part in parts:
            try:
                sock.sendall(part)
                sent += len(part)
            except OSError:  # the server answered and closed: the rest is never read
                break
        sock.settimeout(30)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
                if b"\r\n\r\n" in reply and reply.split(b"\r\n\r\n", 1)[1].endswith(b"}"):
                    break
        except OSError:
            pass
    return reply, sent


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    model_dir: Path,
) -> None:
    """Content-Length says 10 GB and no byte of the body is sent: the 413 comes anyway."""
    app = make_app(models_dirs=[model_dir.parent], max_body_bytes=1000)
    with served(app) as url:
        head = (
            f"POST {URL}/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**10}\r\n\r\n"
        ).encode()
        reply, _ = _raw_request(url, head)
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"10,000,000,000 bytes" in reply
        # The server is fine afterwards.
        with urllib.request.urlopen(f"{url}{URL}/interrogators", timeout=30) as response:
            assert response.status == 200


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(model_dir: Path) -> None:
    app = make_app(models_dirs=[model_dir.parent], max_body_bytes=50_000)
    with served(app) as url:
        head = (
            f"POST {URL}/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = b"%x\r\n%s\r\n" % (10_000, b"a" * 10_000)
        reply, sent = _raw_request(url, head, [chunk] * 1000)  # 10 MB offered
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"is larger than this server accepts (50,000 bytes)" in reply
    assert sent < 10_000_000  # the server stopped reading long before the end


def test_the_limit_leaves_the_host_apps_other_routes_alone(model_dir: Path) -> None:
    """Mounted on another app (the webui's), only the tagger routes are limited."""
    from fastapi import FastAPI

    from tagger.api import mount

    app = FastAPI()

    @app.post("/sdapi/v1/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    mount(app, models_dirs=[model_dir.parent], providers="cpu", max_body_bytes=1000)
    api = client(app)
    big = b"x" * 5000
    assert api.post("/sdapi/v1/upload", content=big).json() == {"received": 5000}
    assert api.post(f"{URL}/tag", content=big).status_code == 413


def test_body_reservations() -> None:
    assert body_reservation("POST", {"content-length": "0"}, 100) == 0
    assert body_reservation("POST", {"content-length": "70"}, 100) == 70
    assert body_reservation("POST", {"content-length": "700"}, 100) == 700  # refused by the caller
    assert body_reservation("POST", {"transfer-encoding": "chunked"}, 100) == 100
    assert body_reservation("POST", {"content-length": "x"}, 100) == 0
    assert body_reservation("GET", {}, 100) == 0


def test_the_body_gate_holds_at_most_its_capacity() -> None:
    import asyncio

    gate = BodyGate(100)
    order: list[str] = []

    async def request(name: str, amount: int, release: asyncio.Event | None = None) -> None:
        async with gate.hold(amount):
            order.append(f"{name} in")
            if release is not None:
                await release.wait()
        order.append(f"{name} out")

    async def scenario() -> None:
        release = asyncio.Event()
        first = asyncio.create_task(request("first", 70, release))
        await asyncio.sleep(0)
        second = asyncio.create_task(request("second", 50))  # does not fit beside the first
        small = asyncio.create_task(request("small", 30))  # fits
        empty = asyncio.create_task(request("empty", 0))  # no body: never waits
        await asyncio.wait_for(asyncio.gather(small, empty), 30)
        assert gate.held == 70
        assert "second in" not in order
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 30)

    asyncio.run(scenario())
    assert order.index("first out") < order.index("second in")
    assert gate.peak == 100
    assert gate.held == 0


def test_many_large_bodies_wait_for_each_other(
    model_dir: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 requests whose bodies are all of the largest size: 4 are served at once, the others
    wait before their body is read; all are answered."""
    from tagger.api.service import BODIES_IN_FLIGHT, TaggerService

    body = json.dumps({"image": b64(image), "model": "tiny-v3"}).encode()
    requests = 8
    app = make_app(models_dirs=[model_dir.parent], max_body_bytes=len(body))
    inside = most = finished = 0
    lock = threading.Condition()
    scores = TaggerService.scores

    def counted(self: Any, spec: Any, data: bytes) -> Any:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            lock.notify_all()
            lock.wait_for(lambda: inside >= BODIES_IN_FLIGHT or finished + inside >= requests, 30)
        try:
            return scores(self, spec, data)
        finally:
            with lock:
                inside -= 1
                lock.notify_all()

    monkeypatch.setattr(TaggerService, "scores", counted)
    statuses: list[int] = []
    with served(app) as url:
        barrier = threading.Barrier(requests)

        def call() -> None:
            nonlocal finished
            request = urllib.request.Request(
                f"{url}{URL}/tag", data=body, headers={"content-type": "application/json"}
            )
            barrier.wait()
            with urllib.request.urlopen(request, timeout=120) as response:
                statuses.append(response.status)
            with lock:
                finished += 1
                lock.notify_all()

        workers = [threading.Thread(target=call) for _ in range(requests)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(180)
    assert statuses == [200] * requests
    assert most == BODIES_IN_FLIGHT == 4


# -- the pixel limit -------------------------------------------------------------------------------


def test_a_pixel_bomb_is_refused_from_its_header_without_decoding(model_dir: Path) -> None:
    app = make_app(models_dirs=[model_dir.parent])
    api = client(app)
    for width, height in ((4097, 4096), (20_000, 10_000), (60_000, 60_000)):
        data = base64.b64encode(png_header_only(width, height)).decode()
        response = api.post(f"{URL}/tag", json={"image": data, "model": "tiny-v3"})
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert "over this server's limit of 16,777,216 pixels" in detail
        assert "tagger serve --max-pixels N" in detail
    assert app.state.tagger_api.service.decodes.peak == 0  # nothing was ever decoded


def test_the_largest_admitted_image_is_tagged(model_dir: Path) -> None:
    app = make_app(models_dirs=[model_dir.parent], max_pixels=1500 * 1000)
    data = base64.b64encode(solid_png(1500, 1000)).decode()
    response = client(app).post(f"{URL}/tag", json={"image": data, "model": "tiny-v3"})
    assert response.status_code == 200, response.text
    assert app.state.tagger_api.service.decodes.peak == 1


# -- parallel requests of small files that decode to the largest admitted size --------------------


def test_parallel_huge_decodes_are_bounded(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 parallel requests of 1 MP PNGs (a few kB each) on a server that decodes 2 such images
    at once: never more than 2 full-size images exist, the others wait, all are answered."""
    import tagger.image

    side, slots, requests = 1024, 2, 16
    inside = 0
    most = 0
    lock = threading.Condition()
    load = tagger.image.load_image
    app = make_app(models_dirs=[model_dir.parent], max_pixels=side * side, max_decodes=slots)
    decodes = app.state.tagger_api.service.decodes
    done: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            lock.notify_all()
            # Stay until the pool is full or nobody else can come: then the rest must wait.
            lock.wait_for(lambda: inside >= slots or len(done) + inside >= requests, 30)
        try:
            return load(*args, **kwargs)
        finally:
            with lock:
                inside -= 1
                lock.notify_all()

    monkeypatch.setattr(tagger.image, "load_image", counted)
    body = json.dumps(
        {"image": base64.b64encode(solid_png(side, side)).decode(), "model": "tiny-v3"}
    ).encode()
    assert len(body) < 10_000
    replies: list[tuple[int, bytes]] = []
    with served(app) as url:
        barrier = threading.Barrier(requests)

        def call() -> None:
            request = urllib.request.Request(
                f"{url}{URL}/tag", data=body, headers={"content-type": "application/json"}
            )
            barrier.wait()
            with urllib.request.urlopen(request, timeout=120) as response:
                replies.append((response.status, response.read()))
            with lock:
                done.append(1)
                lock.notify_all()

        workers = [threading.Thread(target=call) for _ in range(requests)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(180)
    assert len(replies) == requests
    assert {status for status, _ in replies} == {200}
    assert len({content for _, content in replies}) == 1
    assert most == slots  # two decoded together, never three
    assert decodes.peak == slots
    assert (decodes.active, decodes.waiting) == (0, 0)
