"""Statistics exact on a built dataset; the reader's rules; the filter language; CLIP token
counts equal open_clip's tokenizer (the reference) where it is installed."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tiny import make_image

from tagger.dataset.filters import Record, compile_filter
from tagger.dataset.index import DatasetIndex
from tagger.dataset.reader import iter_entries, split_tags
from tagger.dataset.stats import dataset_stats
from tagger.dataset.tokens import (
    ClipTokenCounter,
    EstimatedTokenCounter,
    find_merges_file,
    read_merges,
    token_counter,
)
from tagger.errors import OptionsError

LONG = ", ".join(f"tag number {i}" for i in range(30))  # 139 CLIP tokens


def build(root: Path) -> Path:
    """A dataset whose statistics are known by hand."""
    folder = root / "ds"
    captions = {
        "a.png": "1girl, solo, long_hair",
        "b.png": "1girl, solo, smile, solo",  # solo twice: counts once for the image
        "c.png": "cat, Long Hair",
        "sub/d.png": "1girl, cat",
        "sub/e.png": LONG,
        "sub/deep/f.png": "",  # an empty caption
        "g.png": None,  # no caption file
    }
    for seed, (name, caption) in enumerate(captions.items()):
        make_image(folder / name, (16, 16), seed=seed)
        if caption is not None:
            (folder / name).with_suffix(".txt").write_text(caption, encoding="utf-8")
    (folder / "orphan.txt").write_text("lonely", encoding="utf-8")
    (folder / "latin.txt").write_bytes(b"caf\xe9")  # an orphan too, not UTF-8
    make_image(folder / "latin.png", (16, 16), seed=20)
    (folder / ".hidden").mkdir()
    make_image(folder / ".hidden" / "x.png", (16, 16), seed=21)
    return folder


def test_reader_walks_folders_in_order_and_finds_captions(tmp_path: Path) -> None:
    folder = build(tmp_path)
    found = [(e.relative, e.has_caption, e.is_orphan) for e in iter_entries([folder])]
    assert found == [
        ("a.png", True, False),
        ("b.png", True, False),
        ("c.png", True, False),
        ("g.png", False, False),
        ("latin.png", True, False),
        ("orphan.txt", True, True),
        ("sub/d.png", True, False),
        ("sub/e.png", True, False),
        ("sub/deep/f.png", True, False),
    ]
    flat = [e.relative for e in iter_entries([folder], recursive=False, orphans=False)]
    assert flat == ["a.png", "b.png", "c.png", "g.png", "latin.png"]
    with pytest.raises(OptionsError, match="does not exist"):
        list(iter_entries([tmp_path / "missing"]))
    with pytest.raises(OptionsError, match="is the JSON sidecars'"):
        list(iter_entries([folder], extension=".json"))


def _entries_by_sets(folder: Path, extension: str) -> list[tuple]:
    """What one folder's entries must be, found the plain way: sets of names, every stem's
    images counted (the rules of ``tagger.dataset.reader``, re-stated)."""
    from tagger.image import image_extensions

    known = image_extensions()
    names = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    images = {
        n: n[: n.rfind(".")]
        for n in names
        if n.rfind(".") > 0 and n[n.rfind(".") :].lower() in known
    }
    per_stem: dict[str, int] = {}
    for stem in images.values():
        per_stem[stem] = per_stem.get(stem, 0) + 1
    rows = [
        (n, stem + extension in names, stem + ".json" in names, per_stem[stem] > 1, False)
        for n, stem in images.items()
    ]
    rows += [
        (n, True, False, False, True)
        for n in names - images.keys()
        if n.endswith(extension) and n[: -len(extension)] not in per_stem
    ]
    return sorted(rows)


@pytest.mark.parametrize("run", [None, 1, 3])
@pytest.mark.parametrize("extension", [".txt", ".wd.txt"])
def test_reader_pairs_files_like_plain_sets(
    tmp_path: Path, extension: str, run: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared stems, dotted stems, upper-case extensions, sidecars and orphans: the walk's
    entries equal the plain set-based answer, on a planted folder and on random ones, in
    order of their stems; the same when the names are sorted in runs on disk (``run``)."""
    import random

    from tagger.dataset import runs
    from tagger.dataset.reader import stem_key

    if run is not None:
        monkeypatch.setattr(runs, "RUN", run)

    planted = [
        "a.png",
        "a.jpg",
        "a.txt",
        "a.b.png",
        "a.b.txt",
        "a.json",
        "ab.png",
        "ab.txt",
        "A.PNG",
        "A.txt",
        "x.y.png",
        "x.txt",
        "x.y.json",
        "z.txt",
        "z.wd.txt",
        "a.wd.txt",
        "n-1.png",
        "n.png",
        "n.txt",
        "n-1.wd.txt",
        "notes.md",
    ]
    rng = random.Random(7)
    stems = ["a", "a.b", "ab", "b", "b.c.d", "c", "c-1", "c 2", "d.e"]
    suffixes = [".png", ".jpg", ".PNG", ".webp", ".txt", ".wd.txt", ".json", ".md"]
    folders = {"planted": planted}
    for k in range(8):
        folders[f"random{k}"] = sorted(
            {rng.choice(stems) + rng.choice(suffixes) for _ in range(25)}
        )
    for label, names in folders.items():
        folder = tmp_path / extension / label
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_bytes(b"")
        (folder / "sub.png").mkdir()  # a folder named like an image is no image
        got = sorted(
            (
                Path(e.path).name,
                e.has_caption,
                e.sidecar is not None,
                e.shared,
                e.is_orphan,
            )
            for e in iter_entries([folder], extension=extension, recursive=False)
        )
        assert got == _entries_by_sets(folder, extension), label
        order = [Path(e.path).name for e in iter_entries([folder], extension=extension)]
        assert order == sorted(order, key=lambda name: stem_key(name, extension)), label


