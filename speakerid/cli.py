"""The ``speakerid`` console script (and ``train.py``): thin argparse layers over library calls."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["main", "train_main", "quiet_on_closed_pipe"]

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away
EXIT_COLLAPSED = 3  # train.py --fail-on-collapse: the trained model learned nothing


def quiet_on_closed_pipe(fn: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI entry point so that a closed stdout (``speakerid ... | head``) ends it quietly.

    The reader is gone, so there is nobody to tell: no "error: [Errno 32] Broken pipe", no "Exception ignored"
    from the interpreter's final flush; the exit status is 141, as for a command killed by SIGPIPE.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> int:
        try:
            rc = fn(*args, **kwargs)
            sys.stdout.flush()
            return rc
        except BrokenPipeError:
            try:  # later flushes (at exit) write to /dev/null instead of failing again
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass
            return EXIT_CLOSED_PIPE

    return wrapper


# --------------------------------------------------------------------------------------------------------------
# train


@quiet_on_closed_pipe
def train_main(argv: list[str] | None = None) -> int:
    from .config import override, show
    from .training import CONFIGS, get_config

    try:
        from .tasks import EXPERIMENTS  # the paper's secondary benchmarks
    except ImportError:
        EXPERIMENTS = {}
    p = argparse.ArgumentParser(
        prog="train.py",
        allow_abbrev=False,
        description="Train a speaker-ID model (Table 3 configs, the shipped default) or a paper benchmark.",
        epilog="Any other --key value overrides that field of the config (see --show-config).",
    )
    p.add_argument("--config", default="fsdd-default", help="named config (see --list)")
    p.add_argument("--resume", action="store_true", help="continue the run in the config's out folder")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--list", action="store_true", help="list the named configs and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--fail-on-collapse",
        action="store_true",
        help=f"exit with status {EXIT_COLLAPSED} when the trained model collapsed (one class, or chance)",
    )
    args, rest = p.parse_known_args(argv)
    if args.list:
        for name, c in CONFIGS.items():
            print(f"{name:28s} model={c.model_config(n_classes=1).name}")
        for name, e in EXPERIMENTS.items():
            print(f"{name:28s} model={e.describe()} (paper benchmark)")
        return 0
    if args.config in EXPERIMENTS:
        from .tasks import run_experiment_cli

        return run_experiment_cli(
            args.config, rest, show_config=args.show_config, resume=args.resume, progress=not args.no_progress
        )
    try:
        cfg = override(get_config(args.config), rest)
    except ValueError as e:
        if args.config not in CONFIGS and EXPERIMENTS:
            e = ValueError(f"{e}; paper benchmarks: {', '.join(EXPERIMENTS)}")
        p.error(str(e))
    from .training import budget, format_budget, train

    if args.show_config:
        try:
            spend = budget(cfg)
        except (FileNotFoundError, ValueError) as e:
            spend = f"unknown until --data names a prepared dataset ({e})"
        print(show(cfg, builds=cfg.model_config(n_classes=1).name, budget=spend))
        if isinstance(spend, dict):
            print(format_budget(spend), file=sys.stderr)
        return 0
    if not cfg.data:
        p.error(f"config {cfg.name} needs --data DIR (a folder made by `python -m data_prep`)")
    try:
        summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=2))
    collapse = summary.get("collapse") or {}
    if collapse.get("collapsed"):
        print(
            f"WARNING: the model COLLAPSED: {'; '.join(collapse['reasons'])}. No unknown-speaker threshold was "
            "calibrated; do not ship or enroll with it (more steps, another lr or a longer crop may help).",
            file=sys.stderr,
        )
        if args.fail_on_collapse:
            return EXIT_COLLAPSED
    return 0


# --------------------------------------------------------------------------------------------------------------
# evaluate / enroll / registry


def _cmd_evaluate(args) -> int:
    """Accuracy through the inference pipeline (as ``speakerid identify``); ``--eer``: open-set verification."""
    from .data import PreparedDataset
    from .evaluation import plot_confusion, write_report
    from .pipeline import Identifier, InferenceOptions
    from .runtime import load_engine

    data = PreparedDataset(args.data)
    if args.eer:  # open-set: the split's speakers need not be the model's classes
        import torch

        from .checkpoint import checkpoint_card, load_checkpoint, model_from_checkpoint
        from .evaluation import enrollment_eer

        ckpt = load_checkpoint(args.checkpoint)
        device = "cuda" if (args.device == "auto" and torch.cuda.is_available()) else args.device
        device = "cpu" if device == "auto" else device
        crop = checkpoint_card(ckpt, args.checkpoint).frontend.crop
        model = model_from_checkpoint(ckpt).to(device)
        rep = enrollment_eer(model, data, args.split, args.n_enroll, crop, device)
        print(json.dumps(rep, indent=2))
        return 0
    from .engine import cpu_count
    from .evaluation import evaluate_files

    engine = load_engine(args.checkpoint, device=args.device, workers=cpu_count())
    options = InferenceOptions(mode="classes", batch_size=args.batch_size, max_crops=args.max_crops or 256)
    identifier = Identifier(engine, registry=None, options=options)
    try:
        rep = evaluate_files(identifier, data, args.split, workers=args.workers, progress=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.checkpoint).with_suffix("").as_posix() + f"-{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    write_report(rep, out / "report.json")
    plot_confusion(rep["confusion"], rep["labels"], out / "confusion.png")
    keys = ("n_utterances", "n_crops", "crop_top1", "crop_top5", "utt_top1", "utt_top5", "utt_majority_acc")
    keys += ("decoded", "n_failed")
    print(json.dumps({k: rep[k] for k in keys} | {"report": str(out / "report.json")}, indent=2))
    return 0


def _cap_threads(n: int | None) -> int:
    """Torch intra-op threads for enroll/registry: ``n``, default min(4, usable cores); a shared machine is
    not taken over by one enrollment, and the small model gains nothing from more."""
    import torch

    from .engine import cpu_count

    n = n or min(4, cpu_count())
    torch.set_num_threads(max(1, n))
    return n


def _speaker_folders(root: str) -> list[tuple[str, list[str]]]:
    """``DIR/<speaker>/**/<audio>`` -> [(speaker, [files])], sorted; raises ValueError when there is none."""
    from .audio import find_audio

    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"{root}: not a folder (--from-folder wants one sub-folder of clips per speaker)")
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = find_audio(str(d))
        if files:
            out.append((d.name, files))
    if not out:
        raise ValueError(f"{root}: no sub-folder with audio files (expected {root}/<speaker>/<clips>)")
    return out


def _cmd_enroll(args) -> int:
    from tqdm import tqdm

    from .pipeline import embed_clips
    from .registry import RegistryError, SpeakerRegistry, resolve, validate_name
    from .runtime import load_engine

    if bool(args.from_folder) == bool(args.name or args.clips):
        print("error: give either --name NAME CLIPS... or --from-folder DIR", file=sys.stderr)
        return 2
    if args.name and not args.clips:
        print("error: --name needs at least one clip", file=sys.stderr)
        return 2
    _cap_threads(args.threads)
    engine = load_engine(args.model, device="cpu" if args.device == "auto" else args.device)
    loc = resolve(engine, args.registry)
    try:
        groups = _speaker_folders(args.from_folder) if args.from_folder else [(args.name, list(args.clips))]
        groups = [(validate_name(n), clips) for n, clips in groups]
    except (ValueError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Embed everything first (slow, no lock held), then one locked re-read + merge + atomic write.
    bar = tqdm(
        total=sum(len(c) for _, c in groups),
        unit="clip",
        disable=True if args.no_progress else None,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    embedded, errors, failed = {}, [], []
    for name, clips in groups:
        bar.set_postfix_str(name, refresh=False)
        embs, errs = embed_clips(engine, clips, progress=lambda: bar.update(1))
        errors += errs
        if len(embs):
            embedded[name] = embs
        else:
            failed.append(f"no usable clip to enroll {name!r}" + (": " + "; ".join(errs) if errs else ""))
    bar.close()
    for err in errors:
        print(f"skipped {err}", file=sys.stderr)
    for f in failed:
        print(f"error: {f}", file=sys.stderr)
    if not embedded:
        return 2
    existed = loc.path.is_file()

    def add_all(reg: SpeakerRegistry) -> list[str]:
        return [reg.add(n, e, overwrite=args.overwrite) for n, e in embedded.items()]

    try:
        reg, added = SpeakerRegistry.update(loc.path, engine, add_all, with_bundled=args.with_bundled)
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not existed:
        start = "the bundled speakers" if args.with_bundled and loc.bundled else "empty"
        print(f"created registry {loc.path} (started {start})", file=sys.stderr)
    summary = {
        "registry": str(loc.path),
        "enrolled": [{"name": n, "clips": len(embedded[n])} for n in added],
        "speakers": len(reg),
        "threshold": reg.threshold,
        "threshold_source": reg.threshold_source,
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0 if not errors and not failed else 1


def _cmd_registry(args) -> int:
    from .registry import RegistryError, SpeakerRegistry, resolve
    from .runtime import load_engine

    _cap_threads(args.threads)
    engine = load_engine(args.model, device="cpu")
    loc = resolve(engine, args.registry)
    if args.action == "remove":
        if not args.names:
            print("error: registry remove needs at least one speaker name", file=sys.stderr)
            return 2
        if not loc.path.is_file() and not args.with_bundled:
            print(
                f"error: {loc.path} does not exist yet, so there is nothing to remove"
                + (
                    " (to start it from the bundled speakers minus these, add --with-bundled)"
                    if loc.bundled
                    else ""
                ),
                file=sys.stderr,
            )
            return 2
        try:
            reg, removed = SpeakerRegistry.update(
                loc.path, engine, lambda r: r.remove(*args.names), with_bundled=args.with_bundled
            )
        except RegistryError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"removed {', '.join(removed)} from {loc.path}", file=sys.stderr)
        shown, bundled = loc.path, False
    elif args.names:
        print("error: registry list takes no speaker names", file=sys.stderr)
        return 2
    elif loc.read is None or not loc.read.is_file():
        if loc.explicit:
            print(f"error: {loc.path}: no such registry", file=sys.stderr)
            return 2
        reg, shown, bundled = None, None, False
    else:
        reg, shown, bundled = SpeakerRegistry.load(loc.read), loc.read, loc.is_bundled
        reg.check_model(engine, loc.read)
    out = {
        "registry": None if shown is None else str(shown),
        "bundled": bundled,
        "shown": loc.describe() if args.action == "list" else str(loc.path),
        "threshold": None if reg is None else reg.threshold,
        "threshold_source": None if reg is None else reg.threshold_source,
        "speakers": [] if reg is None else reg.summary(),
    }
    if bundled:
        out["note"] = (
            f"no registry at {loc.path} yet: these are the speakers bundled with the model (read-only). "
            "`speakerid enroll` creates it empty; add --with-bundled to start it from these."
        )
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="speakerid", description="Speaker identification with Dilated RNNs.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("train", help="train a model (same as python train.py)", add_help=False)

    e = sub.add_parser("evaluate", help="accuracy report of a checkpoint on a prepared dataset")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True, help="prepared dataset folder")
    e.add_argument("--split", default="test")
    e.add_argument("--batch-size", type=int, default=64, help="crops per model call")
    e.add_argument(
        "--max-crops", type=int, default=None, help="crops per utterance (default 256, as identify)"
    )
    e.add_argument("--workers", type=int, default=2, help="decoding threads (as identify)")
    e.add_argument("--device", default="auto")
    e.add_argument("--out", help="report folder (default: beside the checkpoint)")
    e.add_argument(
        "--eer",
        action="store_true",
        help="speaker verification EER: enroll each speaker of the split from --n-enroll utterances",
    )
    e.add_argument("--n-enroll", type=int, default=5)
    e.set_defaults(func=_cmd_evaluate)

    n = sub.add_parser(
        "enroll",
        help="add speakers to the registry from a few clips each",
        description="Enroll one speaker (--name NAME CLIPS...) or many (--from-folder DIR: one sub-folder of "
        "clips per speaker, named after it) in one process. Only the clips' speech is embedded; clips without "
        "speech are skipped and reported. A registry that does not exist yet is created empty "
        "(--with-bundled: with the shipped model's bundled speakers). Safe to run concurrently.",
    )
    n.add_argument("--name", help="the speaker's name")
    n.add_argument("clips", nargs="*", help="audio files of the speaker")
    n.add_argument("--from-folder", metavar="DIR", help="DIR/<speaker>/<clips>: enroll every sub-folder")
    n.add_argument("--model", "--checkpoint", dest="model", default=None, help="default: the shipped model")
    n.add_argument("--registry", help="registry file (default: the model's registry)")
    n.add_argument("--overwrite", action="store_true", help="replace an existing speaker of that name")
    n.add_argument(
        "--with-bundled",
        action="store_true",
        help="when the registry does not exist yet, start it from the speakers bundled with the model",
    )
    n.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: min(4, cores))")
    n.add_argument("--device", default="auto", help="cpu (default) or cuda")
    n.add_argument("--no-progress", action="store_true", help="no progress bar")
    n.set_defaults(func=_cmd_enroll)

    r = sub.add_parser("registry", help="list enrolled speakers, or remove some (remove A B C)")
    r.add_argument("action", choices=["list", "remove"])
    r.add_argument("names", nargs="*", metavar="NAME")
    r.add_argument("--model", "--checkpoint", dest="model", default=None)
    r.add_argument("--registry")
    r.add_argument(
        "--with-bundled", action="store_true", help="remove: start a new registry from the bundled speakers"
    )
    r.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    r.set_defaults(func=_cmd_registry)

    _add_identify(sub)
    _add_app(sub)
    _add_stream(sub)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        return train_main(argv[1:])
    if argv[:1] == ["app"]:
        from .webapp import main as app_main

        return app_main(argv[1:])
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # stdout closed by its reader: quiet_on_closed_pipe ends the command
        raise
    except (OSError, ValueError) as e:  # CheckpointError, AudioError, RegistryError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2


def _add_identify(sub) -> None:
    try:
        from .identify import add_arguments, run
    except ImportError:
        return
    i = sub.add_parser("identify", help="identify the speaker of audio files, folders or globs")
    add_arguments(i)
    i.set_defaults(func=run)


def _add_app(sub) -> None:
    sub.add_parser("app", help="start the Gradio demo (same as python app.py)", add_help=False)


def _add_stream(sub) -> None:
    st = sub.add_parser(
        "stream",
        help="who is speaking when: a live timeline of a file or of raw 16 kHz s16le PCM on stdin (-)",
    )
    st.add_argument(
        "source", help="an audio file, or - for raw mono 16 kHz signed 16-bit little-endian PCM on stdin"
    )
    st.add_argument(
        "--model",
        default=None,
        help="a causal checkpoint .pt, or a streaming-step .onnx from `python -m export --stream` "
        "(default: the shipped model)",
    )
    st.add_argument("--registry", default=None, help="registry JSON (default: the model's own, as identify)")
    st.add_argument("--mode", choices=["auto", "registry", "classes"], default="auto")
    st.add_argument(
        "--chunk-s",
        type=float,
        default=None,
        help="seconds of audio per model step (default 0.1; an ONNX step's chunk is fixed at export)",
    )
    st.add_argument("--threshold", type=float, default=None, help='"unknown" below this score')
    st.add_argument("--format", choices=["text", "jsonl"], default="text")
    st.add_argument("--threads", type=int, default=1)
    st.set_defaults(func=_cmd_stream)


def _cmd_stream(args) -> int:
    import torch

    from .audio import AudioError, load_audio
    from .registry import RegistryError, SpeakerRegistry, resolve
    from .runtime import load_engine
    from .streaming import StreamingIdentifier, StreamSettings, TorchStep, format_segment, pcm_blocks

    torch.set_num_threads(max(1, args.threads))
    try:
        if args.model is not None and Path(args.model).suffix == ".onnx":
            from export.onnx_export import ExportError
            from export.stream_export import OnnxStep

            try:
                engine = step = OnnxStep(args.model, threads=max(1, args.threads))
            except ExportError as e:
                raise ValueError(str(e)) from e
            exported_s = step.chunk / step.sample_rate
            if args.chunk_s is not None and abs(args.chunk_s - exported_s) > 1e-9:
                raise ValueError(
                    f"{args.model}: its chunk is fixed at export ({exported_s:g} s); drop --chunk-s or "
                    f"re-export with python -m export --stream --chunk-s {args.chunk_s:g}"
                )
            settings = StreamSettings(chunk_s=exported_s, threshold=args.threshold)
        else:
            settings = StreamSettings(chunk_s=args.chunk_s or 0.1, threshold=args.threshold)
            engine = load_engine(args.model, device="cpu")
            step = TorchStep(engine.model, settings.chunk_s)
        registry = None
        if args.mode != "classes":
            loc = resolve(engine, args.registry)
            if loc.read is not None:
                registry = SpeakerRegistry.load(loc.read)
                registry.check_model(engine, loc.read)
            if args.mode == "registry" and (registry is None or not len(registry)):
                raise ValueError(f"--mode registry: no enrolled speakers in {loc.describe()}")
        ident = StreamingIdentifier(step, engine.labels, registry, settings)
        if args.source == "-":
            blocks = pcm_blocks(sys.stdin.buffer, step.chunk)
        else:
            wave = load_audio(args.source, engine.sample_rate)
            blocks = (wave[i : i + step.chunk] for i in range(0, len(wave), step.chunk))
    except (AudioError, RegistryError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def show(segments) -> None:
        for seg in segments:
            print(json.dumps(seg.to_dict()) if args.format == "jsonl" else format_segment(seg), flush=True)

    if args.format == "text":
        print(f"# {engine.source} ({ident.mode}), {step.chunk / engine.sample_rate:.2f} s chunks", flush=True)
    for block in blocks:
        show(ident.feed(block))
    show(ident.flush())
    return 0


if __name__ == "__main__":
    sys.exit(main())
