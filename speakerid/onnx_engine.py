"""ONNX Runtime engine: an exported ``model.onnx`` + its ``model.json`` sidecar behind ``runtime.Engine``.

Dim legend: B batch of crops, T samples per crop, K classes, D embedding size.

Made by ``python -m export``. The graph takes ``wav`` (B, T) float32 at the sidecar's sample rate and returns
``logits`` (B, K) and ``embedding`` (B, D), both float32, with the front-end inside, so the pre- and
post-processing are exactly ``speakerid.runtime``'s (same decoder, same crops, same scoring) for checkpoints
and ONNX files alike. The sidecar carries the model card (``speakerid.card``) and the graph's facts.

Execution provider: with ``device="auto"`` the CUDA provider is used when onnxruntime has it *and* it can load
(a CUDA driver with a GPU; onnxruntime-gpu on a machine without CUDA lists the provider but falls back to CPU
with error lines, so it is only requested when a device is there), otherwise the CPU provider.
``engine.provider`` says which one runs ("onnxruntime-CUDAExecutionProvider" / "onnxruntime-CPUExecutionProvider")
and ``engine.provider_note`` why CUDA is not used. On CUDA, ``cudnn_conv_algo_search=HEURISTIC`` keeps ORT from
benchmarking convolution algorithms again for every new input shape (every batch size / clip length), TF32 is
off (fp32 exports give fp32 results; use an ``--fp16`` export for speed), and inputs/outputs go through IO
binding (one host->device copy in, one device->host copy out, no per-call output allocation by the session).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .card import CardError, ModelCard, card_from_v1
from .engine import Engine

__all__ = ["OnnxEngine", "OnnxModelError", "cuda_status", "read_sidecar", "SIDECAR_FORMAT"]

SIDECAR_FORMAT = "speakerid-onnx-v2"  # {"format", "card": ModelCard, "onnx": {...graph facts}}
SIDECAR_FORMAT_V1 = "speakerid-onnx-v1"  # flat: converted by speakerid.card.card_from_v1
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class OnnxModelError(ValueError):
    """An ONNX model or sidecar that cannot be used, or a provider that cannot run; names file and problem."""


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise OnnxModelError(
            "running .onnx models needs onnxruntime: pip install 'speakerid[export]' "
            "(onnxruntime-gpu on Linux x86_64, onnxruntime elsewhere)"
        ) from e
    return ort


def _cuda_device_count() -> tuple[int, str]:
    """Number of CUDA devices the driver sees, and why none when 0 (no driver, no device)."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
            break
        except OSError:
            continue
    else:
        return 0, "no CUDA driver (libcuda) on this machine"
    if cuda.cuInit(0) != 0:
        return 0, "the CUDA driver failed to initialise (cuInit)"
    n = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value == 0:
        return 0, "the CUDA driver sees no GPU"
    return n.value, ""


def cuda_status() -> tuple[bool, str]:
    """(whether ORT's CUDA provider can run here, reason when it cannot)."""
    ort = _import_ort()
    if CUDA not in ort.get_available_providers():
        return (
            False,
            f"this onnxruntime build ({ort.__version__}) has no CUDA provider (install onnxruntime-gpu)",
        )
    n, why = _cuda_device_count()
    if n == 0:
        return False, why
    preload = getattr(ort, "preload_dlls", None)  # ORT >= 1.21: CUDA/cuDNN from the nvidia-* pip wheels
    if preload is not None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its warnings
                preload()
        except Exception:  # the libraries may come from the system instead; the session check decides
            pass
    return True, ""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_GRAPH_KEYS = ("onnx_sha256", "input", "outputs", "fp16", "n_parameters")  # what the engine reads of "onnx"


def read_sidecar(side: Path) -> tuple[ModelCard, dict]:
    """A sidecar file -> (model card, graph facts {onnx_sha256, input, outputs, fp16, n_parameters, ...}).

    v1 sidecars (flat) are converted by :func:`speakerid.card.card_from_v1`. Raises OnnxModelError naming the
    file, the format found and what is missing."""
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OnnxModelError(f"{side}: cannot read the ONNX sidecar ({e})") from e
    fmt = meta.get("format") if isinstance(meta, dict) else None
    try:
        if fmt == SIDECAR_FORMAT:
            missing = [k for k in ("card", "onnx") if k not in meta]
            if missing:
                raise OnnxModelError(f"{side}: sidecar is missing {missing}")
            graph = dict(meta["onnx"])
            missing = [k for k in _GRAPH_KEYS if k not in graph]
            if missing:
                raise OnnxModelError(f"{side}: sidecar's 'onnx' is missing {missing}")
            return ModelCard.from_dict(meta["card"]), graph
        if fmt == SIDECAR_FORMAT_V1:
            missing = [k for k in ("labels", "model_config", "fingerprint") if k not in meta]
            if missing:
                raise OnnxModelError(f"{side}: sidecar is missing {missing}")
            graph = {
                "onnx_sha256": meta.get("onnx_sha256"),
                "input": meta.get("input", {"name": "wav"}),
                "outputs": meta.get("outputs", {"logits": {}, "embedding": {}}),
                "fp16": bool(meta.get("fp16", False)),
                "n_parameters": int(meta.get("n_parameters", 0)),
            }
            return card_from_v1(meta, meta["fingerprint"]), graph
    except CardError as e:
        raise OnnxModelError(f"{side}: bad model card in the sidecar ({e})") from e
    found = "no format tag" if fmt is None else f"format {fmt!r}"
    raise OnnxModelError(
        f"{side}: not a speakerid ONNX sidecar this version can read ({found}; expected {SIDECAR_FORMAT!r} "
        f"or {SIDECAR_FORMAT_V1!r})"
    )


