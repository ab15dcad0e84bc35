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
