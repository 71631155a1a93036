"""speakerid: speaker identification from raw audio with generalized Dilated RNNs (Chang et al., 2017).

    import speakerid
    engine = speakerid.load_engine()                       # the shipped model (or a .pt / .onnx path)
    speakerid.Identifier(engine).identify("clip.wav")      # -> Prediction (speaker, score, top_k, ...)

The audio helpers import without torch; everything else loads on first use (PEP 562), so tools that only read
audio (``python -m data_prep``) start quickly.
"""

from .audio import CROP_SAMPLES, SAMPLE_RATE, AudioError, load_audio

__version__ = "0.1.0"

_LAZY = {
    "DilatedRNN": "models",
    "ModelConfig": "models",
    "SequenceClassifier": "models",
    "build_model": "models",
    "ModelCard": "card",
    "load_engine": "runtime",
    "Identifier": "pipeline",
    "InferenceOptions": "pipeline",
}

__all__ = ["SAMPLE_RATE", "CROP_SAMPLES", "AudioError", "load_audio", *_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'speakerid' has no attribute {name!r}")
