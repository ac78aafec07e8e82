"""VLM captions with ``--engine ray``: a local Ray cluster writes exactly what the local engine
writes, the prompt fields (tags, file name, folder) reach the actors, and the usage is summed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("openai")

from trees import tree, twins
from vlm_server import FakeVlm

from tagger.cli import main
from tagger.options import dump
from tagger.ray_engine import CaptionerConfig, InterrogatorConfig
from tagger.registry import resolve_captioner
from tagger.vlm.options import VlmOptions

KEY_ENV = "TAGGER_TEST_RAY_VLM_KEY"
KEY = "sk-ray-0123456789abcdef"


@pytest.fixture(scope="module")
def vlm_key() -> Iterator[str]:
    """The key in the environment before Ray starts (its workers inherit it)."""
    os.environ[KEY_ENV] = KEY
    yield KEY
    os.environ.pop(KEY_ENV, None)


pytestmark = pytest.mark.usefixtures("vlm_key", "ray_cluster")


@pytest.fixture
def server() -> Iterator[FakeVlm]:
    """A fake endpoint."""
    fake = FakeVlm(latency=0.05).start()
    yield fake
    fake.stop()


def counts(err: str) -> str:
    """The summary's counts."""
    line = next(line for line in err.splitlines() if " found, " in line)
    return line.split(" in ")[0].removeprefix("done: ")


def tokens(err: str) -> str:
    """The summary's tokens line."""
    return next(line for line in err.splitlines() if line.startswith("tokens: "))


def test_tag_guided_captions_on_ray_equal_the_local_engine(
    server: FakeVlm, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, remote = twins(tmp_path, 7)
    prompt = "Describe {name} in {folder}. Tags: {tags}"
    common = ["--model", str(model_dir), "--recursive", "--json", "--no-progress"]
    common += ["--vlm-url", server.url, "--vlm-model", "m", "--vlm-key-env", KEY_ENV]
    common += ["--caption-template", "separate", "--vlm-prompt", prompt, "--concurrency", "3"]
    assert main(["tag", str(local), *common, "--jsonl", str(local / "m.jsonl")]) == 1
    local_err = capsys.readouterr().err
    local_prompts = sorted(r.user_text for r in server.requests)
    server.requests.clear()
    ray_args = ["tag", str(remote), *common, "--jsonl", str(remote / "m.jsonl")]
    assert main([*ray_args, "--engine", "ray"]) == 1
    ray_err = capsys.readouterr().err
    assert sorted(r.user_text for r in server.requests) == local_prompts
    assert tree(remote) == tree(local)
    assert counts(ray_err) == counts(local_err) == "10 found, 8 written, 0 skipped, 2 failed"
    assert tokens(ray_err) == tokens(local_err)
    assert any("Describe img000 in b. Tags: " in text for text in local_prompts)
    lines = [json.loads(line) for line in (remote / "m.jsonl").read_text().splitlines()]
    assert all(line["usage"]["requests"] == 1 for line in lines)
    # Resume on Ray: nothing is requested again.
    server.requests.clear()
    assert main([*ray_args, "--engine", "ray"]) == 1
    assert "10 found, 0 written, 8 skipped, 2 failed" in capsys.readouterr().err
    assert server.requests == []


def test_actors_share_the_rate_limits() -> None:
    spec = resolve_captioner("vlm-api")
    options = VlmOptions(url="http://127.0.0.1:9/v1", model="m", rpm=120, tpm=9000, concurrency=5)
    config = InterrogatorConfig(None, CaptionerConfig(spec, vlm=dump(options)))
    shared = config.shared_by(2).captioner.build(device="cpu")
    assert (shared.vlm.rpm, shared.vlm.tpm, shared.vlm.concurrency) == (60, 4500, 3)
    assert config.shared_by(1).captioner.build(device="cpu").vlm.rpm == 120
