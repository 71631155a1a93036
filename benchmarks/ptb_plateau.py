"""Why the PTB dilated GRU sits on the unigram plateau at lr 1e-3: per-layer statistics of the first iterations.

    python benchmarks/ptb_plateau.py --iters 120 --runs dilated-gru@1e-3,dilated-gru@1e-3:nocarry,stacked-gru@1e-3

Trains each ``MODEL@LR`` (an experiment of ``--task ptb``, see ``train.py --list``) with its own settings
(RMSProp, batch 128, BPTT 128, states carried from chunk to chunk; ``MODEL@LR:nocarry`` starts every
chunk from zero states) and every ``--every`` iterations prints one JSON line with the
mean training BPC of those iterations and, for each recurrent layer l (the same batch, no gradient):

- ``z``: the GRU update gate's mean (h' = (1 - z) n + z h; z -> 1 copies the state and ignores the input);
- ``sat``: the fraction of hidden units with |h| > 0.95 (tanh saturated: no gradient flows through them);
- ``tstd``: the std over time of a unit's output, averaged over units and streams (0: the layer's output no
  longer depends on the characters it reads, which is what a unigram model looks like from the head);
- ``grad``: the gradient norm of the layer's parameters (mean over the iterations);
- ``head_grad``: the same for the output layer;
- ``carry_sat``: the fraction of saturated units in the states carried into the next chunk.

``--set KEY=VALUE`` changes the experiments (e.g. ``--set batch_size=32 optimizer=rmsprop-tf``; the rows name
them). The unigram BPC of the training text is printed first (the plateau). Needs ``<data-root>/ptb``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from speakerid.tasks import get_experiment
from speakerid.tasks.adapters import ADAPTERS
from speakerid.tasks.ptb import load_ptb_chars
from speakerid.tasks.runner import shared_data_dir
from speakerid.training.loop import LoopSettings, make_optimizer


def _gate_stats(rnn: torch.nn.GRU, x: torch.Tensor, out: torch.Tensor, h0) -> dict:
    """Folded layer call x (S, N, C) -> out (S, N, H): update-gate mean and fraction of saturated units."""
    H = rnn.hidden_size
    prev = torch.cat([torch.zeros_like(out[:1]) if h0 is None else h0, out[:-1]])  # h_{t-d}, (S, N, H)
    gi = F.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0)  # (S, N, 3H), PyTorch order r, z, n
    gh = F.linear(prev, rnn.weight_hh_l0, rnn.bias_hh_l0)
    z = torch.sigmoid(gi[..., H : 2 * H] + gh[..., H : 2 * H])
    return {"z": z.mean().item(), "sat": (out.abs() > 0.95).float().mean().item()}


def run(
    name: str,
    lr: float,
    iters: int,
    every: int,
    seed: int,
    data_root,
    carry: bool = True,
    valid_chars: int = 65536,
    overrides: dict | None = None,
) -> None:
    exp = get_experiment(name).replace(**{**(overrides or {}), "lr": lr})
    tag = {"model": name, **(overrides or {}), "lr": lr, "carry": carry}  # names the run in every row
    torch.manual_seed(seed)
    task = ADAPTERS["ptb"](exp, data_root, seed)
    model = task.build_model()
    model.body.impl = "cudnn"  # the ATen call, so that the forward hooks below see every layer
    settings = LoopSettings(
        iters, every, exp.batch_size, lr=exp.lr, optimizer=exp.optimizer, rms_alpha=exp.rms_alpha
    )
    opt = make_optimizer(settings, model.parameters())
    layers = list(model.body.layers)
    captured: dict[int, dict] = {}

    def hook(i):
        def f(rnn, args, output):
            if capture[0]:
                x, h0 = args[0], (args[1] if len(args) > 1 else None)
                captured[i] = _gate_stats(rnn, x.detach(), output[0].detach(), h0)

        return f

    capture = [False]
    for i, rnn in enumerate(layers):
        rnn.register_forward_hook(hook(i))
    top: list[torch.Tensor] = []  # the body's output (B, L, H) in the training forward
    model.body.register_forward_hook(
        lambda m, args, output: top.append(output[0].detach()) if capture[0] else None
    )
    losses, grads, t0 = [], [[] for _ in range(len(layers) + 1)], time.perf_counter()
    for it in range(1, iters + 1):
        capture[0] = it % every == 0
        x, y = task.batch(0, it - 1, 0, 1)
        logits, hidden = model(x, task.hidden)
        task.hidden = [h.detach() for h in hidden] if carry else None
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for i, m in enumerate([*layers, model.head]):
            grads[i].append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in m.parameters())))
        opt.step()
        losses.append(loss.item() / math.log(2))
        if capture[0]:
            row = {
                **tag,
                "iter": it,
                "train_bpc": round(sum(losses) / len(losses), 4),
            }
            for i in range(len(layers)):
                row[f"l{i}"] = {k: round(v, 4) for k, v in captured[i].items()} | {
                    "grad": round(sum(grads[i]) / len(grads[i]), 4)
                }
                if carry:  # the states carried into the next chunk
                    row[f"l{i}"]["carry_sat"] = round(float((hidden[i].abs() > 0.95).float().mean()), 4)
            row["head_grad"] = round(sum(grads[-1]) / len(grads[-1]), 4)
            row["top_tstd"] = round(float(top.pop().std(dim=1).mean()), 4)
            row["s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(row), flush=True)
            losses, grads = [], [[] for _ in range(len(layers) + 1)]
    capture[0] = False
    model.eval()
    bpc, n = task.bpc(
        model, torch.device("cpu"), "valid", valid_chars
    )  # carried states, as the benchmark scores
    print(
        json.dumps(
            {
                **tag,
                "iter": iters,
                "valid_bpc": round(bpc, 4),
                "valid_chars": n,
            }
        )
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="dilated-gru@1e-3,dilated-gru@1e-3:nocarry,stacked-gru@1e-3")
    p.add_argument("--iters", type=int, default=120)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--valid-chars", type=int, default=65536, help="validation characters scored at the end")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="experiment overrides (JSON values)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    root = shared_data_dir(a.data_root)
    train = load_ptb_chars(root / "ptb").train
    freq = torch.bincount(train).float() / train.numel()
    unigram = float(-(freq[freq > 0] * freq[freq > 0].log2()).sum())
    print(json.dumps({"unigram_bpc": round(unigram, 4), "train_chars": train.numel()}), flush=True)
    overrides = {}
    for kv in a.set:
        key, _, val = kv.partition("=")
        try:
            overrides[key] = json.loads(val)
        except json.JSONDecodeError:
            overrides[key] = val  # a bare string (optimizer=rmsprop-tf)
    for spec in a.runs.split(","):
        name, lr = spec.split("@")
        lr, _, mode = lr.partition(":")
        run(
            f"ptb-{name}",
            float(lr),
            a.iters,
            a.every,
            a.seed,
            root,
            carry=mode != "nocarry",
            valid_chars=a.valid_chars,
            overrides=overrides,
        )


if __name__ == "__main__":
    main()
