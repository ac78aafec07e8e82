"""Take the README's screenshot of the Tagger tab (``docs/images/tagger-tab.png``).

Serves ``tagger ui`` on 127.0.0.1, uploads a photo, interrogates it in headless Chromium (Debian's,
driven by Playwright) and saves the page as a palette PNG under 100 KB. Real tagger weights are
not available where the project is built, so the model is a stand-in with the real WD v3 tag list
whose scores are fixed (``SCORES``, chosen to describe the README's photo, whatever the input):
the shot shows the tab, not a tagger's quality.

    .venv-forge/bin/python tools/screenshot_tab.py --tags selected_tags.csv --image photo.jpg
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "webui"))

LIMIT = 100_000
#: The stand-in model's scores (every other tag scores 0.01).
SCORES = {
    "general": 0.91, "sensitive": 0.08, "questionable": 0.01, "explicit": 0.002,
    "table": 0.93, "sitting": 0.9, "food": 0.88, "indoors": 0.86, "plate": 0.81,
    "multiple_boys": 0.79, "chair": 0.74, "realistic": 0.72, "cup": 0.66, "shirt": 0.63,
    "drinking_glass": 0.6, "short_hair": 0.58, "potted_plant": 0.55, "1girl": 0.52,
    "window": 0.49, "bottle": 0.46, "tank_top": 0.44, "black_hair": 0.41, "fork": 0.39,
    "eating": 0.37,
}  # fmt: skip


def build_model(folder: Path, tags_csv: Path) -> Path:
    """A model folder with the real tag list and a graph that gives ``SCORES`` to any image."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True)
    shutil.copy(tags_csv, folder / "selected_tags.csv")
    with open(tags_csv, encoding="utf-8") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    scores = np.full((1, len(names)), 0.01, dtype=np.float32)
    for name, score in SCORES.items():
        scores[0, names.index(name)] = score
    nodes = [  # (input * 0) summed per image, plus the fixed scores: [N, tags]
        helper.make_node("Mul", ["input", "zero"], ["nothing"]),
        helper.make_node("ReduceSum", ["nothing", "axes"], ["per_image"], keepdims=1),
        helper.make_node("Reshape", ["per_image", "column"], ["batch"]),
        helper.make_node("Add", ["batch", "scores"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed-scores",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 448, 448, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", len(names)])],
        [
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
            numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.array([-1, 1], np.int64), "column"),
            numpy_helper.from_array(scores, "scores"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def small_png(data: bytes, width: int) -> bytes:
    """The screenshot scaled to ``width`` and saved as a palette PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    height = round(image.height * width / image.width)
    image = image.resize((width, height), Image.LANCZOS)
    out = io.BytesIO()
    image.quantize(colors=64, method=Image.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=Path, required=True, help="a selected_tags.csv")
    parser.add_argument("--image", type=Path, required=True, help="the photo to interrogate")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "tagger-tab.png")
    args = parser.parse_args()

    import chromium
    from playwright.sync_api import sync_playwright

    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    work = Path(tempfile.mkdtemp(prefix="tagger-shot-"))
    try:
        models = work / "models"
        build_model(models / "wd-vit-tagger-v3", args.tags)
        port = chromium.free_port()
        settings = RuntimeSettings(default_model="wd-vit-tagger-v3", models_dirs=[models])
        demo = launch(settings, port=port, presets_dir=work / "presets", block=False)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium.CHROMIUM, args=chromium.ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#tagger_interrogate", timeout=60_000)
                page.set_input_files("#tagger_image input[type=file]", str(args.image))
                page.wait_for_selector("#tagger_image img", timeout=30_000)
                page.click("#tagger_interrogate")
                page.wait_for_function(
                    "document.querySelector('#tagger_prompt textarea').value.length > 0",
                    timeout=60_000,
                )
                page.wait_for_timeout(1500)
                shot = page.screenshot(full_page=False)
                browser.close()
        finally:
            demo.close()
    finally:
        shutil.rmtree(work)
    for width in (1280, 1100, 960, 800):
        data = small_png(shot, width)
        if len(data) < LIMIT:
            break
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data)} bytes, {width} px wide")
    return 0


if __name__ == "__main__":
    sys.exit(main())
