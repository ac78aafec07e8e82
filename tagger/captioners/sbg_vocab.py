"""Selective Blind Guessing (Huynh et al. 2024): its label files and its keyword selection.

SBG never shows the image to its caption generator. CLIP picks keywords for the image from a
vocabulary and a hierarchy of prompts, a GPT-2 writes captions from the keywords, and CLIP picks
the caption closest to the image. This module holds the first part, as plain Python over
probabilities, exactly as the published extension (Anshler/ICG_sd_extension,
``scripts/image_caption.py``) does it:

1. the first ``top`` (1,000) NOUN/ADV/ADJ labels of ``all_labels.pkl``, ranked by CLIP
   probability, taken until their cumulative probability passes 0.5;
2. the hierarchy: 25 "picture of X." prompts over 1 to 3 of {landscape, people, animal, plant,
   some object} pick the branches (landscape and object always), each branch adds its best
   subclass and the best of its members (people: a person/count prompt, an occupation and a
   clothing colour), then time, weather (not when "indoor" was picked) and activity (only with
   people or animals);
3. the union re-sorted by CLIP probability.

Every probability is a softmax over 100 x the cosine similarity of the L2-normalised image and
text embeddings, over the prompts of one group. The label files are Python pickles; they are
read by an unpickler that admits only plain containers, strings and numbers (never code), or as
JSON.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from tagger.errors import ModelLoadError, UnsafeCheckpointError

#: Parts of speech of the labels CLIP ranks first (the published code's choice).
LABEL_POS = ("NOUN", "ADV", "ADJ")
PRIME_SUBJECTS = ("landscape", "people", "animal", "plant", "some object")
#: The prime subjects' names in the encyclopedia.
PRIME_MAPPING = {
    "landscape": "scenery",
    "people": "human",
    "animal": "animal",
    "plant": "plant",
    "some object": "object",
}
#: Always expanded, whatever the best prime prompt says.
ALWAYS_EXPANDED = " landscape some object"
SECONDARY_CHECKS = ("time", "weather", "activity")
PERSONS = ("a man", "a woman", "a boy", "a girl", "an old man", "an old woman")
PERSONS_PLURAL = ("men", "women", "boys", "girls", "old men", "old women")
COUNTS = ("two", "three", "four")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white", "black")
GARMENTS = ("shirt", "suit", "cloth", "jacket")
#: Encyclopedia entries the selection reads, with their type (a flat list or subclasses).
ENCYCLOPEDIA_KEYS = {
    "scenery": dict,
    "human": list,
    "animal": dict,
    "plant": dict,
    "object": dict,
    "activity": dict,
    "weather": dict,
    "time": dict,
}
EXCLUDED_OBJECT = "clothing and fashion"
PICTURE_OF, PICTURE_DURING, ACTIVITY_IS, WEARING = (
    "picture of",
    "picture during",
    "activity is",
    "wearing",
)


# -- reading the label files without running code ----------------------------------------------


class PlainUnpickler(pickle.Unpickler):
    """An unpickler that builds only what pickle builds without looking anything up: lists,
    tuples, dicts, sets, strings, bytes, numbers, booleans and None.

    Every opcode that could call a function or build an object (``GLOBAL``, ``STACK_GLOBAL``,
    ``INST``, ``OBJ``, and so ``REDUCE``/``NEWOBJ``/``BUILD`` on what they would produce) goes
    through ``find_class``, which refuses; persistent ids are refused by pickle itself.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global lookup (this is where a pickle would reach code)."""
        raise pickle.UnpicklingError(
            f"global '{module}.{name}' refused: only plain lists, dicts, strings and numbers load"
        )


def load_plain_pickle(path: str | os.PathLike[str]) -> Any:
    """Read a pickle that holds only plain data, never executing anything.

    Raises ``UnsafeCheckpointError`` (naming the file and what was refused) for a pickle that
    would import or call anything, ``ModelLoadError`` for a file that is not a pickle.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {file}: {exc.strerror or exc}") from exc
    try:
        return PlainUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        if "refused" in str(exc):
            raise UnsafeCheckpointError(
                f"{file}: refused to load: this pickle would import or run code ({exc}). SBG "
                f"label files hold only lists, dicts and strings; use the published files or "
                f"convert a trusted copy to JSON"
            ) from exc
        raise ModelLoadError(f"{file}: not a readable pickle: {exc}") from exc
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"{file}: not a readable pickle: {type(exc).__name__}: {exc}") from exc


def read_data_file(path: str | os.PathLike[str]) -> Any:
    """A label file's content: JSON (``.json``) or a plain-data pickle (anything else)."""
    file = Path(path)
    if file.suffix.lower() == ".json":
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{file}: not readable JSON: {exc}") from exc
    return load_plain_pickle(file)


