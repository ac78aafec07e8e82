"""Fuzzing every route from the app's own OpenAPI schema (schemathesis): never a 5xx, only
documented statuses, and every error a JSON ``detail`` saying what is wrong."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")

import schemathesis
from apiutil import client, fake_hub_cache, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import make_image

from tagger.registry import DEFAULT_MODEL

EXAMPLES_PER_OPERATION = 40
#: Routes whose models need torch and their files (a 503 there is the server's state).
TORCH_ROUTES = ("/caption", "/score", "/analyze", "/interrogator/prompt", "/interrogator/models")
#: Three times in four a generated model name, image or input folder is replaced by a real one.
FIX_OFTEN = st.sampled_from([True, True, True, False])


def _fix(body: Any, choice: dict[str, bool], valid: dict[str, Any], fields: set[str]) -> Any:
    """Make some generated bodies reach the model: a real model name, image or folder."""
    if not isinstance(body, dict):
        return body
    fixed = dict(body)
    for key in fields & set(valid):
        if choice[key]:
            fixed[key] = valid[key]
    return fixed


def _body_fields(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    """The property names of an operation's JSON request body (none without a body)."""
    try:
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    except KeyError:
        return set()
    return set(document["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"])


def _fuzz(
    operation: Any,
    documented: set[int],
    statuses: set[int],
    valid: dict[str, Any],
    fields: set[str],
) -> None:
    """Send generated requests (valid and invalid) to one operation and check every reply."""
    from schemathesis import GenerationMode

    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.body or operation.path_parameters:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

    @given(
        case=st.one_of(strategies),
        choice=st.fixed_dictionaries(dict.fromkeys(valid, FIX_OFTEN)),
    )
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def check(case: Any, choice: dict[str, bool]) -> None:
        case.body = _fix(case.body, choice, valid, fields)
        response = case.call()
        statuses.add(response.status_code)
        # 503 on /caption, /sbg, /keywords and the routes of the CLIP Interrogator and the
        # caption scorers: this server has no captioning or keyphrase libraries or model files,
        # a state of the server (documented), not a client's mistake; anything else 5xx is a bug.
        needs_models = case.path.endswith((*TORCH_ROUTES, "/sbg", "/keywords"))
        equipped = not (needs_models and response.status_code == 503)
        assert response.status_code < 500 or not equipped, (case.path, case.body, response.text)
        assert response.status_code in documented, (case.path, response.status_code)
        if response.status_code >= 400:
            assert isinstance(response.json()["detail"], str)
            assert "Traceback" not in response.text

    check()


def test_no_server_errors_over_the_openapi_schema(model_dir: Path, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    image = make_image(allowed / "a.png", (20, 16), seed=1)
    # The default model (used when a request names none) is in the server's Hub cache.
    cache = fake_hub_cache(tmp_path / "hf", f"SmilingWolf/{DEFAULT_MODEL}", "main", model_dir)
    app = make_app(models_dirs=[model_dir.parent], allowed_dirs=[allowed], hf_cache=cache)
    api = client(app)
    document = api.get("/openapi.json").json()
    valid = {
        "model": "tiny-v3",
        "image": base64.b64encode(image.read_bytes()).decode(),
        "inputs": [str(allowed)],
    }
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert (
        len(operations) == 15 + 7 + 2 + 4 + 6
    )  # dataset, keywords and sbg, VLM, CLIP Interrogator and scorers
    seen: dict[str, set[int]] = {}
    for operation in operations:
        described = document["paths"][operation.path][operation.method]
        documented = {int(status) for status in described["responses"]}
        statuses = seen.setdefault(f"{operation.method.upper()} {operation.path}", set())
        _fuzz(operation, documented, statuses, valid, _body_fields(document, described))
    # The fuzzing reached the models, not only the validation.
    assert 200 in seen["POST /tagger/v1/interrogate"]
    assert 200 in seen["POST /tagger/v1/tag"]
    assert 422 in seen["POST /tagger/v1/tag"]
    assert 202 in seen["POST /tagger/v1/jobs"]
