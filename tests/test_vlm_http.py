"""VLM captions over the HTTP API: ``/tagger/v1/vlm/caption`` (and ``/caption`` with ``vlm``),
folder jobs, the server's endpoints; the key stays on the server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("openai")

from apiutil import b64, client, make_app
from tiny import make_image
from vlm_server import Answer, FakeVlm, default_text, pixel_id

KEY_ENV = "TAGGER_TEST_HTTP_VLM_KEY"
KEY = "sk-http-9f8e7d6c5b4a3210"
URL = "/tagger/v1"


@pytest.fixture
def server() -> Iterator[FakeVlm]:
    """A fake endpoint."""
    fake = FakeVlm().start()
    yield fake
    fake.stop()


@pytest.fixture
def api(
    server: FakeVlm, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> object:
    """The API with one endpoint (the fake one, its key in the server's environment)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    app = make_app(
        models_dirs=[model_dir.parent],
        vlm_endpoints=[f"fake={server.url},{KEY_ENV}"],
        allowed_dirs=[tmp_path],
    )
    return client(app)


def image_b64(tmp_path: Path, seed: int = 3) -> tuple[str, str]:
    """A request image and the id the fake server names it by."""
    path = make_image(tmp_path / f"img{seed}.png", (48, 40), seed=seed)
    from PIL import Image

    from tagger.vlm.images import encode_image

    with Image.open(path) as image:
        sent = encode_image(image)
    return b64(path), pixel_id(sent.data)


