"""speakerid: speaker identification from raw audio with generalized Dilated RNNs (Chang et al., 2017).

The audio helpers import without torch; the model classes load torch on first use (PEP 562), so tools that only
read audio (``python -m data_prep``) start quickly.
"""

from .audio import CROP_SAMPLES, SAMPLE_RATE, AudioError, load_audio

__version__ = "0.1.0"

_FROM_MODELS = ("DilatedRNN", "ModelConfig", "SequenceClassifier", "build_model")

__all__ = ["SAMPLE_RATE", "CROP_SAMPLES", "AudioError", "load_audio", *_FROM_MODELS, "__version__"]


def __getattr__(name: str):
    if name in _FROM_MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'speakerid' has no attribute {name!r}")
