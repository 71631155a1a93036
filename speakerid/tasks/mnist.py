"""Pixel-by-pixel MNIST: unpermuted, permuted and noisy (paper section 4.2, table 1, figures 4-6).

Dim legend: B batch, N examples in a split, P = 784 pixels, T sequence length (784, or the noisy length), K = 10.

Data: the four official IDX files (``train-images-idx3-ubyte.gz`` ...) in one folder. Splits follow the paper
("the default ones in Tensorflow", i.e. ``input_data.read_data_sets``): the first 5,000 of the 60,000 training
images are the validation split, the other 55,000 train, and the 10,000 ``t10k`` images are the test split.
Pixels are scaled to [0, 1] and read in row-major order, one per step: x is (B, 784, 1).

- permuted: one fixed permutation of the 784 positions, drawn from ``torch.Generator().manual_seed(perm_seed)``.
- noisy (``length=T > 784``): the (unpermuted) pixels, then T - 784 values of U[0, 1] noise. The noise of example i
  in epoch e is drawn from a generator seeded by (noise_seed, split, e, i), so it does not depend on batching;
  evaluation splits always use e = 0 (fixed noise), training uses the epoch, so noise is fresh every epoch.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .copy_memory import mix_seed as _mix

__all__ = ["N_PIXELS", "N_CLASSES", "IDX_FILES", "read_idx", "load_mnist", "pixel_permutation", "PixelMNIST"]

N_PIXELS = 784
N_CLASSES = 10
VALID_SIZE = 5000
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise OSError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (magic {raw[:4].hex()!r})")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX data (type 0x08) is supported, got {raw[2]:#04x}")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} = {int(np.prod(dims))} bytes, found {data.size}")
    return data.reshape(dims)


@lru_cache(maxsize=2)
def _load_raw(root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    files = {k: Path(root) / v for k, v in IDX_FILES.items()}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"MNIST IDX files not found: {missing}")
    out = [read_idx(files[k]) for k in ("train_images", "train_labels", "test_images", "test_labels")]
    for a in out:
        a.setflags(write=False)
    return tuple(out)  # type: ignore[return-value]


def load_mnist(
    root: str | Path, valid_size: int = VALID_SIZE
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Split name -> (images (N, 784) uint8, labels (N,) int64) for "train" (55k), "valid" (5k), "test" (10k)."""
    tr_x, tr_y, te_x, te_y = _load_raw(str(Path(root).resolve()))
    if tr_x.shape[1:] != (28, 28) or te_x.shape[1:] != (28, 28):
        raise ValueError(f"expected 28x28 images, got {tr_x.shape} and {te_x.shape}")
    if not 0 <= valid_size < len(tr_x):
        raise ValueError(f"valid_size must be in [0, {len(tr_x)}), got {valid_size}")
    tr_x = torch.from_numpy(tr_x.reshape(len(tr_x), N_PIXELS).copy())
    te_x = torch.from_numpy(te_x.reshape(len(te_x), N_PIXELS).copy())
    tr_y = torch.from_numpy(tr_y.astype(np.int64))
    te_y = torch.from_numpy(te_y.astype(np.int64))
    return {
        "train": (tr_x[valid_size:], tr_y[valid_size:]),
        "valid": (tr_x[:valid_size], tr_y[:valid_size]),
        "test": (te_x, te_y),
    }


def pixel_permutation(seed: int = 0) -> torch.Tensor:
    """The fixed permutation of the permuted task: (784,) int64, a function of ``seed`` only."""
    return torch.randperm(N_PIXELS, generator=torch.Generator().manual_seed(seed))


class PixelMNIST:
    """Batches of pixel sequences for one MNIST variant.

    Args:
        root: folder with the four IDX files.
        permute: apply ``pixel_permutation(perm_seed)`` to every image.
        length: T, total steps; 784 (default) or more for noisy MNIST (pixels, then U[0, 1] noise).
        valid_size: images held out of the 60k training set (the first ones, as TensorFlow does).
    """

    def __init__(
        self,
        root: str | Path,
        permute: bool = False,
        length: int = N_PIXELS,
        perm_seed: int = 0,
        noise_seed: int = 0,
        valid_size: int = VALID_SIZE,
    ):
        if length < N_PIXELS:
            raise ValueError(f"length must be >= {N_PIXELS}, got {length}")
        if permute and length > N_PIXELS:
            raise ValueError(
                "noisy MNIST is defined on unpermuted pixels; use permute=False with length > 784"
            )
        self.splits = load_mnist(root, valid_size)
        self.permute = permute
        self.length = length
        self.noise_seed = noise_seed
        self.perm = pixel_permutation(perm_seed) if permute else None

    def __len__(self) -> int:
        return len(self.splits["train"][1])

    def size(self, split: str) -> int:
        return len(self._split(split)[1])

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        return self.splits[split]

    def sequences(self, split: str, index: torch.Tensor, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``index`` (B,) of ``split`` -> x (B, T, 1) float32 in [0, 1], y (B,) int64."""
        images, labels = self._split(split)
        x = images[index].float().div_(255.0)  # (B, 784)
        if self.perm is not None:
            x = x[:, self.perm]
        n_noise = self.length - N_PIXELS
        if n_noise:
            e = 0 if split != "train" else epoch
            noise = torch.empty(len(index), n_noise)
            g = torch.Generator()
            for row, i in enumerate(index.tolist()):
                g.manual_seed(_mix(self.noise_seed, _SPLIT_IDS[split], e, i))
                noise[row] = torch.rand(n_noise, generator=g)
            x = torch.cat([x, noise], dim=1)  # (B, T)
        return x[..., None], labels[index]  # (B, T, 1), (B,)

    def batches(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        limit: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``split`` (the first ``limit`` examples if given) in batches of x (B, T, 1), y (B,).

        With ``shuffle`` the order is a permutation seeded by (seed, epoch); the last batch may be smaller.
        """
        n = self.size(split) if limit is None else min(limit, self.size(split))
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch)))
        else:
            order = torch.arange(n)
        for start in range(0, n, batch_size):
            yield self.sequences(split, order[start : start + batch_size], epoch)

    def batches_per_epoch(self, batch_size: int) -> int:
        """Full training batches per epoch (the incomplete last one is dropped)."""
        return max(1, self.size("train") // batch_size)

    def train_batch(self, k: int, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch number ``k`` of the endless shuffled stream: x (B, T, 1), y (B,).

        Epoch e = k // batches_per_epoch reads a permutation seeded by (seed, e); random access, for resuming.
        """
        per_epoch = self.batches_per_epoch(batch_size)
        epoch, pos = divmod(k, per_epoch)
        order = torch.randperm(self.size("train"), generator=torch.Generator().manual_seed(_mix(seed, epoch)))
        return self.sequences("train", order[pos * batch_size : (pos + 1) * batch_size], epoch)
