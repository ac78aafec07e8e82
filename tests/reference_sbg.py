"""A plain re-statement of the published SBG keyword selection (Anshler/ICG_sd_extension,
``scripts/image_caption.py``: ``get_top_percent``, ``get_prob_dict``, ``get_prime_labels``,
``get_secondary_labels``, ``get_tertiary_labels`` and the keyword part of ``generate_caption``).

Written the way the published code runs it: torch probabilities, text features computed for each
group when it is ranked, tertiary groups embedded per image, the ``try/except`` around them, and
the ``in`` tests on the prime string. It shares no code with ``tagger``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

PRIME_SUBJECT = ["landscape", "people", "animal", "plant", "some object"]
PRIME_MAPPING = {
    "landscape": "scenery",
    "people": "human",
    "animal": "animal",
    "plant": "plant",
    "some object": "object",
}


def get_top_percent(label_dict: dict[str, float], threshold: float = 0.5) -> list[str]:
    current = 0.0
    labels = []
    for label, prob in label_dict.items():
        current += prob
        labels.append(label)
        if current > threshold:
            break
    return labels


def get_prob_dict(img_features: Any, text_features: Any, labels: list[str], sort: bool = False):
    text_probs = (100.0 * img_features @ text_features.T).softmax(dim=-1).tolist()[0]
    prob_dict = {}
    for x in range(len(labels)):
        prob_dict[labels[x]] = text_probs[x]
    if sort:
        prob_dict = dict(sorted(prob_dict.items(), key=lambda item: item[1], reverse=True))
    return prob_dict


def get_prime_labels() -> list[str]:
    labels = ["picture of " + a + "." for a in PRIME_SUBJECT]
    labels += ["picture of " + a[0] + " and " + a[1] + "." for a in combinations(PRIME_SUBJECT, 2)]
    labels += [
        "picture of " + a[0] + " and " + a[1] + " and " + a[2] + "."
        for a in combinations(PRIME_SUBJECT, 3)
    ]
    return labels


def get_secondary_labels(mode: str, encyclopedia: dict[str, Any]) -> list[str]:
    if mode == "human":
        subject = ["a man", "a woman", "a boy", "a girl", "an old man", "an old woman"]
        subjects = ["men", "women", "boys", "girls", "old men", "old women"]
        count = ["two", "three", "four"]
        subjects_count = []
        labels = [f"picture of {a}." for a in subject]
        for a in count:
            for b in subjects:
                subjects_count.append(f"{a} {b}")
        labels += [f"picture of {a}." for a in subjects_count]
        labels += [f"picture of {a} people." for a in count]
        labels.append("picture of a crowd of people.")
    elif mode == "occupation":
        labels = [f"picture of {a}." for a in encyclopedia["human"]]
    elif mode == "scenery":
        labels = [f"picture of {a}." for a in encyclopedia["scenery"]]
    elif mode == "animal":
        labels = [f"picture of {a}." for a in encyclopedia["animal"]]
    elif mode == "plant":
        labels = [f"picture of {a}." for a in encyclopedia["plant"]]
    elif mode == "object":
        labels = [f"picture of {a}." for a in encyclopedia["object"] if a != "clothing and fashion"]
    elif mode == "activity":
        labels = [f"activity is {a}." for a in encyclopedia["activity"]]
    elif mode == "time":
        labels = [f"picture during {a}." for a in encyclopedia["time"]]
    elif mode == "weather":
        labels = [f"picture during {a}." for a in encyclopedia["weather"]]
    elif mode == "clothing":
        color = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white"]
        color.append("black")
        labels = [f"wearing {a} shirt." for a in color]
        labels += [f"wearing {a} suit." for a in color]
        labels += [f"wearing {a} cloth." for a in color]
        labels += [f"wearing {a} jacket." for a in color]
    else:
        raise ValueError(mode)
    return labels


def get_tertiary_labels(
    encyclopedia: dict[str, Any], mode: str, sub_mode: str, isverb: bool = False
) -> list[str]:
    if not isverb:
        return [f"picture of {a}." for a in encyclopedia[mode][sub_mode]]
    return [f"activity is {a}." for a in encyclopedia[mode][sub_mode]]


def select_keywords(
    img_features: Any,
    encode: Callable[[list[str]], Any],
    all_labels: list[tuple[str, str, int]],
    encyclopedia: dict[str, Any],
) -> list[str]:
    """The published keyword list for one image (``final_keywords``).

    ``img_features``: ``[1, D]`` L2-normalised; ``encode(texts)``: ``[N, D]`` L2-normalised text
    features (the published ``get_text_features``).
    """
    labels = [keyword for keyword, pos, frequency in all_labels if pos in ["NOUN", "ADV", "ADJ"]]
    labels = labels[:1000]
    secondary_labels_of = {
        mode: get_secondary_labels(mode, encyclopedia)
        for mode in (
            "scenery",
            "human",
            "occupation",
            "animal",
            "plant",
            "object",
            "activity",
            "time",
            "weather",
            "clothing",
        )
    }

    prob_dict = get_prob_dict(img_features, encode(labels), labels, sort=True)
    main_list = get_top_percent(prob_dict)
    prime_labels = get_prime_labels()
    prime_prob_dict = get_prob_dict(img_features, encode(prime_labels), prime_labels, sort=True)
    prime = next(iter(prime_prob_dict.keys())) + " landscape some object"

    for a in PRIME_SUBJECT:
        if a in prime:
            mode = {"landscape": "scenery", "people": "human", "some object": "object"}.get(a, a)
            secondary_labels = secondary_labels_of[mode]
            secondary_prob_dict = get_prob_dict(
                img_features, encode(secondary_labels), secondary_labels, sort=True
            )
            secondary = list(secondary_prob_dict.keys())
            if a == "people":
                main_list.append(secondary[0].split("picture of")[1].strip()[:-1])
                occupation_labels = secondary_labels_of["occupation"]
                occupation = list(
                    get_prob_dict(
                        img_features, encode(occupation_labels), occupation_labels, sort=True
                    ).keys()
                )
                main_list.append(occupation[0].split("picture of")[1].strip()[:-1])
                clothing_labels = secondary_labels_of["clothing"]
                clothing = list(
                    get_prob_dict(
                        img_features, encode(clothing_labels), clothing_labels, sort=True
                    ).keys()
                )
                main_list.append(clothing[0].split("wearing")[1].strip()[:-1])
            else:
                sub_mode = secondary[0].split("picture of")[1].strip()[:-1]
                main_list.append(sub_mode)
                try:
                    tertiary_labels = get_tertiary_labels(encyclopedia, PRIME_MAPPING[a], sub_mode)[
                        :100
                    ]
                    tertiary = list(
                        get_prob_dict(
                            img_features, encode(tertiary_labels), tertiary_labels, sort=True
                        ).keys()
                    )
                    if a == "animal":
                        main_list.append(tertiary[0].split("picture of")[1].strip()[:-1])
                    else:
                        main_list += [t.split("picture of")[1].strip()[:-1] for t in tertiary[:3]]
                except Exception:
                    pass

    for a in ["time", "weather", "activity"]:
        if not (
            (a == "weather" and "indoor" in main_list)
            or (a == "activity" and "people" not in prime and "animal" not in prime)
        ):
            secondary_labels = secondary_labels_of[a]
            secondary = list(
                get_prob_dict(
                    img_features, encode(secondary_labels), secondary_labels, sort=True
                ).keys()
            )
            if a != "activity":
                main_list.append(secondary[0].split("picture during")[1].strip()[:-1])
            else:
                sub_mode = secondary[0].split("activity is")[1].strip()[:-1]
                try:
                    tertiary_labels = get_tertiary_labels(encyclopedia, a, sub_mode, True)[:100]
                    tertiary = list(
                        get_prob_dict(
                            img_features, encode(tertiary_labels), tertiary_labels, sort=True
                        ).keys()
                    )
                    main_list.append(tertiary[0].split("activity is")[1].strip()[:-1])
                except Exception:
                    pass

    return list(get_prob_dict(img_features, encode(main_list), main_list, sort=True).keys())


def clean_up_tokenization(out_string: str) -> str:
    """transformers 4.35's ``clean_up_tokenization`` (the published pipeline's decoding)."""
    return (
        out_string.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def generate_candidates(generator: Any, eos: int, prompt: str, count: int, max_length: int):
    """The published generation, ``count`` sequences from one pipeline call, with the settings
    transformers 4.35 gave the published call (sampling from the checkpoint's
    task_specific_params, top-k 50, temperature 1.0, max_length 256 and the decoding clean-up;
    newer pipelines default to temperature 0.7 and no top-k, so they are passed here): the text
    after the separator, and the same cut at the first "." and ended with " ."."""
    outputs = generator(
        prompt,
        max_length=max_length,
        pad_token_id=eos,
        do_sample=True,
        top_k=50,
        temperature=1.0,
        num_return_sequences=count,
        clean_up_tokenization_spaces=False,
    )
    raw = [clean_up_tokenization(out["generated_text"]).split("###")[1] for out in outputs]
    return raw, [r.strip().split(".")[0].strip() + " ." for r in raw]