def test_caption_one_image_with_the_servers_endpoint(
    api: object, server: FakeVlm, tmp_path: Path
) -> None:
    image, image_id = image_b64(tmp_path)
    body = {
        "image": image,
        "vlm": {"model": "m", "prompt": "Describe {name}", "price_input": 1.0},
        "fields": {"name": "cat"},
    }
    reply = api.post(f"{URL}/vlm/caption", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["caption"] == default_text(image_id)
    assert (data["failure"], data["prompt"], data["tags"]) == (None, "Describe cat", None)
    assert data["usage"]["requests"] == 1
    assert data["usage"]["cost"] == pytest.approx(data["usage"]["prompt_tokens"] / 1e6)
    (record,) = server.requests
    assert record.user_text == "Describe cat"
    sent = record.headers.get("Authorization", record.headers.get("authorization"))
    assert sent == f"Bearer {KEY}"
    assert KEY not in reply.text
    # The older route takes the same options.
    body = {"image": image, "model": "vlm-api", "vlm": {"model": "m"}}
    old = api.post(f"{URL}/caption", json=body)
    assert old.status_code == 200, old.text
    assert old.json() == {"model": "vlm-api", "caption": default_text(image_id)}
    server.answers(Answer(text="I cannot help with this."))
    refused = api.post(f"{URL}/caption", json=body)
    assert refused.status_code == 422
    assert 'no caption: refused: "I cannot help with this."' in refused.json()["detail"]


def test_tag_guided_caption_over_http(
    api: object, server: FakeVlm, tmp_path: Path, model_dir: Path
) -> None:
    image, _ = image_b64(tmp_path, seed=5)
    body = {
        "image": image,
        "vlm": {"model": "m", "prompt": "Tags: {tags}\nRating: {rating}"},
        "tagger": model_dir.name,
        "tag_options": {"general_threshold": 0.2},
    }
    data = api.post(f"{URL}/vlm/caption", json=body).json()
    tags = api.post(
        f"{URL}/tag",
        json={"image": image, "model": model_dir.name, "options": {"general_threshold": 0.2}},
    ).json()
    assert data["tags"] == tags["tags"]
    rating = max(tags["rating"], key=lambda name: tags["rating"][name])
    assert data["prompt"] == f"Tags: {', '.join(tags['tags'])}\nRating: {rating}"
    assert server.requests[0].user_text == data["prompt"]


def test_refusals_and_server_errors(api: object, server: FakeVlm, tmp_path: Path) -> None:
    image, _ = image_b64(tmp_path)
    server.answers(Answer(text="I'm sorry, I cannot help with that."))
    data = api.post(f"{URL}/vlm/caption", json={"image": image, "vlm": {"model": "m"}}).json()
    assert data["caption"] is None
    assert data["failure"] == 'refused: "I\'m sorry, I cannot help with that."'
    server.default = Answer("status", status=401, text=f"Incorrect API key provided: {KEY}")
    reply = api.post(f"{URL}/vlm/caption", json={"image": image, "vlm": {"model": "n"}})
    assert reply.status_code == 503
    assert "refused the key" in reply.json()["detail"]
    assert KEY not in reply.text


def test_requests_cannot_choose_urls_or_key_variables(
    api: object, server: FakeVlm, tmp_path: Path, model_dir: Path
) -> None:
    image, _ = image_b64(tmp_path)
    for vlm, endpoint in [
        ({"model": "m", "url": "http://attacker.invalid/v1"}, None),
        ({"model": "m", "key_env": "HOME"}, None),
        ({"model": "m"}, "other"),
    ]:
        body = {"image": image, "vlm": vlm, "endpoint": endpoint}
        reply = api.post(f"{URL}/vlm/caption", json=body)
        assert reply.status_code == 403, reply.text
    assert server.requests == []
    bare = client(make_app(models_dirs=[model_dir.parent], vlm_endpoints=[]))
    reply = bare.post(f"{URL}/vlm/caption", json={"image": image, "vlm": {"model": "m"}})
    assert reply.status_code == 403
    assert "no VLM endpoint" in reply.json()["detail"]
    reply = api.post(f"{URL}/vlm/caption", json={"image": image, "model": model_dir.name})
    assert reply.status_code == 404  # a tagger folder is not a captioner


def test_endpoints_and_templates(api: object, server: FakeVlm) -> None:
    endpoints = api.get(f"{URL}/vlm/endpoints")
    assert endpoints.json() == {
        "endpoints": [{"name": "fake", "url": server.url, "key_env": KEY_ENV, "key_set": True}]
    }
    assert KEY not in endpoints.text
    templates = api.get(f"{URL}/vlm/templates").json()
    assert [t["name"] for t in templates["templates"]] == ["dense", "sd-prompt", "booru-tags"]
    assert "tags" in templates["fields"]


def test_folder_job_with_tags_and_usage(
    api: object, server: FakeVlm, tmp_path: Path, model_dir: Path
) -> None:
    folder = tmp_path / "data"
    for i in range(5):
        make_image(folder / f"img{i}.png", (40, 30 + i), seed=i)
    server.answers(Answer(text="I cannot describe this."))
    body = {
        "inputs": [str(folder)],
        "vlm": {"model": "m", "concurrency": 2},
        "tagger": model_dir.name,
        "batch": {"jsonl": str(folder / "meta.jsonl"), "write_json": True},
    }
    reply = api.post(f"{URL}/vlm/jobs", json=body)
    assert reply.status_code == 202, reply.text
    job = reply.json()
    for _ in range(200):
        status = api.get(f"{URL}/jobs/{job['id']}").json()
        if status["state"] not in ("queued", "counting", "running"):
            break
        time.sleep(0.05)
    assert status["state"] == "done", status
    summary = status["summary"]
    assert (summary["written"], summary["failed_count"]) == (4, 1)
    assert summary["failed"][0]["reason"] == 'refused: "I cannot describe this."'
    prompt = sum(r.tokens[0] for r in server.requests)
    assert summary["usage"]["prompt_tokens"] == prompt
    assert summary["usage"]["requests"] == 5
    lines = [json.loads(line) for line in (folder / "meta.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for line in lines:
        stem = (folder / line["file_name"]).with_suffix("")
        assert line["caption"] == stem.with_suffix(".caption").read_text().strip()
        assert line["text"] == stem.with_suffix(".txt").read_text().strip()
    outside = {**body, "inputs": ["/etc"]}
    assert api.post(f"{URL}/vlm/jobs", json=outside).status_code == 403
