"""The pure parts of VLM captions: templates, reply cleaning, the rate limiter, retry waits,
image encoding, usage and cost, endpoint names."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tagger.errors import OptionsError
from tagger.options import TagOptions
from tagger.tags import TagResult
from tagger.vlm.clean import clean_reply, latin_share, rejection
from tagger.vlm.images import encode_image, fit_side, image_tokens
from tagger.vlm.limits import LimitError, RateLimiter, parse_retry_after, retry_delay
from tagger.vlm.options import ENDPOINTS, resolve_endpoint
from tagger.vlm.templates import (
    BUILTIN,
    FIELDS,
    check_template,
    read_template_file,
    render,
    resolve_template,
)
from tagger.vlm.usage import add_usage, priced, usage_line

# -- templates ---------------------------------------------------------------------------------


def test_builtin_templates_name_only_known_fields() -> None:
    assert set(BUILTIN) == {"dense", "sd-prompt", "booru-tags"}
    for template in BUILTIN.values():
        assert set(check_template(template.user)) <= set(FIELDS)
    assert {"tags", "character", "copyright", "rating", "caption", "trigger"} <= set(
        check_template(BUILTIN["dense"].user)
    )


def test_render_drops_lines_whose_fields_are_all_empty() -> None:
    text = "Describe it.\nTags: {tags}\nCharacters: {character}\n\n\nName: {name} {trigger}\n"
    text += "End {{x}}"
    assert render(text, {"tags": "1girl, solo", "name": "cat"}) == (
        "Describe it.\nTags: 1girl, solo\n\nName: cat \nEnd {x}"
    )
    assert render(text, {}) == "Describe it.\n\nEnd {x}"


def test_dense_template_without_a_tagger_keeps_only_the_instruction() -> None:
    dense = BUILTIN["dense"].user
    plain = render(dense, {"name": "x"})
    assert plain == dense.split("\n")[0]
    guided = render(dense, {"tags": "1girl, smile", "character": "hatsune miku"})
    assert "contradict them: 1girl, smile" in guided
    assert "The characters are hatsune miku;" in guided
    assert "The series is" not in guided


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Describe {colour}", "unknown field {colour}"),
        ("Describe {}", "empty field"),
        ("Describe {tags:>10}", "takes no format"),
        ("Describe {tags", "malformed"),
    ],
)
def test_bad_templates_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        check_template(text)


def test_template_files_with_and_without_a_system_section(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("Caption {name}.\n", encoding="utf-8")
    assert read_template_file(plain) == (None, "Caption {name}.")
    both = tmp_path / "both.txt"
    both.write_text("[system]\nBe brief.\n[user]\nTags: {tags}\n", encoding="utf-8")
    assert read_template_file(both) == ("Be brief.", "Tags: {tags}")
    broken = tmp_path / "broken.txt"
    broken.write_text("[system]\nno user part\n", encoding="utf-8")
    with pytest.raises(OptionsError, match=r"no \[user\] line"):
        read_template_file(broken)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\xe9 {name}".encode("latin-1"))
    with pytest.raises(Exception, match="UTF-8"):
        read_template_file(latin1)
    with pytest.raises(OptionsError, match="does not exist"):
        read_template_file(tmp_path / "missing.txt")


def test_resolve_template_keeps_the_builtin_system_prompt_for_your_own() -> None:
    own = resolve_template("dense", "Describe {name}", None, None)
    assert (own.name, own.user, own.reply) == ("custom", "Describe {name}", "prose")
    assert own.system == BUILTIN["dense"].system
    assert resolve_template("booru-tags", None, "", None).system == ""
    assert resolve_template("sd-prompt", None, None, None).reply == "tags"
    with pytest.raises(OptionsError, match="unknown prompt template 'nope'"):
        resolve_template("nope", None, None, None)


def test_tag_fields_follow_the_tag_options() -> None:
    from tagger.vlm.base import tag_fields

    result = TagResult(
        {"general": 0.2, "sensitive": 0.7, "questionable": 0.1, "explicit": 0.0},
        {"hatsune_miku": 0.95},
        {"1girl": 0.99, "long_hair": 0.8, "smile": 0.5},
        {"1girl": 4, "long_hair": 5, "smile": 6, "hatsune_miku": 7},
    )
    options = TagOptions(
        replace_tags={"smile": "smiling"},
        include_weights=True,
        escape_brackets=True,
        additional_tags=["my trigger"],
        rating_tag="first",
    )
    assert tag_fields(result, options) == {
        "tags": "1girl, hatsune miku, long hair, smiling",
        "general": "1girl, long hair, smiling",
        "character": "hatsune miku",
        "copyright": "",
        "rating": "sensitive",
    }
    kept = tag_fields(result, TagOptions(replace_underscores=False, character_tags_first=True))
    assert kept["tags"] == "hatsune_miku, 1girl, long_hair, smile"


# -- cleaning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "expected"),
    [
        ("A red car.", "prose", "A red car."),
        ("<think>the user wants\na caption</think>\nA red car.", "prose", "A red car."),
        ("<THINKING>x</THINKING>A red car.", "prose", "A red car."),
        ("reasoning without an opening tag</think>A red car.", "prose", "A red car."),
        ("A red car.<think>and then", "prose", "A red car."),
        ("```\nA red car\nparked outside.\n```", "prose", "A red car parked outside."),
        ("```markdown\n**A red car** parked.\n```", "prose", "A red car parked."),
        ("Sure! Here is a detailed caption of the image:\n\nA red car.", "prose", "A red car."),
        ("Certainly. Here's the description: A red car.", "prose", "A red car."),
        ("Caption: A red car.", "prose", "A red car."),
        ("## Description\nA red car.", "prose", "Description A red car."),
        ("A red car: parked outside.", "prose", "A red car: parked outside."),
        ("A red car. I hope this helps! Let me know if you need more.", "prose", "A red car."),
        ('"A red car."', "prose", "A red car."),
        ("\u201cA red car.\u201d", "prose", "A red car."),
        ("- 1girl\n- solo\n- Solo\n- smile", "tags", "1girl, solo, smile"),
        ("Tags: 1girl, solo,  long hair,", "tags", "1girl, solo, long hair"),
        ("1. red car\n2. street", "tags", "red car, street"),
        ("", "prose", ""),
        (None, "prose", ""),
    ],
)
def test_clean_reply_rules(reply: str | None, kind: str, expected: str) -> None:
    assert clean_reply(reply, kind) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, but I can't help with that.",
        "I am sorry, I cannot describe this image.",
        "Sorry, I can't assist with this request.",
        "I cannot provide a description of this image.",
        "I can't help with identifying people.",
        "I'm unable to describe this image.",
        "I\u2019m not able to help with that.",
        "I won't describe this.",
        "As an AI, I cannot view images.",
        "Unfortunately, I am unable to help.",
    ],
)
def test_refusals_are_rejected(reply: str) -> None:
    assert rejection(clean_reply(reply)).startswith("refused: ")


def test_captions_that_only_look_like_refusals_are_kept() -> None:
    for text in ("A sorry-looking dog in the rain.", "Icons on a screen.", "I love this car."):
        assert rejection(text) is None


def test_other_scripts_are_rejected_unless_allowed() -> None:
    japanese = "\u3053\u308c\u306f\u732b\u3067\u3059\u3002"
    assert latin_share(japanese) == 0.0
    assert "not in the Latin script" in rejection(japanese)
    assert rejection(japanese, check_language=False) is None
    assert rejection("A sign reading \u732b in a caf\xe9.") is None  # mostly Latin
    assert rejection("   ") == "empty reply"


# -- the limiter ---------------------------------------------------------------------------------


class FakeClock:
    """A clock the limiter sleeps on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_requests_per_minute_are_evenly_spaced() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=30, clock=clock, sleep=clock.sleep)
    starts = [limiter.acquire()[0].start for _ in range(5)]
    assert starts == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])
    clock.now = 30.0
    assert limiter.reserve().start == 30.0


