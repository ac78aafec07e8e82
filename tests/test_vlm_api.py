"""VLM captions from an OpenAI-compatible endpoint: the real ``openai`` client against a real
HTTP server on 127.0.0.1 (``vlm_server.FakeVlm``) that records requests and can be slow, answer
429/500 with Retry-After, refuse, or reply empty or malformed."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openai")

from PIL import Image
from vlm_server import Answer, FakeVlm, default_text

from tagger.batch import BatchRun, DeferredModel
from tagger.cli import main
from tagger.errors import RunAbortedError
from tagger.options import BatchOptions, CaptionOptions, TagOptions
from tagger.vlm.images import fit_side
from tagger.vlm.options import VlmOptions
from tagger.vlm.templates import BUILTIN, render

KEY = "sk-test-a1b2c3d4e5f6g7h8i9j0"
KEY_ENV = "TAGGER_TEST_VLM_KEY"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[FakeVlm]:
    """A fresh fake endpoint for each test."""
    fake = FakeVlm().start()
    yield fake
    fake.stop()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test key, in its environment variable."""
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def make_images(folder: Path, count: int, size: tuple[int, int] = (96, 64)) -> list[Path]:
    """``count`` distinct PNG images."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}.png"
        Image.new("RGB", size, (i * 9 % 256, 100, 200 - i)).save(path)
        paths.append(path)
    return paths


def caption_args(server: FakeVlm, folder: Path, *extra: str) -> list[str]:
    """``tagger caption FOLDER`` against the fake endpoint."""
    base = ["caption", str(folder), "--vlm-url", server.url, "--vlm-model", "test-model"]
    return [*base, "--vlm-key-env", KEY_ENV, "--no-progress", *extra]


def by_name(server: FakeVlm) -> dict[str, list]:
    """Recorded requests by the image name the prompt names ("... {name}")."""
    out: dict[str, list] = {}
    for record in server.requests:
        name = record.user_text.rsplit(" ", 1)[-1]
        out.setdefault(name, []).append(record)
    return out


def manifest_lines(path: Path) -> list[dict]:
    """The JSONL manifest's records."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_requests_carry_the_prompt_the_image_and_the_key(
    server: FakeVlm, key: str, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 3, size=(1500, 900))
    code = main(caption_args(server, folder, "--vlm-prompt", "Describe {name}"))
    assert code == 0
    assert len(server.requests) == 3
    for record in server.requests:
        assert record.path == "/v1/chat/completions"
        assert {k.lower(): v for k, v in record.headers.items()}["authorization"] == f"Bearer {key}"
        assert record.body["model"] == "test-model"
        assert record.body["max_tokens"] == 400
        assert "temperature" not in record.body
        assert record.system_text == BUILTIN["dense"].system
        assert (record.image_format, record.image_size) == ("JPEG", fit_side(1500, 900, 1024))
    for name, (record,) in by_name(server).items():
        assert record.user_text == f"Describe {name}"
        text = (folder / f"{name}.caption").read_text(encoding="utf-8")
        assert text == default_text(record.image_id) + "\n"


