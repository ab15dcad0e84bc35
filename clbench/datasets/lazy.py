"""A dataset that decodes image files on access, for data sets too large for the uint8 cache.

:mod:`clbench.datasets.cache` decodes every image once into a memory-mapped array, which pays
off for small images (CIFAR, 64×64 faces). At 224 px, ImageNet alone would need ~190 GB, and
the fine-grained recipes crop at random from the full-size image, so those tasks read each file
with Pillow when a sample is requested, as torchvision's ``ImageFolder`` does (and as the CPG
and Piggyback code reads these data sets).

Paths are kept as one fixed-width bytes array relative to their common folder, not as a list
of ``Path`` objects: VGGFace2 has 3.1 M files, and a Python list of that size costs gigabytes and
is copied page by page into every DataLoader worker as reference counts change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from clbench.datasets.errors import DataError

#: Applied to the decoded PIL image; must return a C×H×W tensor (e.g. a torchvision v2 pipeline
#: ending in ``ToImage``/``ToDtype``/``Normalize``).
PILTransform = Callable[[Image.Image], torch.Tensor]


def _common_root(paths: Sequence[str]) -> str:
    """The longest folder prefix shared by ``paths`` ('' if none), ending in a separator."""
    if not paths:
        return ""
    # commonprefix compares characters (fast: only the min and max strings), so cut back to the
    # last separator to get a folder; os.path.commonpath would split all N paths.
    prefix = os.path.commonprefix([min(paths), max(paths)])
    return prefix[: prefix.rfind(os.sep) + 1]


def read_image(path: str | Path, mode: Literal["RGB", "L"] = "RGB") -> Image.Image:
    """Open and fully decode one image in ``mode``; :class:`DataError` naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            # convert() always returns a loaded copy, so the file is closed on return.
            return im.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


class ImageFileDataset(Dataset):
    """Classification samples ``(transform(PIL image), int label)`` decoded from files per item.

    Args:
        paths: image files, in sample order.
        labels: one integer label per file; exposed as ``targets`` (a list of int, as Avalanche
            requires).
        transform: applied to the decoded PIL image (in ``mode``); None returns a float C×H×W
            tensor on the [0, 1] scale.
        mode: Pillow mode to convert to ("RGB": grey sketches and CMYK JPEGs become 3 channels).

    Raises (on access):
        DataError: a file is missing or not a readable image; the message names it.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | np.ndarray,
        transform: PILTransform | None = None,
        mode: Literal["RGB", "L"] = "RGB",
    ) -> None:
        names = [os.fspath(p) for p in paths]
        self.root = _common_root(names)
        cut = len(self.root)
        # Fixed-width bytes: one buffer, no per-path Python object (see the module docstring).
        self._relative = np.array([os.fsencode(n[cut:]) for n in names], dtype=np.bytes_)
        self.targets: list[int] = [int(x) for x in np.asarray(labels).tolist()]
        if len(self.targets) != len(names):
            raise ValueError(f"{len(names)} paths but {len(self.targets)} labels")
        self.transform = transform
        self.mode = mode

    @classmethod
    def _from_parts(
        cls, root: str, relative: np.ndarray, targets: list[int], transform: PILTransform | None, mode: str
    ) -> ImageFileDataset:
        new = cls.__new__(cls)
        new.root, new._relative, new.targets = root, relative, targets
        new.transform, new.mode = transform, mode
        return new

    def __len__(self) -> int:
        return len(self.targets)

    def path(self, i: int) -> str:
        """The file of sample ``i``."""
        return self.root + os.fsdecode(bytes(self._relative[i]))

    @property
    def paths(self) -> list[str]:
        return [self.path(i) for i in range(len(self))]

    def subset(self, indices: Sequence[int] | np.ndarray, transform: PILTransform | None = None) -> ImageFileDataset:
        """The samples at ``indices`` with another ``transform`` (e.g. a validation split carved
        from training files gets the evaluation transform); no file is touched."""
        idx = np.asarray(indices, dtype=np.int64)
        targets = [self.targets[i] for i in idx.tolist()]
        return ImageFileDataset._from_parts(self.root, self._relative[idx], targets, transform, self.mode)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.path(i), self.mode)  # type: ignore[arg-type]
        if self.transform is not None:
            x: Any = self.transform(image)
        else:
            x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
            x = (x[:, :, None] if x.dim() == 2 else x).permute(2, 0, 1).to(torch.float32).div_(255)
        return x, self.targets[i]