def test_a_request_that_goes_out_late_pushes_the_next_one_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=30, clock=clock, sleep=clock.sleep)
    first, second = limiter.reserve(), limiter.reserve()  # planned at 0 s and 2 s
    assert (first.start, second.start) == pytest.approx((0.0, 2.0))
    clock.now = 2.5  # the first request's thread woke late (a busy machine)
    assert limiter.wait(first) == 0.0
    assert limiter.wait(second) == pytest.approx(2.0)  # 2 s after the first really went out
    assert clock.now == pytest.approx(4.5)
    third = limiter.reserve()
    assert third.start == pytest.approx(4.5)  # planned for now...
    assert limiter.wait(third) == pytest.approx(2.0)  # ...sent 2 s after the second went out
    assert clock.now == pytest.approx(6.5)


def test_any_window_holds_at_most_rpm_starts() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=7, window=10.0, clock=clock, sleep=clock.sleep)
    starts = []
    for step in range(40):
        clock.now = step * 0.3  # requests come faster than allowed
        starts.append(limiter.reserve().start)
    for start in starts:
        assert sum(1 for s in starts if start <= s < start + 10.0) <= 7


def test_tokens_per_minute_window_with_settled_counts() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, window=60.0, clock=clock, sleep=clock.sleep)
    first = limiter.reserve(600)
    second = limiter.reserve(600)  # 1200 > 1000 in one window: waits for the first to leave
    assert (first.start, second.start) == (0.0, 60.0)
    limiter.settle(first, 100)  # the server counted less than the estimate
    third = limiter.reserve(300)  # 100 + 600 + 300 <= 1000
    assert third.start == 0.0
    with pytest.raises(LimitError, match="more than the limit of 1000"):
        limiter.reserve(1001)


