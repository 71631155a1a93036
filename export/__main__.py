"""``python -m export [--checkpoint C] --out model.onnx [--fp16] [--opset N] [--no-check] [--clips ...]
[--device cpu|auto|cuda] [--threads N] [--stream [--chunk-s S]]``.

``--stream`` exports the streaming step instead (chunk + states in, scores + states out; a causal model such as
the shipped one), which ``speakerid stream --model step.onnx`` runs in ONNX Runtime.

Exports the checkpoint (default: the shipped model) and, unless ``--no-check``, runs the ONNX-vs-PyTorch parity
check on random waveforms (batch 1 and 17, several lengths) and on the given clips (default: the shipped sample
clips when exporting the shipped model). Prints a JSON summary. Exit status: 0 ok, 1 parity failed, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speakerid.checkpoint import CheckpointError
from speakerid.runtime import default_model_path

from .onnx_export import DEFAULT_OPSET, ExportError, check_parity, export_onnx, sidecar_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a checkpoint to ONNX (+ sidecar JSON) and check it against PyTorch.",
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint .pt (default: the shipped model)")
    p.add_argument("--out", required=True, help="output .onnx file; the sidecar JSON goes beside it")
    p.add_argument(
        "--fp16", action="store_true", help="run the recurrent body in float16 (for the CUDA provider)"
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check")
    p.add_argument("--clips", nargs="*", default=None, help="real clips for the parity check")
    p.add_argument("--device", default="cpu", help="ONNX Runtime device for the parity check (cpu/auto/cuda)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the parity check (0 = default)")
    p.add_argument(
        "--stream", action="store_true", help="export the streaming step (for `speakerid stream --model`)"
    )
    p.add_argument(
        "--chunk-s", type=float, default=0.1, help="--stream: seconds of audio per step (default 0.1)"
    )
    args = p.parse_args(argv)
    if args.stream:
        return _export_stream(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ckpt = Path(args.checkpoint) if args.checkpoint else default_model_path()
    try:
        sidecar = export_onnx(ckpt, args.out, fp16=args.fp16, opset=args.opset)
    except (ExportError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {
        "onnx": str(args.out),
        "sidecar": str(sidecar_path(args.out)),
        "model": sidecar["card"]["model"]["name"],
        "classes": len(sidecar["card"]["labels"]),
        "parameters": sidecar["onnx"]["n_parameters"],
        "fp16": sidecar["onnx"]["fp16"],
        "opset": sidecar["onnx"]["opset"],
        "recurrent_nodes": len(sidecar["onnx"]["recurrent_nodes"]),
    }
    rc = 0
    if not args.no_check:
        clips = args.clips
        if clips is None and not args.checkpoint:
            clips = sorted(str(c) for c in (ckpt.parent / "samples").glob("*.wav"))[:4]
        try:
            rep = check_parity(args.out, ckpt, clips=clips or [], device=args.device, threads=args.threads)
        except (ValueError, OSError) as e:  # AudioError, OnnxModelError, CheckpointError
            print(f"error: parity check could not run: {e}", file=sys.stderr)
            return 2
        summary["parity"] = {
            k: rep[k] for k in ("ok", "provider", "atol", "max_abs_logits", "max_abs_embedding", "top1_agree")
        } | {"cases": len(rep["cases"])}
        if not rep["ok"]:
            bad = [c for c in rep["cases"] if c["max_abs_logits"] > rep["atol"] or not c["top1_agree"]]
            print(f"error: ONNX output differs from PyTorch: {json.dumps(bad[:3])}", file=sys.stderr)
            rc = 1
    print(json.dumps(summary, indent=2))
    return rc


def _export_stream(args) -> int:
    from .stream_export import export_stream

    ckpt = Path(args.checkpoint) if args.checkpoint else default_model_path()
    try:
        sidecar = export_stream(ckpt, args.out, chunk_s=args.chunk_s, opset=args.opset)
    except (ExportError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {
        "onnx": str(args.out),
        "sidecar": str(sidecar_path(args.out)),
        "model": sidecar["card"]["model"]["name"],
        "classes": len(sidecar["card"]["labels"]),
        "chunk": sidecar["stream"]["chunk"],
        "states": len(sidecar["stream"]["states"]),
        "opset": sidecar["stream"]["opset"],
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from speakerid.cli import quiet_on_closed_pipe

    sys.exit(quiet_on_closed_pipe(main)())
