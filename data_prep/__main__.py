"""Command line: ``python -m data_prep {vctk,folder,manifest} ... --out DIR``. Thin: parse, scan, prepare, report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict

from speakerid import config as speakerid_config

from . import folder, manifest, vctk
from .items import PrepError
from .pipeline import PrepConfig, PrepResult, prepare
from .splits import SPLIT_RULES

FSDD_EXAMPLE = (
    "python -m data_prep folder --root ../shared/data/fsdd/recordings --out data/fsdd "
    "--speaker-regex '^(?P<sentence>\\d+)_(?P<speaker>[a-z]+)_\\d+\\.wav$' --test-pattern '_[0-4]\\.wav$'"
)


def _common(p: argparse.ArgumentParser, default_split: str) -> None:
    d = PrepConfig()
    p.add_argument("--out", required=True, help="output folder (created; an unfinished run there is resumed)")
    g = p.add_argument_group("splits")
    g.add_argument(
        "--split-by",
        choices=SPLIT_RULES,
        default=default_split,
        help=f"sentence: no sentence id in two splits; file: per speaker, stratified; speaker: speaker-disjoint "
        f"(default: {default_split})",
    )
    g.add_argument("--valid", type=float, default=d.valid, help=f"validation fraction (default {d.valid})")
    g.add_argument(
        "--test",
        type=float,
        default=None,
        help=f"test fraction (default {d.test}; 0 when --test-pattern presets the test files)",
    )
    g.add_argument("--seed", type=int, default=d.seed, help="split seed (default 0)")
    a = p.add_argument_group("audio")
    a.add_argument("--dtype", choices=("int16", "float16"), default=d.dtype, help="shard sample type")
    a.add_argument("--trim", action="store_true", help="cut leading/trailing silence (energy based)")
    a.add_argument(
        "--trim-db",
        type=float,
        default=d.trim_db,
        help=f"with --trim: frames this many dB below the loudest are silence (default {d.trim_db:g})",
    )
    a.add_argument(
        "--max-seconds",
        type=float,
        default=d.max_seconds,
        help=f"skip files longer than this, before decoding (default {d.max_seconds:g}; 0 = no limit)",
    )
    r = p.add_argument_group("run")
    r.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    r.add_argument(
        "--chunk-files", type=int, default=d.chunk_files, help=f"files per shard (default {d.chunk_files})"
    )
    r.add_argument(
        "--overwrite", action="store_true", help="replace a dataset made with other inputs/settings"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--show-config", action="store_true", help="print the resolved settings as JSON and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Prepare 16 kHz training shards (speakerid format) from VCTK, speaker folders or a CSV list. "
        "Resumable: re-run the same command after an interruption.",
        epilog=f"FSDD with its official split:\n  {FSDD_EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("vctk", help="VCTK 0.80 (wav48/) or 0.92 (wav48_silence_trimmed/)")
    p.add_argument("--root", required=True, help="the extracted corpus (or the folder containing it)")
    p.add_argument("--version", choices=("auto", *vctk.VERSIONS), default="auto")
    p.add_argument("--mic", choices=vctk.MICS, default="mic1", help="0.92 only (default mic1)")
    _common(p, "sentence")
    p = sub.add_parser("folder", help="one sub-folder per speaker (wav/flac/ogg/mp3), or --speaker-regex")
    p.add_argument("--root", required=True)
    p.add_argument(
        "--speaker-regex",
        default=None,
        help="take the speaker from the file name: a regex with (?P<speaker>...) and optionally (?P<sentence>...)",
    )
    p.add_argument("--test-pattern", default=None, help="files whose name matches this regex are test files")
    _common(p, "file")
    p = sub.add_parser("manifest", help="a CSV of path,speaker[,split]")
    p.add_argument("--csv", required=True)
    _common(p, "file")
    return parser


def _dur(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _summary(res: PrepResult, seconds: float) -> str:
    prep = res.prep
    c = prep["counts"]
    sp = c["splits"]
    lines = []
    if res.up_to_date:
        lines.append(f"{res.out}: already prepared with these inputs and settings; nothing to do")
    hours = " / ".join(
        f"{s} {sp[s]['utterances']} utt {_dur(sp[s]['seconds'])}" for s in ("train", "valid", "test")
    )
    lines.append(
        f"prepared {res.out}: {c['speakers']} speakers, {c['utterances']} utterances, {_dur(c['seconds'])}"
    )
    lines.append(f"  splits ({prep['split']['by']}, seed {prep['split']['seed']}): {hours}")
    chk = prep["split"]["check"]
    if prep["split"]["by"] == "sentence" or chk["texts"]:
        lines.append(
            f"  sentence ids: {chk['sentence_ids']} ({chk['sentence_ids_in_several_splits']} in more than one split)"
            + (
                f"; transcripts: {chk['texts']} ({chk['texts_in_several_splits']} in more than one split)"
                if chk["texts"]
                else ""
            )
        )
    lines.append(
        f"  padded (shorter than one {prep['crop_samples']}-sample crop, stored as is): {c['padded']}"
    )
    if res.n_resumed and not res.up_to_date:
        lines.append(f"  resumed: {res.n_resumed} of {res.n_chunks} chunks were done by an earlier run")
    if prep["skipped"]:
        by_reason = defaultdict(list)
        for s in prep["skipped"]:
            by_reason[s["reason"]].append(s["source"])
        lines.append(f"  skipped {len(prep['skipped'])} file(s):")
        for reason, srcs in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:12]:
            more = f" (+{len(srcs) - 3} more)" if len(srcs) > 3 else ""
            lines.append(f"    {len(srcs)} x {reason}: {', '.join(srcs[:3])}{more}")
    else:
        lines.append("  skipped: none")
    if not res.up_to_date and seconds > 0:
        rt = c["seconds"] / seconds
        lines.append(f"  took {seconds:.1f} s ({rt:.0f}x realtime)")
    lines.append(f"  details: {os.path.join(res.out, 'prep.json')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        test = args.test
        if args.command == "vctk":
            scan = vctk.scan(args.root, version=args.version, mic=args.mic)
        elif args.command == "folder":
            scan = folder.scan(args.root, speaker_regex=args.speaker_regex, test_pattern=args.test_pattern)
            if test is None and args.test_pattern:
                test = 0.0
        else:
            scan = manifest.scan(args.csv)
        settings = {
            "dtype": args.dtype,
            "trim": args.trim,
            "trim_db": args.trim_db,
            "split_by": args.split_by,
            "valid": args.valid,
            "test": PrepConfig().test if test is None else test,
            "seed": args.seed,
            "chunk_files": args.chunk_files,
            "max_seconds": args.max_seconds or None,
        }
        config = speakerid_config.override(PrepConfig(), settings)  # type-checked like every other config
        if args.show_config:
            print(speakerid_config.show(config, command=args.command, out=args.out, files=len(scan.items)))
            return 0
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: the worker processes are forked

            def progress(done: int, total: int) -> None:
                nonlocal bar
                if bar is None:
                    bar = tqdm(total=total, initial=done, unit="file", desc="data_prep", dynamic_ncols=True)
                else:
                    bar.update(done - bar.n)

        t0 = time.perf_counter()
        try:
            res = prepare(
                scan,
                args.out,
                config,
                workers=args.workers,
                overwrite=args.overwrite,
                progress=None if args.quiet else progress,
            )
        finally:
            if bar is not None:
                bar.close()
        print(_summary(res, time.perf_counter() - t0))
        return 0
    except (PrepError, speakerid_config.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from speakerid.cli import quiet_on_closed_pipe

    sys.exit(quiet_on_closed_pipe(main)())
