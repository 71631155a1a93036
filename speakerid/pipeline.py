"""The inference pipeline: clip -> decode -> speech -> crops -> engine -> per-crop scores -> vote -> answer.

Every inference path goes through :class:`Identifier` (``speakerid identify``, ``enroll``, ``evaluate``, the
app, the ONNX engine's parity tests), so a clip gets the same answer everywhere. Dim legend: B batch of crops,
T samples per crop, N crops of one clip, K classes, D embedding size.

1. **decode** (``speakerid.audio.load_audio``): any format libsndfile reads, downmixed, resampled to the card's
   sample rate; a (T,) float32 array at that rate is taken as is.
2. **speech** (``speakerid.vad.speech_only`` with the card's ``frontend.vad``): only speech is kept; a clip
   without enough speech is refused with an AudioError naming it.
3. **crops** (``speakerid.audio.fixed_crops``, ``frontend.crop`` samples, at most ``max_crops`` evenly spread).
4. **engine** (``Engine.run``: torch or ONNX, one interface): logits (N, K) and unit embeddings (N, D);
   :meth:`Identifier.identify_files` batches crops across consecutive files.
5. **vote** (:meth:`Identifier.score`): registry mode ranks the clip's mean embedding (normalised) against the
   enrolled speakers by cosine score, "unknown" below the threshold; classes mode averages the crops'
   log-probabilities over the model's classes.

Extension point: a streaming engine can reuse steps 1-2 and 5 per chunk (``load_speech``, ``score``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .audio import AudioError, display_name, fixed_crops, load_audio
from .registry import UNKNOWN, SpeakerRegistry
from .vad import speech_only

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "InferenceOptions",
    "Prediction",
    "FileResult",
    "Identifier",
    "load_speech",
    "clip_embedding",
    "embed_clips",
    "enroll",
]


@dataclass(frozen=True)
class InferenceOptions:
    top_k: int = 5  # speakers listed per clip
    hop: int | None = None  # samples between crop starts (None = the crop length: no overlap)
    max_crops: int = 256  # crops scored per clip at most (evenly spread): bounded time on long files
    batch_size: int = 64  # crops per model call
    threshold: float | None = None  # "unknown" threshold; None = the registry's (calibrated at training)
    mode: str = "auto"  # auto (registry if it has speakers, else classes) | registry | classes
    segments: bool = False  # also return one prediction per crop (who speaks when)
    max_seconds: float | None = 3600.0  # refuse longer files before decoding them


@dataclass
class Prediction:
    speaker: str  # best speaker, or "unknown" below the threshold (registry mode)
    score: float  # probability (classes mode) or cosine score (registry mode) of ``speaker``'s best match
    top_k: list[tuple[str, float]]
    mode: str
    duration: float  # seconds of audio in the clip
    n_crops: int
    embedding: np.ndarray | None = None  # (D,) unit: the clip's mean crop embedding
    segments: list[dict] = field(default_factory=list)  # [{start, end, speaker, score}]
    speech: float | None = None  # seconds the speech detector kept (what was embedded and voted on)
    crop_logp: np.ndarray | None = None  # (N, K) float64 per-crop log-probabilities over the model's classes

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "score": round(self.score, 6),
            "top_k": [[n, round(s, 6)] for n, s in self.top_k],
            "mode": self.mode,
            "duration": round(self.duration, 3),
            "n_crops": self.n_crops,
            "speech": None if self.speech is None else round(self.speech, 3),
            "segments": self.segments,
        }


@dataclass
class FileResult:
    """One input's outcome: ``prediction`` or ``error`` (what is wrong with it)."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None

    def to_row(self, segments: bool = False) -> dict:
        p = self.prediction
        row = {
            "path": display_name(self.path),
            "speaker": p.speaker if p else None,
            "score": round(p.score, 6) if p else None,
            "top_k": [[n, round(s, 6)] for n, s in p.top_k] if p else [],
            "error": self.error,
            "mode": p.mode if p else None,
            "duration": round(p.duration, 3) if p else None,
            "n_crops": p.n_crops if p else 0,
            "speech": round(p.speech, 3) if p and p.speech is not None else None,
        }
        if segments:
            row["segments"] = p.segments if p else []
        return row


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def _open_for_decode(clip):
    """A source libsndfile can open: the path itself, or the bytes when the name is not valid UTF-8."""
    if isinstance(clip, str):
        try:
            clip.encode("utf-8")
        except UnicodeEncodeError:
            with open(clip, "rb") as f:
                return f.read()
    return clip