def validate_labels(data: Any, source: str) -> list[tuple[str, str, int]]:
    """``all_labels``: a list of (keyword, part of speech, frequency), most frequent first.

    >>> validate_labels([["dog", "NOUN", 5], ("run", "VERB", 3)], "x")
    [('dog', 'NOUN', 5), ('run', 'VERB', 3)]
    """
    if not isinstance(data, list | tuple):
        raise ModelLoadError(f"{source}: the labels must be a list, not {type(data).__name__}")
    out: list[tuple[str, str, int]] = []
    for number, entry in enumerate(data):
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 3
            or not isinstance(entry[0], str)
            or not isinstance(entry[1], str)
            or isinstance(entry[2], bool)
            or not isinstance(entry[2], int | float)
        ):
            raise ModelLoadError(
                f"{source}: label {number} is {entry!r}; each label is (keyword, part of "
                f"speech, frequency)"
            )
        out.append((entry[0], entry[1], int(entry[2])))
    return out


def _strings(value: Any, where: str) -> list[str]:
    """A list of strings, or ModelLoadError naming where it is not."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ModelLoadError(f"{where} must be a list of strings")
    return list(value)


def validate_encyclopedia(data: Any, source: str) -> dict[str, Any]:
    """The hierarchy: ``human`` a list of words, the other branches {subclass: [words]}.

    Branches the selection does not read (``number``, ``adverb``, ``adjective``) are kept as
    they are; a missing or mistyped branch is an error naming it.
    """
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{source}: the encyclopedia must be a dict, not {type(data).__name__}"
        )
    out: dict[str, Any] = dict(data)
    for key, kind in ENCYCLOPEDIA_KEYS.items():
        value = data.get(key)
        if not isinstance(value, kind):
            raise ModelLoadError(
                f"{source}: the encyclopedia's {key!r} must be a {kind.__name__} "
                f"(got {type(value).__name__})"
            )
        if kind is list:
            out[key] = _strings(value, f"{source}: {key!r}")
        else:
            if not all(isinstance(sub, str) for sub in value):
                raise ModelLoadError(f"{source}: the subclasses of {key!r} must be strings")
            out[key] = {
                sub: _strings(words, f"{source}: {key}/{sub}") for sub, words in value.items()
            }
    return out


def convert_to_json(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write a label file (pickle or JSON) as JSON, through the safe writer; returns ``target``.

    The pickle is read with ``load_plain_pickle`` (nothing runs), so converting an untrusted
    file is safe: it either holds plain data or is refused.
    """
    from tagger.safeio import atomic_write_text

    data = read_data_file(source)
    atomic_write_text(target, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return Path(target)


# -- the prompt groups ---------------------------------------------------------------------------


def prime_prompts() -> list[str]:
    """The 25 prompts that choose the branches: 1, 2 and 3 of the prime subjects.

    >>> prime_prompts()[:2], prime_prompts()[5], len(prime_prompts())
    (['picture of landscape.', 'picture of people.'], 'picture of landscape and people.', 25)
    """
    out = [f"{PICTURE_OF} {a}." for a in PRIME_SUBJECTS]
    out += [f"{PICTURE_OF} {a} and {b}." for a, b in combinations(PRIME_SUBJECTS, 2)]
    out += [f"{PICTURE_OF} {a} and {b} and {c}." for a, b, c in combinations(PRIME_SUBJECTS, 3)]
    return out


def person_prompts() -> list[str]:
    """The 28 person/count prompts of the people branch.

    >>> person_prompts()[6], person_prompts()[-1], len(person_prompts())
    ('picture of two men.', 'picture of a crowd of people.', 28)
    """
    out = [f"{PICTURE_OF} {a}." for a in PERSONS]
    out += [f"{PICTURE_OF} {count} {who}." for count in COUNTS for who in PERSONS_PLURAL]
    out += [f"{PICTURE_OF} {count} people." for count in COUNTS]
    out.append(f"{PICTURE_OF} a crowd of people.")
    return out


def clothing_prompts() -> list[str]:
    """The 40 clothing-colour prompts (10 colours x shirt, suit, cloth, jacket).

    >>> clothing_prompts()[0], clothing_prompts()[10], len(clothing_prompts())
    ('wearing red shirt.', 'wearing red suit.', 40)
    """
    return [f"{WEARING} {colour} {garment}." for garment in GARMENTS for colour in COLOURS]


def strip_prompt(text: str, prefix: str) -> str:
    """The keyword a prompt stands for: the text after ``prefix``, without the final ".".

    >>> strip_prompt("picture of two men.", "picture of")
    'two men'
    >>> strip_prompt("wearing red shirt.", "wearing")
    'red shirt'
    """
    return text.split(prefix)[1].strip()[:-1]


@dataclass(frozen=True)
class Hierarchy:
    """Every prompt group the selection ranks, built once from the two label files.

    ``secondary`` holds the groups named ``scenery``, ``human`` (person/count), ``occupation``,
    ``animal``, ``plant``, ``object``, ``activity``, ``time``, ``weather`` and ``clothing``;
    ``tertiary`` the member prompts of each subclass, keyed ``(branch, subclass)``, at most
    ``tertiary_limit`` each.
    """

    labels: tuple[str, ...]
    prime: tuple[str, ...]
    secondary: dict[str, tuple[str, ...]]
    tertiary: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every text whose CLIP embedding the selection may need, each once: the prompts and
        every keyword the selection can add (the final ranking embeds the keywords)."""
        texts: dict[str, None] = dict.fromkeys(self.labels)
        groups: list[Iterable[str]] = [
            self.prime,
            *self.secondary.values(),
            *self.tertiary.values(),
        ]
        for group in groups:
            texts.update(dict.fromkeys(group))
        for name, group in self.secondary.items():
            prefix = _PREFIX_OF.get(name, PICTURE_OF)
            texts.update(dict.fromkeys(strip_prompt(text, prefix) for text in group))
        for (branch, _), group in self.tertiary.items():
            prefix = ACTIVITY_IS if branch == "activity" else PICTURE_OF
            texts.update(dict.fromkeys(strip_prompt(text, prefix) for text in group))
        return list(texts)


#: The prefix each secondary group's prompts start with (default "picture of").
_PREFIX_OF = {"activity": ACTIVITY_IS, "time": PICTURE_DURING, "weather": PICTURE_DURING}
_PREFIX_OF["clothing"] = WEARING


def build_hierarchy(
    labels: Sequence[tuple[str, str, int]],
    encyclopedia: Mapping[str, Any],
    *,
    top: int = 1000,
    parts_of_speech: Sequence[str] = LABEL_POS,
    tertiary_limit: int = 100,
) -> Hierarchy:
    """The prompt groups of the published code from the label list and the encyclopedia."""
    words = [word for word, pos, _ in labels if pos in parts_of_speech][:top]
    secondary = {
        "scenery": tuple(f"{PICTURE_OF} {a}." for a in encyclopedia["scenery"]),
        "human": tuple(person_prompts()),
        "occupation": tuple(f"{PICTURE_OF} {a}." for a in encyclopedia["human"]),
        "animal": tuple(f"{PICTURE_OF} {a}." for a in encyclopedia["animal"]),
        "plant": tuple(f"{PICTURE_OF} {a}." for a in encyclopedia["plant"]),
        "object": tuple(
            f"{PICTURE_OF} {a}." for a in encyclopedia["object"] if a != EXCLUDED_OBJECT
        ),
        "activity": tuple(f"{ACTIVITY_IS} {a}." for a in encyclopedia["activity"]),
        "time": tuple(f"{PICTURE_DURING} {a}." for a in encyclopedia["time"]),
        "weather": tuple(f"{PICTURE_DURING} {a}." for a in encyclopedia["weather"]),
        "clothing": tuple(clothing_prompts()),
    }
    tertiary: dict[tuple[str, str], tuple[str, ...]] = {}
    for branch in ("scenery", "animal", "plant", "object"):
        for sub, members in encyclopedia[branch].items():
            tertiary[(branch, sub)] = tuple(f"{PICTURE_OF} {a}." for a in members)[:tertiary_limit]
    for sub, members in encyclopedia["activity"].items():
        tertiary[("activity", sub)] = tuple(f"{ACTIVITY_IS} {a}." for a in members)[:tertiary_limit]
    return Hierarchy(tuple(words), tuple(prime_prompts()), secondary, tertiary)


# -- the selection --------------------------------------------------------------------------------


def softmax100(similarities: Sequence[float]) -> list[float]:
    """CLIP's probabilities: softmax over 100 x the cosine similarities.

    >>> [round(p, 4) for p in softmax100([0.30, 0.29])]
    [0.7311, 0.2689]
    """
    if not similarities:
        return []
    top = max(similarities)
    weights = [math.exp(100.0 * (s - top)) for s in similarities]
    total = sum(weights)
    return [w / total for w in weights]


def ranked(texts: Sequence[str], probs: Sequence[float]) -> list[tuple[str, float]]:
    """``texts`` with their probabilities, best first, as the published ``get_prob_dict(sort=
    True)`` builds them: a dict (a repeated text keeps its first place and its last value),
    sorted by probability with ties in first-seen order.

    >>> ranked(["a", "b", "a"], [0.1, 0.6, 0.3])
    [('b', 0.6), ('a', 0.3)]
    """
    table: dict[str, float] = {}
    for text, prob in zip(texts, probs, strict=True):
        table[text] = prob
    return sorted(table.items(), key=lambda item: item[1], reverse=True)


def top_percent(items: Sequence[tuple[str, float]], threshold: float = 0.5) -> list[str]:
    """Labels in order until their cumulative probability passes ``threshold`` (the one that
    passes it included).

    >>> top_percent([("dog", 0.4), ("grass", 0.2), ("cat", 0.1)])
    ['dog', 'grass']
    """
    total, out = 0.0, []
    for label, prob in items:
        total += prob
        out.append(label)
        if total > threshold:
            break
    return out


#: Ranks a group of texts for one image: texts -> their probabilities (same order).
Scorer = Callable[[Sequence[str]], Sequence[float]]


@dataclass
class Selection:
    """The keywords chosen for one image (best first, with their final probabilities) and what
    the hierarchy chose on the way (for the JSON sidecar)."""

    keywords: list[tuple[str, float]]
    prime: str
    branches: dict[str, list[str]]


def _best(score: Scorer, texts: Sequence[str]) -> list[str]:
    """The texts of a group, best first."""
    return [text for text, _ in ranked(texts, score(texts))]


def select_keywords(score: Scorer, hierarchy: Hierarchy, threshold: float = 0.5) -> Selection:
    """SBG's keyword selection for one image, as the published ``generate_caption`` does it.

    ``score(texts)`` gives the image's probability for each text of a group (softmax over the
    group). Returns the keywords re-sorted by their probability among themselves.
    """
    keywords = top_percent(ranked(hierarchy.labels, score(hierarchy.labels)), threshold)
    branches: dict[str, list[str]] = {"labels": list(keywords)}
    prime_best = _best(score, hierarchy.prime)[0]
    prime = prime_best + ALWAYS_EXPANDED  # landscape and object are always expanded
    for subject in PRIME_SUBJECTS:
        if subject not in prime:  # a substring test, as published
            continue
        name = PRIME_MAPPING[subject]
        added: list[str] = []
        if subject == "people":
            group = "human"
            added.append(strip_prompt(_best(score, hierarchy.secondary[group])[0], PICTURE_OF))
            occupation = _best(score, hierarchy.secondary["occupation"])
            if occupation:
                added.append(strip_prompt(occupation[0], PICTURE_OF))
            added.append(strip_prompt(_best(score, hierarchy.secondary["clothing"])[0], WEARING))
        else:
            secondary = _best(score, hierarchy.secondary[name])
            if not secondary:
                continue
            sub = strip_prompt(secondary[0], PICTURE_OF)
            added.append(sub)
            members = _best(score, hierarchy.tertiary.get((name, sub), ()))
            take = 1 if subject == "animal" else 3
            added += [strip_prompt(text, PICTURE_OF) for text in members[:take]]
        keywords += added
        branches[subject] = added
    for check in SECONDARY_CHECKS:
        if check == "weather" and "indoor" in keywords:
            continue
        if check == "activity" and "people" not in prime and "animal" not in prime:
            continue
        best = _best(score, hierarchy.secondary[check])
        if not best:
            continue
        if check != "activity":
            added = [strip_prompt(best[0], PICTURE_DURING)]
        else:  # the activity itself is not a keyword, only its best member
            sub = strip_prompt(best[0], ACTIVITY_IS)
            members = _best(score, hierarchy.tertiary.get(("activity", sub), ()))
            added = [strip_prompt(members[0], ACTIVITY_IS)] if members else []
        keywords += added
        branches[check] = added
    final = ranked(keywords, score(keywords))
    return Selection(final, prime_best, branches)


def prompt_text(keywords: Sequence[str], separator: str = "###") -> str:
    """The generator's prompt: the keywords joined by ", ", a space and the separator.

    >>> prompt_text(["dog", "grass", "running"])
    'dog, grass, running ###'
    """
    return ", ".join(keywords) + " " + separator


#: What the published pipeline's decoding (transformers 4.35, ``clean_up_tokenization_spaces``)
#: joins back: the space before these is removed.
CLEAN_UP = (" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're")


def clean_up_spaces(text: str) -> str:
    """The published decoding's clean-up of spaces before punctuation and contractions (newer
    transformers no longer applies it to GPT-2, so it is applied here).

    >>> clean_up_spaces("a man , wearing a hat . it 's red")
    "a man, wearing a hat. it's red"
    """
    for piece in CLEAN_UP:
        text = text.replace(piece, piece[1:] if piece != " ' " else "'")
    return text


def finish_caption(text: str) -> str:
    """The published post-processing: cut at the first "." and end with " .".

    >>> finish_caption(" a dog runs through the grass . two men"), finish_caption("a dog")
    ('a dog runs through the grass .', 'a dog .')
    """
    return text.strip().split(".")[0].strip() + " ."
