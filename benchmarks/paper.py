"""Run one of the paper's secondary benchmarks for a fixed budget; write JSON lines, the figure and a table.

    python benchmarks/paper.py --task copy-500 --models dilated-rnn,stacked-gru --max-iters 1000
    python benchmarks/paper.py --task mnist --models dilated-gru-h20 --max-iters 600 --eval_limit 1000
    python benchmarks/paper.py --task ptb --models dilated-gru --max-iters 500 --batch_size 32
    python benchmarks/paper.py --task copy-500 --plot-only          # redraw from the JSON lines

Any other ``--key value`` overrides that setting (a field or task option, see ``train.py --config NAME
--show-config``) of every experiment run; unknown keys and bad values are refused before anything runs.

Tasks: copy-100, copy-500, copy-1000, mnist, pmnist, noisy-mnist-1000, noisy-mnist-2000, ptb. A model name is
the experiment name without the task prefix (``--task mnist --models dilated-gru-h20`` runs
``mnist-dilated-gru-h20``; see ``speakerid.tasks.EXPERIMENTS``). Every model runs through
``speakerid.tasks.run_experiment`` (the same loop as ``train.py --config``).

Writes into --out (default docs/results):
  <task>.jsonl  one "eval" line per evaluation and one "result" line per model (budget, hardware, final metrics,
                the per-iteration training loss); re-running a model replaces its lines, other models stay
  <task>.png    the paper's figure for the task: copy memory = cross entropy vs iterations (fig 3), MNIST =
                validation accuracy vs iterations (fig 4), PTB = validation BPC vs iterations
  <task>.md     ours vs the paper, with the budget and the hardware of each run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from speakerid import config
from speakerid.atomic import atomic_open, write_atomic
from speakerid.tasks import EXPERIMENTS, get_experiment, run_experiment

TASK_PREFIX = {
    "copy-100": "copy-100",
    "copy-500": "copy-500",
    "copy-1000": "copy-1000",
    "mnist": "mnist",
    "pmnist": "pmnist",
    "noisy-mnist-1000": "noisy-mnist-1000",
    "noisy-mnist-2000": "noisy-mnist-2000",
    "ptb": "ptb",
}
DEFAULT_MODELS = {
    "copy-100": ["dilated-rnn", "stacked-gru"],
    "copy-500": ["dilated-rnn", "dilated-lstm", "dilated-gru", "stacked-rnn", "stacked-lstm", "stacked-gru"],
    "copy-1000": ["dilated-rnn", "dilated-lstm", "dilated-gru", "stacked-rnn", "stacked-lstm", "stacked-gru"],
    "mnist": ["dilated-rnn-h20", "dilated-lstm-h20", "dilated-gru-h20", "dilated-cnn-h20", "stacked-gru-h20"],
    "pmnist": [
        "dilated-rnn-h20",
        "dilated-lstm-h20",
        "dilated-gru-h20",
        "dilated-cnn-h20",
        "stacked-gru-h20",
    ],
    "noisy-mnist-1000": ["dilated-rnn", "dilated-lstm", "dilated-gru", "dilated-cnn", "stacked-gru"],
    "noisy-mnist-2000": ["dilated-rnn", "dilated-lstm", "dilated-gru", "dilated-cnn", "stacked-gru"],
    "ptb": ["dilated-gru", "dilated-lstm", "dilated-rnn", "stacked-gru"],
}


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def task_kind(task: str) -> str:
    return "copy" if task.startswith("copy") else "ptb" if task == "ptb" else "mnist"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--task", required=True, choices=sorted(TASK_PREFIX))
    p.add_argument("--models", default=None, help="comma-separated (default: the paper's set for the task)")
    p.add_argument("--max-iters", type=int, default=None, help="iteration budget (default: the experiment's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="docs/results")
    p.add_argument("--runs", default=None, help="keep checkpoints in RUNS/<experiment> (enables --resume)")
    p.add_argument(
        "--resume", action="store_true", help="continue RUNS/<experiment>/last.pt up to --max-iters"
    )
    p.add_argument("--plot-only", action="store_true", help="redraw the figure and table from <task>.jsonl")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    args, rest = p.parse_known_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / f"{args.task}.jsonl"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume and not args.runs:
        p.error("--resume needs --runs DIR")
    models = args.models.split(",") if args.models else DEFAULT_MODELS[args.task]
    names = [f"{TASK_PREFIX[args.task]}-{m}" for m in models]
    for n in names:
        if n not in EXPERIMENTS:
            get_experiment(n)  # raises with the list of valid names
    try:  # any other --key value overrides that setting of every experiment run (speakerid.config)
        overrides = {k: v for k, v in config.key_value_pairs(rest)}
        experiments = [config.override(get_experiment(n), rest) for n in names]
    except ValueError as e:
        p.error(str(e))

    if not args.plot_only:
        for name, exp in zip(names, experiments):
            lines = []

            def log(rec, name=name):
                print(json.dumps({"name": name, **{k: _round(v) for k, v in rec.items()}}), flush=True)

            r = run_experiment(
                exp,
                device=args.device,
                max_iters=args.max_iters,
                seed=args.seed,
                progress=args.progress,
                amp=args.amp,
                data_root=args.data_root,
                on_eval=log,
                out_dir=Path(args.runs) / name if args.runs else None,
                resume=args.resume,
            )
            base = {"name": name, "task": args.task, "label": exp.label}
            lines += [{"type": "eval", **base, **rec} for rec in r["history"]]
            summary = {k: v for k, v in r.items() if k not in ("history", "name")}
            summary["train_curve"] = [round(v, 4) for v in summary["train_curve"]]
            summary["overrides"] = overrides
            lines.append({"type": "result", **base, **summary})
            # Merge: replace this model's previous lines, keep the others.
            kept = [ln for ln in read_jsonl(jsonl) if ln["name"] != name]
            write_atomic(jsonl, "".join(json.dumps(_round_tree(ln)) + "\n" for ln in kept + lines))
            print(
                json.dumps({"name": name, "final": r["final"], "train_s": round(r["train_s"], 1)}), flush=True
            )

    records = read_jsonl(jsonl)
    if not records:
        print(f"error: no results in {jsonl}", file=sys.stderr)
        return 2
    plot(args.task, records, out / f"{args.task}.png")
    write_atomic(out / f"{args.task}.md", table(args.task, records))
    return 0


def _round(v):
    return round(v, 5) if isinstance(v, float) else v


def _round_tree(x):
    if isinstance(x, dict):
        return {k: _round_tree(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round_tree(v) for v in x]
    return _round(x)


def plot(task: str, records: list[dict], path: Path) -> None:
    """The paper's figure for the task from the JSON-lines records (all models in the file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = task_kind(task)
    results = [r for r in records if r["type"] == "result"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        evals = [e for e in records if e["type"] == "eval" and e["name"] == r["name"]]
        label = f"{r['label']} ({r['name']})"
        if kind == "copy":
            curve = r["train_curve"]
            w = max(1, len(curve) // 100)  # light smoothing for readability (window = 1 % of the run)
            smooth = [
                sum(curve[max(0, i - w + 1) : i + 1]) / len(curve[max(0, i - w + 1) : i + 1])
                for i in range(len(curve))
            ]
            ax.plot(range(1, len(curve) + 1), smooth, label=label, lw=1.2)
        elif kind == "mnist":
            ax.plot([e["iter"] for e in evals], [e["valid_acc"] for e in evals], marker=".", label=label)
        else:
            ax.plot([e["iter"] for e in evals], [e["valid_bpc"] for e in evals], marker=".", label=label)
            ax.plot(
                [e["iter"] for e in evals],
                [e["train_bpc"] for e in evals],
                ls=":",
                color=ax.lines[-1].get_color(),
            )
    if kind == "copy":
        ax.axhline(math.log(8), color="gray", ls="--", lw=0.8, label="chance: ln 8 = 2.079")
        ax.set_ylabel("cross entropy (last 10 steps)")
        ax.set_title(f"Copy memory T={task.split('-')[1]} (paper fig 3)")
        ax.set_ylim(bottom=0)
    elif kind == "mnist":
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(
            {"mnist": "Pixel MNIST (table 1)", "pmnist": "Permuted pixel MNIST (table 1)"}.get(
                task, f"Noisy MNIST T={task.rsplit('-', 1)[-1]} (paper fig 4)"
            )
        )
    else:
        for r in results:
            if r["experiment"].get("paper"):
                ax.axhline(r["experiment"]["paper"], ls="--", lw=0.8, color="gray")
        ax.set_ylabel("BPC (solid: validation, dotted: training)")
        ax.set_title("PTB characters (paper table 2; dashed: paper's test BPC)")
    hw = sorted({r["hardware"].split(" (torch")[0] for r in results})
    ax.set_xlabel(f"iteration  [{'; '.join(hw)}]", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)


def table(task: str, records: list[dict]) -> str:
    """Markdown: one row per model, ours beside the paper's number, with budget and hardware."""
    kind = task_kind(task)
    head = {
        "copy": "| experiment | model | params | budget | ours: eval CE (best) | ours: train CE (last 50 it) | paper |",
        "mnist": "| experiment | model | params | budget | ours: test acc % | ours: valid acc % | paper: test acc % |",
        "ptb": "| experiment | model | params | budget | ours: test BPC | ours: valid BPC | paper: test BPC |",
    }[kind]
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in (r for r in records if r["type"] == "result"):
        e, f = r["experiment"], r["final"]
        budget = (
            f"{r['iterations']} it x batch {e['batch_size']}, {r['train_s'] / 60:.1f} min train, "
            f"{r['hardware'].split(' (torch')[0]}"
        )
        if r.get("overrides"):
            budget += f", overrides {json.dumps(r['overrides'])}"
        paper = "-" if e["paper"] is None else f"{e['paper']}"
        if kind == "copy":  # figure 3 has curves, not numbers
            paper = {0.0: "≈ 0 after ~1000 it", None: "converges, slower than vanilla"}.get(
                e["paper"], "stays at ln 8 = 2.079"
            )
        model = f"{len(e['hidden'])} x h{e['hidden'][0]}, {e['cell'] if e['arch'] == 'rnn' else 'cnn'}, " + (
            f"dilations {e['dilations'][0]}..{e['dilations'][-1]}"
            if len(set(e["dilations"])) > 1
            else "no dilation"
        )
        if kind == "copy":
            last = r["train_curve"][-50:]
            ours = f"{f['eval_loss']:.3f} (acc {100 * f['eval_acc']:.1f} %) | {sum(last) / len(last):.3f}"
        elif kind == "mnist":
            ours = f"{f['test_acc']:.2f} | {f['valid_acc']:.2f}"
        else:
            ours = f"{f['test_bpc']:.3f} | {f['valid_bpc']:.3f}"
        rows.append(f"| {r['name']} | {model} | {r['n_params']:,} | {budget} | {ours} | {paper} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
