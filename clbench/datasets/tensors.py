"""A dataset over in-memory tensors, with the ``targets`` list Avalanche needs."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


class TensorTaskDataset(Dataset[tuple[torch.Tensor, int]]):
    """Samples ``(x[i], y[i])`` from ready-made arrays (already normalised, no augmentation)."""

    def __init__(self, inputs: Any, labels: Any) -> None:
        self.inputs = torch.as_tensor(inputs)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")
        self.targets = self.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], self.targets[index]
