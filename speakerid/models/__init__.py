"""nn.Modules only: the Dilated RNN, classifiers built on it, and the paper's baselines."""

from .classifier import (
    PAPER_PARAMS,
    PRESETS,
    DilatedCNN,
    ModelConfig,
    SequenceClassifier,
    build_model,
    count_parameters,
    preset,
)
from .dilated_rnn import CELLS, DilatedRNN, exponential_dilations, reference_dilated_rnn

__all__ = [
    "CELLS",
    "DilatedRNN",
    "DilatedCNN",
    "ModelConfig",
    "SequenceClassifier",
    "PAPER_PARAMS",
    "PRESETS",
    "build_model",
    "count_parameters",
    "exponential_dilations",
    "preset",
    "reference_dilated_rnn",
]
