"""Any speaker corpus on disk: one sub-folder per speaker, or speaker names taken from file names by a regex.

Default layout (files may sit deeper inside the speaker folder)::

    ROOT/alice/001.wav
    ROOT/alice/session2/002.flac
    ROOT/bob/take1.mp3

With ``speaker_regex`` the speaker comes from the named group ``speaker`` of a match on the *file name*
(``re.search``), and the optional group ``sentence`` becomes the sentence id, e.g. for FSDD
(``recordings/7_jackson_32.wav``)::

    ^(?P<sentence>\\d+)_(?P<speaker>[a-z]+)_\\d+\\.wav$

``test_pattern`` (``re.search`` on the file name) presets matching files to the test split; FSDD's official
split is ``_[0-4]\\.wav$`` (recordings 0-4 of each digit are test).

Items: utt_id is the path relative to ROOT without its extension (with the extension when two files differ
only by it), source is the path relative to ROOT. Hidden files and folders are ignored, and so are files
without an audio extension (counted in prep.json).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from .items import AUDIO_EXTENSIONS, Item, PrepError, Scan

__all__ = ["scan", "compile_speaker_regex"]


def compile_speaker_regex(pattern: str) -> re.Pattern:
    """Compile ``pattern``; it must have a named group ``speaker``. Raises PrepError quoting the pattern."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise PrepError(f"--speaker-regex {pattern!r} is not a valid regular expression ({e})") from e
    if "speaker" not in rx.groupindex:
        raise PrepError(f"--speaker-regex {pattern!r} needs a named group (?P<speaker>...)")
    return rx


def _compile(pattern: str, option: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise PrepError(f"{option} {pattern!r} is not a valid regular expression ({e})") from e


def scan(
    root: str | os.PathLike,
    speaker_regex: str | None = None,
    test_pattern: str | None = None,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
) -> Scan:
    """List the audio files under ``root`` with their speakers (see the module docstring)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise PrepError(f"{root}: no such folder")
    rx = compile_speaker_regex(speaker_regex) if speaker_regex else None
    test_rx = _compile(test_pattern, "--test-pattern") if test_pattern else None
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)

    found: list[tuple[Path, str]] = []  # (file, relative posix path)
    ignored: Counter = Counter()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext not in exts:
                ignored[ext or "(none)"] += 1
                continue
            p = Path(dirpath, name)
            found.append((p, p.relative_to(root).as_posix()))

    stems = Counter(os.path.splitext(rel)[0] for _, rel in found)
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    for p, rel in found:
        sentence = ""
        if rx is not None:
            m = rx.search(p.name)
            if m is None or not m["speaker"]:
                skipped.append((rel, f"file name does not match --speaker-regex {rx.pattern!r}"))
                continue
            speaker = m["speaker"]
            sentence = (m.groupdict().get("sentence") or "") if "sentence" in rx.groupindex else ""
        else:
            if "/" not in rel:
                skipped.append(
                    (rel, "not inside a speaker folder (use ROOT/<speaker>/... or --speaker-regex)")
                )
                continue
            speaker = rel.split("/", 1)[0]
        stem = os.path.splitext(rel)[0]
        utt_id = stem if stems[stem] == 1 else rel
        split = "test" if test_rx is not None and test_rx.search(p.name) else ""
        items.append(Item(os.fspath(p), rel, speaker, utt_id, sentence, split))

    info = {
        "kind": "folder",
        "root": os.fspath(root),
        "speaker_regex": speaker_regex,
        "test_pattern": test_pattern,
        "extensions": list(exts),
        "ignored_non_audio_files": dict(sorted(ignored.items())),
    }
    return Scan(items=items, skipped=skipped, info=info)
