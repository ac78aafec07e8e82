"""Near-duplicate search over 64-bit perceptual hashes without comparing every pair.

Two images are near duplicates when their hashes differ in at most ``t`` bits (Hamming
distance). Comparing all pairs costs n²/2 (5·10⁹ for 100,000 images). Multi-index hashing
(Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR
2012) avoids that: split each hash into 4 chunks of 16 bits; by the pigeonhole principle two
hashes within ``t`` bits agree within ``t // 4`` bits on at least one chunk. So for each chunk
the hashes are sorted into buckets by the chunk's value, and each hash is compared only with
the hashes in the buckets whose value differs from its own in at most ``t // 4`` bits. Every
candidate is then checked with its full distance: the result is exact (the same pairs as the
all-pairs comparison), only faster.

Everything is NumPy on ``uint64`` arrays; candidates are produced in blocks so memory stays
bounded.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CHUNKS = 4
CHUNK_BITS = 16
#: Hashes compared per block of candidates.
BLOCK = 8192


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each ``uint64`` (NumPy's ``bitwise_count`` where it exists).

    >>> import numpy as np
    >>> popcount(np.array([0, 1, 3, 2**64 - 1], dtype=np.uint64)).tolist()
    [0, 1, 2, 64]
    """
    import numpy as np

    values = np.ascontiguousarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[values.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def chunk_masks(radius: int) -> list[int]:
    """Every 16-bit mask with at most ``radius`` bits set (0 first).

    >>> len(chunk_masks(0)), len(chunk_masks(1)), len(chunk_masks(2))
    (1, 17, 137)
    """
    masks = [0]
    for weight in range(1, radius + 1):
        for bits in itertools.combinations(range(CHUNK_BITS), weight):
            masks.append(sum(1 << b for b in bits))
    return masks


def _candidates(
    hashes: np.ndarray, chunk: int, masks: list[int], max_distance: int
) -> Iterator[np.ndarray]:
    """Pairs ``[k, 2]`` (i < j) within ``max_distance`` found through one chunk."""
    import numpy as np

    n = len(hashes)
    keys = ((hashes >> np.uint64(chunk * CHUNK_BITS)) & np.uint64(0xFFFF)).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[order], np.arange(1 << CHUNK_BITS | 1))
    for mask in masks:
        for block in range(0, n, BLOCK):
            mine = np.arange(block, min(n, block + BLOCK))
            targets = keys[mine] ^ mask
            low = starts[targets]
            counts = starts[targets + 1] - low
            total = int(counts.sum())
            if not total:
                continue
            first = np.repeat(mine, counts)
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            second = order[np.repeat(low, counts) + offsets]
            keep = first < second
            first, second = first[keep], second[keep]
            close = popcount(hashes[first] ^ hashes[second]) <= max_distance
            if close.any():
                yield np.stack([first[close], second[close]], axis=1)


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair ``(i, j, distance)`` with i < j and at most ``max_distance`` differing bits,
    sorted; ``[k, 3]`` int64.

    >>> import numpy as np
    >>> h = np.array([0b1011, 0b1010, 0xFFFF0000, 0b1011], dtype=np.uint64)
    >>> near_pairs(h, 1).tolist()
    [[0, 1, 1], [0, 3, 0], [1, 3, 1]]
    """
    import numpy as np

    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, not {max_distance}")
    if len(hashes) < 2:
        return np.zeros((0, 3), dtype=np.int64)
    masks = chunk_masks(max_distance // CHUNKS)
    found = [
        pairs
        for chunk in range(CHUNKS)
        for pairs in _candidates(hashes, chunk, masks, max_distance)
    ]
    if not found:
        return np.zeros((0, 3), dtype=np.int64)
    pairs = np.unique(np.concatenate(found), axis=0)
    distance = popcount(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
    return np.concatenate([pairs, distance[:, None]], axis=1).astype(np.int64)


def all_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """The same result by comparing every pair (the baseline ``near_pairs`` is checked and
    measured against); O(n²)."""
    import numpy as np

    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    found = []
    for i in range(len(hashes) - 1):
        distance = popcount(hashes[i + 1 :] ^ hashes[i])
        close = np.nonzero(distance <= max_distance)[0]
        if len(close):
            found.append(np.stack([np.full(len(close), i), close + i + 1, distance[close]], axis=1))
    if not found:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(found).astype(np.int64)


def groups(count: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected groups (two or more members) of the pairs' graph, each sorted, ordered by
    their first member.

    >>> import numpy as np
    >>> groups(6, np.array([[0, 2, 1], [2, 5, 0], [3, 4, 2]]))
    [[0, 2, 5], [3, 4]]
    """
    parent = list(range(count))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs[:, :2].tolist() if len(pairs) else []:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in range(count):
        members.setdefault(find(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


def hash_to_int(value: object) -> int:
    """An ``imagehash.ImageHash`` (or a bool array) as a 64-bit integer, first bit highest."""
    bits = getattr(value, "hash", value)
    number = 0
    for bit in bits.flatten().tolist():  # type: ignore[attr-defined]
        number = (number << 1) | int(bool(bit))
    return number
