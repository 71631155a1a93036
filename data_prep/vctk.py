"""VCTK reader, both published layouts. Names and folders only; decoding happens in :mod:`data_prep.pipeline`.

0.80 (``VCTK-Corpus/``)::

    wav48/p225/p225_001.wav            48 kHz 16-bit WAV, with leading/trailing silence
    txt/p225/p225_001.txt              transcript ("Please call Stella.")
    speaker-info.txt, README, COPYING

0.92 (``VCTK-Corpus-0.92/``)::

    wav48_silence_trimmed/p225/p225_001_mic1.flac   (and _mic2.flac: the second microphone)
    wav48_silence_trimmed/log.txt                   trimming log, ignored
    txt/p225/p225_001.txt
    speaker-info.txt, README.txt, license_text, update.txt

Known quirks handled: p315 has audio but no transcripts (kept; its sentence ids come from the file names);
p280 has no mic2 recordings (with ``mic="mic2"`` it is reported as skipped); files not following the naming
pattern are reported, non-audio files (logs, READMEs) and hidden files (``._p225_001.wav`` from macOS archives)
are ignored. ``root`` may also be the folder *containing* the extracted corpus.

Items: speaker ``pXXX``, utt_id ``pXXX_NNN`` (no mic suffix; the mic is in prep.json), sentence_id ``NNN``,
source relative to the corpus folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .items import AUDIO_EXTENSIONS, Item, PrepError, Scan

__all__ = ["VERSIONS", "MICS", "WAV_DIRS", "find_corpus", "scan"]

VERSIONS = ("0.80", "0.92")
MICS = ("mic1", "mic2")
WAV_DIRS = {"0.80": "wav48", "0.92": "wav48_silence_trimmed"}
_PATTERN = {
    "0.80": re.compile(r"^(?P<spk>[A-Za-z]+\d+)_(?P<sent>\d+)\.wav$"),
    "0.92": re.compile(r"^(?P<spk>[A-Za-z]+\d+)_(?P<sent>\d+)_(?P<mic>mic[12])\.flac$"),
}
_EXAMPLE = {"0.80": "p225_001.wav", "0.92": "p225_001_mic1.flac"}


def find_corpus(root: str | os.PathLike, version: str = "auto") -> tuple[Path, str]:
    """(corpus folder, version) for ``root`` or a folder directly inside it. Raises PrepError if none."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise PrepError(f"{root}: no such folder (--root should be the extracted VCTK corpus)")
    if version not in ("auto", *VERSIONS):
        raise PrepError(f"unknown VCTK version {version!r}: use auto, {', '.join(VERSIONS)}")
    wanted = VERSIONS if version == "auto" else (version,)
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in candidates:
        for v in reversed(wanted):  # 0.92 first when both are present
            if (folder / WAV_DIRS[v]).is_dir():
                return folder, v
    expected = " or ".join(WAV_DIRS[v] + "/" for v in wanted)
    raise PrepError(f"{root}: not a VCTK corpus (no {expected} in it or in a folder directly inside it)")


def scan(root: str | os.PathLike, version: str = "auto", mic: str = "mic1") -> Scan:
    """List the utterances of a VCTK corpus. ``version``: auto | 0.80 | 0.92; ``mic`` (0.92 only): mic1 | mic2."""
    corpus, version = find_corpus(root, version)
    if mic not in MICS:
        raise PrepError(f"unknown microphone {mic!r}: use {' or '.join(MICS)}")
    if version == "0.80" and mic != "mic1":
        raise PrepError(f"{corpus}: VCTK 0.80 has one microphone; --mic applies to the 0.92 layout only")
    wav_dir = corpus / WAV_DIRS[version]
    pattern = _PATTERN[version]
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    no_text_speakers: list[str] = []
    n_no_text = n_ignored = 0

    for spk_dir in sorted(p for p in wav_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        speaker = spk_dir.name
        txt_dir = corpus / "txt" / speaker
        texts = {p.name for p in txt_dir.iterdir()} if txt_dir.is_dir() else set()
        n_other_mic = 0
        found = 0
        for f in sorted(spk_dir.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            rel = f.relative_to(corpus).as_posix()
            m = pattern.match(f.name)
            if m is None:
                if f.suffix.lower() in AUDIO_EXTENSIONS:
                    skipped.append(
                        (rel, f"file name does not follow the VCTK {version} pattern {_EXAMPLE[version]}")
                    )
                else:
                    n_ignored += 1
                continue
            if m["spk"] != speaker:
                skipped.append((rel, f"file name speaker {m['spk']} does not match its folder {speaker}"))
                continue
            if version == "0.92" and m["mic"] != mic:
                n_other_mic += 1
                continue
            utt = f"{speaker}_{m['sent']}"
            text = ""
            if f"{utt}.txt" in texts:
                text = (txt_dir / f"{utt}.txt").read_text(encoding="utf-8", errors="replace").strip()
            else:
                n_no_text += 1
            items.append(Item(os.fspath(f), rel, speaker, utt, m["sent"], text=text))
            found += 1
        if found == 0 and n_other_mic:
            skipped.append((f"{WAV_DIRS[version]}/{speaker}", f"no {mic} recordings for this speaker"))
        if found and not texts:
            no_text_speakers.append(speaker)

    info = {
        "kind": "vctk",
        "root": os.fspath(corpus),
        "version": version,
        "mic": mic if version == "0.92" else None,
        "files_without_text": n_no_text,
        "speakers_without_text": no_text_speakers,
        "ignored_non_audio_files": n_ignored,
    }
    return Scan(items=items, skipped=skipped, info=info)
