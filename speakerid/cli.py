"""The ``speakerid`` console script (and ``train.py``): thin argparse layers over library calls."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path

__all__ = ["main", "train_main", "parse_overrides", "key_value_pairs", "quiet_on_closed_pipe"]

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


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


def key_value_pairs(tokens: list[str]) -> list[tuple[str, str]]:
    """``--key value`` / ``--key=value`` tokens -> [(key, value)], dashes in keys read as underscores."""
    pairs, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ValueError(f"expected --key value, got {tok!r}")
        key, eq, val = tok[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 >= len(tokens):
                raise ValueError(f"--{key} needs a value")
            val, i = tokens[i + 1], i + 1
        pairs.append((key, val))
        i += 1
    return pairs


def parse_overrides(cls, base, pairs: list[str]):
    """Apply ``--key value`` pairs to dataclass ``base``; unknown keys and badly typed values raise ValueError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    changes = {}
    for key, val in key_value_pairs(pairs):
        if key not in names:
            raise ValueError(f"unknown option --{key}; valid: {', '.join('--' + n for n in sorted(names))}")
        hint = hints[key]
        try:
            if hint is bool:
                if val.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                changes[key] = val.lower() in ("1", "true", "yes", "on")
            elif hint in (int, float, str):
                changes[key] = hint(val)
            elif typing.get_origin(hint) is list:
                changes[key] = [int(v) for v in val.replace(" ", "").split(",") if v]
            else:
                changes[key] = val
        except ValueError:
            raise ValueError(f"--{key} expects {getattr(hint, '__name__', hint)}, got {val!r}") from None
    return dataclasses.replace(base, **changes)


@quiet_on_closed_pipe
def train_main(argv: list[str] | None = None) -> int:
    from .training import CONFIGS, TrainConfig, get_config

    try:
        from .tasks import EXPERIMENTS  # the paper's secondary benchmarks
    except ImportError:
        EXPERIMENTS = {}
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a speaker-ID model (Table 3 configs, the shipped default) or a paper benchmark.",
        epilog="Any other --key value overrides that field of the config (see --show-config).",
    )
    p.add_argument("--config", default="fsdd-default", help="named config (see --list)")
    p.add_argument("--resume", action="store_true", help="continue the run in the config's out folder")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--list", action="store_true", help="list the named configs and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args, rest = p.parse_known_args(argv)
    if args.list:
        for name, c in CONFIGS.items():
            print(f"{name:28s} model={c.model}")
        for name in EXPERIMENTS:
            print(f"{name:28s} (paper benchmark)")
        return 0
    if args.config in EXPERIMENTS:
        from .tasks import run_experiment_cli

        return run_experiment_cli(args.config, rest, show_config=args.show_config, resume=args.resume)
    try:
        cfg = parse_overrides(TrainConfig, get_config(args.config), rest)
    except ValueError as e:
        if args.config not in CONFIGS and EXPERIMENTS:
            e = ValueError(f"{e}; paper benchmarks: {', '.join(EXPERIMENTS)}")
        p.error(str(e))
    if args.show_config:
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        return 0
    if not cfg.data:
        p.error(f"config {cfg.name} needs --data DIR (a folder made by `python -m data_prep`)")
    from .training import train

    try:
        summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=2))
    return 0


# --------------------------------------------------------------------------------------------------------------
# evaluate / enroll / registry


def _cmd_evaluate(args) -> int:
    import torch

    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .data import PreparedDataset
    from .evaluation import evaluate, plot_confusion, write_report

    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt)
    device = "cuda" if (args.device == "auto" and torch.cuda.is_available()) else args.device
    device = "cpu" if device == "auto" else device
    model.to(device)
    data = PreparedDataset(args.data)
    crop = ckpt.get("frontend", {}).get("crop", 8192)
    if args.eer:  # open-set: the split's speakers need not be the model's classes
        from .evaluation import enrollment_eer

        rep = enrollment_eer(model, data, args.split, args.n_enroll, crop, device)
        print(json.dumps(rep, indent=2))
        return 0
    if data.speakers != ckpt["labels"]:
        print(
            f"error: {args.data} has speakers {data.speakers[:5]}... but the checkpoint was trained on "
            f"{ckpt['labels'][:5]}...; evaluate on data prepared with the same speakers",
            file=sys.stderr,
        )
        return 2
    rep = evaluate(model, data, args.split, crop, args.batch_size, device, args.max_crops, progress=True)
    out = Path(args.out or Path(args.checkpoint).with_suffix("").as_posix() + f"-{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    write_report(rep, out / "report.json")
    plot_confusion(rep["confusion"], rep["labels"], out / "confusion.png")
    keys = ("n_utterances", "n_crops", "crop_top1", "crop_top5", "utt_top1", "utt_top5", "utt_majority_acc")
    print(json.dumps({k: rep[k] for k in keys} | {"report": str(out / "report.json")}, indent=2))
    return 0


def _cmd_enroll(args) -> int:
    from .registry import RegistryError, SpeakerRegistry
    from .runtime import load_engine

    engine = load_engine(args.model)
    path = Path(args.registry) if args.registry else engine.default_registry_path()
    reg = SpeakerRegistry.load_for_edit(path, engine)
    try:
        summary = reg.enroll(args.name, args.clips, engine, overwrite=args.overwrite)
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reg.save(path)
    for err in summary["errors"]:
        print(f"skipped {err}", file=sys.stderr)
    print(json.dumps({"registry": str(path)} | {k: v for k, v in summary.items() if k != "errors"}, indent=2))
    return 0 if not summary["errors"] else 1


def _cmd_registry(args) -> int:
    from .registry import RegistryError, SpeakerRegistry
    from .runtime import load_engine

    engine = load_engine(args.model)
    path = Path(args.registry) if args.registry else engine.default_registry_path()
    reg = SpeakerRegistry.load_for_edit(path, engine)
    if args.action == "remove":
        try:
            reg.remove(args.name)
        except RegistryError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        reg.save(path)
    print(
        json.dumps({"registry": str(path), "threshold": reg.threshold, "speakers": reg.summary()}, indent=2)
    )
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
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--max-crops", type=int, default=None, help="crops per utterance (default: all)")
    e.add_argument("--device", default="auto")
    e.add_argument("--out", help="report folder (default: beside the checkpoint)")
    e.add_argument(
        "--eer",
        action="store_true",
        help="speaker verification EER: enroll each speaker of the split from --n-enroll utterances",
    )
    e.add_argument("--n-enroll", type=int, default=5)
    e.set_defaults(func=_cmd_evaluate)

    n = sub.add_parser("enroll", help="add a speaker to the registry from a few clips")
    n.add_argument("--name", required=True)
    n.add_argument("clips", nargs="+")
    n.add_argument("--model", "--checkpoint", dest="model", default=None, help="default: the shipped model")
    n.add_argument("--registry", help="registry file (default: the model's registry)")
    n.add_argument("--overwrite", action="store_true", help="replace an existing speaker of that name")
    n.set_defaults(func=_cmd_enroll)

    r = sub.add_parser("registry", help="list or remove enrolled speakers")
    r.add_argument("action", choices=["list", "remove"])
    r.add_argument("name", nargs="?")
    r.add_argument("--model", "--checkpoint", dest="model", default=None)
    r.add_argument("--registry")
    r.set_defaults(func=_cmd_registry)

    _add_identify(sub)
    _add_app(sub)

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


if __name__ == "__main__":
    sys.exit(main())
