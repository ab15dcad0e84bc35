"""Face data: LFW folders, View-2 pairs and gender labels; UTKFace labels parsed from file names.

Only files are listed here; decode them with :func:`clbench.datasets.cache.load_images`
(e.g. ``load_images(files.paths, (64, 64), "L")``).

LFW protocol: the ten folds of the View-2 pairs file are identity-disjoint, and LFW has no
separate identity-labelled training set, so :func:`lfw_training_set` follows LFW's *unrestricted*
protocol: to score fold k, train on the identities of the other nine folds plus identities that
occur in no pair (see /work/shared/data/README.md).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clbench.datasets.errors import DataError, missing_data_error
from clbench.datasets.folders import LabelledFiles

logger = logging.getLogger(__name__)

#: Label order shared by the LFW gender csv and UTKFace (UTKFace codes 0 = male, 1 = female).
GENDER_NAMES: tuple[str, ...] = ("male", "female")

#: UTKFace race codes 0..4.
UTKFACE_RACES: tuple[str, ...] = ("white", "black", "asian", "indian", "other")

#: The eight Adience age groups; label k is ADIENCE_AGE_GROUPS[k].
ADIENCE_AGE_GROUPS: tuple[str, ...] = (
    "0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53", "60+",
)  # fmt: skip

#: First age of each group when binning UTKFace ages (which fill Adience's gaps): an age goes to
#: the *nearest* Adience group, ties to the younger one. So 3 -> 0-2, 7 -> 4-6, 14 -> 8-13,
#: 21-22 -> 15-20, 23-35 -> 25-32, 36-45 -> 38-43, 46-56 -> 48-53, 57+ -> 60+.
ADIENCE_GROUP_STARTS: tuple[int, ...] = (0, 4, 8, 15, 23, 36, 46, 57)

# <age>_<gender>_<race>_<date...>: the three labels must be clean integers; the date part is not
# checked (two real files have a stray space or a missing dot there but valid labels).
_UTK_NAME = re.compile(r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_[^_]+$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_LFW_LAYOUT = """\
  {root}/
    lfw/<Person_Name>/<Person_Name>_0001.jpg
    pairs.txt (or lfw-pairs.txt): "10 300", then per fold 300 lines "name i j"
                                  and 300 lines "name1 i name2 j\""""

_UTK_LAYOUT = """\
  {root}/
    UTKFace/<age>_<gender>_<race>_<date>.jpg.chip.jpg   gender 0 = male, 1 = female"""


def adience_age_group(age: int | np.ndarray) -> int | np.ndarray:
    """Map ages in years to Adience group indices with :data:`ADIENCE_GROUP_STARTS`."""
    ages = np.asarray(age)
    if np.any(ages < 0):
        raise ValueError("ages must be non-negative")
    groups = np.searchsorted(np.asarray(ADIENCE_GROUP_STARTS), ages, side="right") - 1
    return int(groups) if groups.ndim == 0 else groups.astype(np.int64)


# ---------------------------------------------------------------- LFW


@dataclass(frozen=True)
class Pair:
    """One verification pair; ``same`` is True for a matched pair (one identity)."""

    path_a: Path
    path_b: Path
    same: bool
    name_a: str
    name_b: str


