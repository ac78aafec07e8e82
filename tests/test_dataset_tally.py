"""The byte-wise count of a batch of captions against its definition: each caption split as
strings (``split_tags``), its tags counted with a plain ``Counter`` and its CLIP tokens counted
on the joined text; and the same when hashes collide on purpose."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.dataset import tally
from tagger.dataset.reader import split_tags
from tagger.dataset.tally import LONGEST, Vocabulary, byte_separator, counts
from tagger.dataset.tokens import (
    ClipTokenCounter,
    EstimatedTokenCounter,
    find_merges_file,
    read_merges,
)

_WORDS = ["1girl", "long hair", "long hairs", "x_y", ":)", "^_^", "(cat:1.2)", "it's", "3d",
          "a.b", "&amp;", "solo", "a" * 8, "a" * 9, "b" * 16, "c" * 17, "d" * LONGEST,
          "e" * (LONGEST + 1), "kasumi (pokemon)", "tag  with  spaces", "café", "tab\there",
          "bell\x07", "x,y"]  # fmt: skip
_GLUE = [", "] * 12 + [",", " , ", ",  ", ", ,", ",\n", "\n", "\r\n", " ", "\t"]
_LAYOUT = ["", "", "\n", "  \n", "\t", " "]


def _counter() -> ClipTokenCounter:
    """A tokenizer of CLIP's kind with a few merges (fast to build, exact in kind)."""
    pairs = [("h", "a"), ("ha", "i"), ("hai", "r</w>"), ("l", "o"), ("lo", "n"),
             ("lon", "g</w>"), (",", "</w>"), ("s", "o"), ("so", "l"),
             ("sol", "o</w>")]  # fmt: skip
    return ClipTokenCounter({pair: rank for rank, pair in enumerate(pairs)}, "tiny")


def _counters() -> list:
    """The tiny tokenizer, the estimate, and CLIP's real merges where this machine has them."""
    counters = [_counter(), EstimatedTokenCounter()]
    real = find_merges_file()
    if real is not None:
        counters.append(ClipTokenCounter(read_merges(real), str(real)))
    return counters


_COUNTERS = _counters()


def _captions(separator: str) -> st.SearchStrategy[list[bytes]]:
    """Batches of captions, mostly joined by ``separator`` (its character stands in for the
    comma of every piece of glue and word)."""
    core = separator[0]
    return st.lists(
        st.builds(
            lambda before, tags, glue, after: (before + glue.join(tags) + after).encode(),
            st.sampled_from(_LAYOUT),
            st.lists(st.sampled_from([w.replace(",", core) for w in _WORDS]), max_size=12),
            st.sampled_from([g.replace(",", core) for g in _GLUE]),
            st.sampled_from(_LAYOUT),
        ),
        min_size=1,
        max_size=12,
    )


_separators = st.sampled_from([", ", "; ", "| "])


def _expected(datas: list[bytes], vocabulary: Vocabulary, separator: str) -> dict:
    """The tally of ``datas`` by its definition, caption by caption, as strings."""
    texts = [data.decode() for data in datas]
    tag_lists = [split_tags(text, separator) for text in texts]
    on: Counter[str] = Counter()
    for tags in tag_lists:
        on.update(list(dict.fromkeys(tags)))
    count = vocabulary.counter.count
    new, seen = [], set(vocabulary.ids)
    for i, tags in enumerate(tag_lists):
        for tag in tags:
            if tag not in seen:
                seen.add(tag)
                new.append((tag, i))
    return {
        "on": list(on.items()),  # in order of first occurrence
        "new": new,
        "tags": [len(tags) for tags in tag_lists],
        "tokens": [count(separator.join(tags)) if tags else 0 for tags in tag_lists],
        "repeated": [i for i, tags in enumerate(tag_lists) if len(set(tags)) != len(tags)],
    }


def _got(found: tally.Tally, vocabulary: Vocabulary) -> dict:
    names = vocabulary.names
    return {
        "on": list(
            zip([names[n] for n in found.numbers.tolist()], found.counts.tolist(), strict=True)
        ),
        "new": [(names[n], i) for n, i in zip(found.new, found.first, strict=True)],
        "tags": found.tags.tolist(),
        "tokens": found.tokens.tolist(),
        "repeated": found.repeated,
    }


