"""Extracting ../shared/data's archives, for the test fixtures (tests/conftest.py) and for scripts
that regenerate a real-data reference (tests/regression/test_cifar_slice.py).

Archives are extracted into a fresh folder, or, with ``cache`` given, once for good into
``cache/extracted/<name>-<checksum>`` so later runs reuse them. Nothing is extracted into the checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")
CIFAR_PARTS = [f"cifar100-superclass.part{i}of3.tar.gz" for i in (1, 2, 3)]


def checksum(archive: Path) -> str:
    """The checksum recorded in SHA256SUMS (cheap), else computed from the file."""
    sums = archive.parent / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == archive.name:
                return parts[0]
    h = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def untar(archive: Path, dest: Path) -> None:
    if shutil.which("tar"):  # GNU tar is several times faster than tarfile
        subprocess.run(["tar", "xzf", str(archive), "-C", str(dest)], check=True)
    else:  # pragma: no cover
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")


def extract(name: str, archives: Sequence[Path], dest: Path | None = None, cache: Path | None = None) -> Path:
    """The folder holding ``archives``' contents: ``dest`` (extracted into it), or with ``cache``
    the cached copy (extracted there first if absent).

    Raises:
        FileNotFoundError: an archive is absent (the caller decides whether to skip).
        ValueError: neither ``dest`` nor ``cache`` given.
    """
    absent = [p.name for p in archives if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"{', '.join(absent)} not found in {archives[0].parent}")
    if cache is None:
        if dest is None:
            raise ValueError("extract needs dest or cache")
        for p in archives:
            untar(p, dest)
        return dest
    key = hashlib.sha256("".join(checksum(p) for p in archives).encode()).hexdigest()[:16]
    target = cache / "extracted" / f"{name}-{key}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Extract beside, then rename: a crashed run never leaves a half tree at the target.
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            for p in archives:
                untar(p, tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
