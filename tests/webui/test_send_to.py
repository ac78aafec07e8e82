"""Send to txt2img/img2img: the host parses what the tab sends as an infotext and must find the
prompt in it, exactly, whatever the prompt (weights, colons, quotes, brackets)."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given
from hypothesis import strategies as st

needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None, reason="the stand-in's infotext_utils needs Gradio"
)
PARAMETERS = {
    "Tagger": "wd-vit-tagger-v3",
    "Tagger general threshold": "0.35",
    "Tagger character threshold": "0.85",
}


def test_paste_infotext_appends_the_tagger_settings_line(webui) -> None:
    from tagger.webui.compat import paste_infotext, quote_infotext_value

    assert paste_infotext(" (cat:0.9), (dog:0.8) ", PARAMETERS) == (
        "(cat:0.9), (dog:0.8)\n"
        "Tagger: wd-vit-tagger-v3, Tagger general threshold: 0.35, Tagger character threshold: 0.85"
    )
    assert quote_infotext_value("wd-vit-tagger-v3") == "wd-vit-tagger-v3"
    assert quote_infotext_value('a: "b", c') == '"a: \\"b\\", c"'
    assert quote_infotext_value("x\ny") == '"x\\ny"'
    with pytest.raises(ValueError, match="3 entries or more"):
        paste_infotext("cat", {"Tagger": "m"})


@needs_gradio
def test_the_host_reads_a_weighted_prompt_as_its_settings_line(webui) -> None:
    """The stand-in does what the webui does with the bare prompt: nothing reaches the prompt."""
    parse = webui.infotext_utils.parse_generation_parameters
    weighted = "(1girl:0.99), (solo:0.97), (smile:0.8)"
    assert parse(weighted)["Prompt"] == ""
    assert parse(weighted)["1girl"] == "0.99)"
    assert parse("(1girl:0.99), (solo:0.97)")["Prompt"] == "(1girl:0.99), (solo:0.97)"
    assert parse("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7")["Steps"] == "20"


@needs_gradio
@pytest.mark.parametrize(
    "prompt",
    [
        "(1girl:0.99), (solo:0.97), (smile:0.8)",
        "1girl, solo, long hair",
        "re:zero, a: b, c: d, e: f",
        '(kasumi \\(pokemon\\):0.91), ("quoted":0.5), (x,y:0.4)',
        "Steps: 20, Sampler: Euler a, CFG scale: 7",
        "line one, (a:0.5)\n(b:0.4), (c:0.3), (d:0.2)",
        "",
    ],
)
def test_the_host_pastes_exactly_the_prompt(webui, prompt: str) -> None:
    from tagger.webui.compat import paste_infotext

    parsed = webui.infotext_utils.parse_generation_parameters(paste_infotext(prompt, PARAMETERS))
    assert parsed["Prompt"] == prompt
    assert parsed["Negative prompt"] == ""
    assert {key: parsed[key] for key in PARAMETERS} == PARAMETERS


TAG = (
    st.text(alphabet=st.sampled_from(list("abcz019 _:()\\\",'-/")), min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool)
)


@needs_gradio
@given(
    tags=st.lists(st.tuples(TAG, st.floats(0.01, 1.0)), min_size=0, max_size=8),
    separator=st.sampled_from([", ", ",", " ", "\n"]),
    model=st.text(alphabet=st.sampled_from(list('ab:,"\\ -')), max_size=8),
)
def test_any_weighted_prompt_is_pasted_exactly(tags, separator, model) -> None:
    """The same property over generated prompts (the stand-in host, imported once)."""
    import sys

    from conftest import HOST_DIR, _purge

    sys.path.insert(0, str(HOST_DIR))
    try:
        from modules.infotext_utils import parse_generation_parameters
        from tagger.webui.compat import paste_infotext
    finally:
        sys.path.remove(str(HOST_DIR))
        _purge()
    prompt = separator.join(f"({name}:{score:.2f})" for name, score in tags).strip()
    prompt = "\n".join(line.strip() for line in prompt.split("\n"))
    if any(line.startswith("Negative prompt:") for line in prompt.split("\n")):
        return
    parameters = {**PARAMETERS, "Tagger": model.strip() or "m"}
    parsed = parse_generation_parameters(paste_infotext(prompt, parameters))
    assert parsed["Prompt"] == prompt
    assert parsed["Tagger"] == parameters["Tagger"]


@needs_gradio
def test_the_tab_sends_the_prompt_it_shows(webui) -> None:
    import gradio as gr

    from tagger.webui.tab import build_tab

    with gr.Blocks():
        _, ui = build_tab()
    prompt = "(hatsune miku:0.93), (1girl:0.99), (solo:0.97)"
    text = ui.on_prompt_change(prompt, "my: model", 0.35, 0.8)
    parsed = webui.infotext_utils.parse_generation_parameters(text)
    assert parsed["Prompt"] == prompt
    assert (parsed["Tagger"], parsed["Tagger character threshold"]) == ("my: model", "0.8")
