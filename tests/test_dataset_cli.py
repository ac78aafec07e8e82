"""``tagger dataset`` end to end on a real folder: stats, edit (dry run, then for real), undo,
check (with --trash and --report), report; JSON for scripts; exit statuses; and the HTML
report opened in Chromium with its sections on screen."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from dataset_util import PHOTOS, faulty_dataset
from trees import tree

from tagger.cli import build_parser, main
from tagger.dataset.options import CheckOptions


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``tagger ARGV`` in this process: (status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def user_files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(folder).items() if not k.startswith(".tagger/")}


def test_stats_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = faulty_dataset(tmp_path)
    status, out, _ = run(capsys, "dataset", "stats", str(folder), "--tag", "outdoors")
    assert status == 0
    assert f"{len(PHOTOS) + 7} images, {len(PHOTOS)} with a caption" in out
    assert "outdoors: on 5 images" in out
    status, out, _ = run(capsys, "dataset", "stats", str(folder), "--json")
    data = json.loads(out)
    assert data["frequency"][0] == ["outdoors", 5]
    assert data["untagged"]["count"] == 7


def test_edit_dry_run_apply_and_undo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = faulty_dataset(tmp_path)
    before = user_files(folder)
    argv = ["dataset", "edit", str(folder), "--rename", "outdoors=outside", "--trigger", "ohwx"]
    status, out, err = run(capsys, *argv, "--dry-run")
    assert status == 0
    assert "-child, road, leaves, outdoors\n+ohwx, child, road, leaves, outside\n" in out
    assert "would change 8 of 8 captions" in err
    assert user_files(folder) == before
    status, out, _ = run(capsys, *argv, "--where", "tag:outdoors", "--json")
    result = json.loads(out)
    assert status == 0
    assert result["changed"] == 5
    assert (folder / PHOTOS[1]).with_suffix(
        ".txt"
    ).read_text() == "ohwx, child, road, leaves, outside"
    status, out, _ = run(capsys, "dataset", "undo", str(folder), "--list")
    assert result["journal"] in out
    assert "done" in out
    status, out, _ = run(capsys, "dataset", "undo", str(folder))
    assert status == 0
    assert "restored 5 files" in out
    assert user_files(folder) == before
    status, _, err = run(capsys, "dataset", "undo", str(folder))
    assert status == 2
    assert "nothing to undo" in err


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = faulty_dataset(tmp_path)
    assert run(capsys, "dataset", "edit", str(folder))[0] == 2  # changes nothing
    status, _, err = run(capsys, "dataset", "stats", str(tmp_path / "missing"))
    assert status == 2
    assert "does not exist" in err
    status, _, err = run(capsys, "dataset", "edit", str(folder), "--trigger", "x", "--where", "(")
    assert status == 2
    assert "filter" in err
    status, _, err = run(capsys, "dataset", "check", str(folder), "--checks", "nope")
    assert status == 2
    assert "unknown check nope" in err


def test_an_unreadable_caption_makes_the_edit_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = faulty_dataset(tmp_path)
    (folder / "tiny.txt").write_bytes(b"caf\xe9")
    status, _, err = run(capsys, "dataset", "edit", str(folder), "--trigger", "x")
    assert status == 1
    assert "tiny.txt" in err
    assert "not UTF-8" in err
    assert (folder / "tiny.txt").read_bytes() == b"caf\xe9"


def test_check_trash_report_and_undo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, planted = faulty_dataset(tmp_path)
    before = user_files(folder)
    report = tmp_path / "report.html"
    status, out, _ = run(
        capsys, "dataset", "check", str(folder), "--checks", "duplicates,broken,small,aspect",
        "--min-side", "100", "--trash", "duplicates,broken", "--report", str(report), "--json",
    )  # fmt: skip
    assert status == 0
    data = json.loads(out)
    assert data["counts"] == {"duplicates": 2, "broken": 2, "small": 1, "aspect": 1}
    moved = sorted(os.path.relpath(p, folder) for p in data["trash"]["moved"])
    assert moved == ["cut.jpg", "more/copy.jpg", "not-an-image.png"]
    assert report.is_file()
    text = report.read_text(encoding="utf-8")
    assert "Exact duplicates" in text
    assert "data:image/jpeg;base64," in text
    status, out, _ = run(
        capsys, "dataset", "check", str(folder), "--checks", "broken", "--fail-on-findings"
    )
    assert status == 0  # the broken files are in the trash now
    status, out, _ = run(capsys, "dataset", "undo", str(folder))
    assert "restored 3 files" in out
    assert user_files(folder) == before
    status, out, _ = run(
        capsys, "dataset", "check", str(folder), "--checks", "broken", "--fail-on-findings"
    )
    assert status == 1
    assert set(planted["broken"]) <= {line.split(":")[0].strip() for line in out.splitlines()}


def test_stated_defaults_of_every_action_are_the_real_ones(tmp_path: Path) -> None:
    """Each ``(default: ...)`` in the actions' --help is what a run gets."""
    import re

    from tagger.cli.dataset import check_options, dataset_options
    from tagger.dataset.journal import journal_dir
    from tagger.options import dump

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    dataset = sub.choices["dataset"]
    actions = next(a for a in dataset._actions if isinstance(a, argparse._SubParsersAction))
    checks = CheckOptions()
    defaults = re.compile(r"\(default:? ([^)]*)\)")
    stated = 0
    for name, action_parser in actions.choices.items():
        args = build_parser().parse_args(["dataset", name, "x"])
        effective = dict(vars(args))
        if name in ("check", "report"):
            effective.update(dump(check_options(args)))
        if name != "undo":
            effective.update(dump(dataset_options(args)))
        for action in action_parser._actions:
            match = defaults.search(action.help or "")
            if not match:
                continue
            value = effective.get(action.dest)
            text = match.group(1).strip()
            if action.dest == "checks":
                assert text == ",".join(checks.checks)
            elif action.dest == "separator":
                assert text == repr(value)
            elif action.dest == "journal":  # in words: journal.journal_dir
                assert text == "PATH/.tagger/journal"
                assert journal_dir([tmp_path]) == tmp_path / ".tagger" / "journal"
            elif action.dest == "recursive":  # --no-recursive says what the default is
                assert (text, value) == ("recursive", True)
            elif action.dest in ("top", "token_limit"):
                assert text.startswith(str(value))
            else:
                assert text == str(value) or text == f"{value}", (name, action.dest, text, value)
            stated += 1
    assert stated > 20