def _written(datas: list[bytes], separator: str) -> bool:
    """Whether every caption is tags joined by ``separator`` the way tagger writes them:
    printable ASCII tags, none longer than ``LONGEST`` bytes, only layout around them."""
    for data in datas:
        text = data.decode("utf-8", "replace").strip(" \t\n")
        tags = split_tags(text, separator)
        if text != separator.join(tags) or not text.isascii() or not text.isprintable():
            return False
        if any(len(tag) > LONGEST for tag in tags):
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(_separators.flatmap(lambda s: st.tuples(st.just(s), st.lists(_captions(s), max_size=3))))
def test_counts_are_the_captions_split_and_counted_as_strings(
    case: tuple[str, list[list[bytes]]],
) -> None:
    """Batch after batch into one vocabulary: byte-wise where the captions are written
    tagger's way (and then exactly the string count), None otherwise."""
    separator, batches = case
    core = byte_separator(separator)
    assert core is not None
    for counter in _COUNTERS:
        vocabulary = Vocabulary(counter, separator)
        for datas in batches:
            expected = _expected(datas, vocabulary, separator)
            found = counts(datas, vocabulary, core)
            assert (found is not None) == _written(datas, separator), datas
            if found is not None:
                assert _got(found, vocabulary) == expected
            else:  # what the caller then does: count as strings, into the same vocabulary
                tags = [t for d in datas for t in split_tags(d.decode(), separator)]
                vocabulary.numbers(tags)


def test_written_captions_are_counted_byte_wise() -> None:
    counter = _counter()
    vocabulary = Vocabulary(counter, ", ")
    datas = [b"1girl, long hair, solo\n", b"", b"  \n", b"solo, solo, 1girl", b"d" * LONGEST]
    found = counts(datas, vocabulary, 44)
    tokens = [counter.count(data.decode()) for data in datas]
    assert found is not None
    assert _got(found, vocabulary) == {
        "on": [("1girl", 2), ("long hair", 1), ("solo", 2), ("d" * LONGEST, 1)],
        "new": [("1girl", 0), ("long hair", 0), ("solo", 0), ("d" * LONGEST, 4)],
        "tags": [3, 0, 0, 3, 1],
        "tokens": tokens,
        "repeated": [3],
    }
    again = counts([b"solo, cat"], vocabulary, 44)
    assert again is not None
    assert _got(again, vocabulary)["new"] == [("cat", 0)]
    assert vocabulary.names == ["1girl", "long hair", "solo", "d" * LONGEST, "cat"]


@pytest.mark.parametrize(
    "data",
    [b"caf\xc3\xa9", b"a,b", b"a , b", b"a,  b", b", a", b"a, , b", b"a,\nb", b"a\r\n", b"a\tb",
     b"e" * (LONGEST + 1)],
)  # fmt: skip
def test_other_captions_are_left_to_the_string_count(data: bytes) -> None:
    assert counts([b"1girl, solo", data], Vocabulary(_counter(), ", "), 44) is None


def test_byte_separator_takes_one_character_and_a_space() -> None:
    assert [byte_separator(s) for s in (", ", "; ", "| ", ",", " ", " | ", "& ", "  ", "\t ")] == [
        44, 59, 124, None, None, None, None, None, None
    ]  # fmt: skip


def _first_word_hash(words: np.ndarray) -> np.ndarray:
    """A hash of the first 8 bytes only: ``long hair`` and ``long hairs`` collide."""
    return words[0] * np.uint64(0x9E3779B97F4A7C15)


def test_colliding_hashes_never_change_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tags that hash alike in one batch, or like a tag of the vocabulary, are compared byte
    for byte: the batch is left to the string count, never miscounted."""
    monkeypatch.setattr(tally, "_hashes", _first_word_hash)
    vocabulary = Vocabulary(_counter(), ", ")
    assert counts([b"long hair, long hairs"], vocabulary, 44) is None  # in one batch
    assert not vocabulary.names  # nothing was taken from a batch left to the strings
    found = counts([b"long hair, solo", b"long hair"], vocabulary, 44)
    assert found is not None
    assert _got(found, vocabulary)["on"] == [("long hair", 2), ("solo", 1)]
    assert counts([b"long hairs"], vocabulary, 44) is None  # like the vocabulary's "long hair"
    assert counts([b"solo, long hair"], vocabulary, 44) is not None
    assert vocabulary.names == ["long hair", "solo"]


def test_tags_first_counted_as_strings_keep_their_number() -> None:
    vocabulary = Vocabulary(_counter(), ", ")
    numbers, new = vocabulary.numbers(["solo", "café", "solo", "1girl"])
    assert (numbers, new) == ([0, 1, 0, 2], [0, 1, 3])
    found = counts([b"1girl, solo, cat"], vocabulary, 44)
    assert found is not None
    assert found.numbers.tolist() == [2, 0, 3]
    assert (found.new, found.first) == ([3], [0])  # only "cat" is new to the pass
