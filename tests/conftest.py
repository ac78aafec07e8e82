"""Shared fixtures: tiny models built once per session, never the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TAGGER_MODELS_DIR", "")
sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_model_dir

# Shared CI machines are slow and noisy: property tests check values, never time per example.
settings.register_profile("tagger", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tagger")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny WD14 model folder with a dynamic batch axis (v3-like), input 32 px."""
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny-v3")


@pytest.fixture(scope="session")
def fixed_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny WD14 model folder fixed at batch 1 (v2-like), input 48 px."""
    return make_model_dir(
        tmp_path_factory.mktemp("models") / "tiny-v2", size=48, fixed_batch=1, seed=1
    )


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test starts and ends with no model loaded."""
    from tagger.cache import unload_all

    unload_all()
    yield
    unload_all()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray for a test module: 2 CPUs, 100 MB of object store, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip folder (open_clip_config.json + open_clip_model.safetensors)."""
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    pytest.importorskip("safetensors")
    from tiny_caption import make_clip_dir

    return make_clip_dir(tmp_path_factory.mktemp("captioners") / "clip")


@pytest.fixture(scope="session")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BLIP folder saved by transformers (config, weights, processor, tokenizer)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_caption import make_blip_dir

    return make_blip_dir(tmp_path_factory.mktemp("captioners") / "tiny-blip")


@pytest.fixture(scope="session")
def clipcap_dir(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path) -> Path:
    """A tiny CLIP-prefix folder: original-format .pt with stale keys, MLP mapper, normalised."""
    pytest.importorskip("transformers")
    from tiny_caption import make_clipcap_dir

    return make_clipcap_dir(tmp_path_factory.mktemp("captioners") / "tiny-clipcap", clip_dir)


# -- the CLIP Interrogator and the image-text scorers (tests/tiny_interrogator.py) -----------


@pytest.fixture(scope="session")
def ci_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip folder whose text tower has CLIP's 77-token context."""
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from tiny_interrogator import make_ci_clip_dir

    return make_ci_clip_dir(tmp_path_factory.mktemp("interrogator") / "ci-clip")


@pytest.fixture(scope="session")
def ci_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip-interrogator data files (artists.txt ... negative.txt) of made-up terms."""
    from tiny_interrogator import make_banks

    return make_banks(tmp_path_factory.mktemp("interrogator") / "data")


@pytest.fixture(scope="session")
def itm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BLIP image-text matching folder (BlipForImageTextRetrieval)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_interrogator import make_itm_dir

    return make_itm_dir(tmp_path_factory.mktemp("scorers") / "tiny-itm")


# -- CI's extras stages: a stage that runs nothing must fail ------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tagger")
    group.addoption(
        "--fail-on-skip",
        action="store_true",
        help="Fail the run when more tests are skipped than --allowed-skips, or none passed "
        "(CI's extras stages: their extra is installed, so the stage's tests must run).",
    )
    group.addoption(
        "--allowed-skips",
        type=int,
        default=0,
        metavar="N",
        help="With --fail-on-skip: how many skipped tests are expected (default 0).",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--fail-on-skip") or exitstatus != 0:
        return
    allowed = session.config.getoption("--allowed-skips")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter is not None else {}
    skipped = [report.nodeid for report in stats.get("skipped", [])]
    passed = len(stats.get("passed", []))
    if len(skipped) > allowed or not passed:
        shown = "\n  ".join(skipped[:20]) or "(none)"
        message = f"--fail-on-skip {allowed}: {passed} passed, {len(skipped)} skipped:\n  {shown}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