def test_token_windows_never_exceed_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=500, window=10.0, clock=clock, sleep=clock.sleep)
    rng = random.Random(1)
    taken = []
    for step in range(60):
        clock.now = step * 0.5
        tokens = rng.randint(50, 300)
        taken.append((limiter.reserve(tokens).start, tokens))
    for start, _ in taken:
        assert sum(t for s, t in taken if start <= s < start + 10.0) <= 500


def test_hold_delays_every_later_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.hold(5.0)
    reservation, waited = limiter.acquire()
    assert (reservation.start, waited, clock.now) == (5.0, 5.0, 5.0)


def test_retry_after_and_backoff() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "100000"}) == 600.0
    rng = random.Random(7)
    for attempt in range(1, 10):
        longest = min(60.0, 2 ** (attempt - 1))
        delay = retry_delay(attempt, rng=rng)
        assert longest / 2 <= delay <= longest
    assert 4.0 <= retry_delay(3, 4.0, rng=rng) <= 4.4


# -- images, usage, endpoints ---------------------------------------------------------------------


def test_images_are_reduced_flattened_and_encoded() -> None:
    from PIL import Image

    rgba = Image.new("RGBA", (3000, 1500), (255, 0, 0, 0))
    jpeg = encode_image(rgba, 1024, "jpeg")
    assert (jpeg.format, jpeg.width, jpeg.height) == ("jpeg", 1024, 512)
    assert jpeg.data_url.startswith("data:image/jpeg;base64,")
    with Image.open(__import__("io").BytesIO(jpeg.data)) as decoded:
        assert decoded.getpixel((10, 10))[0] > 240  # transparent -> white
    small = encode_image(Image.new("RGB", (300, 200)), 1024, "png")
    assert (small.width, small.height, small.data[:4]) == (300, 200, b"\x89PNG")
    assert fit_side(1000, 1000, 0) == (1000, 1000)
    assert image_tokens(2048, 4096) == 85 + 170 * 2 * 3


def test_usage_sums_costs_and_its_line() -> None:
    total: dict[str, float] = {}
    add_usage(total, priced({"prompt_tokens": 1000, "completion_tokens": 200}, 2.0, 10.0))
    second = {"prompt_tokens": 500, "completion_tokens": 100, "requests": 2}
    add_usage(total, priced(second, 2.0, 10.0))
    add_usage(total, {"retries": 1, "flag": True})
    assert total == {
        "prompt_tokens": 1500,
        "completion_tokens": 300,
        "cost": pytest.approx(0.006),
        "requests": 2,
        "retries": 1,
    }
    assert usage_line(total) == (
        "tokens: 1,500 prompt + 300 reply = 1,800 (2 requests, 1 retry); cost 0.0060"
    )


def test_endpoint_names_and_key_variables() -> None:
    assert resolve_endpoint("gemini", None) == (ENDPOINTS["gemini"].url, "GEMINI_API_KEY")
    assert resolve_endpoint("OpenRouter", "MY_KEY") == ("https://openrouter.ai/api/v1", "MY_KEY")
    with pytest.raises(OptionsError, match="neither a URL"):
        resolve_endpoint("ftp://x", None)
    with pytest.raises(OptionsError, match="no VLM endpoint"):
        resolve_endpoint("", None)
    secret = "sk-proj-0123456789abcdef"
    with pytest.raises(OptionsError) as caught:
        resolve_endpoint("openai", secret)
    assert secret not in str(caught.value)  # a key given by mistake is never echoed


def test_doctests() -> None:
    import doctest
    import importlib

    names = ["clean", "templates", "options", "limits", "images", "usage", "base", "api"]
    names += ["__init__"]
    for name in names:
        module = importlib.import_module("tagger.vlm" + ("" if name == "__init__" else f".{name}"))
        result = doctest.testmod(module)
        assert result.failed == 0, name
        assert result.attempted > 0, name
