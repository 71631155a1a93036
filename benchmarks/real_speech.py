"""Real sentence-level speech: the raw-waveform generalized DilatedRNN, the MFCC dilated GRU and the paper's
Table 3 baselines on ravdess-dev (12 actors), sentence-disjoint. One command from a clean clone:

    nice -n 19 python benchmarks/real_speech.py [--data ../shared/data/ravdess-dev] [--only NAME ...]

1. ``python -m data_prep folder`` of the corpus with ``--trim`` and the test pattern of statement 02
   ("Dogs are sitting by the door"): train (and validation) = statement 01, test = statement 02. Resumable.
2. For each model, ``train.py --config sentence-<model> --resume`` with its step budget (the config's ``max_steps``
   or ``--max-steps``; run folder runs/real_speech/<model>-<steps>): a killed run continues from its last
   checkpoint when the command is re-run.
3. One row per model in docs/results/real_speech.jsonl (model, front_end, utt_top1, crop_top1, steps, train_s =
   wall seconds, cpu_s = process CPU seconds of the training process, the load average while it ran, budget,
   command), then the table in docs/results/real_speech.md and between the markers in README.md.

One row per model and budget; a model whose row for this budget exists is skipped (``--force`` reruns it);
``--table-only`` just redraws the tables. The corpus is
CC BY-NC-SA 4.0: results only, never its files, never a model trained on it in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speakerid.atomic import write_atomic  # noqa: E402

TEST_PATTERN = r"^03-01-\d\d-\d\d-02-"  # RAVDESS statement 02 (file name field 5)
RESULTS = ROOT / "docs" / "results" / "real_speech.jsonl"
TABLE = ROOT / "docs" / "results" / "real_speech.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- real_speech:begin -->", "<!-- real_speech:end -->"

# (row name, train.py config, front end, what it is). Budgets live in the configs (max_steps).
MODELS = [
    (
        "mfcc-dilated-gru",
        "sentence-mfcc-dilated-gru",
        "mfcc",
        "MFCC + dilated GRU 4×64, dilations 1–8, stats pooling, AAM, channel augmentation",
    ),
    ("mfcc-gru-1x128", "sentence-mfcc-gru-1x128", "mfcc", "MFCC GRU 1×128, last step (Table 3 baseline)"),
    (
        "raw-dilated-gru-l0-3",
        "sentence-raw-dilated-gru-l0-3",
        "raw",
        "raw generalized DilatedRNN l0=3 (GRU 5×32, dilations 8–128), 1×8 fusion of subsequence means",
    ),
    (
        "fused-gru-8",
        "sentence-fused-gru-8",
        "raw",
        "raw fused GRU 1×256, fold 8, 1×8 fusion (Table 3 baseline)",
    ),
]


def read_rows(path: Path = RESULTS) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _key(row: dict) -> tuple[str, int]:
    return row["model"], row.get("budget_steps", row["steps"])


def write_row(row: dict, path: Path = RESULTS) -> None:
    """Add ``row``, replacing the row of the same model and step budget (one row per model and budget)."""
    rows = [r for r in read_rows(path) if _key(r) != _key(row)] + [row]
    order = {m[0]: i for i, m in enumerate(MODELS)}
    rows.sort(key=lambda r: (order.get(r["model"], len(order)), _key(r)[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process (Linux /proc), None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_timed(cmd: list[str], log: Path, spent: Path) -> dict:
    """Run ``cmd`` (output to ``log``); wall and CPU seconds and load averages sampled every 15 s and kept in
    ``spent`` (JSON), accumulated over interrupted attempts so a resumed run reports its whole cost."""
    prev = json.loads(spent.read_text()) if spent.is_file() else {"wall_s": 0.0, "cpu_s": 0.0, "load": []}
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        state = {"cpu": 0.0, "load": []}
        stop = threading.Event()

        def sample():
            while not stop.wait(15):
                c = _proc_cpu_s(proc.pid)
                state["cpu"] = c if c is not None else state["cpu"]
                state["load"].append(os.getloadavg()[0])
                write_atomic(
                    spent,
                    json.dumps(
                        {
                            "wall_s": prev["wall_s"] + time.time() - t0,
                            "cpu_s": prev["cpu_s"] + state["cpu"],
                            "load": prev["load"] + state["load"],
                        }
                    ),
                )

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        th.join()
    total = {
        "wall_s": prev["wall_s"] + time.time() - t0,
        "cpu_s": prev["cpu_s"] + usage.ru_utime + usage.ru_stime,
        "load": prev["load"] + state["load"],
    }
    write_atomic(spent, json.dumps(total))
    return {"returncode": proc.returncode, **total}


def prepare(data: Path, prepared: Path) -> None:
    cmd = [sys.executable, "-m", "data_prep", "folder", "--root", str(data), "--out", str(prepared)]
    cmd += ["--test-pattern", TEST_PATTERN, "--trim", "--quiet"]
    subprocess.run(cmd, check=True, cwd=ROOT)


def run_model(
    name: str, config: str, front_end: str, prepared: Path, runs: Path, max_steps: int, force: bool = False
) -> dict:
    from speakerid.training import get_config

    budget = max_steps or get_config(config).max_steps
    out = runs / f"{name}-{budget}"
    if force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", "--config", config, "--data", str(prepared), "--out", str(out)]
    cmd += ["--resume", "--no-progress"]
    if max_steps:
        cmd += ["--max_steps", str(max_steps)]
    print(f"[real_speech] {name}: {shlex.join(cmd)}", flush=True)
    t = run_timed(cmd, out / "train.log", out / "spent.json")
    if t["returncode"] != 0:
        raise RuntimeError(f"{name}: train.py exited {t['returncode']}; see {out / 'train.log'}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    test = summary.get("test", {})
    load = t["load"]
    return {
        "model": name,
        "config": config,
        "front_end": front_end,
        "utt_top1": test.get("utt_top1"),
        "crop_top1": test.get("crop_top1"),
        "steps": summary["steps"],
        "budget_steps": budget,
        "batch_size": get_config(config).batch_size,
        "crop": get_config(config).crop,
        "n_parameters": summary["n_parameters"],
        "train_s": round(t["wall_s"], 1),
        "cpu_s": round(t["cpu_s"], 1),
        "load_mean": round(sum(load) / len(load), 2) if load else None,
        "load_max": round(max(load), 2) if load else None,
        "cpus": os.cpu_count(),
        "threads": get_config(config).threads,
        "host": platform.machine(),
        "shared_machine": True,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python train.py --config "
        + config
        + " --data artifacts/ravdess-dev-trim"
        + (f" --max_steps {max_steps}" if max_steps else ""),
    }


def _minutes(seconds) -> str:
    return "–" if seconds is None else f"{seconds / 60:.0f}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def table(rows: list[dict]) -> str:
    what = {m[0]: m[3] for m in MODELS}
    lines = [
        "| model | front end | params | steps × batch | wall min (CPU min) | load | utterance top-1 "
        "| crop top-1 | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {what.get(r['model'], r['model'])} | {r['front_end']} | {r['n_parameters'] / 1000:.0f}k "
            f"| {r['steps']} × {r.get('batch_size', 32)} | {r['train_s'] / 60:.0f} ({_minutes(r.get('cpu_s'))}) "
            f"| {r.get('load_mean') or '–'} "
            f"| **{_pct(r['utt_top1'])}** | {_pct(r['crop_top1'])} | `{r['command']}` |"
        )
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], table_path: Path = TABLE, readme: Path = README) -> None:
    """The table as docs/results/real_speech.md and between the README's markers (the rest left as it is)."""
    t = table(rows)
    title = "# Real speech: ravdess-dev, sentence-disjoint (generated by benchmarks/real_speech.py)\n\n"
    write_atomic(table_path, title + t)
    text = readme.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        write_atomic(readme, head + BEGIN + "\n" + t + END + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ravdess-dev"))
    p.add_argument("--prepared", default=str(ROOT / "artifacts" / "ravdess-dev-trim"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "real_speech"))
    p.add_argument("--only", nargs="*", choices=[m[0] for m in MODELS], help="these models only")
    p.add_argument("--max-steps", type=int, default=0, help="override every model's step budget (0 = keep)")
    p.add_argument("--force", action="store_true", help="rerun models that already have a row")
    p.add_argument("--table-only", action="store_true", help="only redraw the tables from the results file")
    a = p.parse_args(argv)
    if not a.table_only:
        data = Path(a.data)
        if not data.is_dir():
            print(f"error: {data}: no such folder (ravdess-dev, see its README)", file=sys.stderr)
            return 2
        prepare(data, Path(a.prepared))
        from speakerid.training import get_config

        done = {_key(r) for r in read_rows()}
        for name, config, front_end, _ in MODELS:
            if a.only and name not in a.only:
                continue
            if (name, a.max_steps or get_config(config).max_steps) in done and not a.force:
                print(
                    f"[real_speech] {name}: a row with this budget exists, skipped (--force reruns it)",
                    flush=True,
                )
                continue
            row = run_model(name, config, front_end, Path(a.prepared), Path(a.runs), a.max_steps, a.force)
            write_row(row)
            write_tables(read_rows())
            print(json.dumps(row), flush=True)
    write_tables(read_rows())
    return 0


if __name__ == "__main__":
    sys.exit(main())
