"""Local VLMs (Florence-2, LLaVA / JoyCaption, Qwen2-VL, Qwen2.5-VL) on tiny random-weight
models: the captioner's text equals a direct ``generate()`` run the way each model card runs it,
batched equals one by one, and the caption files of a run equal the cleaned direct output."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np
import torch
from PIL import Image

from tagger.cli import main
from tagger.errors import ImageFailedError, OptionsError
from tagger.options import CaptionOptions
from tagger.vlm.clean import clean_reply
from tagger.vlm.options import VlmOptions

MAX_TOKENS = 10
PROMPT = "describe this image"
SYSTEM = "write tags"


@pytest.fixture(scope="module")
def vlm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny folder per family (and JoyCaption's template form)."""
    from tiny_vlm import make_florence2_dir, make_llava_dir, make_qwen2vl_dir

    root = tmp_path_factory.mktemp("vlms")
    return {
        "florence2": make_florence2_dir(root / "tiny-florence2"),
        "llava": make_llava_dir(root / "tiny-llava"),
        "joycaption": make_llava_dir(root / "tiny-joycaption", placing=True, seed=1),
        "qwen2-vl": make_qwen2vl_dir(root / "tiny-qwen2-vl"),
        "qwen2.5-vl": make_qwen2vl_dir(root / "tiny-qwen2.5-vl", v25=True, seed=2),
    }


def images() -> list[Image.Image]:
    """Noise images of different sizes (Qwen sees them at different resolutions)."""
    sizes = [(30, 40), (37, 45), (44, 50), (64, 24)]
    return [
        Image.fromarray((np.random.RandomState(s).rand(h, w, 3) * 255).astype("uint8"))
        for s, (h, w) in enumerate(sizes)
    ]


def load(folder: Path) -> tuple[object, object]:
    """The checkpoint loaded directly, as the model cards do."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    return processor, model


def direct_florence(folder: Path, image: Image.Image, task: str) -> str:
    """Florence-2's model card: processor(text=task, images=image), generate with 3 beams,
    batch_decode with the special tokens, post_process_generation."""
    processor, model = load(folder)
    inputs = processor(text=task, images=image, return_tensors="pt")
    ids = model.generate(
        input_ids=inputs["input_ids"],
        pixel_values=inputs["pixel_values"],
        max_new_tokens=MAX_TOKENS,
        num_beams=3,
        do_sample=False,
    )
    text = processor.batch_decode(ids, skip_special_tokens=False)[0]
    return processor.post_process_generation(text, task=task, image_size=image.size)[task]


def direct_chat(folder: Path, image: Image.Image, messages: list[dict]) -> str:
    """The llava-hf / Qwen model cards: the chat template, processor, greedy generate, the new
    tokens decoded without special tokens."""
    return direct_chat_ids(folder, image, messages)[0]


def direct_chat_ids(folder: Path, image: Image.Image, messages: list[dict]) -> tuple[str, list]:
    """``direct_chat`` and the generated token ids."""
    processor, model = load(folder)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], padding=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    decoded = processor.batch_decode(
        new, skip_special_tokens=True, clean_up_tokenization_spaces=False
    )[0].strip()
    return decoded, new[0].tolist()


def parts_messages(prompt: str, system: str) -> list[dict]:
    """A system prompt, then the image and the prompt as message parts."""
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
    ]


def captioner(folder: Path, **vlm: object) -> object:
    """The project's captioner for a folder, on the CPU."""
    from tagger.captioners import get_captioner

    options = VlmOptions(max_tokens=MAX_TOKENS, check_language=False, **vlm)
    return get_captioner(str(folder), device="cpu", vlm=options)


def replies(model: object, pictures: list[Image.Image]) -> list[object]:
    """Replies of one batched forward."""
    items = [model.preprocess(picture, {"name": f"img{i}"}) for i, picture in enumerate(pictures)]
    return model.forward(items, CaptionOptions())


def test_florence2_equals_its_model_card_and_batches(vlm_dirs: dict[str, Path]) -> None:
    folder = vlm_dirs["florence2"]
    for task in ("<MORE_DETAILED_CAPTION>", "<CAPTION>"):
        model = captioner(folder, task=task)
        assert type(model).__name__ == "Florence2Captioner"
        pictures = images()
        batched = replies(model, pictures)
        expected = [direct_florence(folder, picture, task) for picture in pictures]
        assert [r.text for r in batched] == expected
        assert [replies(model, [p])[0].text for p in pictures] == expected
        assert {r.prompt for r in batched} == {task}
        assert all(r.usage["completion_tokens"] > 0 for r in batched)


def test_florence2_refuses_templates_and_box_tasks(vlm_dirs: dict[str, Path]) -> None:
    folder = vlm_dirs["florence2"]
    with pytest.raises(OptionsError, match="task token, not a prompt template"):
        captioner(folder, prompt="Describe {name}")
    with pytest.raises(OptionsError, match="boxes or regions"):
        captioner(folder, task="<OD>")


