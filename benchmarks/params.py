"""Parameter counts of the Table 3 models (109 classes) beside the paper's. JSON lines, then a Markdown table.

python benchmarks/params.py
"""

from __future__ import annotations

import json

from speakerid.models import PAPER_PARAMS, build_model, count_parameters, preset


def main() -> None:
    rows = []
    for name, paper in PAPER_PARAMS.items():
        cfg = preset(name, n_classes=109)
        model = build_model(cfg)
        body = count_parameters(model.body)
        row = {
            "model": name,
            "layers": len(cfg.hidden),
            "hidden": cfg.hidden[0],
            "dilations": f"{cfg.dilations[0]}..{cfg.dilations[-1]}",
            "params": count_parameters(model),
            "rnn_params": body,
            "paper_params": paper,
            "diff_pct": round(100 * (count_parameters(model) - paper) / paper, 1),
        }
        rows.append(row)
        print(json.dumps(row))
    print()
    print("| model | layers × hidden | dilations | ours | paper | diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['layers']} × {r['hidden']} | {r['dilations']} | {r['params']:,} | "
            f"≈{r['paper_params'] // 1000}k | {r['diff_pct']:+.1f} % |"
        )


if __name__ == "__main__":
    main()