def test_statistics_are_exact(tmp_path: Path) -> None:
    folder = build(tmp_path)
    stats = dataset_stats([folder], cooccurrence=["1girl", "long hair"])
    data = stats.to_dict()
    assert data["images"] == 8
    assert data["captioned"] == 6  # f's empty caption is read; latin's cannot be
    counts = dict(data["frequency"])
    assert counts["1girl"] == 3
    assert counts["solo"] == 2
    assert counts["cat"] == 2
    assert counts["long_hair"] == 1
    assert counts["Long Hair"] == 1
    assert counts["tag number 0"] == 1
    assert data["unique_tags"] == 6 + 30
    assert data["frequency"][0] == ["1girl", 3]
    assert data["per_folder"][""]["images"] == 5
    assert dict(data["per_folder"]["sub"]["frequency"]) == {
        "1girl": 1, "cat": 1, **{f"tag number {i}": 1 for i in range(30)}
    }  # fmt: skip
    assert data["per_folder"]["sub/deep"] == {"images": 1, "frequency": []}
    girl = data["cooccurrence"]["1girl"]
    assert girl["images"] == {"count": 3, "examples": ["a.png", "b.png", "sub/d.png"]}
    assert dict(girl["with"]) == {"solo": 2, "long_hair": 1, "smile": 1, "cat": 1}
    hair = data["cooccurrence"]["long hair"]  # matched any spelling
    assert hair["images"]["examples"] == ["a.png", "c.png"]
    assert data["untagged"] == {"count": 2, "examples": ["g.png", "sub/deep/f.png"]}
    assert data["repeated_tags"] == {"count": 1, "examples": ["b.png"]}
    assert data["orphan_captions"] == {"count": 1, "examples": ["orphan.txt"]}
    assert data["unreadable_captions"]["count"] == 1
    assert data["unreadable_captions"]["examples"][0][0] == "latin.png"
    assert data["variants"] == {"long hair": ["Long Hair", "long_hair"]}
    once = dict(data["once"]["examples"])
    assert once["smile"] == "b.png"
    assert "1girl" not in once
    assert data["once"]["count"] == 3 + 30  # long_hair, Long Hair, smile and the 30
    assert data["tags_per_image"] == [[0, 2], [2, 2], [3, 1], [4, 1], [30, 1]]


