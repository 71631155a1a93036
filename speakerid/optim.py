"""TensorFlow-1-style RMSProp (the optimizer the paper's TensorFlow code ran), as a ``torch.optim.Optimizer``.

PyTorch's ``RMSprop`` and TF 1.x's ``tf.train.RMSPropOptimizer`` differ in two places that matter early in
training:

- the mean-square accumulator starts at **1** in TF and at 0 in PyTorch. With PyTorch's zero start, the first
  update of every weight is lr * g / sqrt((1 - decay) * g^2) = lr / sqrt(0.1) ~ 3.2 lr in the sign of g, whatever
  the gradient's size, and steps stay near that size for ~1 / (1 - decay) = 10 iterations. TF's first steps are
  lr * g / sqrt(0.9 + 0.1 g^2) ~ lr * g: proportional to the gradient, so tiny gradients move weights very little;
- epsilon sits inside the square root in TF (1e-10), outside in PyTorch (1e-8).

Update (momentum 0, the paper's setting):  ms <- decay * ms + (1 - decay) * g^2;  w <- w - lr * g / sqrt(ms + eps).
"""

from __future__ import annotations

import torch

__all__ = ["TFRMSprop", "OPTIMIZERS", "make_optimizer"]


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp with TF 1.x semantics (accumulator initialised to ``initial_accumulator``, eps inside the sqrt).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (paper: 1e-3).
        decay: the accumulator's decay rate (paper: 0.9; PyTorch calls it ``alpha``).
        eps: added to the accumulator inside the square root (TF default 1e-10).
        momentum: TF's momentum (0 in the paper).
        initial_accumulator: the accumulator's start value (TF 1.x: 1.0).
    """

    def __init__(self, params, lr=1e-3, decay=0.9, eps=1e-10, momentum=0.0, initial_accumulator=1.0):
        if lr <= 0 or not 0 <= decay < 1 or eps < 0 or momentum < 0 or initial_accumulator < 0:
            raise ValueError(
                f"invalid TFRMSprop settings lr={lr}, decay={decay}, eps={eps}, momentum={momentum}, "
                f"initial_accumulator={initial_accumulator}"
            )
        defaults = dict(
            lr=lr, decay=decay, eps=eps, momentum=momentum, initial_accumulator=initial_accumulator
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["ms"] = torch.full_like(p, group["initial_accumulator"])
                    if group["momentum"] > 0:
                        state["mom"] = torch.zeros_like(p)
                ms = state["ms"]
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                step = g / (ms + group["eps"]).sqrt()
                if group["momentum"] > 0:
                    mom = state["mom"]
                    mom.mul_(group["momentum"]).add_(step, alpha=group["lr"])
                    p.sub_(mom)
                else:
                    p.add_(step, alpha=-group["lr"])
        return loss


OPTIMIZERS = ("rmsprop", "rmsprop-tf")


def make_optimizer(name: str, params, lr: float, decay: float) -> torch.optim.Optimizer:
    """``"rmsprop"``: ``torch.optim.RMSprop(lr, alpha=decay)``; ``"rmsprop-tf"``: ``TFRMSprop(lr, decay)``."""
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=decay)
    if name == "rmsprop-tf":
        return TFRMSprop(params, lr=lr, decay=decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
