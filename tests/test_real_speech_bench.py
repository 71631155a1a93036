"""benchmarks/real_speech.py bookkeeping: one row per model (a rerun replaces it), the table and the README block
are generated from the rows, the CPU clock of a real child process is read."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("real_speech", REPO / "benchmarks" / "real_speech.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(model, acc, front_end="raw"):
    return dict(
        model=model,
        front_end=front_end,
        utt_top1=acc,
        crop_top1=None,
        steps=300,
        n_parameters=29109,
        train_s=1800.0,
        cpu_s=600.0,
        load_mean=8.5,
        command=f"python train.py --config sentence-{model}",
    )


def test_one_row_per_model_and_budget_in_the_benchmark_order(tmp_path):
    b = _bench()
    path = tmp_path / "r.jsonl"
    b.write_row(_row("fused-gru-8", 0.2), path)
    b.write_row(_row("mfcc-dilated-gru", 0.9, "mfcc"), path)
    b.write_row(_row("fused-gru-8", 0.3), path)  # a rerun with the same budget replaces its row
    b.write_row(
        dict(_row("fused-gru-8", 0.5), steps=900, budget_steps=900), path
    )  # another budget: a new row
    rows = b.read_rows(path)
    assert [(r["model"], r["steps"]) for r in rows] == [
        ("mfcc-dilated-gru", 300),
        ("fused-gru-8", 300),
        ("fused-gru-8", 900),
    ]
    assert [r["utt_top1"] for r in rows] == [0.9, 0.3, 0.5]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_table_is_written_between_the_readme_markers_only(tmp_path):
    b = _bench()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{b.BEGIN}\nold table\n{b.END}\noutro\n", encoding="utf-8")
    b.write_tables(
        [_row("raw-dilated-gru-l0-3", 0.583), _row("fused-gru-8", None)], tmp_path / "t.md", readme
    )
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith(f"{b.END}\noutro\n") and "old table" not in text
    assert "**58.3 %**" in text and "| 300 × 32 | 30 (10) | 8.5 |" in text
    assert "| **– |" not in text and "**–**" in text  # a missing number is shown as missing, not as 0
    assert (tmp_path / "t.md").read_text(encoding="utf-8").count("\n|") == 4  # header, rule, 2 rows


def test_cpu_seconds_of_a_real_child_process(tmp_path):
    b = _bench()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    t = b.run_timed([sys.executable, "-c", spin], tmp_path / "log", tmp_path / "spent.json")
    assert t["returncode"] == 0 and t["cpu_s"] >= 0.45 and t["wall_s"] >= t["cpu_s"] * 0.9
    again = b.run_timed([sys.executable, "-c", spin], tmp_path / "log", tmp_path / "spent.json")
    assert again["cpu_s"] >= 0.9  # accumulated over attempts (a resumed run reports its whole cost)
