"""Checkpoint -> ONNX (dynamic batch and time, front-end inside) + sidecar JSON, and the parity check.

python -m export --out model.onnx                       # the shipped model
python -m export --checkpoint runs/x/best.pt --out x.onnx --fp16
"""

from .onnx_export import (
    INPUT_NAME,
    OUTPUT_NAMES,
    SIDECAR_FORMAT,
    ExportError,
    InferenceGraph,
    check_parity,
    export_onnx,
    recurrent_nodes,
    sidecar_path,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "SIDECAR_FORMAT",
    "ExportError",
    "InferenceGraph",
    "check_parity",
    "export_onnx",
    "recurrent_nodes",
    "sidecar_path",
]
