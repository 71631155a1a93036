"""The paper's secondary benchmarks (section 4.1-4.3, 4.5): copy memory, pixel / permuted / noisy MNIST, PTB chars.

    from speakerid.tasks import EXPERIMENTS, run_experiment
    result = run_experiment("copy-500-dilated-rnn", max_iters=300, out_dir="runs/copy")

``benchmarks/paper.py`` runs several experiments of one task and draws the paper's figure; the results table is
in docs/paper_benchmarks.md.
"""

from .copy_memory import BLANK, DELIMITER, N_DATA, N_RECALL, N_SYMBOLS, CopyMemory, copy_memory_batch
from .experiments import EXPERIMENTS, TASKS, TaskExperiment, build_experiment_model, get_experiment
from .mnist import N_PIXELS, PixelMNIST, load_mnist, pixel_permutation, read_idx
from .models import StepwiseModel, detach_state, init_weights_, mnist_classifier
from .ptb import EOL, PTBChars, batchify, bits_per_char, bptt_chunks, load_ptb_chars, nll_sum
from .runner import run_experiment, run_experiment_cli, shared_data_dir

__all__ = [
    "EXPERIMENTS",
    "TASKS",
    "TaskExperiment",
    "get_experiment",
    "build_experiment_model",
    "run_experiment",
    "run_experiment_cli",
    "shared_data_dir",
    "CopyMemory",
    "copy_memory_batch",
    "N_DATA",
    "N_RECALL",
    "N_SYMBOLS",
    "BLANK",
    "DELIMITER",
    "PixelMNIST",
    "load_mnist",
    "pixel_permutation",
    "read_idx",
    "N_PIXELS",
    "PTBChars",
    "load_ptb_chars",
    "batchify",
    "bptt_chunks",
    "bits_per_char",
    "nll_sum",
    "EOL",
    "StepwiseModel",
    "detach_state",
    "mnist_classifier",
    "init_weights_",
]
