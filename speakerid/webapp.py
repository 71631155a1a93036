"""The Gradio demo (``python app.py`` / ``speakerid app``): record or upload speech, see who is speaking.

Pure glue: every clip goes through :mod:`speakerid.pipeline` (``Identifier``: decoding, validation, crops,
scoring) and :mod:`speakerid.registry` (enrollment, atomic saves), exactly as the CLI does. This module only
adds what a browser needs: upload/duration caps, readable error messages instead of tracebacks, a bounded
queue, and display (confidence bars, a waveform + spectrogram image from ``speakerid.figures``, a timeline).

Registry semantics (``speakerid.registry.resolve``, as the CLI): enrolled speakers are saved to
``registry_path`` (default: the engine's user registry, ``$SPEAKERID_HOME`` for the shipped model). Until that
file exists the registry bundled with the shipped model (its training speakers) is used read-only; the first
enrollment creates the file with only the new speaker (``with_bundled=True`` / ``--with-bundled``: with the
bundled speakers too), while removing a bundled speaker starts the file from the bundled speakers minus that one.
Every edit is a locked re-read + merge + atomic write (``SpeakerRegistry.update``), so speakers enrolled from a
CLI meanwhile are kept, and the app re-reads the file whenever it changed on disk. With no registry at all, the
model's own classes are ranked.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .audio import AUDIO_EXTENSIONS as _EXTENSIONS
from .audio import AudioError
from .engine import Engine
from .figures import figure_file, merge_segments, render_figure
from .pipeline import Identifier, InferenceOptions, Prediction, embed_clips
from .registry import PRETRAINED, UNKNOWN, RegistryError, SpeakerRegistry, resolve, validate_name
from .runtime import load_engine

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["build_app", "launch", "main", "AppConfig"]

DEFAULT_MAX_SECONDS = 120.0  # longer recordings are refused before decoding
DEFAULT_MAX_UPLOAD_MB = 32.0  # per file; enforced by Gradio's upload route and again in the handlers
DEFAULT_CONCURRENCY = 2  # requests run at once (2 CPU cores); the rest wait in the queue
DEFAULT_QUEUE_SIZE = 64  # waiting requests beyond this are refused with "queue is full"
TIMELINE_MIN_SECONDS = 2.0  # recordings at least this long also get a who-speaks-when timeline
AUDIO_EXTENSIONS = sorted(_EXTENSIONS)  # what uploads and sample folders may hold (speakerid.audio decodes)
UNKNOWN_LABEL = "unknown speaker"

_THEME_FONT = ["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"]  # no web fonts
_THEME_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
_CSS = """
#verdict .output-class { font-size: 1.9rem; }
#verdict dd.confidence { display: none; }  /* the bars rank; the numbers, labelled, are in #details */
.speakerid-note { opacity: 0.75; font-size: 0.9rem; }
"""
REFUSED_PATH = (
    "Refused: only files uploaded to this app are read, not paths on the server. Upload the file (with "
    "gradio_client: handle_file(path))."
)


@dataclass(frozen=True)
class AppConfig:
    """Limits and launch settings that build_app attaches to the Blocks for :func:`launch`."""

    max_seconds: float
    max_upload_mb: float
    concurrency: int
    queue_size: int
    allowed_paths: tuple[str, ...]


def _gradio():
    """Import Gradio (an optional dependency) with an actionable error."""
    try:
        import gradio
    except ImportError as e:
        raise ImportError("the web demo needs Gradio: pip install 'speakerid[app]'") from e
    return gradio


@cache
def _speaker_label_class():
    """gr.Label whose heading can differ from the top bar: "unknown speaker" above the closest matches."""
    gr = _gradio()
    import gradio.component_meta as component_meta
    from gradio.components.label import LabelData

    # Gradio writes a .pyi stub next to the module of every Component subclass it sees (into the installed
    # package, at runtime); we want no files written, so skip that for this one class.
    write_stub = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:

        class SpeakerLabel(gr.Label):
            is_template = True  # rendered by the frontend's Label component

            def postprocess(self, value):
                if isinstance(value, LabelData):
                    return value
                return super().postprocess(value)

    finally:
        component_meta.create_or_modify_pyi = write_stub
    return SpeakerLabel


@cache
def _blocks_class():
    """gr.Blocks whose API refuses server paths and malformed file inputs with a clear message.

    Gradio checks file inputs before any handler runs: a path it did not receive as an upload raises
    InvalidPathError, a value that is not a file object a pydantic ValidationError. Both would print a
    traceback in the server log and send the client ``{"error": null}``; here they become gr.Error messages.
    """
    gr = _gradio()
    import pydantic
    from gradio.exceptions import InvalidPathError

    class SpeakerBlocks(gr.Blocks):
        async def preprocess_data(self, *args, **kwargs):
            try:
                return await super().preprocess_data(*args, **kwargs)
            except InvalidPathError:
                raise gr.Error(REFUSED_PATH, print_exception=False) from None
            except pydantic.ValidationError as e:
                got = type(e.errors()[0].get("input")).__name__ if e.errors() else "?"
                raise gr.Error(
                    f"Refused: a file input must be an uploaded file, not a value of type {got}. With "
                    "gradio_client, pass handle_file(path).",
                    print_exception=False,
                ) from None

    return SpeakerBlocks


def md_escape(text: str) -> str:
    """Backslash-escape Markdown (CommonMark) punctuation, so that names are shown as typed, never rendered."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", str(text))