class OnnxEngine(Engine):
    """An exported model run with ONNX Runtime.

    Args:
        path: the ``.onnx`` file; its sidecar ``<same name>.json`` must be beside it.
        device: "auto" (CUDA when it can run, else CPU), "cpu", "cuda" or "cuda:N" (error if CUDA cannot run).
        threads: CPU intra-op threads (0 = ONNX Runtime's default: one per physical core).
        workers: N > 0: single-threaded sessions calls, N at once in the pipeline (CPU; overrides threads).
        io_binding: bind inputs/outputs explicitly (None = on for CUDA, off for CPU where it gains nothing).
        verify: check the ONNX file's SHA-256 against the sidecar (catches a sidecar of another export).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "auto",
        threads: int = 0,
        io_binding: bool | None = None,
        verify: bool = True,
        workers: int = 0,
    ):
        ort = _import_ort()
        path = Path(path)
        self.source = path
        if not path.is_file():
            raise OnnxModelError(f"{path}: ONNX model not found")
        side = path.with_suffix(".json")
        if not side.is_file():
            raise OnnxModelError(
                f"{path}: sidecar {side.name} not found beside it (re-export with python -m export)"
            )
        self.card, graph = read_sidecar(side)
        if verify and graph["onnx_sha256"] and _file_sha256(path) != graph["onnx_sha256"]:
            raise OnnxModelError(
                f"{path}: the file does not match its sidecar {side.name} (SHA-256 differs); "
                "the two come from different exports"
            )
        self.graph = graph
        self.n_parameters = int(graph["n_parameters"])
        self.fp16 = bool(graph["fp16"])
        self.input_name = graph["input"]["name"]
        self.output_names = list(graph["outputs"])
        if workers:
            threads = 1

        want_cuda, device_id, self.provider_note = self._choose(device)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3  # warnings about unused initializers etc. are noise for users
        providers: list = [CPU]
        if want_cuda:
            cuda_opts = {
                "device_id": device_id,
                "cudnn_conv_algo_search": "HEURISTIC",  # not EXHAUSTIVE: no re-tuning per new input shape
                "use_tf32": 0,  # fp32 export -> fp32 math (parity); fp16 exports are the fast path
                "do_copy_in_default_stream": 1,
            }
            providers = [(CUDA, cuda_opts), CPU]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            raise OnnxModelError(
                f"{path}: ONNX Runtime cannot load the model ({str(e).strip()[:300]})"
            ) from e
        got = self.session.get_providers()
        self.on_cuda = want_cuda and got[:1] == [CUDA]
        if want_cuda and not self.on_cuda:
            if device.startswith("cuda"):
                raise OnnxModelError(
                    f"{path}: CUDA was requested but ONNX Runtime could not start the CUDA provider "
                    "(check the CUDA/cuDNN libraries onnxruntime-gpu needs)"
                )
            self.provider_note = "the CUDA provider failed to start; running on CPU"
        self.provider = f"onnxruntime-{CUDA if self.on_cuda else CPU}"
        self.on_gpu = self.on_cuda
        self.workers = 1 if self.on_cuda or not workers else int(workers)
        self.device_id = device_id
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [self.input_name] or outputs != self.output_names:
            raise OnnxModelError(
                f"{path}: graph inputs {inputs} / outputs {outputs} do not match the sidecar "
                f"({[self.input_name]} / {self.output_names})"
            )
        self.io_binding = self.on_cuda if io_binding is None else bool(io_binding)
        self._ort = ort

    @staticmethod
    def _choose(device: str) -> tuple[bool, int, str]:
        """-> (request CUDA, device id, note saying why CUDA is not used)."""
        device = (device or "auto").lower()
        if device == "cpu":
            return False, 0, "CPU requested"
        if device == "auto" or device.startswith("cuda"):
            device_id = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
            ok, why = cuda_status()
            if ok:
                return True, device_id, ""
            if device.startswith("cuda"):
                raise OnnxModelError(f"CUDA was requested but cannot be used: {why}")
            return False, 0, why
        raise OnnxModelError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")

    def describe(self) -> dict:
        return super().describe() | {"fp16": self.fp16}

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) float32 crops -> (logits (B, K), unit embeddings (B, D)) float32."""
        x = np.ascontiguousarray(crops, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"expected crops (B, T), got shape {x.shape}")
        try:
            if not self.io_binding:
                logits, emb = self.session.run(self.output_names, {self.input_name: x})
                return logits, emb
            dev = "cuda" if self.on_cuda else "cpu"
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(
                self.input_name, self._ort.OrtValue.ortvalue_from_numpy(x, dev, self.device_id)
            )
            for name in self.output_names:
                binding.bind_output(name, dev, self.device_id)
            self.session.run_with_iobinding(binding)
            logits, emb = binding.copy_outputs_to_cpu()
            return logits, emb
        except Exception as e:  # ORT's own exception types derive from Exception only
            raise RuntimeError(f"{self.source}: ONNX Runtime failed on crops of shape {x.shape}: {e}") from e
