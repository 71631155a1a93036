"""One entry point for every experiment: the Table 3 speaker-ID runs, the shipped default and the paper's
secondary benchmarks (copy memory, MNIST variants, PTB characters).

    python train.py --config vctk-dilated-gru-l0-3 --data data/vctk [--key value ...]
    python train.py --config fsdd-default --show-config
    python train.py --config fsdd-default --resume            # continue runs/fsdd-default exactly
    torchrun --nproc_per_node 2 train.py --config ...          # DistributedDataParallel, same code path
    python train.py --list
"""

from __future__ import annotations

import sys

from speakerid.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
