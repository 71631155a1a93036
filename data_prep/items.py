"""What the corpus readers hand to :func:`data_prep.prepare`: one :class:`Item` per audio file, in a :class:`Scan`.

Readers (``vctk``, ``folder``, ``manifest``) only look at names and folders; they never decode audio. Anything
they can tell is unusable without decoding (a name that does not match the layout, a speaker with no recordings
for the chosen microphone) goes into ``Scan.skipped`` with the reason, and ends up in ``prep.json`` next to the
files that failed to decode.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["AUDIO_EXTENSIONS", "SPLITS", "Item", "Scan", "PrepError", "check_items"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # what libsndfile (via speakerid.audio) decodes
SPLITS = ("train", "valid", "test")


class PrepError(Exception):
    """A dataset cannot be prepared (bad root, bad option, an output folder from another run, ...).

    The message names the path and, where there is one, the fix. Unusable *audio files* never raise this: they
    are reported and skipped.
    """


@dataclass(frozen=True)
class Item:
    """One audio file to prepare."""

    path: str  # the file to decode (absolute)
    source: str  # how manifest.csv and prep.json name it: path relative to the corpus root (or as in the CSV)
    speaker: str  # class name
    utt_id: str  # unique within the dataset
    sentence_id: str = ""  # text id (VCTK: the NNN of pXXX_NNN); "" if unknown
    split: str = ""  # preset split (train / valid / test); "" = assigned by the split rule
    text: str = ""  # transcript if known; used only for the cross-split text check in prep.json


@dataclass
class Scan:
    """A reader's result: the items (sorted by speaker, then utt_id), files skipped by name, and a description."""

    items: list[Item]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    info: dict = field(default_factory=dict)  # corpus description for prep.json ("kind", "root", ...)


def check_items(items: list[Item]) -> list[Item]:
    """Validate items and return them sorted by (speaker, utt_id). Raises :class:`PrepError` naming the problem."""
    bad_split = [it for it in items if it.split not in ("", *SPLITS)]
    if bad_split:
        it = bad_split[0]
        raise PrepError(f"{it.source}: split {it.split!r} is not one of {', '.join(SPLITS)} (or empty)")
    no_speaker = [it for it in items if not it.speaker]
    if no_speaker:
        raise PrepError(f"{no_speaker[0].source}: empty speaker name")
    dup = [u for u, n in Counter(it.utt_id for it in items).items() if n > 1]
    if dup:
        srcs = [it.source for it in items if it.utt_id == dup[0]]
        raise PrepError(
            f"{len(dup)} utterance id(s) are used by more than one file, e.g. {dup[0]!r}: {', '.join(srcs[:3])}"
        )
    for it in items:
        if not os.path.isabs(it.path):
            raise PrepError(f"{it.source}: Item.path must be absolute, got {it.path!r}")
    return sorted(items, key=lambda it: (it.speaker, it.utt_id))
