"""Torch datasets over uint8 image arrays, per-task normalisation and a stratified validation split.

The arrays come from :mod:`clbench.datasets.cache` (N×H×W×C uint8, usually read-only memmaps).
A sample is converted to a C×H×W uint8 tensor, passed through the optional transform (use
``torchvision.transforms.v2``, which works on uint8 tensors), scaled to [0, 1] and normalised with
the per-task mean/std, as the original CPG code normalises each task with its own statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

Transform = Callable[[torch.Tensor], torch.Tensor]

# Images per chunk when computing statistics: bounds the float64 temporary to ~100 MB.
_STATS_CHUNK = 4096


@dataclass(frozen=True)
class Augment:
    """A declarative description of a dataset's training augmentation, so that a batch-wise
    engine (:mod:`clbench.engine`) can reproduce on the device what ``transform`` does per sample.

    ``crop_padding``: random crop back to the original size after zero padding by this many
    pixels on each side (``v2.RandomCrop(size, padding=p)``); 0: no crop. ``hflip``: random
    horizontal flip with probability 0.5 (``v2.RandomHorizontalFlip()``).
    """

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of N×H×W×C uint8 images, on the [0, 1] scale.

    Compute them on a task's *training* images and pass them to :class:`ArrayDataset` for every
    split of that task (per-task normalisation).
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty N×H×W×C array, got shape {images.shape}")
    c = images.shape[3]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, images.shape[0], _STATS_CHUNK):
        chunk = np.asarray(images[start : start + _STATS_CHUNK], dtype=np.float64).reshape(-1, c)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    n = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def split_validation(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a class-stratified validation set out of training labels; deterministic per ``seed``.

    Each class gives ``round(fraction * n_class)`` samples to validation, but keeps at least one
    for training. Returns sorted int64 index arrays (train_idx, val_idx) that partition
    ``range(len(labels))``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for cls in np.unique(labels):  # sorted, so the rng is consumed in a fixed order
        members = np.flatnonzero(labels == cls)
        n_val = min(int(round(fraction * len(members))), len(members) - 1)
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx.astype(np.int64)


class _ImageArrayMixin:
    """Shared conversion and pickling of a (possibly memory-mapped) image array."""

    images: np.ndarray
    transform: Transform | None
    _mean: torch.Tensor | None
    _std: torch.Tensor | None

    def _setup(
        self,
        images: np.ndarray,
        transform: Transform | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be N×H×W×C uint8, got {images.dtype} {images.shape}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.images = images
        self.transform = transform
        c = images.shape[3]
        self._mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(c, 1, 1)
        self._std = None if std is None else torch.tensor(std, dtype=torch.float32).view(c, 1, 1)

    def _image(self, i: int) -> torch.Tensor:
        # Copy out of the read-only memmap: torch warns on non-writable arrays, and C×H×W
        # contiguous tensors are what transforms and collate expect.
        img = torch.from_numpy(np.ascontiguousarray(self.images[i].transpose(2, 0, 1)))
        if self.transform is not None:
            img = self.transform(img)
        if img.dtype == torch.uint8:
            img = img.to(torch.float32).div_(255)
        elif not img.is_floating_point():
            img = img.to(torch.float32)
        if self._mean is not None and self._std is not None:
            img = (img - self._mean) / self._std
        return img

    def __getstate__(self) -> dict[str, Any]:
        # A memmap would be pickled as a full in-memory copy (DataLoader workers under spawn or
        # forkserver); send its file, offset and shape instead and map it again on arrival.
        state = self.__dict__.copy()
        ref = _memmap_ref(self.images)
        if ref is not None:
            state["images"] = ref
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ref = state["images"]
        if isinstance(ref, _MemmapRef):
            state["images"] = np.memmap(ref.filename, np.uint8, "r", ref.offset, ref.shape)
        self.__dict__.update(state)


class _MemmapRef:
    __slots__ = ("filename", "offset", "shape")

    def __init__(self, filename: str, offset: int, shape: tuple[int, ...]) -> None:
        self.filename, self.offset, self.shape = filename, offset, shape

    def __getstate__(self) -> tuple[str, int, tuple[int, ...]]:
        return (self.filename, self.offset, self.shape)

    def __setstate__(self, state: tuple[str, int, tuple[int, ...]]) -> None:
        self.filename, self.offset, self.shape = state


def _memmap_ref(arr: np.ndarray) -> _MemmapRef | None:
    """File, byte offset and shape of a C-contiguous uint8 view into a file-backed memmap."""
    if not isinstance(arr, np.memmap) or arr.filename is None or not arr.flags.c_contiguous:
        return None
    if arr.dtype != np.uint8 or arr.size == 0:
        return None
    root: np.ndarray = arr
    while isinstance(root.base, np.memmap):
        root = root.base
    if not isinstance(root, np.memmap) or root.offset is None or root.filename != arr.filename:
        return None
    offset = root.offset + (arr.ctypes.data - root.ctypes.data)
    return _MemmapRef(str(arr.filename), int(offset), tuple(arr.shape))


class ArrayDataset(_ImageArrayMixin, Dataset):
    """Classification samples ``(float C×H×W tensor, int label)`` from N×H×W×C uint8 images.

    Args:
        images: N×H×W×C uint8 (a memmap from ``load_images`` or a slice of it is not copied).
        labels: N integer labels; exposed as ``targets`` (a list of int, as Avalanche requires).
        transform: applied to the C×H×W **uint8** tensor, e.g.
            ``v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])``. If it
            returns a float tensor, that tensor is taken to be on the [0, 1] scale already.
        mean, std: per-channel statistics on the [0, 1] scale (see :func:`channel_stats`);
            None skips normalisation.
        augment: the same augmentation as ``transform``, described declaratively for the
            device engine (which cannot run a per-sample transform); None with a
            ``transform`` set means the data can train only through the Avalanche engine.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        transform: Transform | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Augment | None = None,
    ) -> None:
        self._setup(images, transform, mean, std)
        self.augment = augment
        self.targets: list[int] = [int(x) for x in np.asarray(labels).tolist()]
        if len(self.targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._image(i), self.targets[i]


class PairDataset(_ImageArrayMixin, Dataset):
    """Verification samples ``(img_a, img_b, same)`` from images and an M×2 index array.

    ``images``, ``transform``, ``mean`` and ``std`` as in :class:`ArrayDataset`; ``pairs[m]``
    holds two row indices into ``images`` and ``same[m]`` whether they show one person (see
    :meth:`clbench.datasets.faces.LFWPairs.fold_arrays`). ``targets`` is ``same`` as 0/1 ints.
    """

    def __init__(
        self,
        images: np.ndarray,
        pairs: np.ndarray,
        same: Sequence[bool] | np.ndarray,
        transform: Transform | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self._setup(images, transform, mean, std)
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.same = np.asarray(same, dtype=bool)
        if len(self.same) != len(self.pairs):
            raise ValueError(f"{len(self.pairs)} pairs but {len(self.same)} same flags")
        if len(self.pairs) and (self.pairs.min() < 0 or self.pairs.max() >= len(images)):
            raise ValueError("pair indices out of range of images")
        self.targets: list[int] = self.same.astype(int).tolist()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        a, b = self.pairs[i]
        return self._image(int(a)), self._image(int(b)), bool(self.same[i])


def stratified_subset(labels: Sequence[int] | np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` indices into ``labels`` (sorted int64), class-stratified and
    deterministic per ``seed``: a data-limit flag's selection, for every task kind.

    Each class keeps its share (:func:`split_validation` with the complement as validation);
    when that still exceeds ``limit`` (more classes than the limit, as the identities of a
    verification task, or rounding) a seeded random choice trims it to exactly ``limit``.
    """
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    keep, _ = split_validation(labels, 1 - limit / len(labels), seed)
    if len(keep) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=limit, replace=False))
    return keep.astype(np.int64)
