"""Optional fused GPU kernels (Triton) for the recurrent layers of DilatedRNN.

Importing this package imports Triton if it is installed. The kernels are built for Triton's CPU interpreter
instead of the GPU when TRITON_INTERPRET=1 is set before the first import (tests do this). See
docs/triton_kernel.md.
"""

from .triton_rnn import (
    HAS_TRITON,
    KernelConfig,
    TritonUnavailableError,
    UnsupportedLayerError,
    compile_offline,
    configure,
    fused_gru,
    fused_lstm,
    fused_rnn_tanh,
    interpreter_active,
    kernel_config,
    rnn_layer_forward,
    triton_available,
)

__all__ = [
    "HAS_TRITON",
    "KernelConfig",
    "TritonUnavailableError",
    "UnsupportedLayerError",
    "compile_offline",
    "configure",
    "fused_gru",
    "fused_lstm",
    "fused_rnn_tanh",
    "interpreter_active",
    "kernel_config",
    "rnn_layer_forward",
    "triton_available",
]