def load_speech(
    engine: Engine, clip, max_seconds: float | None = None, name: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode (unless already a (T,) array at ``engine.sample_rate``) and keep the speech.

    Returns ``(speech (T_kept,) float32, index (T_kept,) int64 positions in the clip or None when all was kept,
    T samples in the clip)``. Raises AudioError naming the clip for undecodable audio, no speech or too little.
    """
    label = display_name(clip) if name is None else str(name)
    if isinstance(clip, np.ndarray):
        wave = clip
    else:
        src = _open_for_decode(clip)
        if isinstance(src, bytes) and not isinstance(clip, bytes):  # undecodable file name: label by path
            try:
                wave = load_audio(src, engine.sample_rate, max_seconds=max_seconds)
            except AudioError as e:
                raise AudioError(label, e.reason) from e
        else:
            wave = load_audio(src, engine.sample_rate, max_seconds=max_seconds)
    speech, regions = speech_only(wave, label, engine.vad)
    index = None if speech is wave else regions.index()
    return speech, index, int(wave.shape[0])


@dataclass
class _Decoded:
    path: object
    crops: np.ndarray | None = None  # (N, crop) float32
    starts: np.ndarray | None = None  # (N,) int64, in the speech kept
    n_samples: int = 0  # in the file
    index: np.ndarray | None = None  # (T_kept,) positions of the kept speech in the file (None: all kept)
    error: str | None = None


@dataclass
class _Pending:
    """A decoded clip waiting for its crops to go through the model."""

    d: _Decoded
    sent: int = 0
    done: int = 0
    logits: dict = field(default_factory=dict)  # first crop index -> (k, K)
    emb: dict = field(default_factory=dict)  # first crop index -> (k, D)

    @property
    def n(self) -> int:
        return 0 if self.d.crops is None else len(self.d.crops)


class _Inline:
    """Executor stand-in for no threads: run in the calling thread."""

    def submit(self, fn, *args):
        f: Future = Future()
        f.set_result(fn(*args))
        return f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Identifier:
    """Engine + optional registry + options: ``identify(clip) -> Prediction``, ``identify_files(items)``.

    ``registry``: a SpeakerRegistry, a path, or "auto" (``registry.resolve``: the engine's default registry if
    it exists, else the registry bundled with the shipped model, else none). A registry made with another
    model is refused (RegistryError).
    """

    def __init__(
        self,
        engine: Engine,
        registry: SpeakerRegistry | str | os.PathLike | None = "auto",
        options: InferenceOptions | None = None,
    ):
        from .registry import resolve

        self.engine = engine
        self.options = options or InferenceOptions()
        source = None
        if registry == "auto":
            loc = resolve(engine)
            registry = SpeakerRegistry.load(loc.read) if loc.read is not None else None
        elif registry is not None and not isinstance(registry, SpeakerRegistry):
            source, registry = registry, SpeakerRegistry.load(registry)
        if registry is not None:
            registry.check_model(engine, source)
        self.registry: SpeakerRegistry | None = registry

    @property
    def mode(self) -> str:
        if self.options.mode != "auto":
            return self.options.mode
        return "registry" if self.registry is not None and len(self.registry) else "classes"

    @property
    def threshold(self) -> float:
        if self.options.threshold is not None:
            return self.options.threshold
        return self.registry.threshold if self.registry is not None else self.engine.threshold

    def load(self, clip) -> np.ndarray:
        """Decode + validate a clip to (T,) at the engine's rate (raises AudioError naming the problem)."""
        if isinstance(clip, np.ndarray):
            return clip
        return load_audio(clip, self.engine.sample_rate, max_seconds=self.options.max_seconds)

    def identify(self, clip, name: str | None = None) -> Prediction:
        """A path, bytes, or (T,) float32 waveform at ``engine.sample_rate`` -> Prediction of its speech.

        ``name`` labels an in-memory clip in errors. Raises AudioError (bad audio, no or too little speech)."""
        d = self._decode(clip, name, raise_errors=True)
        logits, emb = self._run_batched(d.crops)
        return self.score(logits, emb, d.starts, d.n_samples, d.index)

    def embed(self, clip, name: str | None = None) -> np.ndarray:
        """Unit embedding (D,) of a clip's speech (what enrollment stores and registry mode ranks)."""
        d = self._decode(clip, name, raise_errors=True)
        _, emb = self._run_batched(d.crops)
        return _unit(emb.mean(0))

    def _run_batched(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bs = self.options.batch_size
        outs = [self.engine.run(crops[i : i + bs]) for i in range(0, len(crops), bs)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def _decode(self, clip, name=None, raise_errors: bool = False) -> _Decoded:
        """Decode + keep the speech + crop one clip; unless ``raise_errors``, every failure becomes an error
        string (one bad file never stops a batch)."""
        o = self.options
        try:
            wave, index, n = load_speech(self.engine, clip, o.max_seconds, name)
            crops, starts = fixed_crops(wave, self.engine.crop, o.hop, o.max_crops)
            return _Decoded(clip, np.ascontiguousarray(crops), starts, n, index)
        except AudioError as e:
            if raise_errors:
                raise
            return _Decoded(clip, error=e.reason)
        except MemoryError:
            if raise_errors:
                raise
            return _Decoded(clip, error="out of memory while decoding (file too large; try --max-seconds)")
        except OSError as e:
            if raise_errors:
                raise
            return _Decoded(clip, error=f"cannot read file ({e.strerror or e})")
        except Exception as e:  # a decoder bug must not stop the run either
            if raise_errors:
                raise
            return _Decoded(clip, error=f"cannot decode audio ({type(e).__name__}: {e})")

    def score(
        self,
        logits: np.ndarray,
        emb: np.ndarray,
        starts: np.ndarray,
        n_samples: int,
        index: np.ndarray | None = None,
    ) -> Prediction:
        """Aggregate per-crop model outputs (N, K) / (N, D) of one clip into a Prediction.

        ``starts`` (N,) are crop starts in the speech that was cropped; ``index`` (T_kept,) maps its samples to
        positions in the clip of ``n_samples`` samples (None: nothing was dropped)."""
        o, sr, crop = self.options, self.engine.sample_rate, self.engine.crop
        n_kept = n_samples if index is None else len(index)
        mode = self.mode
        e = _unit(emb.mean(0))
        logp = _log_softmax(logits.astype(np.float64))
        if mode == "registry":
            if self.registry is None or not len(self.registry):
                raise ValueError("registry mode needs enrolled speakers")
            ranked = self.registry.scores(e)
            best, score = ranked[0]
            speaker = best if score >= self.threshold else UNKNOWN
            crop_ranked = [self.registry.scores(x)[0] for x in _unit(emb)] if o.segments else []
        else:
            probs = np.exp(_log_softmax(logp.mean(0)))
            order = np.argsort(-probs, kind="stable")
            ranked = [(self.engine.labels[i], float(probs[i])) for i in order]
            speaker, score = ranked[0]
            crop_ranked = [(self.engine.labels[int(np.argmax(lp))], float(np.exp(lp.max()))) for lp in logp]
        segments = []
        if o.segments:
            for s, (name, sc) in zip(starts, crop_ranked):
                if mode == "registry" and sc < self.threshold:
                    name = UNKNOWN
                a, b = int(s), min(int(s) + crop, n_kept)
                if index is not None:  # back to the clip's time line (dropped silence is not a segment)
                    a, b = int(index[a]), int(index[b - 1]) + 1
                segments.append(
                    {
                        "start": round(a / sr, 3),
                        "end": round(b / sr, 3),
                        "speaker": name,
                        "score": round(sc, 6),
                    }
                )
        return Prediction(
            speaker=speaker,
            score=float(score),
            top_k=ranked[: o.top_k],
            mode=mode,
            duration=n_samples / sr,
            n_crops=len(starts),
            embedding=e,
            segments=segments,
            speech=n_kept / sr,
            crop_logp=logp,
        )

    def identify_files(
        self, items: Iterable, workers: int = 2, batch_size: int | None = None
    ) -> Iterator[FileResult]:
        """Yield a FileResult per item, in input order, as soon as it is done.

        ``items``: clips (paths, bytes, (T,) arrays) or ``(clip, error or None)`` pairs as from
        ``speakerid.audio.discover`` (an item with an error is reported, not decoded). Decoding runs in
        ``workers`` threads (0: inline), ahead of the model by at most ``2 * workers`` clips. The model runs
        on batches of up to ``batch_size`` crops (default ``options.batch_size``) drawn from consecutive clips,
        with up to ``engine.workers`` calls in flight at once. Each clip's crops are aggregated by
        :meth:`score`, as in :meth:`identify`, so both give the same answer.
        """
        engine = self.engine
        bs = max(1, int(batch_size or self.options.batch_size))
        n_model = max(1, int(engine.workers))
        ahead = max(2, 2 * workers)
        todo = deque(it if isinstance(it, tuple) else (it, None) for it in items)
        futures: deque = deque()  # decode jobs, in input order
        waiting: deque[_Pending] = deque()  # decoded clips whose crops are not all scored yet
        inflight: deque = deque()  # (model call future, [(clip, first crop, n crops)])
        queued = 0  # crops decoded but not yet sent to the model
        pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") if workers > 0 else _Inline()
        )
        runner = (
            ThreadPoolExecutor(max_workers=n_model, thread_name_prefix="model") if n_model > 1 else _Inline()
        )
        with pool, runner:

            def refill() -> None:
                while todo and len(futures) < ahead:
                    clip, err = todo.popleft()
                    if err is not None:
                        f: Future = Future()
                        f.set_result(_Decoded(clip, error=err))
                        futures.append(f)
                    else:
                        futures.append(pool.submit(self._decode, clip))

            def collect() -> None:
                fut, parts = inflight.popleft()
                logits, emb = fut.result()  # a model failure propagates: it is not one file's fault
                off = 0
                for p, a, k in parts:
                    p.logits[a] = logits[off : off + k]
                    p.emb[a] = emb[off : off + k]
                    p.done += k
                    off += k

            refill()
            while futures or waiting:
                while futures and queued < bs:
                    p = _Pending(futures.popleft().result())
                    refill()
                    waiting.append(p)
                    queued += p.n
                submitted = False
                if queued >= bs or (not futures and queued):
                    # One model call over the next crops, possibly from several clips. At the tail, split what
                    # is left over the idle model workers so they all get some.
                    free = max(1, n_model - len(inflight))
                    take = min(bs, queued if futures else -(-queued // free))
                    parts = []
                    for p in waiting:
                        k = min(take, p.n - p.sent)
                        if k > 0:
                            parts.append((p, p.sent, k))
                            p.sent += k
                            take -= k
                        if take == 0:
                            break
                    x = np.concatenate([p.d.crops[a : a + k] for p, a, k in parts])  # (B, crop)
                    inflight.append((runner.submit(engine.run, x), parts))
                    queued -= len(x)
                    submitted = True
                while inflight and (len(inflight) >= n_model or not submitted or inflight[0][0].done()):
                    collect()
                    submitted = True  # waited once; go on filling
                while waiting and waiting[0].done == waiting[0].n:
                    p = waiting.popleft()
                    if p.d.error is not None:
                        yield FileResult(p.d.path, error=p.d.error)
                        continue
                    order = sorted(p.logits)
                    pred = self.score(
                        np.concatenate([p.logits[a] for a in order]),
                        np.concatenate([p.emb[a] for a in order]),
                        p.d.starts,
                        p.d.n_samples,
                        p.d.index,
                    )
                    p.d.crops = None
                    yield FileResult(p.d.path, prediction=pred)


def clip_embedding(engine: Engine, clip, options: InferenceOptions | None = None, name: str | None = None):
    """Unit embedding (D,) of a clip's speech (path, bytes or (T,) float32 array at engine.sample_rate)."""
    return Identifier(engine, registry=None, options=options).embed(clip, name)


def embed_clips(engine: Engine, clips, names=None, progress=None) -> tuple[np.ndarray, list[str]]:
    """Embed each clip's speech -> (unit embeddings (N, D) of the usable clips, ["<clip>: <problem>", ...]).

    ``clips``: paths, bytes or (T,) arrays; ``names`` label them in errors. Clips with no speech, too little
    speech or bad audio are reported, never embedded. ``progress`` is called once per clip. Crops of several
    clips share model calls (:meth:`Identifier.identify_files`)."""
    clips = list(clips)
    names = list(names) if names is not None else [display_name(c) for c in clips]
    ident = Identifier(engine, registry=None, options=InferenceOptions(mode="classes"))
    embs, errors = [], []
    for i, r in enumerate(ident.identify_files(clips, workers=0)):
        if r.error is not None:
            errors.append(f"{names[i]}: {r.error}")
        else:
            embs.append(r.prediction.embedding)
        if progress is not None:
            progress()
    return (np.stack(embs) if embs else np.zeros((0, 0), np.float32)), errors


def enroll(registry: SpeakerRegistry, name: str, clips, engine: Engine, overwrite: bool = False, names=None):
    """Embed each clip's speech with ``engine`` and add speaker ``name`` to ``registry`` (in memory; see
    ``SpeakerRegistry.update`` for files). Clips without speech or with bad audio are skipped and reported; if
    none is usable the speaker is not added (RegistryError). Returns ``{name, clips, errors}``."""
    from .registry import RegistryError, validate_name

    registry.check_model(engine)
    name = validate_name(name)
    if name in registry.speakers and not overwrite:
        raise RegistryError(f"speaker {name!r} is already enrolled (use overwrite to replace)")
    embs, errors = embed_clips(engine, clips, names)
    if not len(embs):
        raise RegistryError(f"no usable clip to enroll {name!r}: " + "; ".join(errors))
    registry.add(name, embs, overwrite=overwrite)
    return {"name": name, "clips": len(embs), "errors": errors}
