"""Image loading: cold decode vs cached memmap load, and array-dataset iteration through a DataLoader.

Run: ``pytest tests/perf/bench_loading.py -m perf -o python_files='bench_*.py' --benchmark-only``
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from clbench.datasets import arrays, cache

pytestmark = pytest.mark.perf

N_IMAGES = 3000  # a bit more than one CIFAR super-class task (2,500 train images)
_fresh = itertools.count()


@pytest.fixture(scope="module")
def png_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Random 32×32 RGB PNGs (noise: the worst case for PNG decoding, like real photos)."""
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_IMAGES):
        p = root / f"{i % 5}" / f"{i:05d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_cold_decode_and_cache(benchmark, png_paths, tmp_path):
    """First load: decode every file and write the cache (a new cache folder each round)."""

    def setup() -> tuple[tuple, dict]:
        return (png_paths, None, "RGB", tmp_path / f"c{next(_fresh)}"), {}

    out = benchmark.pedantic(cache.load_images, setup=setup, rounds=5)
    assert out.shape == (N_IMAGES, 32, 32, 3)


def test_cold_decode_in_memory(benchmark, png_paths):
    """Decode without writing a cache (``cache=False``)."""
    out = benchmark.pedantic(cache.load_images, args=(png_paths, None, "RGB"), kwargs={"cache": False}, rounds=5)
    assert out.shape == (N_IMAGES, 32, 32, 3)


def test_cached_load(benchmark, png_paths, tmp_path):
    """Later loads: stat files for the key, map the .npy, and read every pixel once."""
    cache.load_images(png_paths, None, "RGB", tmp_path)

    def load() -> int:
        return int(np.asarray(cache.load_images(png_paths, None, "RGB", tmp_path)).sum(dtype=np.int64))

    assert benchmark(load) > 0


def test_dataset_epoch(benchmark, png_paths, tmp_path):
    """One epoch of ArrayDataset (CIFAR augmentation + per-task normalisation), batch 128, main process."""
    images = cache.load_images(png_paths, None, "RGB", tmp_path)
    mean, std = arrays.channel_stats(images)
    augment = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])
    ds = arrays.ArrayDataset(images, np.arange(N_IMAGES) % 5, transform=augment, mean=mean, std=std)
    loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=0)

    def epoch() -> int:
        return sum(len(y) for _, y in loader)

    assert benchmark.pedantic(epoch, rounds=3) == N_IMAGES


def test_dataset_epoch_no_transform(benchmark, png_paths, tmp_path):
    """Same without augmentation: the floor set by per-sample conversion and collation."""
    images = cache.load_images(png_paths, None, "RGB", tmp_path)
    ds = arrays.ArrayDataset(images, np.arange(N_IMAGES) % 5)
    loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=0)

    def epoch() -> int:
        return sum(len(y) for _, y in loader)

    assert benchmark.pedantic(epoch, rounds=3) == N_IMAGES
