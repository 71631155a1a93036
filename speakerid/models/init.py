"""Weight initialisations for the paper benchmarks: PyTorch's default, the paper's text, the authors' TF code.

- ``"default"``: PyTorch's own (every RNN weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)); Linear likewise).
- ``"normal"``: the paper's sentence "all weight matrices are initialized by the standard normal distribution"
  (section 4), read literally: every weight matrix ~ N(0, 1), biases untouched.
- ``"tf"``: what the authors' TensorFlow 1.x code does (github.com/code-terminator/DilatedRNN): the cells keep
  TF's defaults -- one Glorot-uniform kernel over the concatenated [x, h] input, U(-a, a) with
  a = sqrt(6 / (fan_in + fan_out)) of TF's kernel, biases zero (LSTM forget bias 1, ``BasicLSTMCell``; GRU gate bias 1,
  ``GRUCell``) -- and only the output layer is drawn from ``tf.random_normal`` (N(0, 1) weights and bias).
  The fusion convolution is left as it is.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["INITS", "init_weights_"]

INITS = ("default", "normal", "tf")
_GATES = {nn.RNN: 1, nn.GRU: 3, nn.LSTM: 4}


@torch.no_grad()
def init_weights_(model: nn.Module, scheme: str = "default", head: nn.Module | None = None) -> nn.Module:
    """Re-initialise ``model`` in place with ``scheme`` (see the module docstring); returns ``model``.

    ``head``: the output layer (``"tf"`` draws it from N(0, 1)); default: the model's ``head`` attribute.
    """
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
    if scheme == "normal":
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "fusion" not in name:
                p.normal_(0.0, 1.0)
    elif scheme == "tf":
        for m in model.modules():
            if type(m) in _GATES:
                _tf_rnn_(m, _GATES[type(m)])
        head = head if head is not None else getattr(model, "head", None)
        if isinstance(head, nn.Linear):
            head.weight.normal_(0.0, 1.0)
            head.bias.normal_(0.0, 1.0)
    return model


def _tf_rnn_(rnn: nn.RNNBase, gates: int) -> None:
    """TF 1.x cell defaults on a one-layer PyTorch RNN/GRU/LSTM (gate order: PyTorch's)."""
    H = rnn.hidden_size
    for layer in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        fan_in = (
            w_ih.shape[1] + H
        )  # TF's kernel is [C + H, gates * H]; GRUCell has [C + H, 2H] and [C + H, H]
        parts = [(0, 2 * H, 2 * H), (2 * H, 3 * H, H)] if gates == 3 else [(0, gates * H, gates * H)]
        for lo, hi, fan_out in parts:
            a = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            w_ih[lo:hi].uniform_(-a, a)
            w_hh[lo:hi].uniform_(-a, a)
        if rnn.bias:
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
            b_ih.zero_()
            b_hh.zero_()
            if gates == 4:  # BasicLSTMCell: forget_bias=1.0 (PyTorch gate order i, f, g, o)
                b_ih[H : 2 * H] = 1.0
            elif gates == 3:  # GRUCell: gate bias 1.0 for r and z (PyTorch order r, z, n)
                b_ih[: 2 * H] = 1.0