def test_caption_lengths_and_the_75_token_flag(tmp_path: Path) -> None:
    folder = build(tmp_path)
    data = dataset_stats([folder]).to_dict()
    tokens = data["tokens"]
    counter = token_counter()
    expected = counter.count(LONG)
    assert tokens["over_limit"] == {"count": 1, "examples": [["sub/e.png", expected]]}
    if counter.exact:
        # "tag", "number", one token per digit (CLIP splits numbers), and 29 commas
        assert expected == 30 * 2 + 10 * 1 + 20 * 2 + 29
        # "1girl, solo, long_hair": 1 · girl · , · solo · , · long · _ · hair
        assert counter.count("1girl, solo, long_hair") == 8
    total = sum(n for _, n in tokens["histogram"])
    assert total == 6  # every read caption, the empty one included


def test_examples_are_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    for i in range(30):
        make_image(folder / f"u{i:02d}.png", (8, 8), seed=i)
    data = dataset_stats([folder], examples=5).to_dict()
    assert data["untagged"]["count"] == 30
    assert data["untagged"]["examples"] == [f"u{i:02d}.png" for i in range(5)]


def test_index_pages_filters_and_counts(tmp_path: Path) -> None:
    folder = build(tmp_path)
    index = DatasetIndex([str(folder)]).scan()
    assert len(index.entries) == 8
    everything = index.select("")
    assert index.pages(everything, 3) == 3
    page = index.page(everything, 2, 3, cache=tmp_path / "thumbs")
    assert [item.entry.relative for item in page] == ["sub/e.png", "sub/deep/f.png"]
    assert all(item.thumbnail is not None and item.thumbnail.is_file() for item in page)
    girls = index.select("tag:1girl")
    assert [index.entries[i].relative for i in girls] == ["a.png", "b.png", "sub/d.png"]
    assert index.tag_counts(girls)[:2] == [("1girl", 3), ("solo", 2)]
    assert [index.entries[i].relative for i in index.select("tokens:>75")] == ["sub/e.png"]
    assert [index.entries[i].relative for i in index.select("width:=16 AND tags:=0")] == [
        "g.png",
        "latin.png",
        "sub/deep/f.png",
    ]
    assert len(index.unreadable) == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_index_scan_reads_each_caption_as_refresh_does(tmp_path: Path, seed: int) -> None:
    """The scan reads a folder's captions a batch at a time; re-reading every image one by one
    (``refresh``) gives the same captions, tags and unreadable files with their messages, and
    the index holds one string per distinct tag."""
    folder = _messy_dataset(tmp_path / "ds", seed)
    index = DatasetIndex([str(folder)]).scan()
    scanned = (list(index.captions), list(index.tags), dict(index.unreadable))
    assert scanned[2]  # some captions are not UTF-8, or links, or folders
    for i in range(len(index.entries)):
        index.refresh(i)
    assert (index.captions, index.tags, index.unreadable) == scanned
    objects: dict[str, set[int]] = {}
    for tags in scanned[1]:
        for tag in tags:
            objects.setdefault(tag, set()).add(id(tag))
    assert len(objects) > 5
    assert {tag for tag, ids in objects.items() if len(ids) > 1} == set()


FILTERS = [
    ("tag:cat", {"c", "d"}),
    ("tag:CAT", {"c", "d"}),
    ("tag:*_hair", {"a", "c"}),
    ('tag:"long hair"', {"a", "c"}),
    ("tag:1girl AND tag:solo", {"a", "b"}),
    ("tag:1girl tag:solo", {"a", "b"}),
    ("tag:cat OR tag:smile", {"b", "c", "d"}),
    ("NOT tag:1girl", {"c", "e"}),
    ("tag:1girl AND NOT (tag:smile OR path:sub)", {"a"}),
    ("tags:<3", {"c", "d", "e"}),
    ("tags:>=3", {"a", "b"}),
    ("tags:!=2", {"a", "b", "e"}),
    ("chars:>20", {"a"}),
    ("name:d.png", {"d"}),
    ("path:sub/", {"d", "e"}),
    ('caption:"ong h"', {"c"}),
    ("smile", {"b"}),
    ("caption:*hair", {"a", "c"}),
]
RECORDS = {
    "a": Record("a.png", ["1girl", "solo", "long_hair"], "1girl, solo, long_hair"),
    "b": Record("b.png", ["1girl", "solo", "smile"], "1girl, solo, smile"),
    "c": Record("c.png", ["cat", "Long Hair"], "cat, Long Hair"),
    "d": Record("sub/d.png", ["1girl", "cat"], "1girl, cat"),
    "e": Record("sub/e.png", [], ""),
}


