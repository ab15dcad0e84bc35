"""Decode images once and keep them as memory-mapped uint8 arrays.

Decoding tens of thousands of small PNG/JPEG files costs seconds to minutes per run; reading a
``.npy`` through ``np.load(mmap_mode="r")`` costs milliseconds and shares pages between DataLoader
workers. The cache file is keyed by the source (paths relative to their common folder, file sizes
and modification times), the output size and colour mode, and :data:`CACHE_FORMAT`, so any change
to a file or to the decoding recipe gives a new key.

Decoding recipe: Pillow opens the file, converts it to ``mode`` ("RGB" or "L") and, when ``size``
is given and differs from the image, resizes with ``Image.Resampling.BILINEAR``. Pillow's bilinear
filter widens its support when down-scaling, so it is antialiased (unlike ``cv2.INTER_LINEAR``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from clbench.datasets.errors import DataError

logger = logging.getLogger(__name__)

#: Bump when the decoding recipe changes, so old cache files are no longer matched.
CACHE_FORMAT = 1

Mode = Literal["RGB", "L"]
_CHANNELS: dict[str, int] = {"RGB": 3, "L": 1}
# Images per thread task: large enough to amortise the pool, small enough to balance 2-16 cores.
_CHUNK = 256


def default_cache_dir() -> Path:
    """``$CLBENCH_CACHE`` if set, else ``~/.cache/clbench``."""
    env = os.environ.get("CLBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clbench"


def decode_image(path: Path, size: tuple[int, int] | None, mode: Mode) -> np.ndarray:
    """Decode one image to an H×W×C uint8 array (C = 3 for "RGB", 1 for "L").

    ``size`` is (height, width). Raises :class:`DataError` naming the file when Pillow cannot read it.
    """
    try:
        with Image.open(path) as im:
            im = im.convert(mode) if im.mode != mode else im
            if size is not None and im.size != (size[1], size[0]):
                # Pillow sizes are (width, height); ours follow the array shape (height, width).
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return arr[:, :, None] if arr.ndim == 2 else arr


def cache_key(paths: Sequence[Path], size: tuple[int, int] | None, mode: Mode) -> str:
    """Hex digest of the source files (in the given order), ``size``, ``mode`` and the format.

    Paths enter relative to their common folder so that the same data extracted elsewhere (tar
    keeps modification times) reuses the cache. Order is part of the key because rows follow it.
    """
    h = hashlib.sha256(f"clbench-images\0{CACHE_FORMAT}\0{size}\0{mode}\0{len(paths)}\n".encode())
    if paths:
        parents = {os.path.dirname(os.fspath(p)) for p in paths}
        base = os.path.commonpath(list(parents)) if len(parents) > 1 else parents.pop()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise DataError(f"cannot read image {p}: {exc.strerror or exc}") from exc
        rel = os.path.relpath(os.fspath(p), base)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_images(
    paths: Sequence[Path],
    size: tuple[int, int] | None = None,
    mode: Mode = "RGB",
    cache_dir: Path | None = None,
    *,
    cache: bool = True,
    workers: int | None = None,
    expected: tuple[int, int] | None = None,
    resize_hint: str | None = None,
) -> np.ndarray:
    """Decode ``paths`` into one N×H×W×C uint8 array, rows in the given order.

    Args:
        paths: image files; all must decode to the same size unless ``size`` is given.
        size: (height, width) to resize to with Pillow bilinear, or None to keep the file size.
        mode: "RGB" (C = 3) or "L" (grayscale, C = 1).
        cache_dir: where cache files live; None means :func:`default_cache_dir`.
        cache: False decodes into memory and writes nothing.
        workers: decoding threads (Pillow releases the GIL while decoding); None = CPU count.
        expected: (height, width) the caller's data should have; when sizes differ, the file
            that breaks it is the one named (else the first file that differs from the first).
        resize_hint: how the user makes sizes agree (the flag or field that resizes, or that
            none exists); the default advises ``size=(height, width)`` for callers of this function.

    Returns:
        A read-only ``np.memmap`` over the cache file (or an in-memory array when ``cache`` is
        False or the cache folder is not writable).

    Raises:
        DataError: a file is missing or unreadable (named in the message), or sizes differ.
    """
    if mode not in _CHANNELS:
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    paths = [Path(p) for p in paths]
    if not cache:
        return _decode_all(paths, size, mode, None, workers, (expected, resize_hint))
    key = cache_key(paths, size, mode)
    folder = (cache_dir if cache_dir is not None else default_cache_dir()) / "images"
    target = folder / f"images-{key[:32]}.npy"
    if target.exists():
        cached = _open_cached(target, len(paths), _CHANNELS[mode])
        if cached is not None:
            return cached
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as exc:
        logger.warning("image cache folder %s not writable (%s); decoding in memory", folder, exc)
        return _decode_all(paths, size, mode, None, workers, (expected, resize_hint))
    tmp = Path(tmp_name)
    try:
        _decode_all(paths, size, mode, tmp, workers, (expected, resize_hint))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared between users
        # Same-folder rename is atomic: readers see either no file or a complete one.
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("cached %d images in %s", len(paths), target)
    opened = _open_cached(target, len(paths), _CHANNELS[mode])
    if opened is None:  # pragma: no cover - only if the file vanished between write and read
        raise DataError(f"image cache {target} could not be re-opened")
    return opened


def _open_cached(target: Path, n: int, channels: int) -> np.ndarray | None:
    """Memory-map a cache file; None if it is damaged or does not match (then it is rebuilt)."""
    try:
        arr = np.load(target, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("ignoring damaged image cache %s: %s", target, exc)
        return None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[0] != n or arr.shape[3] != channels:
        logger.warning("ignoring image cache %s with unexpected shape %s", target, arr.shape)
        return None
    return arr


def _decode_all(
    paths: list[Path],
    size: tuple[int, int] | None,
    mode: Mode,
    out_file: Path | None,
    workers: int | None,
    advice: tuple[tuple[int, int] | None, str | None] = (None, None),
) -> np.ndarray:
    channels = _CHANNELS[mode]
    if not paths:
        h, w = size if size is not None else (0, 0)
        empty = np.zeros((0, h, w, channels), dtype=np.uint8)
        if out_file is not None:
            np.save(out_file, empty)
        return empty
    # The first image fixes the shape so the output can be allocated (or mapped) up front.
    first = decode_image(paths[0], size, mode)
    shape = (len(paths), *first.shape)
    if out_file is not None:
        out = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.uint8, shape=shape)
    else:
        out = np.empty(shape, dtype=np.uint8)
    out[0] = first

    def fill(indices: range) -> None:
        for i in indices:
            img = decode_image(paths[i], size, mode)
            if img.shape != first.shape:
                raise _size_error((paths[0], first), (paths[i], img), *advice)
            out[i] = img

    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers <= 1 or len(paths) < 2 * _CHUNK:
        fill(range(1, len(paths)))
    else:
        chunks = [range(s, min(s + _CHUNK, len(paths))) for s in range(1, len(paths), _CHUNK)]
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            # list() re-raises the first worker exception (a DataError naming the file).
            list(pool.map(fill, chunks))
    if isinstance(out, np.memmap):
        out.flush()
        del out
        return np.empty(0, dtype=np.uint8)  # the caller re-opens the file read-only
    return out


def _size_error(
    first: tuple[Path, np.ndarray], other: tuple[Path, np.ndarray], expected: tuple[int, int] | None, hint: str | None
) -> DataError:
    """One line: which file has the odd size (the one off ``expected`` when that is known), the
    size the data should have, and how to make sizes agree."""
    if expected is not None and first[1].shape[:2] != tuple(expected):
        first, other = other, first  # the first file is the odd one
    (odd, odd_img), (ok, ok_img) = other, first
    should = (
        f"{expected[1]}x{expected[0]} expected"
        if expected is not None
        else f"{ok} is {ok_img.shape[1]}x{ok_img.shape[0]}"
    )
    hint = hint or "pass size=(height, width) to load_images"
    return DataError(
        f"images differ in size: {odd} is {odd_img.shape[1]}x{odd_img.shape[0]}x{odd_img.shape[2]}, {should}; {hint}"
    )
