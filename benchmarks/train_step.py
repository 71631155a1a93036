"""Training-step speed (forward + backward + RMSProp) of dilated RNN implementations. Prints JSON lines.

    python benchmarks/train_step.py --device cpu                 # all configs, batch 16 and 128, fold vs port
    python benchmarks/train_step.py --device cuda --batch 128 --amp both
    python benchmarks/train_step.py --impls fold,fold-aten,port,stacked --configs table3-l0-3,pixel-mnist

Implementations (same weights shape, same model around them):
  fold      ours as shipped: speakerid.models.DilatedRNN with impl="auto" (the fastest measured path per device:
            the fused CPU recurrence of speakerid.models.cpu_rnn on CPU, one cuDNN call per layer on CUDA)
  fold-aten ours with impl="cudnn": zero-copy (T,B,C)->(T/d,d*B,C) view, one cuDNN/ATen call per layer
  triton    ours with the fused Triton kernel (speakerid.kernels; needs a CUDA GPU)
  port      the widely copied public PyTorch port: torch.cat of x[j::d] slices per layer, stack to interleave back
  reference per-timestep Python loop over cells (speakerid.models.reference_dilated_rnn); very slow
  stacked   an ordinary stacked cuDNN GRU with the same layers and hidden size, no dilation (for scale)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from speakerid.models import DilatedRNN, exponential_dilations, reference_dilated_rnn

CONFIGS = {
    # name: (T, layers, hidden, dilations, input_size, n_classes, cell) -- the tasks' real lengths and cells
    "table3-l0-3": (8192, 8, 50, exponential_dilations(8, 2, l0=3), 1, 109, "gru"),
    "table3-l0-5": (8192, 6, 50, exponential_dilations(6, 2, l0=5), 1, 109, "gru"),
    "pixel-mnist": (784, 9, 20, exponential_dilations(9), 1, 10, "gru"),
    "copy-500": (520, 9, 10, exponential_dilations(9), 10, 8, "rnn"),
}


class PortDilatedRNN(nn.Module):
    """The per-layer slicing scheme of the widely copied public port (for comparison only)."""

    def __init__(self, body: DilatedRNN):
        super().__init__()
        self.body = body

    def forward(self, x):  # (B, T, C)
        x = x.transpose(0, 1)  # (T, B, C)
        T = x.shape[0]
        for rnn, d in zip(self.body.layers, self.body.dilations):
            pad = (-T) % d
            if pad:
                x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
            folded = torch.cat([x[j::d] for j in range(d)], 1)  # (T/d, d*B, C), a copy per layer
            out, _ = rnn(folded)
            B = x.shape[1]
            parts = [out[:, j * B : (j + 1) * B] for j in range(d)]
            x = torch.stack(parts, 1).reshape(-1, B, out.shape[-1])[:T]  # interleave back
        return x.transpose(0, 1), None


class Reference(nn.Module):
    def __init__(self, body: DilatedRNN):
        super().__init__()
        self.body = body

    def forward(self, x):
        return reference_dilated_rnn(self.body, x), None


class Stacked(nn.Module):
    def __init__(self, input_size, hidden, layers, cell):
        super().__init__()
        self.rnn = {"gru": nn.GRU, "rnn": nn.RNN}[cell](input_size, hidden, layers, batch_first=True)

    def forward(self, x):
        return self.rnn(x)


class Model(nn.Module):
    def __init__(self, body, hidden, n_classes, fold):
        super().__init__()
        self.body, self.fold = body, fold
        self.fusion = nn.Conv2d(1, 1, (1, fold)) if fold > 1 else None
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x):  # (B, T, C) -> (B, K)
        out, _ = self.body(x)
        if self.fusion is None:
            return self.head(out[:, -1])
        h = self.fusion(out[:, -self.fold :].transpose(1, 2)[:, None])[:, 0, :, 0]
        return self.head(h)


def build(impl: str, cfg: str) -> nn.Module:
    T, L, H, dil, C, K, cell = CONFIGS[cfg]
    if impl == "stacked":
        return Model(Stacked(C, H, L, cell), H, K, 1)
    kw = {"triton": "triton", "fold-aten": "cudnn", "port": "cudnn", "reference": "cudnn"}.get(impl, "auto")
    body = DilatedRNN(C, H, dil, cell=cell, impl=kw)
    if impl == "port":
        body = PortDilatedRNN(body)
    elif impl == "reference":
        body = Reference(body)
    return Model(body, H, K, dil[0])


def make_step(impl, cfg, batch, device, amp):
    """One training step (forward + backward + RMSProp) of ``impl`` on ``cfg``'s shapes, as a closure."""
    T, L, H, dil, C, K, cell = CONFIGS[cfg]
    torch.manual_seed(0)
    model = build(impl, cfg).to(device)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9)
    x = torch.randn(batch, T, C, device=device)
    y = torch.randint(0, K, (batch,), device=device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def measure(impls, cfg, batch, device, amp, steps, warmup) -> list[dict]:
    """Time ``steps`` steps of every impl, interleaved (round k times one step of each, in rotating order), so
    that load from other processes on a shared machine falls on all of them alike; medians per impl."""
    T, L, H, dil, C, K, cell = CONFIGS[cfg]
    fns = {impl: make_step(impl, cfg, batch, device, amp) for impl in impls}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for k in range(steps):
        for impl in impls[k % len(impls) :] + impls[: k % len(impls)]:
            t = time.perf_counter()
            fns[impl]()
            times[impl].append(time.perf_counter() - t)
    rows = []
    for impl in impls:
        ms = 1000 * sorted(times[impl])[len(times[impl]) // 2]
        rows.append(
            {
                "bench": "train_step",
                "config": cfg,
                "impl": impl,
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "threads": torch.get_num_threads(),
                "amp": amp,
                "batch": batch,
                "T": T,
                "layers": L,
                "hidden": H,
                "cell": cell,
                "dilations": f"{dil[0]}..{dil[-1]}",
                "ms_per_step": round(ms, 2),
                "samples_per_s": round(batch / (ms / 1000), 2),
                "steps": steps,
                "load_avg": _load(),
                "torch": str(torch.__version__),
                "host": platform.node(),
            }
        )
    return rows


def _load() -> float | None:
    """The 1-minute load average (the machine is shared: say how busy it was)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--impls", default="fold,port", help="fold,fold-aten,triton,port,reference,stacked")
    p.add_argument("--impl", help="alias for a single --impls value (e.g. --impl triton)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", default="16,128", help="comma-separated batch sizes (default 16,128)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--amp", default="off", choices=["off", "on", "both"])
    p.add_argument("--steps", type=int, default=0, help="timed steps (default 10 CUDA, 3 CPU)")
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args(argv)
    device = torch.device(
        "cuda"
        if a.device == "auto" and torch.cuda.is_available()
        else ("cpu" if a.device == "auto" else a.device)
    )
    if a.threads:
        torch.set_num_threads(a.threads)
    batches = [int(b) for b in a.batch.split(",")]
    steps = a.steps or (10 if device.type == "cuda" else 3)
    impls = [a.impl] if a.impl else a.impls.split(",")
    amps = {"off": [False], "on": [True], "both": [False, True]}[a.amp]
    for batch in batches:
        for cfg in a.configs.split(","):
            for amp in amps:
                try:
                    rows = measure(impls, cfg, batch, device, amp, steps, a.warmup)
                except Exception as e:  # report and go on: one config failing must not hide the others
                    rows = []
                    err = {
                        "bench": "train_step",
                        "config": cfg,
                        "batch": batch,
                        "amp": amp,
                        "error": str(e)[:300],
                    }
                    print(json.dumps(err), flush=True)
                by_impl = {r["impl"]: r for r in rows}
                for r in rows:
                    print(json.dumps(r), flush=True)
                if (
                    "fold" in by_impl and "port" in by_impl
                ):  # our fold vs the public port, same run, interleaved
                    ratio = by_impl["port"]["ms_per_step"] / by_impl["fold"]["ms_per_step"]
                    out = {"bench": "train_step_ratio", "config": cfg, "batch": batch, "amp": amp}
                    print(
                        json.dumps({**out, "fold_over_port": round(ratio, 2), "load_avg": _load()}),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
