"""Shared fixtures. Real data lives in ../shared/data beside the checkout (see its README)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep image caches written by tests out of the user's ~/.cache.
    if "CLBENCH_CACHE" not in os.environ:
        monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "clbench-cache"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core runner OpenMP spin-waits
    made the layer tests 5x slower; the setting is restored for the rest of the session."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