def test_report_opens_in_chromium_with_its_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("playwright.sync_api")
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "webui"))
    import chromium

    if not chromium.available():
        pytest.skip(f"no {chromium.CHROMIUM}")
    folder, _ = faulty_dataset(tmp_path)
    output = tmp_path / "report.html"
    status, _out, _ = run(
        capsys, "dataset", "report", str(folder), "-o", str(output), "--min-side", "100",
        "--checks", "duplicates,near_duplicates,broken,small,aspect,captions", "--page-size", "4",
    )  # fmt: skip
    assert status == 0
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium.CHROMIUM, args=chromium.ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(output.as_uri())
        page.wait_for_selector("#check-duplicates figure.finding")
        assert page.locator("h1").inner_text() == "Dataset report"
        headings = page.locator("h2").all_inner_texts()
        assert headings[0] == "Statistics"
        assert "Exact duplicates: 2" in headings
        assert "Broken or unreadable images: 2" in headings
        # the frequency chart: one bar per tag, the most frequent first
        bars = page.locator("#stats svg.chart").first.locator("rect")
        assert bars.count() == 25
        assert "outdoors: 5" in bars.first.inner_html()
        # thumbnails are embedded images that decoded
        first = page.locator("#check-duplicates figure.finding img").first
        assert first.evaluate("img => img.complete && img.naturalWidth > 0")
        # paging: 7 caption findings, 4 a page
        captions = page.locator("#check-captions")
        assert captions.locator("figure.finding").count() == 4
        assert captions.locator(".page").inner_text() == "page 1 of 2"
        captions.locator("button.next").click()
        assert captions.locator("figure.finding").count() == 3
        assert captions.locator(".page").inner_text() == "page 2 of 2"
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        shots = os.environ.get("TAGGER_SCREENSHOTS")
        if shots:
            page.screenshot(path=str(Path(shots) / "dataset_report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)  # self-contained
    assert shot.stat().st_size > 20_000  # a page with charts and thumbnails, not blank