@dataclass(frozen=True)
class LFWPairs:
    """The View-2 pairs: ``folds[k - 1]`` holds fold k's pairs (matched first, then mismatched)."""

    lfw_dir: Path  # the folder holding <Person_Name>/ folders
    folds: tuple[tuple[Pair, ...], ...]
    _names: tuple[frozenset[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(frozenset(n for p in f for n in (p.name_a, p.name_b)) for f in self.folds)
        object.__setattr__(self, "_names", names)

    def __len__(self) -> int:
        return sum(len(f) for f in self.folds)

    def __iter__(self) -> Iterator[Pair]:
        return (p for f in self.folds for p in f)

    def fold(self, k: int) -> tuple[Pair, ...]:
        """Pairs of fold ``k``, numbered 1..n_folds as in the LFW documentation."""
        return self.folds[self._index(k)]

    def identities(self, k: int) -> frozenset[str]:
        """Names of the people in fold ``k`` (1-based)."""
        return self._names[self._index(k)]

    def fold_arrays(self, k: int) -> tuple[list[Path], np.ndarray, np.ndarray]:
        """Fold ``k`` as (unique image paths, M×2 int64 indices into them, M bools ``same``).

        Decode the paths once with ``load_images`` and feed all three to
        :class:`clbench.datasets.arrays.PairDataset`.
        """
        index: dict[Path, int] = {}
        pairs = self.fold(k)
        idx = [[index.setdefault(p.path_a, len(index)), index.setdefault(p.path_b, len(index))]
               for p in pairs]  # fmt: skip
        same = np.asarray([p.same for p in pairs], dtype=bool)
        return list(index), np.asarray(idx, dtype=np.int64).reshape(-1, 2), same

    def _index(self, k: int) -> int:
        if not 1 <= k <= len(self.folds):
            raise ValueError(f"fold must be in 1..{len(self.folds)}, not {k}")
        return k - 1


def _lfw_dir(root: Path) -> Path:
    """``root/lfw`` if present; ``root`` itself if it already holds person folders."""
    root = Path(root).expanduser()
    if (root / "lfw").is_dir():
        return root / "lfw"
    if root.is_dir():
        # One probe is enough: every LFW person folder holds <name>_0001.jpg.
        with os.scandir(root) as entries:
            first = next((e for e in entries if e.is_dir()), None)
        if first is not None and (Path(first.path) / f"{first.name}_0001.jpg").is_file():
            return root
    layout = _LFW_LAYOUT.format(root=root)
    raise missing_data_error("LFW images", root, ["lfw/"], layout)


def _lfw_image(lfw_dir: Path, name: str, i: int) -> Path:
    return lfw_dir / name / f"{name}_{i:04d}.jpg"


def parse_lfw_pairs(text: str, lfw_dir: Path, source: str = "pairs file") -> LFWPairs:
    """Parse View-2 text: header ``<folds> <n>``, then per fold n matched and n mismatched lines.

    Raises:
        DataError: a malformed header or line (with its line number), or a wrong line count.
    """
    lines = [ln.split() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    try:
        n_folds, n = (int(x) for x in lines[0])
    except (IndexError, ValueError):
        raise DataError(f"{source}: first line must be '<folds> <pairs per half-fold>'") from None
    if len(lines) - 1 != n_folds * 2 * n:
        raise DataError(f"{source}: expected {n_folds * 2 * n} pair lines, found {len(lines) - 1}")
    folds: list[tuple[Pair, ...]] = []
    lineno = 2
    for _ in range(n_folds):
        fold: list[Pair] = []
        for same in [True] * n + [False] * n:
            f = lines[lineno - 1]
            try:
                if same and len(f) == 3:
                    a, b = (f[0], int(f[1])), (f[0], int(f[2]))
                elif not same and len(f) == 4:
                    a, b = (f[0], int(f[1])), (f[2], int(f[3]))
                else:
                    kind = "'name i j'" if same else "'name1 i name2 j'"
                    raise ValueError(f"expected {kind}")
            except ValueError as exc:
                raise DataError(f"{source} line {lineno}: {exc}: {' '.join(f)!r}") from None
            fold.append(Pair(_lfw_image(lfw_dir, *a), _lfw_image(lfw_dir, *b), same, a[0], b[0]))
            lineno += 1
        folds.append(tuple(fold))
    return LFWPairs(lfw_dir, tuple(folds))


def load_lfw_pairs(root: Path, pairs_file: Path | None = None) -> LFWPairs:
    """Read the LFW View-2 pairs for ``{root}/lfw/`` and check that every image exists.

    Args:
        root: the folder holding ``lfw/`` (or the ``lfw`` folder itself).
        pairs_file: None looks for ``pairs.txt`` or ``lfw-pairs.txt`` in ``root`` and ``root/lfw``.

    Real data: 10 folds × 600 pairs (300 matched, then 300 mismatched).
    """
    root = Path(root).expanduser()
    lfw_dir = _lfw_dir(root)
    if pairs_file is None:
        candidates = [d / n for d in (root, lfw_dir) for n in ("pairs.txt", "lfw-pairs.txt")]
        pairs_file = next((c for c in candidates if c.is_file()), None)
        if pairs_file is None:
            layout = _LFW_LAYOUT.format(root=root)
            raise missing_data_error("LFW pairs file", root, ["pairs.txt"], layout)
    try:
        text = Path(pairs_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read LFW pairs file {pairs_file}: {exc.strerror or exc}") from exc
    pairs = parse_lfw_pairs(text, lfw_dir, str(pairs_file))
    _check_exist((p for pair in pairs for p in (pair.path_a, pair.path_b)), f"pairs in {pairs_file}")
    return pairs


def _check_exist(paths: Iterator[Path] | list[Path], what: str) -> None:
    missing = sorted({str(p) for p in paths if not p.is_file()})
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{len(missing)} image(s) referenced by {what} not found: {shown}")


def _lfw_people(lfw_dir: Path) -> dict[str, list[Path]]:
    people: dict[str, list[Path]] = {}
    for entry in sorted(os.scandir(lfw_dir), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            imgs = sorted(Path(entry.path, f) for f in os.listdir(entry.path)
                          if f.lower().endswith(_IMAGE_SUFFIXES))  # fmt: skip
            people[entry.name] = imgs
    return people


def lfw_training_set(pairs: LFWPairs, fold: int, min_images: int = 2) -> LabelledFiles:
    """Unrestricted-protocol training identities for scoring ``fold`` (1-based).

    Every person folder except those in ``fold``'s pairs (so the other nine folds plus people in
    no pair) with at least ``min_images`` images; labels 0..N-1 in name order, files sorted.
    Real data, fold 10: 1,505 identities / 7,829 images (min 2); 557 / 5,671 (min 4).
    """
    held_out = pairs.identities(fold)
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for name, imgs in _lfw_people(pairs.lfw_dir).items():
        if name in held_out or len(imgs) < min_images:
            continue
        labels.extend([len(names)] * len(imgs))
        paths.extend(imgs)
        names.append(name)
    if not names:
        raise DataError(f"no LFW identity in {pairs.lfw_dir} has >= {min_images} images outside fold {fold}")
    return LabelledFiles(paths, np.asarray(labels, dtype=np.int64), names)


def load_lfw_gender(root: Path, csv_file: Path | None = None) -> LabelledFiles:
    """LFW gender labels from an ``image,gender`` csv (``Person/Person_0001.jpg,male``).

    Labels index :data:`GENDER_NAMES` (0 male, 1 female); rows keep the csv order.

    Args:
        root: the folder holding ``lfw/`` (or the ``lfw`` folder itself).
        csv_file: None looks for ``lfw-gender.csv`` in ``root`` and ``root/lfw``.
    """
    root = Path(root).expanduser()
    lfw_dir = _lfw_dir(root)
    if csv_file is None:
        candidates = [root / "lfw-gender.csv", lfw_dir / "lfw-gender.csv"]
        csv_file = next((c for c in candidates if c.is_file()), None)
        if csv_file is None:
            layout = f"  {root}/\n    lfw/<Person_Name>/<Person_Name>_0001.jpg\n    lfw-gender.csv"
            raise missing_data_error("LFW gender labels", root, ["lfw-gender.csv"], layout)
    paths: list[Path] = []
    labels: list[int] = []
    try:
        with open(csv_file, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"image", "gender"} <= set(reader.fieldnames):
                raise DataError(f"{csv_file}: header must be 'image,gender'")
            for row in reader:
                gender = (row["gender"] or "").strip().lower()
                if gender not in GENDER_NAMES:
                    raise DataError(
                        f"{csv_file} line {reader.line_num}: gender must be male or female, not {row['gender']!r}"
                    )
                paths.append(lfw_dir / row["image"].strip())
                labels.append(GENDER_NAMES.index(gender))
    except OSError as exc:
        raise DataError(f"cannot read {csv_file}: {exc.strerror or exc}") from exc
    _check_exist(paths, str(csv_file))
    return LabelledFiles(paths, np.asarray(labels, dtype=np.int64), list(GENDER_NAMES))


# ---------------------------------------------------------------- UTKFace


@dataclass(frozen=True)
class UTKFaceFiles:
    """UTKFace files with labels parsed from their names (malformed names are left out)."""

    paths: list[Path]
    age: np.ndarray  # int64 years
    gender: np.ndarray  # int64, 0 male, 1 female
    race: np.ndarray  # int64, indexes UTKFACE_RACES
    malformed: int  # files skipped because their name has no clean age_gender_race prefix
    malformed_names: list[str]

    def gender_task(self) -> LabelledFiles:
        """Gender labels (0 male, 1 female)."""
        return LabelledFiles(self.paths, self.gender, list(GENDER_NAMES))

    def age_task(self) -> LabelledFiles:
        """Adience age-group labels (see :data:`ADIENCE_GROUP_STARTS` for ages between groups)."""
        groups = np.asarray(adience_age_group(self.age), dtype=np.int64)
        return LabelledFiles(self.paths, groups, list(ADIENCE_AGE_GROUPS))


def load_utkface(root: Path) -> UTKFaceFiles:
    """List ``{root}/UTKFace/<age>_<gender>_<race>_<date>.jpg.chip.jpg`` and parse the labels.

    Files whose name lacks a clean ``age_gender_race_`` prefix are skipped, counted in
    ``malformed`` and logged as a warning (the real data has exactly 3). Files sorted by name.
    """
    root = Path(root).expanduser()
    if (root / "UTKFace").is_dir():
        folder = root / "UTKFace"
    elif root.name == "UTKFace" and root.is_dir():
        folder = root
    else:
        raise missing_data_error("UTKFace images", root, ["UTKFace/"], _UTK_LAYOUT.format(root=root))
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(_IMAGE_SUFFIXES))
    if not names:
        raise DataError(
            f"no images in {folder}; point --data-root at the folder holding UTKFace/ (--verbose shows the "
            f"expected layout)\nExpected layout:\n{_UTK_LAYOUT.format(root=root)}"
        )
    paths: list[Path] = []
    labels: list[tuple[int, int, int]] = []
    malformed: list[str] = []
    for name in names:
        m = _UTK_NAME.match(name)
        if m is None:
            malformed.append(name)
            continue
        paths.append(folder / name)
        labels.append((int(m["age"]), int(m["gender"]), int(m["race"])))
    if malformed:
        logger.warning(
            "skipped %d UTKFace file(s) with malformed names in %s: %s",
            len(malformed), folder, ", ".join(malformed[:5]),
        )  # fmt: skip
    arr = np.asarray(labels, dtype=np.int64).reshape(-1, 3)
    return UTKFaceFiles(paths, arr[:, 0], arr[:, 1], arr[:, 2], len(malformed), malformed)
