"""Train / valid / test assignment: by sentence id, per speaker by file, or by whole speakers. Seeded.

Every rule first keeps preset splits (a CSV ``split`` column, ``--test-pattern``), then shuffles the remaining
*groups* with a seeded ``numpy.random.default_rng`` and cuts them by the fractions:

- ``sentence``: a group is a sentence id, across all speakers, so no text id is in two splits (VCTK protocol).
- ``file``: per speaker, a group is one file (stratified: every speaker is in every split when it has >= 3
  files). The per-speaker stream is seeded with ``(seed, crc32(speaker))``, so adding a speaker does not move
  the files of the others.
- ``speaker``: a group is a speaker; whole speakers go to train / valid / test (speaker-disjoint, for
  enrollment and EER experiments).

The result depends only on the kept items and the settings, never on file order, workers or timing.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .items import Item, PrepError

__all__ = ["SPLIT_RULES", "assign_splits", "describe", "count"]

SPLIT_RULES = ("sentence", "file", "speaker")


def count(fraction: float, n: int) -> int:
    """Groups for a split of ``fraction`` out of ``n``: rounded half up, at least 1 when fraction > 0 and n >= 3."""
    k = int(np.floor(fraction * n + 0.5))
    if fraction > 0 and k == 0 and n >= 3:
        k = 1
    return k


def _partition(keys: Sequence[str], valid: float, test: float, rng: np.random.Generator) -> dict[str, str]:
    """Sorted keys -> {key: split}; train always keeps at least one key."""
    n = len(keys)
    n_test, n_valid = count(test, n), count(valid, n)
    while n_test + n_valid >= n and n_test + n_valid > 0:  # tiny groups: train first
        if n_valid >= n_test and n_valid > 0:
            n_valid -= 1
        else:
            n_test -= 1
    order = rng.permutation(n)
    out = {}
    for rank, j in enumerate(order):
        out[keys[j]] = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
    return out


def _rng(seed: int, key: str | None = None) -> np.random.Generator:
    return np.random.default_rng([seed] if key is None else [seed, zlib.crc32(key.encode("utf-8"))])


def assign_splits(items: Sequence[Item], by: str, valid: float, test: float, seed: int) -> list[str]:
    """One split name per item (same order). Raises :class:`PrepError` for an unknown rule or missing ids."""
    if by not in SPLIT_RULES:
        raise PrepError(f"unknown split rule {by!r}: use one of {', '.join(SPLIT_RULES)}")
    result = [it.split for it in items]
    free = [i for i, it in enumerate(items) if not it.split]
    if not free:
        return result
    if by == "sentence":
        missing = [items[i].source for i in free if not items[i].sentence_id]
        if missing:
            raise PrepError(
                f"split by sentence needs a sentence id for every file; {len(missing)} have none "
                f"(e.g. {missing[0]}): add a (?P<sentence>...) group to --speaker-regex or split by file"
            )
        keys = sorted({items[i].sentence_id for i in free})
        table = _partition(keys, valid, test, _rng(seed))
        for i in free:
            result[i] = table[items[i].sentence_id]
    elif by == "speaker":
        keys = sorted({items[i].speaker for i in free})
        table = _partition(keys, valid, test, _rng(seed))
        for i in free:
            result[i] = table[items[i].speaker]
    else:  # file, stratified per speaker
        per_speaker: dict[str, list[int]] = defaultdict(list)
        for i in free:
            per_speaker[items[i].speaker].append(i)
        for speaker, idx in per_speaker.items():
            idx.sort(key=lambda i: items[i].utt_id)
            table = _partition([items[i].utt_id for i in idx], valid, test, _rng(seed, speaker))
            for i in idx:
                result[i] = table[items[i].utt_id]
    return result


def describe(by: str) -> str:
    return {
        "sentence": "by sentence id: every utterance of a sentence id (all speakers) is in one split",
        "file": "per speaker by file (stratified): each speaker's files are shuffled and cut by the fractions",
        "speaker": "by speaker (speaker-disjoint): whole speakers are assigned to train / valid / test",
    }[by]


_WORD = re.compile(r"[a-z0-9']+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the key for the cross-split text check."""
    return " ".join(_WORD.findall(text.lower()))