@pytest.mark.parametrize(("text", "expected"), FILTERS)
def test_filter_language(text: str, expected: set[str]) -> None:
    match = compile_filter(text)
    assert {key for key, record in RECORDS.items() if match(record)} == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(tag:a", "a ')' is missing"),
        ("tag:a)", "unexpected ')'"),
        ("tag:a AND", "a term is missing"),
        ("OR tag:a", "OR needs a term on each side"),
        ("tags:many", "expected a comparison and a number"),
        ("tag:", "tag: needs a value"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_filter(text)


def test_estimated_count_is_a_lower_bound_of_words_and_punctuation() -> None:
    counter = EstimatedTokenCounter()
    assert counter.exact is False
    assert counter.count("1girl, Long  hair!!") == 6  # 1 girl , long hair !!


# -- against the reference tokenizer ------------------------------------------------------------


def _captions(count: int, seed: int) -> list[str]:
    """Captions like real ones: booru tags with _ or spaces, weights, kaomoji, sentences."""
    rng = random.Random(seed)
    words = [
        "1girl", "long_hair", "very_long_hair", "looking_at_viewer", "kasumi_(pokemon)",
        "^_^", ">_<", ":)", "hatsune miku", "thighhighs", "zettai ryouiki", "1990s_(style)",
        "(masterpiece:1.2)", "black-and-white", "o_o", "smile", "naïve", "café", "日本語",
        "Ünïcödé", "&amp;", "don't", "it's", "they're", "can't", "multiple   spaces",
        "A photo of a cat sitting on a mat.", "x" * 30, "12345", "3d", "\u00a0nbsp",
    ]  # fmt: skip
    return [", ".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def test_counts_equal_open_clip_simple_tokenizer() -> None:
    pytest.importorskip("open_clip")
    pytest.importorskip("ftfy")
    from open_clip.tokenizer import SimpleTokenizer

    path = find_merges_file()
    assert path is not None
    ours = ClipTokenCounter(read_merges(path))
    reference = SimpleTokenizer()
    for text in _captions(600, seed=1):
        assert ours.count(text) == len(reference.encode(text)), text


def test_every_wd_v3_style_tag_counts_like_open_clip() -> None:
    """Each tag of a realistic vocabulary, alone and joined, against the reference."""
    pytest.importorskip("open_clip")
    pytest.importorskip("ftfy")
    from open_clip.tokenizer import SimpleTokenizer
    from tiny import CHARACTER, GENERAL

    ours = token_counter()
    reference = SimpleTokenizer()
    tags = [*GENERAL, *CHARACTER, *(t.replace("_", " ") for t in GENERAL + CHARACTER)]
    for tag in tags:
        assert ours.count(tag) == len(reference.encode(tag)), tag
    joined = ", ".join(tags)
    assert ours.count(joined) == len(reference.encode(joined))


def test_statistics_are_the_same_when_captions_are_read_by_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Captions read from the disk go through the reader threads: the same numbers."""
    import tagger.dataset.stats as stats_module

    folder = build(tmp_path)
    for i in range(300):  # more than a few batches
        make_image(folder / "many" / f"m{i:03d}.png", (8, 8), seed=i)
        (folder / "many" / f"m{i:03d}.txt").write_text(f"t{i % 7}, solo", encoding="utf-8")
    inline = dataset_stats([folder]).to_dict()
    monkeypatch.setattr(stats_module, "CACHED_SECONDS", 0.0)  # every read counts as slow
    monkeypatch.setattr(stats_module, "BATCH", 16)
    threaded = dataset_stats([folder]).to_dict()
    assert threaded == inline
    assert inline["images"] == 8 + 300


def test_the_workbench_core_imports_nothing_heavy() -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import importlib, sys
        for name in ("reader", "stats", "tokens", "filters", "edits", "journal", "checks",
                     "neardup", "scoring", "fixes", "report", "thumbs", "index", "cleanup", "tally",
                     "options"):
            importlib.import_module(f"tagger.dataset.{name}")
        import tagger.cli.dataset
        heavy = [m for m in ("numpy", "PIL", "torch", "open_clip", "imagehash", "cv2",
                             "rapidocr_onnxruntime", "onnxruntime", "gradio") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@given(st.text(alphabet=st.sampled_from(list("ab ,|_\n\t")), max_size=40),
       st.sampled_from([", ", ",", " | ", "|", " "]))  # fmt: skip
def test_split_tags_is_the_writers_split(text: str, separator: str) -> None:
    from tagger.dataset.reader import split_tags
    from tagger.writers import split_caption

    assert split_tags(text, separator) == split_caption(text, separator)


# -- the batched pass against its one-by-one definitions ---------------------------------------

_PIECES = ["1girl", "long hair", "a", "b", "x_y", ":)", "^_^", "(cat:1.2)", "café", "&amp;",
           "don't"]  # fmt: skip
_GLUE = [", ", ",", " ,", ",  ", ", ,", ",\t", "\n", " | ", "|", " ", ",\x0b", "\x0c", "\t", ""]


@given(st.lists(st.lists(st.sampled_from(_PIECES + _GLUE), max_size=8), max_size=12),
       st.sampled_from([", ", ",", " | ", "| ", "; ", " "]))  # fmt: skip
def test_split_tags_many_is_split_tags_text_by_text(parts: list[list[str]], separator: str) -> None:
    from tagger.dataset.reader import split_tags, split_tags_many

    texts = ["".join(p) for p in parts]
    tags, joined = split_tags_many(texts, separator)
    assert tags == [split_tags(text, separator) for text in texts]
    if joined:  # what "joined" promises: each text is its tags joined, in printable ASCII,
        for text, found in zip(texts, tags, strict=True):  # with only layout around them
            assert text.strip(" \t\n") == separator.join(found)
            assert text.strip(" \t\n").isascii()
            assert text.strip(" \t\n").isprintable()
            for counter in _counters():  # so the statistics count its tokens from its tags
                assert counter.count(text) == counter.count(separator.join(found))  # type: ignore[attr-defined]


def test_split_tags_many_takes_the_fast_way_for_written_captions() -> None:
    from tagger.dataset.reader import split_tags_many

    assert split_tags_many(["1girl, long hair, solo\n", "cat", ""], ", ")[1] is False  # empty
    assert split_tags_many(["1girl, long hair, solo\n", "cat"], ", ") == (
        [["1girl", "long hair", "solo"], ["cat"]],
        True,
    )
    assert split_tags_many(["a,b"], ", ") == ([["a", "b"]], False)  # split, the slow way


_TAG_WORDS = ["1girl", "long hair", "x_y", ":)", "^_^", ">_<", "(cat:1.2)", "it's", "3d", "a.b",
              "café", "日本語", "&amp;", "&lt;3", "tab\there", "bell\x07", "  padded ", "", "12345",
              "trailing,", ",leading", "under_score_", "hyphen-", "'s"]  # fmt: skip


def _tiny_ranks() -> dict[tuple[str, str], int]:
    """A few merges of CLIP's kind (a word's last symbol ends in ``</w>``)."""
    pairs = [("h", "a"), ("ha", "i"), ("hai", "r</w>"), ("g", "i"), ("gi", "r"), ("l", "o"),
             ("lo", "n"), ("lon", "g</w>"), (",", "</w>"), ("_", "</w>"),
             (":", ")</w>")]  # fmt: skip
    return {pair: rank for rank, pair in enumerate(pairs)}


def _counters() -> list[object]:
    counters: list[object] = [EstimatedTokenCounter(), ClipTokenCounter(_tiny_ranks(), "tiny")]
    real = find_merges_file()
    if real is not None:
        counters.append(ClipTokenCounter(read_merges(real), str(real)))
    return counters


@given(st.lists(st.lists(st.sampled_from(_TAG_WORDS), max_size=10), max_size=10),
       st.sampled_from([", ", " | ", ",", " ", ",\t", ",\x0b", "; "]))  # fmt: skip
def test_count_joined_is_the_count_of_each_joined_caption(
    tag_lists: list[list[str]], separator: str
) -> None:
    for counter in _counters():
        expected = [counter.count(separator.join(tags)) for tags in tag_lists]  # type: ignore[attr-defined]
        assert counter.count_joined(tag_lists, separator) == expected  # type: ignore[attr-defined]
        # a second time, from what the first remembered
        assert counter.count_joined(tag_lists, separator) == expected  # type: ignore[attr-defined]


def _messy_dataset(root: Path, seed: int) -> Path:
    """Captions of every kind in one folder tree: written ones, other separators, empty,
    repeated tags, CRLF, a byte order mark, not UTF-8, links, a folder in a caption's place,
    images without captions, orphans, shared stems."""
    rng = random.Random(seed)
    words = ["1girl", "long_hair", "long hair", "Long Hair", "kasumi_(pokemon)", "^_^", ":)",
             "smile", "naïve", "&amp;", "A photo of a cat.", "x" * 40, "solo", "3d",
             "(masterpiece:1.2)"]  # fmt: skip
    glue = [", "] * 8 + [",", " , ", ",  ", ",\n", " ", ", ,"]
    for i in range(600):
        sub = root / rng.choice(["", "a", "a/b"])
        sub.mkdir(parents=True, exist_ok=True)
        stem = f"i{i:04d}"
        kind = rng.random()
        if kind < 0.92:
            (sub / f"{stem}.png").write_bytes(b"")
        if kind > 0.04 and rng.random() < 0.9:
            text = rng.choice(glue).join(rng.choice(words) for _ in range(rng.randint(0, 40)))
            data = (text + rng.choice(["", "\n", "  \n"])).encode()
            r = rng.random()
            if r < 0.03:
                data = b"\xef\xbb\xbf" + data
            elif r < 0.06:
                data = data.replace(b"\n", b"\r\n") + b"\r\n"
            elif r < 0.08:
                data += b"\xe9"  # not UTF-8
            (sub / f"{stem}.txt").write_bytes(data)
        if rng.random() < 0.02:
            (sub / f"{stem}.jpg").write_bytes(b"")
        if rng.random() < 0.02:
            (sub / f"{stem}l.png").write_bytes(b"")
            (sub / f"{stem}l.txt").symlink_to(root / "nowhere")
        if rng.random() < 0.01:
            (sub / f"{stem}d.png").write_bytes(b"")
            (sub / f"{stem}d.txt").mkdir()
    return root


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_are_the_same_counted_in_batches_or_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Batches of 256 captions counted at once give what batches of one give: the same
    numbers and every list of examples in walk order."""
    import tagger.dataset.stats as stats_module

    folder = _messy_dataset(tmp_path / "ds", seed)
    single = folder / "a" / "i0001.png"
    single.parent.mkdir(parents=True, exist_ok=True)
    single.touch()
    options = [{}, {"cooccurrence": ["solo", "long hair"], "examples": 3},
               {"separator": " | ", "per_folder": False},
               {"token_limit": 8, "examples": -1}]  # fmt: skip
    batched = [dataset_stats([folder, single], **o) for o in options]  # type: ignore[arg-type]
    monkeypatch.setattr(stats_module, "BATCH", 1)
    for o, many in zip(options, batched, strict=True):
        one = dataset_stats([folder, single], **o)  # type: ignore[arg-type]
        assert many.to_dict() == one.to_dict(), o
        assert list(many.first_seen.items()) == list(one.first_seen.items())
        assert list(many.tag_images.items()) == list(one.tag_images.items())
    data = batched[0].to_dict()
    for finding in ("unreadable_captions", "repeated_tags", "untagged", "orphan_captions"):
        assert data[finding]["count"] > 0, finding  # every kind of entry was there


def test_count_joined_counts_a_caption_with_a_tag_that_is_not_plain_whole() -> None:
    """Only plain pieces are summed: any other caption is handed to ``count`` whole (here a
    counter that is additive over whitespace on plain text and not at all otherwise)."""
    from tagger.dataset.tokens import _JoinedCounts, is_plain

    class Chunks(_JoinedCounts):
        def count(self, text: str) -> int:
            return len(text.split()) if is_plain(text) else 1000 + len(text)

    counter = Chunks()
    lists = [["a b", "c"], ["café", "d"], ["e&f"], [], ["g"]]
    expected = [3, 1000 + len("café, d"), 1000 + 3, 0, 1]
    assert counter.count_joined(lists, ", ") == expected
    assert counter.count_joined(lists, ", ") == expected


@pytest.mark.parametrize("seed", [0, 3])
def test_statistics_are_the_same_counted_byte_wise_or_as_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Written captions are counted over their bytes (``tagger.dataset.tally``), any other
    batch as strings: every number, list of examples and order (co-occurrences too) equals
    the string count of the whole dataset, also when the walk comes back to a folder (two
    roots)."""
    import tagger.dataset.stats as stats_module

    folder = _messy_dataset(tmp_path / "ds", seed)
    written = tmp_path / "w"
    rng = random.Random(seed)
    words = ["1girl", "solo", "long hair", "smile", "x" * 120, "&amp;", "kasumi (pokemon)"]
    for i in range(700):  # batches written tagger's way, some with new tags
        written.mkdir(exist_ok=True)
        (written / f"w{i:04d}.png").write_bytes(b"")
        tags = [*rng.sample(words, rng.randint(0, 5)), f"tag{rng.randrange(300)}"]
        (written / f"w{i:04d}.txt").write_text(", ".join(tags), encoding="utf-8")
    fast = 0
    original = stats_module.tally_counts

    def counted(*args):
        nonlocal fast
        found = original(*args)
        fast += found is not None
        return found

    monkeypatch.setattr(stats_module, "tally_counts", counted)
    asked = ["solo", "Long_Hair", "kasumi (pokemon)"]
    options = [{}, {"per_folder": False}, {"token_limit": 8, "examples": -1},
               {"cooccurrence": asked, "examples": 50}]  # fmt: skip
    paths = [folder, written]  # both roots' own folder is the dataset's folder ""
    byte_wise = [dataset_stats(paths, **o) for o in options]  # type: ignore[arg-type]
    assert fast > 2
    monkeypatch.setattr(stats_module, "byte_separator", lambda separator: None)
    monkeypatch.setattr(stats_module, "BATCH", 7)
    for o, mine in zip(options, byte_wise, strict=True):
        strings = dataset_stats(paths, **o)  # type: ignore[arg-type]
        assert mine.to_dict() == strings.to_dict(), o
        assert list(mine.first_seen.items()) == list(strings.first_seen.items())
        assert list(mine.tag_images.items()) == list(strings.tag_images.items())
        for name, counts in strings.folders.items():
            assert list(mine.folders[name].items()) == list(counts.items()), name
    assert byte_wise[0].folder_images[""] > 700  # the walk came back to it
    first, second = (dataset_stats([path]).folders[""] for path in paths)
    assert list(byte_wise[0].folders[""].items()) == list((first + second).items())
    # the written captions by their definition: a plain count, file by file in walk order
    from tagger.tags import normalize_tag

    images: Counter[str] = Counter()
    seen: dict[str, str] = {}
    beside: dict[str, Counter[str]] = {tag: Counter() for tag in asked}
    on: dict[str, list[str]] = {tag: [] for tag in asked}
    for entry in iter_entries([written]):
        tags = split_tags(Path(entry.caption).read_text(encoding="utf-8"), ", ")
        unique = list(dict.fromkeys(tags))
        images.update(unique)
        for tag in tags:
            seen.setdefault(tag, entry.relative)
        for tag in asked:
            key = normalize_tag(tag)
            if key in map(normalize_tag, unique):
                on[tag].append(entry.relative)
                beside[tag].update(t for t in unique if normalize_tag(t) != key)
    alone = dataset_stats([written], cooccurrence=asked, examples=-1)
    assert list(alone.tag_images.items()) == list(images.items())
    assert list(alone.first_seen.items()) == list(seen.items())
    for tag in asked:
        assert list(alone.cooccurrence[tag].items()) == list(beside[tag].items()), tag
        assert alone.tag_examples[tag].items == on[tag], tag
    assert on["Long_Hair"]
    assert on["kasumi (pokemon)"]