@pytest.mark.parametrize("family", ["llava", "qwen2-vl", "qwen2.5-vl"])
def test_chat_models_equal_their_model_card_and_batch(
    vlm_dirs: dict[str, Path], family: str
) -> None:
    folder = vlm_dirs[family]
    model = captioner(folder, prompt=PROMPT + " {name}", system_prompt=SYSTEM)
    pictures = images()
    batched = replies(model, pictures)
    expected = [
        direct_chat(folder, picture, parts_messages(f"{PROMPT} img{i}", SYSTEM))
        for i, picture in enumerate(pictures)
    ]
    assert [r.text for r in batched] == expected  # prompts of different images differ
    assert [r.prompt for r in batched] == [f"{PROMPT} img{i}" for i in range(len(pictures))]
    one_by_one = [
        model.forward([model.preprocess(p, {"name": f"img{i}"})], CaptionOptions())[0].text
        for i, p in enumerate(pictures)
    ]
    assert one_by_one == expected
    assert len({r.text for r in batched}) > 1  # the output depends on the input


def test_joycaption_template_gets_the_prompt_as_text(vlm_dirs: dict[str, Path]) -> None:
    # JoyCaption's card: [system, user] with string contents; its template places the image.
    folder = vlm_dirs["joycaption"]
    model = captioner(folder, prompt=PROMPT, system_prompt=SYSTEM)
    pictures = images()[:3]
    convo = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    expected = [direct_chat(folder, picture, convo) for picture in pictures]
    assert [r.text for r in replies(model, pictures)] == expected
    prompt = model.model_prompt(model.preprocess(pictures[0], {}))
    assert prompt.count("<image>") == 1
    assert "'type'" not in prompt


def test_cut_off_replies_keep_whole_sentences_or_fail(vlm_dirs: dict[str, Path]) -> None:
    from tagger.vlm.base import VlmReply

    model = captioner(vlm_dirs["qwen2-vl"], prompt=PROMPT)
    cut = VlmReply(text="A cat sleeps. It dreams of", finish="length", usage={"x": 1})
    assert model.postprocess(cut, CaptionOptions()) == "A cat sleeps."
    with pytest.raises(ImageFailedError, match="cut off") as caught:
        model.postprocess(VlmReply(text="A cat that", finish="length"), CaptionOptions())
    assert "max-tokens" in caught.value.reason


def test_caption_command_writes_the_cleaned_direct_output(
    vlm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import json
    import shutil

    from tagger.vlm.clean import rejection

    # Random weights never choose the end token, so every reply would be cut off (and fail):
    # the copy's generation config also stops at the third token the model gives the first
    # image, so that replies end (direct generate() reads the same config).
    folder = tmp_path / "model"
    shutil.copytree(vlm_dirs["qwen2.5-vl"], folder)
    pictures = images()
    messages = [parts_messages(f"{PROMPT} img{i}", SYSTEM) for i in range(len(pictures))]
    _, first = direct_chat_ids(folder, pictures[0], messages[0])
    config_file = folder / "generation_config.json"
    config = json.loads(config_file.read_text())
    stops = sorted({config["eos_token_id"], first[2]})
    config["eos_token_id"] = stops
    config_file.write_text(json.dumps(config))
    data = tmp_path / "data"
    data.mkdir()
    for i, picture in enumerate(pictures):
        picture.save(data / f"img{i}.png")
    argv = ["caption", str(data), "--model", str(folder), "--device", "cpu", "--no-progress"]
    argv += ["--vlm-prompt", PROMPT + " {name}", "--vlm-system", SYSTEM, "--vlm-any-language"]
    argv += ["--vlm-max-tokens", str(MAX_TOKENS), "--batch-size", "3"]
    code = main(argv)
    outcomes = []
    for i, picture in enumerate(pictures):
        raw, ids = direct_chat_ids(folder, picture, messages[i])
        ended = ids[-1] in stops or any(token in stops for token in ids)
        expected = clean_reply(raw) if ended else None
        if expected is not None and rejection(expected, check_language=False) is not None:
            expected = None  # an empty cleaned reply fails its image
        path = data / f"img{i}.caption"
        text = path.read_text(encoding="utf-8") if path.exists() else None
        assert text == (None if expected is None else expected + "\n")  # files end in a newline
        outcomes.append(expected is not None)
    assert any(outcomes)
    assert code == (0 if all(outcomes) else 1)


def test_a_remote_code_florence2_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    import json

    from tagger.errors import ModelLoadError

    folder = tmp_path / "florence2-promptgen-base"
    folder.mkdir()
    config = {"model_type": "florence2", "auto_map": {"AutoConfig": "x.Florence2Config"}}
    config["text_config"] = {"model_type": "florence2_language"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"remote-code layout.*convert_florence2"):
        captioner(folder).load()
