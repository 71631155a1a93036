"""data_prep: VCTK (0.80 / 0.92), speaker folders and CSV lists -> 16 kHz prepared datasets for speakerid.

    python -m data_prep vctk --root ~/VCTK-Corpus-0.92 --out data/vctk
    python -m data_prep folder --root recordings/ --out data/mine
    python -m data_prep manifest --csv files.csv --out data/mine

From Python::

    from data_prep import prepare, vctk
    result = prepare(vctk.scan("~/VCTK-Corpus-0.92"), "data/vctk", split_by="sentence")

Readers (:mod:`.vctk`, :mod:`.folder`, :mod:`.manifest`) list files; :func:`prepare` decodes them through
:mod:`speakerid.audio`, writes shards, ``manifest.csv``, ``labels.json`` and ``prep.json`` (the format
:class:`speakerid.data.PreparedDataset` reads), in parallel and resumably. :mod:`.synth` writes synthetic
corpora with the real layouts. See docs/data_prep.md.
"""

from . import folder, manifest, synth, vctk
from .items import AUDIO_EXTENSIONS, Item, PrepError, Scan
from .pipeline import PrepConfig, PrepResult, prepare
from .splits import SPLIT_RULES, assign_splits

__all__ = [
    "prepare",
    "PrepConfig",
    "PrepResult",
    "PrepError",
    "Item",
    "Scan",
    "AUDIO_EXTENSIONS",
    "SPLIT_RULES",
    "assign_splits",
    "vctk",
    "folder",
    "manifest",
    "synth",
]
