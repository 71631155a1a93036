"""speakerid: speaker identification from raw audio with generalized Dilated RNNs (Chang et al., 2017)."""

from .audio import CROP_SAMPLES, SAMPLE_RATE, AudioError, load_audio
from .models import DilatedRNN, ModelConfig, SequenceClassifier, build_model

__version__ = "0.1.0"

__all__ = [
    "SAMPLE_RATE",
    "CROP_SAMPLES",
    "AudioError",
    "load_audio",
    "DilatedRNN",
    "ModelConfig",
    "SequenceClassifier",
    "build_model",
    "__version__",
]