def test_image_format_side_and_sampling_options(server: FakeVlm, key: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_images(folder, 1, size=(300, 200))
    extra = ["--vlm-image-format", "png", "--vlm-image-side", "128", "--vlm-temperature", "0.2"]
    extra += ["--vlm-seed", "7", "--vlm-max-tokens", "99", "--vlm-token-field"]
    extra += ["max_completion_tokens", "--vlm-detail", "low", "--vlm-system", ""]
    assert main(caption_args(server, folder, *extra)) == 0
    (record,) = server.requests
    assert (record.image_format, record.image_size) == ("PNG", (128, 85))
    body = record.body
    assert (body["temperature"], body["seed"], body["max_completion_tokens"]) == (0.2, 7, 99)
    assert "max_tokens" not in body
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"][1]["image_url"]["detail"] == "low"


def test_tag_guided_prompts_hold_the_tags_of_the_same_pass(
    server: FakeVlm, key: str, tmp_path: Path, model_dir: Path
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 4)
    args = ["tag", str(folder), "--model", str(model_dir), "--vlm-url", server.url]
    args += ["--vlm-model", "m", "--vlm-key-env", KEY_ENV, "--caption-template", "separate"]
    args += ["--json", "--no-progress", "--vlm-trigger", "zzk person", "--general-threshold"]
    args += ["0.3", "--batch-size", "2"]
    assert main(args) == 0
    assert len(server.requests) == 4
    records = {r.image_id: r for r in server.requests}
    for path in sorted(folder.glob("*.png")):
        tags = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        caption = path.with_suffix(".caption").read_text(encoding="utf-8").strip()
        record = next(r for r in records.values() if default_text(r.image_id) == caption)
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert sidecar["caption"] == caption
        characters = ", ".join(name.replace("_", " ") for name in sidecar["character"])
        rating = max(sidecar["rating"], key=lambda name: sidecar["rating"][name])
        expected = render(
            BUILTIN["dense"].user,
            {"tags": tags, "character": characters, "rating": rating, "trigger": "zzk person"},
        )
        assert record.user_text == expected
        assert f"contradict them: {tags}\n" in record.user_text
        assert record.user_text.endswith("Call the main subject zzk person.")


def test_requests_in_flight_follow_concurrency(server: FakeVlm, key: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_images(folder, 12)
    server.latency = 0.3
    start = time.monotonic()
    jsonl = folder / "meta.jsonl"
    extra = ["--concurrency", "4", "--batch-size", "3", "--jsonl", str(jsonl)]
    assert main(caption_args(server, folder, *extra)) == 0
    elapsed = time.monotonic() - start
    assert server.max_in_flight == 4  # batches of 3: the next batch's requests were in flight
    assert len(server.requests) == 12
    assert elapsed < 12 * 0.3  # not one at a time
    names = [line["file_name"] for line in manifest_lines(jsonl)]
    assert names == [f"img{i:02d}.png" for i in range(12)]  # written in input order
    server.requests.clear()
    server.max_in_flight = 0
    for path in folder.glob("*.caption"):
        path.unlink()
    assert main(caption_args(server, folder, "--concurrency", "1")) == 0
    assert server.max_in_flight == 1


def test_requests_per_minute_are_held(server: FakeVlm, key: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_images(folder, 8)
    assert main(caption_args(server, folder, "--concurrency", "8", "--rpm", "600")) == 0
    starts = sorted(record.start for record in server.requests)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.1 - 0.02  # 60 s / 600 between starts (client-to-server jitter)
    assert starts[-1] - starts[0] >= 0.7 - 0.02


def test_retry_after_is_respected_and_other_requests_wait(
    server: FakeVlm, key: str, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 3)
    server.answers(Answer("status", status=429, retry_after="1"))
    jsonl = folder / "meta.jsonl"
    extra = ["--concurrency", "1", "--jsonl", str(jsonl), "--vlm-prompt", "Describe {name}"]
    assert main(caption_args(server, folder, *extra)) == 0
    first, *rest = server.requests
    assert first.status == 429
    assert all(record.start - first.end >= 1.0 for record in rest)
    assert len(rest) == 3
    usage = {line["file_name"]: line["usage"] for line in manifest_lines(jsonl)}
    assert usage["img00.png"]["requests"] == 2
    assert usage["img00.png"]["retries"] == 1


def test_server_errors_and_malformed_replies_are_retried(
    server: FakeVlm, key: str, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 1)
    server.answers(
        Answer("status", status=500),
        Answer("status", status=503, retry_after="0"),
        Answer("raw", raw=b"<html>bad gateway</html>"),
        Answer("raw", raw=b'{"id": "x", "object": "chat.completion", "choices": []}'),
    )
    assert main(caption_args(server, folder, "--concurrency", "1")) == 0
    assert [r.status for r in server.requests] == [500, 503, 200, 200, 200]
    assert (folder / "img00.caption").exists()


def test_failures_are_reported_never_written_and_a_rerun_finishes(
    server: FakeVlm, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 8)
    answers = {
        "img00": Answer(text="I'm sorry, but I can't help with that."),
        "img01": Answer("refusal_field", text="I cannot assist with this request."),
        "img02": Answer(text=""),
        "img03": Answer(text="<think>The user wants a caption, I should"),
        "img04": Answer(text="\u3053\u308c\u306f\u732b\u306e\u5199\u771f\u3067\u3059\u3002"),
        "img05": Answer("status", status=400, text="image too large"),
        "img06": Answer(text="A cat", finish="length"),
    }
    first_round = set(answers)
    server.picker = lambda r: (
        answers.get(r.user_text.rsplit(" ", 1)[-1]) if not server.requests_done else None
    )
    server.requests_done = False
    jsonl = folder / "meta.jsonl"
    extra = ["--jsonl", str(jsonl), "--vlm-prompt", "Describe {name}", "--vlm-retries", "1"]
    assert main(caption_args(server, folder, *extra)) == 1
    err = capsys.readouterr().err
    reasons = {
        "img00": "refused: \"I'm sorry, but I can't help with that.\"",
        "img01": 'refused: "I cannot assist with this request."',
        "img02": "empty reply",
        "img03": "empty reply",
        "img04": "reply is not in the Latin script",
        "img05": "HTTP 400: image too large",
        "img06": "reply cut off at 400 tokens",
    }
    for name, reason in reasons.items():
        assert f"{folder / name}.png: {reason}" in err
        assert not (folder / f"{name}.caption").exists()
    assert (folder / "img07.caption").exists()
    assert [line["file_name"] for line in manifest_lines(jsonl)] == ["img07.png"]
    assert "8 found, 1 written, 0 skipped, 7 failed" in err

    server.requests_done = True  # now every image gets a normal reply
    server.requests.clear()
    assert main(caption_args(server, folder, *extra)) == 0
    assert sorted(by_name(server)) == sorted(first_round)  # only the failed ones again
    lines = manifest_lines(jsonl)
    assert sorted(line["file_name"] for line in lines) == [f"img{i:02d}.png" for i in range(8)]
    for line in lines:
        caption = (folder / line["file_name"]).with_suffix(".caption").read_text("utf-8")
        assert line["caption"] == caption.strip()


def test_usage_is_summed_in_the_manifest_and_the_summary(
    server: FakeVlm, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 5)
    server.answers(Answer(text="I cannot do that."))  # a refusal still costs tokens
    jsonl = folder / "meta.jsonl"
    extra = ["--jsonl", str(jsonl), "--price-input", "0.5", "--price-output", "1.5"]
    assert main(caption_args(server, folder, "--concurrency", "1", *extra)) == 1
    prompt = sum(r.tokens[0] for r in server.requests)
    reply = sum(r.tokens[1] for r in server.requests)
    lines = manifest_lines(jsonl)
    assert len(lines) == 4
    for line in lines:
        usage = line["usage"]
        assert usage["requests"] == 1
        assert usage["cost"] == pytest.approx(
            (usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 1.5) / 1e6
        )
    cost = (prompt * 0.5 + reply * 1.5) / 1e6
    err = capsys.readouterr().err
    line = f"tokens: {prompt:,} prompt + {reply:,} reply = {prompt + reply:,} (5 requests)"
    assert f"{line}; cost {cost:.4f}" in err


def test_interrupted_runs_resume_without_losing_or_duplicating(
    server: FakeVlm, key: str, tmp_path: Path
) -> None:
    from tagger.captioners import get_captioner
    from tagger.interrogate import Interrogator

    folder = tmp_path / "data"
    make_images(folder, 20)
    jsonl = folder / "meta.jsonl"
    server.latency = 0.05
    options = VlmOptions(url=server.url, model="m", key_env=KEY_ENV, concurrency=4)

    def model() -> Interrogator:
        captioner = get_captioner("vlm-api", vlm=options, load=False)
        return Interrogator(None, captioner, CaptionOptions())

    batch = BatchOptions(jsonl=str(jsonl), caption_extension=".caption", batch_size=4)
    cancel = threading.Event()

    def progress(snapshot: object) -> None:
        if snapshot.done >= 6:
            cancel.set()

    run = BatchRun([folder], DeferredModel(model, ("caption",)), TagOptions(), batch)
    run.progress, run.cancel = progress, cancel
    summary = run.run()
    assert summary.cancelled
    assert 6 <= summary.written < 20
    done_first = len(manifest_lines(jsonl))
    requested_first = len(server.requests)
    summary = BatchRun([folder], DeferredModel(model, ("caption",)), TagOptions(), batch).run()
    assert summary.written == 20 - done_first
    assert len(server.requests) == requested_first + 20 - done_first
    lines = manifest_lines(jsonl)
    assert sorted(line["file_name"] for line in lines) == [f"img{i:02d}.png" for i in range(20)]
    assert len({line["caption"] for line in lines}) == 20


def test_a_refused_key_stops_the_run(server: FakeVlm, key: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_images(folder, 30)
    server.default = Answer("status", status=401, text=f"Incorrect API key provided: {KEY}")
    from tagger.captioners import get_captioner
    from tagger.interrogate import Interrogator

    options = VlmOptions(url=server.url, model="m", key_env=KEY_ENV, concurrency=2)
    run = BatchRun([folder], Interrogator(None, get_captioner("vlm-api", vlm=options)))
    with pytest.raises(RunAbortedError, match=f"refused the key .*{KEY_ENV}") as caught:
        run.run()
    assert KEY not in str(caught.value)
    assert len(server.requests) <= 8  # the first batch only, never all 30 images
    assert not list(folder.glob("*.caption"))


def test_per_image_timeout(server: FakeVlm, key: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_images(folder, 2)
    server.answers(Answer(delay=3.0), Answer(delay=3.0))
    start = time.monotonic()
    code = main(caption_args(server, folder, "--vlm-timeout", "1", "--vlm-retries", "0"))
    assert code == 1
    assert time.monotonic() - start < 3.0
    assert not list(folder.glob("*.caption"))


def test_missing_key_and_bad_flags_stop_before_any_request(
    server: FakeVlm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 2)
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main(caption_args(server, folder)) == 2
    assert f"the environment variable {KEY_ENV} is empty or not set" in capsys.readouterr().err
    monkeypatch.setenv(KEY_ENV, KEY)
    for extra, message in [
        (["--vlm-template", "nope"], "unknown prompt template 'nope'"),
        (["--vlm-prompt", "Describe {colour}"], "unknown field {colour}"),
        (["--vlm-template-file", str(tmp_path / "none.txt")], "does not exist"),
    ]:
        assert main(caption_args(server, folder, *extra)) == 2
        assert message in capsys.readouterr().err
    args = ["caption", str(folder), "--vlm-url", server.url, "--no-progress"]
    assert main(args) == 2
    assert "pass --vlm-model" in capsys.readouterr().err
    assert main([*args, "--vlm-model", "m", "--vlm-key-env", KEY]) == 2
    assert KEY not in capsys.readouterr().err
    gemini_like = "AIzaSyD1x2c3v4b5n6m7q8w9e0rT"  # a valid variable name, but a key
    assert main([*args, "--vlm-model", "m", "--vlm-key-env", gemini_like]) == 2
    err = capsys.readouterr().err
    assert gemini_like not in err
    assert "looks like a key" in err
    assert server.requests == []
    assert not list(folder.glob("*.caption"))


def test_dry_run_prints_requests_and_sends_nothing(
    server: FakeVlm, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    make_images(folder, 5, size=(2000, 1000))
    (folder / "img00.caption").write_text("done already\n", encoding="utf-8")
    args = ["tag", str(folder), "--model", str(model_dir), "--vlm-url", server.url]
    args += ["--vlm-model", "m", "--vlm-key-env", KEY_ENV, "--caption-template", "separate"]
    args += ["--dry-run", "2", "--no-progress"]
    assert main(args) == 0  # no key set: a dry run needs none
    out = capsys.readouterr().out
    assert "dry run: 2 request(s); nothing is sent and nothing is written" in out
    assert f"--- {folder / 'img00.png'}" in out  # its .txt is missing: not done
    assert f"--- {folder / 'img01.png'}" in out
    assert "img02" not in out
    assert "image/jpeg 1024x512" in out
    assert "contradict them: " in out
    assert server.requests == []
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".png") == ["img00.caption"]


def test_no_key_reaches_a_file_or_a_log(server: FakeVlm, tmp_path: Path) -> None:
    """Every file the runs wrote and everything they printed (debug logging, the openai
    client's own debug log, failures, an aborted run echoing the key) is free of the key."""
    folder = tmp_path / "data"
    make_images(folder, 6)
    env = {**os.environ, KEY_ENV: KEY, "OPENAI_LOG": "debug", "PYTHONPATH": str(REPO)}
    env["HF_HUB_OFFLINE"] = "1"
    masked = f"{KEY[:6]}****{KEY[-4:]}"
    server.answers(
        Answer("status", status=500, text=f"upstream saw key {KEY}"),
        Answer(text=f"I'm sorry, I can't use {KEY}"),
    )
    base = [sys.executable, "-m", "tagger", "-vv"]
    common = ["--vlm-url", server.url, "--vlm-model", "m", "--vlm-key-env", KEY_ENV]
    outputs = ["--json", "--jsonl", str(tmp_path / "meta.jsonl"), "--no-progress"]
    runs = [
        [*base, "caption", str(folder), *common, *outputs],
        [*base, "caption", str(folder), *common, "--dry-run", "--on-existing", "overwrite"],
    ]
    logs = []
    for argv in runs:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        logs.append(done.stdout + done.stderr)
    server.default = Answer("status", status=401, text=f"Incorrect API key provided: {masked}.")
    argv = [*base, "caption", str(folder), *common, "--on-existing", "overwrite", "--no-progress"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    logs.append(done.stdout + done.stderr)
    assert "refused the key" in logs[-1]
    assert "HTTP Request: POST" in logs[0]  # the debug logs were on
    for text in logs:
        assert KEY not in text
        assert masked not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in files)
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data, path
        assert masked.encode() not in data, path
    authorization = {
        r.headers.get("Authorization") or r.headers.get("authorization") for r in server.requests
    }
    assert authorization == {f"Bearer {KEY}"}  # it was sent, to the endpoint only


def test_a_guide_captioner_fills_the_caption_field(
    server: FakeVlm, key: str, tmp_path: Path, blip_dir: Path
) -> None:
    from tagger.captioners import get_captioner
    from tagger.image import load_image

    folder = tmp_path / "data"
    paths = make_images(folder, 3)
    extra = ["--vlm-prompt", "Improve this caption: {caption}", "--vlm-guide", str(blip_dir)]
    assert main(caption_args(server, folder, *extra, "--device", "cpu")) == 0
    blip = get_captioner(str(blip_dir), device="cpu")
    expected = blip.caption([load_image(path) for path in paths], CaptionOptions())
    prompts = sorted(record.user_text for record in server.requests)
    assert prompts == sorted(f"Improve this caption: {text}" for text in expected)
