"""Training: one loop (:mod:`.loop`) with task adapters; speaker ID (:mod:`.speaker`) and its named configs
(:mod:`.configs`). The paper tasks' adapters live in :mod:`speakerid.tasks` and run through the same loop.

    from speakerid.training import get_config, train
    summary = train(get_config("fsdd-default"))
"""

from .configs import CONFIGS, get_config
from .report import calibrate_threshold, detect_collapse
from .speaker import (
    LOSSES,
    TrainConfig,
    budget,
    describe_model,
    format_budget,
    train,
)

__all__ = [
    "TrainConfig",
    "CONFIGS",
    "get_config",
    "train",
    "budget",
    "format_budget",
    "detect_collapse",
    "calibrate_threshold",
    "describe_model",
    "LOSSES",
]
