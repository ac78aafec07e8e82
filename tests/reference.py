"""A plain re-statement of SmilingWolf's wd-tagger app, to check our scores against.

Written from the published algorithm, one image at a time, with nothing shared with the
package: RGBA composited on white, padded to a white square (content centred), bicubic resize
to the model's side when it differs, float32, RGB -> BGR, batch of one; ratings all, general and
character tags kept when their score is strictly above the threshold or the MCut threshold
(characters never below 0.15).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

KAOMOJIS = {
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
    ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||",
}  # fmt: skip


def reference_prepare(image: Image.Image, target: int) -> np.ndarray:
    """The app's prepare_image."""
    canvas = Image.new("RGBA", image.size, (255, 255, 255))
    canvas.alpha_composite(image.convert("RGBA"))
    image = canvas.convert("RGB")
    side = max(image.size)
    padded = Image.new("RGB", (side, side), (255, 255, 255))
    padded.paste(image, ((side - image.size[0]) // 2, (side - image.size[1]) // 2))
    if side != target:
        padded = padded.resize((target, target), Image.BICUBIC)
    array = np.asarray(padded, dtype=np.float32)[:, :, ::-1]
    return np.expand_dims(array, axis=0)


def reference_mcut(probs: np.ndarray) -> float:
    """The app's mcut_threshold."""
    ordered = probs[probs.argsort()[::-1]]
    gaps = ordered[:-1] - ordered[1:]
    t = gaps.argmax()
    return float((ordered[t] + ordered[t + 1]) / 2)


def reference_predict(
    model_dir: Path,
    image: Image.Image,
    general_threshold: float = 0.35,
    character_threshold: float = 0.85,
    general_mcut: bool = False,
    character_mcut: bool = False,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(rating, general, character) as the app returns them (names with spaces)."""
    import onnxruntime as ort

    with open(model_dir / "selected_tags.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = [r["name"] if r["name"] in KAOMOJIS else r["name"].replace("_", " ") for r in rows]
    categories = [int(r["category"]) for r in rows]
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    target = session.get_inputs()[0].shape[1]
    preds = session.run(None, {session.get_inputs()[0].name: reference_prepare(image, target)})[0]
    labels = list(zip(names, preds[0].astype(float), strict=True))
    rating = {n: p for (n, p), c in zip(labels, categories, strict=True) if c == 9}
    general = [(n, p) for (n, p), c in zip(labels, categories, strict=True) if c == 0]
    character = [(n, p) for (n, p), c in zip(labels, categories, strict=True) if c == 4]
    if general_mcut:
        general_threshold = reference_mcut(np.array([p for _, p in general]))
    if character_mcut:
        character_threshold = max(0.15, reference_mcut(np.array([p for _, p in character])))
    kept_general = {n: p for n, p in general if p > general_threshold}
    kept_character = {n: p for n, p in character if p > character_threshold}
    return rating, kept_general, kept_character