# --------------------------------------------------------------------------------------------------------------
# The app's state: one engine, one registry, library calls only


def _display_name(path) -> str:
    return Path(str(path)).name


def _message(e: Exception) -> str:
    """A one-line message for the UI (file name, not the server's temp path)."""
    if isinstance(e, AudioError):
        msg = f"{_display_name(e.source)}: {e.reason}" if e.source else e.reason[:1].upper() + e.reason[1:]
        if e.reason.startswith("cannot decode"):
            msg += ". Supported formats: WAV, FLAC, OGG, MP3."
        return msg
    return str(e)


def _provider_text(provider: str) -> str:
    p = provider.lower()
    kind = "CUDA (GPU)" if ("cuda" in p or "gpu" in p) else "CPU"
    runtime = "ONNX Runtime" if "executionprovider" in p or "onnx" in p else "PyTorch"
    return f"{kind} · {runtime} (`{provider}`)"


class SpeakerApp:
    """What the Gradio handlers call. Thread-safe: registry edits are serialised and swap in a new Identifier."""

    def __init__(
        self,
        engine: Engine,
        registry_path: str | os.PathLike | None,
        options: InferenceOptions,
        max_upload_mb: float,
        with_bundled: bool = False,
    ):
        self.engine = engine
        self.options = options
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_upload_mb = max_upload_mb
        self.location = resolve(engine, registry_path)
        self.registry_path = self.location.path
        self.bundled_path = self.location.bundled
        self.with_bundled = with_bundled
        self._lock = threading.Lock()
        self._seen = None  # (mtime_ns, size, inode) of the registry file the identifier was built from
        try:
            self._reload()
        except RegistryError as e:
            raise RegistryError(f"{e} (move {self.registry_path} away or pass another --registry)") from e

    # -- registry -----------------------------------------------------------------------------------------
    def _stat(self):
        try:
            st = os.stat(self.registry_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload(self) -> None:
        seen = self._stat()
        if seen is not None:
            reg = SpeakerRegistry.load(self.registry_path)
            reg.check_model(self.engine, self.registry_path)
        elif self.bundled_path is not None:
            reg = SpeakerRegistry.load(self.bundled_path)
        else:
            reg = None
        self.identifier = Identifier(self.engine, reg, self.options)
        self._seen = seen

    def refresh(self) -> None:
        """Re-read the registry if the file changed on disk (a CLI enrolled or removed someone)."""
        if self._stat() != self._seen:
            with self._lock:
                if self._stat() != self._seen:
                    self._reload()

    @property
    def registry(self) -> SpeakerRegistry | None:
        self.refresh()
        return self.identifier.registry

    def registry_source(self) -> str:
        if self.registry_path.is_file():
            return f"`{self.registry_path}`"
        if self.bundled_path is not None:
            return f"bundled with the model (`{self.bundled_path}`, read-only)"
        return "none yet (the model's own classes are used)"

    def _update(self, change, with_bundled: bool):
        """Locked re-read + change + atomic write of the registry file; the app then uses what was written."""
        with self._lock:
            reg, result = SpeakerRegistry.update(self.registry_path, self.engine, change, with_bundled)
            self.identifier = Identifier(self.engine, reg, self.options)
            self._seen = self._stat()
        return reg, result

    def speakers(self) -> list[list]:
        reg = self.registry
        return [[s["name"], s["clips"]] for s in reg.summary()] if reg is not None else []

    def enroll(self, name: str, paths: list[str], overwrite: bool = False) -> dict:
        """Validate the clips (same caps as identification), embed their speech and save. Raises
        RegistryError. Embedding happens before the registry is locked; the write merges with the file."""
        name = validate_name(name or "")
        if not paths:
            raise RegistryError("add at least one clip of the speaker (upload files or record one)")
        waves, labels, errors = [], [], []
        for p in paths:
            try:
                waves.append(self.load(p))
                labels.append(_display_name(p))
            except AudioError as e:
                errors.append(_message(e))
        if not waves:
            raise RegistryError(f"no usable clip to enroll {name!r}: " + "; ".join(errors))
        embs, bad = embed_clips(self.engine, waves, labels)
        if not len(embs):
            raise RegistryError(f"no usable clip to enroll {name!r}: " + "; ".join(errors + bad))
        self._update(lambda r: r.add(name, embs, overwrite=overwrite), self.with_bundled)
        return {"name": name, "clips": len(embs), "errors": errors + bad}

    def remove(self, name: str) -> str:
        if not name:
            raise RegistryError("choose a speaker to remove")
        # Removing a speaker the user sees in the bundled registry starts the file from those speakers.
        showing_bundled = not self.registry_path.is_file() and self.bundled_path is not None
        _, removed = self._update(lambda r: r.remove(name), self.with_bundled or showing_bundled)
        return removed[0]

    # -- identification ------------------------------------------------------------------------------------
    def load(self, path) -> np.ndarray:
        """Size cap, then the library's decode + validation (duration cap, empty, silent, too short...)."""
        if path is None:
            raise AudioError("", "no audio: record with the microphone or upload a file first")
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        if size > self.max_upload_bytes:
            raise AudioError(
                path, f"file too large: {size / 1048576:.1f} MB (limit {self.max_upload_mb:g} MB)"
            )
        return self.identifier.load(str(path))

    def identify(self, path) -> tuple[np.ndarray, Prediction]:
        wave = self.load(path)
        self.refresh()
        return wave, self.identifier.identify(wave, name=_display_name(path))


# --------------------------------------------------------------------------------------------------------------
# Gradio handlers: convert library results and errors into component values


def _label_value(pred: Prediction):
    """A gradio LabelData: heading "unknown speaker" or the speaker, bars for the top-k scores."""
    from gradio.components.label import LabelConfidence, LabelData

    heading = UNKNOWN_LABEL if pred.speaker == UNKNOWN else pred.speaker
    conf = [LabelConfidence(label=n, confidence=float(np.clip(s, 0.0, 1.0))) for n, s in pred.top_k]
    return LabelData(label=heading, confidences=conf)


def _details(app: SpeakerApp, pred: Prediction) -> str:
    """The answer in words, and each top-k score labelled with what it is (cosine similarity or probability)."""
    crop_s = app.engine.crop / app.engine.sample_rate
    used = f"{pred.duration:.2f} s of audio ({pred.n_crops} crop{'s' if pred.n_crops != 1 else ''} of {crop_s:.2f} s"
    used += (
        ", evenly spread)" if pred.n_crops * app.engine.crop < pred.duration * app.engine.sample_rate else ")"
    )
    if pred.mode == "registry":
        n = len(app.registry or [])
        against = f"{n} enrolled speaker{'s' if n != 1 else ''}"
        thr = app.identifier.threshold
        if pred.speaker == UNKNOWN:
            best, score = pred.top_k[0]
            head = (
                f"### Unknown speaker\nThe closest enrolled voice, **{md_escape(best)}** (cosine similarity "
                f"{score:.2f}), is below the threshold {thr:.2f}. Add this voice in the **Enroll** tab to "
                f"recognise it."
            )
        else:
            head = (
                f"### {md_escape(pred.speaker)}\nCosine similarity **{pred.score:.2f}**, above the threshold "
                f"{thr:.2f}."
            )
        table = f"| Speaker | Cosine similarity | Threshold {thr:.2f} |\n|---|---|---|\n" + "\n".join(
            f"| {md_escape(name)} | {s:.2f} | {'above' if s >= thr else 'below'} |" for name, s in pred.top_k
        )
        note = (
            "Scores are cosine similarities between this clip's voice embedding and each enrolled speaker "
            "(1 = same direction), not probabilities; below the threshold the answer is *unknown speaker*."
        )
    else:
        against = f"the model's {len(app.engine.labels)} training speakers"
        head = f"### {md_escape(pred.speaker)}\nProbability **{pred.score:.0%}**."
        table = "| Speaker | Probability |\n|---|---|\n" + "\n".join(
            f"| {md_escape(name)} | {s:.1%} |" for name, s in pred.top_k
        )
        note = "Scores are the model's class probabilities (softmax over its training speakers)."
    return f"{head}\n\n{table}\n\n{note}\n\n- Audio used: {used}\n- Compared with: {against}"


def _timeline_rows(segments: list[dict]) -> list[list]:
    return [
        [round(s["start"], 2), round(s["end"], 2), UNKNOWN_LABEL if s["speaker"] == UNKNOWN else s["speaker"],
         round(s["score"], 3)]
        for s in merge_segments(segments)
    ]  # fmt: skip


def _speaker_choices(app: SpeakerApp) -> list[str]:
    return [r[0] for r in app.speakers()]


def _registry_markdown(app: SpeakerApp) -> str:
    reg = app.registry
    n = len(reg) if reg is not None else 0
    thr = (
        f'; answers below cosine similarity {app.identifier.threshold:.2f} are "{UNKNOWN_LABEL}"' if n else ""
    )
    return f"**{n}** enrolled speaker{'s' if n != 1 else ''}{thr}. Registry: {app.registry_source()}."


def _model_markdown(app: SpeakerApp, cfg: AppConfig) -> str:
    d = app.engine.describe()
    src = Path(d["model"])
    kind = "ONNX file" if src.suffix == ".onnx" else "PyTorch checkpoint"
    shipped = " (the shipped default model)" if src.parent == PRETRAINED else ""
    classes = ", ".join(md_escape(c) for c in d["classes"])
    reg = app.registry
    rows = [
        ("Model file", f"`{src}`{shipped}"),
        ("Format", kind),
        ("Architecture", f"`{d['name'] or '?'}`"),
        ("Fingerprint", f"`{d['fingerprint']}`"),
        ("Classes", f"{len(d['classes'])}: {classes}"),
        ("Provider", _provider_text(d["provider"])),
        ("Parameters", f"{d['parameters']:,}"),
        ("Input", f"{d['sample_rate']} Hz mono, {d['crop_samples']}-sample crops "
                  f"({d['crop_samples'] / d['sample_rate']:.3f} s)"),
        ("Enrolled speakers", f"{len(reg) if reg is not None else 0} · {app.registry_source()}"),
        ("Unknown threshold", f"{app.identifier.threshold:.3f} (cosine similarity)"),
        ("Limits", f"{cfg.max_seconds:g} s and {cfg.max_upload_mb:g} MB per file; {cfg.concurrency} requests "
                   f"at once, {cfg.queue_size} waiting at most"),
    ]  # fmt: skip
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"| Item | Value |\n|---|---|\n{body}"


def _sample_clips(engine: Engine) -> list[Path]:
    """Example clips: ``samples/`` beside the model, else the shipped model's samples."""
    for d in (engine.source.parent / "samples", PRETRAINED / "samples"):
        if d.is_dir():
            clips = sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
            if clips:
                return clips
    return []


def _example_label(p: Path) -> str:
    stem, _, n = p.stem.rpartition("_")
    return f"{stem} #{n}" if stem and n.isdigit() else p.stem


def build_app(
    engine_or_model: Engine | str | os.PathLike | None = None,
    registry_path: str | os.PathLike | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    top_k: int = 5,
    threshold: float | None = None,
    device: str = "auto",
    with_bundled: bool = False,
) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (not launched; use :func:`launch` to apply the upload cap and theme).

    ``engine_or_model``: a loaded Engine, a checkpoint/ONNX path, or None for the shipped model.
    ``registry_path``: where enrolled speakers are saved (default: the engine's user registry).
    ``threshold``: override the registry's calibrated "unknown" threshold.
    ``with_bundled``: a registry created by the app's first enrollment starts with the bundled speakers.
    """
    gr = _gradio()
    if max_seconds <= 0 or max_upload_mb <= 0 or concurrency < 1 or queue_size < 1 or top_k < 1:
        raise ValueError(
            "max_seconds and max_upload_mb must be > 0, concurrency, queue_size and top_k >= 1; got "
            f"{max_seconds=}, {max_upload_mb=}, {concurrency=}, {queue_size=}, {top_k=}"
        )
    engine = (
        engine_or_model
        if isinstance(engine_or_model, Engine)
        else load_engine(engine_or_model, device=device)
    )
    options = InferenceOptions(top_k=top_k, segments=True, max_seconds=max_seconds, threshold=threshold)
    app = SpeakerApp(engine, registry_path, options, max_upload_mb, with_bundled)
    samples = _sample_clips(engine)
    cfg = AppConfig(
        max_seconds=max_seconds,
        max_upload_mb=max_upload_mb,
        concurrency=concurrency,
        queue_size=queue_size,
        allowed_paths=tuple(sorted({str(p.parent) for p in samples})),
    )

    # -- handlers (named: Gradio's API endpoints carry these names) ----------------------------------------
    def identify(audio_path):
        """Identify the speaker of one recording or uploaded file."""
        try:
            wave, pred = app.identify(audio_path)
        except (AudioError, RegistryError) as e:
            raise gr.Error(_message(e), print_exception=False) from None
        long = pred.duration >= TIMELINE_MIN_SECONDS and len(pred.segments) > 1
        image = figure_file(render_figure(wave, engine.sample_rate, pred.segments if long else None))
        return (
            _label_value(pred),
            _details(app, pred),
            image,
            gr.Dataframe(value=_timeline_rows(pred.segments) if long else [], visible=long),
        )

    def enroll(name, files, recording, overwrite):
        """Enroll a speaker from uploaded files and/or a recording."""
        paths = [f if isinstance(f, str) else getattr(f, "name", f) for f in (files or [])]
        if recording:
            paths.append(recording)
        try:
            summary = app.enroll(name, paths, overwrite=bool(overwrite))
        except (RegistryError, AudioError) as e:
            raise gr.Error(_message(e), print_exception=False) from None
        n_clips = summary["clips"]
        msg = f"Enrolled **{md_escape(summary['name'])}** from {n_clips} clip{'s' if n_clips != 1 else ''}."
        if summary["errors"]:
            msg += " Skipped: " + "; ".join(md_escape(e) for e in summary["errors"])
        names = _speaker_choices(app)
        return (
            f"{msg}\n\n{_registry_markdown(app)}",
            app.speakers(),
            gr.Dropdown(choices=names, value=None, allow_custom_value=True),
        )

    def remove_speaker(name):
        """Remove an enrolled speaker."""
        try:
            clean = app.remove(name)
        except RegistryError as e:
            raise gr.Error(_message(e), print_exception=False) from None
        return (
            f"Removed **{md_escape(clean)}**.\n\n{_registry_markdown(app)}",
            app.speakers(),
            gr.Dropdown(choices=_speaker_choices(app), value=None, allow_custom_value=True),
        )

    def list_speakers():
        """Enrolled speakers and registry status."""
        return (
            _registry_markdown(app),
            app.speakers(),
            gr.Dropdown(choices=_speaker_choices(app), value=None, allow_custom_value=True),
        )

    def model_info():
        """The loaded model: file, classes, provider, parameter count, registry."""
        return _model_markdown(app, cfg), engine.describe()

    # -- layout --------------------------------------------------------------------------------------------
    d = engine.describe()
    with _blocks_class()(
        title="speakerid: who is speaking?", analytics_enabled=False, delete_cache=(1800, 3600)
    ) as demo:
        gr.Markdown(
            "# speakerid: who is speaking?\n"
            f"Record or upload speech and the speaker-ID model `{d['name'] or Path(d['model']).name}` "
            f"tells you who is speaking. Add new voices in the **Enroll** tab."
        )
        with gr.Tabs():
            with gr.Tab("Identify", id="identify"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        audio = gr.Audio(
                            sources=["upload", "microphone"],
                            type="filepath",
                            label="Speech: record or upload (WAV, FLAC, OGG, MP3)",
                            elem_id="audio-in",
                        )
                        with gr.Row():
                            clear_btn = gr.ClearButton(value="Clear")
                            run_btn = gr.Button("Identify speaker", variant="primary", elem_id="identify-btn")
                        gr.Markdown(
                            f"Any sample rate, mono or stereo; up to {max_seconds:g} s and {max_upload_mb:g} MB.",
                            elem_classes="speakerid-note",
                        )
                    with gr.Column(scale=5):
                        label = _speaker_label_class()(
                            num_top_classes=top_k,
                            label="Who is speaking",
                            elem_id="verdict",
                            show_heading=True,
                        )
                        details = gr.Markdown(elem_id="details")
                figure = gr.Image(
                    label="Waveform and spectrogram",
                    type="filepath",
                    format="png",
                    interactive=False,
                    elem_id="figure",
                )
                timeline = gr.Dataframe(
                    headers=["start (s)", "end (s)", "speaker", "score"],
                    datatype=["number", "number", "str", "number"],
                    label="Who speaks when",
                    visible=False,
                    interactive=False,
                    elem_id="timeline",
                )
                outputs = [label, details, figure, timeline]
                if samples:
                    gr.Examples(
                        examples=[[str(p)] for p in samples],
                        inputs=[audio],
                        outputs=outputs,
                        fn=identify,
                        run_on_click=True,
                        cache_examples=False,
                        example_labels=[_example_label(p) for p in samples],
                        label="Example clips (click one to identify it)",
                        examples_per_page=max(10, len(samples)),
                    )
                clear_btn.add([audio, label, details, figure])
                run_btn.click(identify, inputs=[audio], outputs=outputs, api_name="identify")

            with gr.Tab("Enroll", id="enroll"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        name = gr.Textbox(label="Speaker name", placeholder="e.g. Ada", max_lines=1)
                        files = gr.File(
                            file_count="multiple",
                            file_types=AUDIO_EXTENSIONS,
                            label="A few clips of this speaker (each 1 s or more works best)",
                            elem_id="enroll-files",
                        )
                        recording = gr.Audio(
                            sources=["microphone", "upload"], type="filepath", label="...or record a clip"
                        )
                        overwrite = gr.Checkbox(label="Replace the speaker if the name is already enrolled")
                        enroll_btn = gr.Button("Enroll speaker", variant="primary")
                    with gr.Column(scale=5):
                        status = gr.Markdown(_registry_markdown(app))
                        table = gr.Dataframe(
                            value=app.speakers(),
                            headers=["speaker", "clips"],
                            datatype=["str", "number"],
                            label="Enrolled speakers",
                            interactive=False,
                            elem_id="speakers",
                        )
                        with gr.Row():
                            who = gr.Dropdown(
                                choices=_speaker_choices(app), label="Remove a speaker", scale=3
                            )
                            remove_btn = gr.Button("Remove", variant="stop", scale=1)
                enroll_btn.click(
                    enroll,
                    inputs=[name, files, recording, overwrite],
                    outputs=[status, table, who],
                    api_name="enroll",
                    concurrency_limit=1,
                )
                remove_btn.click(
                    remove_speaker, inputs=[who], outputs=[status, table, who], api_name="remove_speaker",
                    concurrency_limit=1,
                )  # fmt: skip

            with gr.Tab("Model", id="model") as model_tab:
                model_md = gr.Markdown(_model_markdown(app, cfg), elem_id="model-info")
                model_json = gr.JSON(value=d, label="engine.describe()")

        demo.load(list_speakers, outputs=[status, table, who], api_name="list_speakers")
        demo.load(model_info, outputs=[model_md, model_json], api_name="model_info")
        model_tab.select(model_info, outputs=[model_md, model_json], api_visibility="private")  # fresh counts

    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.speakerid_config = cfg  # read by launch()
    demo.speakerid_app = app
    return demo


def _theme():
    return _gradio().themes.Soft(primary_hue="indigo", font=_THEME_FONT, font_mono=_THEME_MONO)


def launch(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    block: bool = True,
    quiet: bool = False,
):
    """Serve ``demo`` with its upload cap, example-clip folder and theme. Returns Gradio's (app, url, share_url)."""
    cfg: AppConfig = getattr(demo, "speakerid_config", None) or AppConfig(
        DEFAULT_MAX_SECONDS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_CONCURRENCY, DEFAULT_QUEUE_SIZE, ()
    )
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        max_file_size=f"{int(cfg.max_upload_mb * 1024)}kb",
        allowed_paths=list(cfg.allowed_paths),
        theme=_theme(),
        css=_CSS,
        footer_links=["api"],
        ssr_mode=False,
        quiet=quiet,
        show_error=False,  # unexpected exceptions: "Error" in the UI, the traceback only in the server log
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="app.py" if Path(sys.argv[0]).name == "app.py" else "speakerid app",
        description="Gradio demo: identify speakers from recordings or uploads, enroll new speakers.",
    )
    p.add_argument("--model", default=None, help="checkpoint (.pt) or ONNX file; default: the shipped model")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    p.add_argument(
        "--registry", default=None, help="registry file for enrolled speakers (default: the model's)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="longest recording accepted"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload accepted"
    )
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests processed at once")
    p.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE, help="requests allowed to wait")
    p.add_argument("--top-k", type=int, default=5, help="speakers listed per answer")
    p.add_argument("--threshold", type=float, default=None, help="override the calibrated unknown threshold")
    p.add_argument(
        "--with-bundled",
        action="store_true",
        help="a registry created by the first enrollment starts with the model's bundled speakers",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="PyTorch CPU threads (default 1: the small recurrent models run fastest single-threaded, "
        "and concurrent requests use the other cores); 0 keeps PyTorch's default",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        demo = build_app(
            args.model,
            registry_path=args.registry,
            max_seconds=args.max_seconds,
            max_upload_mb=args.max_upload_mb,
            concurrency=args.concurrency,
            queue_size=args.queue_size,
            top_k=args.top_k,
            threshold=args.threshold,
            device=args.device,
            with_bundled=args.with_bundled,
        )
    except (ImportError, OSError, ValueError) as e:  # no gradio, CheckpointError, RegistryError, bad limits
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        launch(demo, host=args.host, port=args.port, share=args.share, block=True)
    except OSError as e:  # port in use, cannot bind
        print(f"error: cannot start the server on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0
