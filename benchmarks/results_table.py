"""The paper-benchmark summary table, generated from the results files (docs/results/<task>.jsonl).

    python benchmarks/results_table.py            # rewrite the table in README.md and docs/paper_benchmarks.md
    python benchmarks/results_table.py --check    # exit 1 if either file's table is out of date

One row per "result" line of copy-500, copy-1000, mnist, pmnist and ptb: the model, its protocol (init and
optimizer), the budget (iterations x batch, training minutes, hardware), our best-validation metric and the
paper's. The table sits between the markers ``<!-- results-table:start -->`` and ``<!-- results-table:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speakerid.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("copy-500", "copy-1000", "mnist", "pmnist", "ptb")
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
TARGETS = ("README.md", "docs/paper_benchmarks.md")


def rows(results: Path) -> list[str]:
    out = [
        "| task | model | protocol | budget | ours | paper |",
        "|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        path = results / f"{task}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("type") != "result":
                continue
            e, f = r["experiment"], r["final"]
            dil = e["dilations"]
            body = f"{len(e['hidden'])}×h{e['hidden'][0]} {r['label']}"
            body += f", dil. {dil[0]}…{dil[-1]}" if len(set(dil)) > 1 else ""
            protocol = f"init {e.get('init', 'default')}, {e.get('optimizer', 'rmsprop')}, lr {e['lr']:g}"
            if e.get("lr_drop_at"):  # a step decay (not the paper's constant lr)
                protocol += f" (× {e['lr_drop']:g} from it {e['lr_drop_at']})"
            hw = r["hardware"].split(",")[0].replace("CPU ", "")
            budget = f"{r['iterations']} it × {e['batch_size']}, {r['train_s'] / 60:.0f} min ({hw})"
            if task.startswith("copy"):
                ours = f"CE {f['eval_loss']:.4f}, recall {100 * f['eval_acc']:.1f} % (best at it {f['iter']})"
                paper = "≈ 0 within ~1000 it" if e["paper"] == 0.0 else "ln 8 = 2.079"
                if e["paper"] is None:
                    paper = "converges (figure)"
            elif task in ("mnist", "pmnist"):
                ours = f"test {f['test_acc']:.2f} % (valid {f['valid_acc']:.2f} %, best at it {f['iter']})"
                paper = "-" if e["paper"] is None else f"{e['paper']} %"
            else:
                ours = f"test {f['test_bpc']:.3f} BPC (valid {f['valid_bpc']:.3f}, best at it {f['iter']})"
                paper = "-" if e["paper"] is None else f"{e['paper']} BPC"
            out.append(f"| {task} | {body} | {protocol} | {budget} | {ours} | {paper} |")
    return out


def render(text: str, table: str, name: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"{name}: no {START} ... {END} markers to put the table between")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "docs" / "results"))
    p.add_argument("--check", action="store_true", help="only check that the tables are up to date")
    a = p.parse_args(argv)
    table = "\n".join(rows(Path(a.results)))
    stale = []
    for name in TARGETS:
        path = ROOT / name
        text = path.read_text()
        new = render(text, table, name)
        if new != text:
            stale.append(name)
            if not a.check:
                write_atomic(path, new)
    if a.check and stale:
        print(f"out of date: {', '.join(stale)} (run python benchmarks/results_table.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
