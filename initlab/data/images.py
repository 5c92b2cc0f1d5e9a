"""Image sets (N, C, H, W): scikit-learn's digits, torchvision's MNIST / Fashion-MNIST / CIFAR-10,
and ``shapes``, a synthetic set generated from a seed."""

from __future__ import annotations

import logging
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn import datasets as skdata
from sklearn.model_selection import train_test_split

from initlab.data import files
from initlab.data.tensors import Data, balanced_labels, check_stratified_size, standardized, tensors

DIGITS_SHAPE = (1, 8, 8)
log = logging.getLogger(__name__)


def digits(cfg) -> Data:
    """scikit-learn's 1797 8x8 digits, a stratified split, each pixel standardized with the training
    statistics (exactly the 64 features the MLP studies used before images kept their shape)."""
    x, y = skdata.load_digits(return_X_y=True)
    check_stratified_size("dataset.test_size", cfg.test_size, y, "samples")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_size, stratify=y, random_state=cfg.split_seed)
    x_train, x_test = (a.reshape(len(a), *DIGITS_SHAPE) for a in standardized(x_train, x_test))
    return Data(*tensors(x_train, y_train), *tensors(x_test, y_test), kind="images", n_classes=10)


TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def torchvision_set(cfg) -> Data:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[cfg.name])
    root = files.resolved_root(cfg.root)
    existing = files.existing_dirs(root)
    expected = _expected_files(cls, root)
    _unpack_gz(cfg.name, cls, expected, cfg.input_shape()[1:])
    damaged = _unreadable_idx(expected, cfg.input_shape()[1:])
    if damaged:
        raise files.unreadable(cfg.name, *damaged, f"torchvision's {cls.__name__} files")
    try:
        train, test = (cls(str(root), train=flag, download=cfg.download) for flag in (True, False))
    except Exception as err:  # offline download, missing or damaged files: say which and where they belong
        files.remove_new_empty_dirs(root, existing)
        what = f"torchvision's {cls.__name__} files in {_layout(cls)}"
        damaged = _damaged(expected, err)
        if damaged:
            raise files.unreadable(cfg.name, *damaged, f"torchvision's {cls.__name__} files") from None
        how = f"the download failed ({files.short_reason(err)})" if cfg.download else "download=false"
        absent = [p.name for p in expected if not p.is_file()]
        found = f" ({', '.join(absent)})" if len(absent) < len(expected) else ""
        raise files.missing(cfg.name, root, what, f"{found} and {how}") from None
    return Data(*_normalized(train, cfg), *_normalized(test, cfg), kind="images", n_classes=len(train.classes))


def _expected_files(cls: type, root: Path) -> dict[Path, Optional[str]]:
    """The files torchvision reads for ``cls`` under ``root``, each with the MD5 it checks (None:
    MNIST's unpacked files, which it checks only for being there)."""
    if hasattr(cls, "resources"):  # MNIST and Fashion-MNIST: <root>/<Class>/raw/<name without .gz>
        return {root / cls.__name__ / "raw" / Path(name).stem: None for name, _ in cls.resources}
    base = root / cls.base_folder  # CIFAR-10: its batches and meta file, MD5-checked
    return {base / name: md5 for name, md5 in [*cls.train_list, *cls.test_list, [cls.meta["filename"],
                                                                                 cls.meta["md5"]]]}


def _gz(path: Path) -> Path:
    """The packed form of ``path`` (MNIST's official ``*-ubyte.gz``)."""
    return path.with_name(path.name + ".gz")


def _unpack_gz(name: str, cls: type, expected: dict[Path, Optional[str]], image_size: tuple[int, int]) -> None:
    """Unpack the ``.gz`` of each ``expected`` file that is there only packed (MNIST's official
    ``*-ubyte.gz``, placed by hand): torchvision looks for the unpacked files and unpacks only what
    its own download fetched. Its extract helper does it, as in that download step; one info line
    says so. The .gz is the source: an unpacked file older than its .gz, one whose size or CRC-32
    is not the one the .gz's trailer records (a .gz replaced by an older-stamped copy: cp -p, tar,
    wget), or an idx file beside its .gz that is not what its name says (an empty .gz unpacked
    earlier), is unpacked again, else a replaced .gz would never be read. A .gz that does not
    unpack, or unpacks to an idx file that is not what its name says (an empty .gz), is a
    DatasetUnavailable naming the .gz (its output removed, else it would be read next time), before
    the info line."""
    from torchvision.datasets.utils import extract_archive

    def stale(path: Path) -> bool:
        return (_gz(path).stat().st_mtime_ns > path.stat().st_mtime_ns or _unpacked_otherwise(path)
                or (expected[path] is None and _idx_problem(path, image_size) is not None))

    packed = [path for path in expected if _gz(path).is_file() and (not path.exists() or stale(path))]
    again = sum(path.exists() for path in packed)
    for path in packed:
        try:
            extract_archive(str(_gz(path)))
        except (OSError, EOFError, zlib.error) as err:  # not gzip, truncated, corrupt data or CRC
            path.unlink(missing_ok=True)
            raise files.unreadable(name, _gz(path), f"could not be unpacked ({files.one_line(err)})",
                                   f"torchvision's {cls.__name__} files") from None
        problem = _idx_problem(path, image_size) if expected[path] is None else None
        if problem:
            path.unlink()
            raise files.unreadable(name, _gz(path), f"unpacks to a file that {problem}",
                                   f"torchvision's {cls.__name__} files")
    if packed:
        log.info("dataset %s: unpacked %d .gz file%s in %s%s", name, len(packed), "s"[:len(packed) - 1],
                 packed[0].parent, f" ({again} over an older or unreadable unpacked file)" if again else "")


def _unpacked_otherwise(path: Path) -> bool:
    """Whether ``path`` is not what its .gz unpacks to, by the gzip trailer (RFC 1952: the CRC-32 and
    the size mod 2^32 of the data, the last 8 bytes): a few tens of milliseconds for MNIST's files.
    A .gz too short for a trailer counts as different (unpacking it names what is wrong)."""
    with open(_gz(path), "rb") as f:
        f.seek(0, 2)
        if f.tell() < 18:  # 10-byte header + 8-byte trailer
            return True
        f.seek(-8, 2)
        crc, size = struct.unpack("<II", f.read(8))
    return path.stat().st_size % 2**32 != size or zlib.crc32(path.read_bytes()) != crc


def _damaged(expected: dict[Path, Optional[str]], err: Exception) -> Optional[tuple[Path, str]]:
    """(file, why) when every file is there and one of them is not what torchvision reads: a
    changed MD5 (CIFAR-10; MNIST's idx files are checked before torchvision reads them), or a file
    it failed to parse (its whole reason); None when any is absent."""
    from torchvision.datasets.utils import check_integrity

    if not expected or not all(p.is_file() for p in expected):
        return None
    for path, md5 in expected.items():
        if md5 is not None and not check_integrity(str(path), md5):
            return path, "fails torchvision's MD5 check: not the original file"
    return next(iter(expected)).parent, f"could not be read ({files.one_line(err)})"


def _unreadable_idx(expected: dict[Path, Optional[str]], image_size: tuple[int, int]) -> Optional[tuple[Path, str]]:
    """(file, why) for the first of MNIST's idx files (those without an MD5) that is not what its
    name says, checked before torchvision reads them: its reader names no file (an empty file is
    'invalid literal for int()', any other content a bare AssertionError), and it reads images of any
    size, which a model built for ``image_size`` then fails on mid-run, or a CNN silently pools.
    None when one is absent (a download may fetch them all) or all fit."""
    idx = [path for path, md5 in expected.items() if md5 is None]
    if not idx or not all(path.is_file() for path in idx):
        return None
    for path in idx:
        problem = _idx_problem(path, image_size)
        if problem:
            return path, problem
    return None


IDX_NAME = re.compile(r"-idx([13])-ubyte$")  # torchvision's names: uint8 labels (1 dimension), images (3)


def _idx_problem(path: Path, image_size: tuple[int, int]) -> Optional[str]:
    """Why the idx file ``path`` (MNIST's format: 0, 0, type 8 = uint8, ndim, ndim big-endian sizes,
    the values) is not the labels or ``image_size`` images its name says, in words: 'is empty', 'is
    not an idx images file: magic number 0x3c68746d, expected 0x00000803' (an HTML error page saved
    under its name), 'holds 0 images', 'holds 32 x 32 images; valid: 28 x 28', or a size that is not
    what its header declares ('is 100000 bytes, but its idx header (300 x 28 x 28 uint8) needs
    235216 (truncated)'). None when it fits."""
    ndim = int(IDX_NAME.search(path.name).group(1))
    what = "images" if ndim == 3 else "labels"
    magic, header = 0x800 + ndim, 4 + 4 * ndim
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(header)
    if not head:
        return "is empty"
    if head[:4] != magic.to_bytes(4, "big")[:len(head)]:
        return f"is not an idx {what} file: magic number 0x{head[:4].hex()}, expected 0x{magic:08x}"
    if len(head) < header:
        return f"is {size} bytes, shorter than its {header}-byte idx header (truncated)"
    dims = struct.unpack(f">{ndim}I", head[4:])
    if dims[0] == 0:
        return f"holds 0 {what}"
    if ndim == 3 and dims[1:] != tuple(image_size):
        return f"holds {dims[1]} x {dims[2]} images; valid: {image_size[0]} x {image_size[1]}"
    needed = header + math.prod(dims)
    if size == needed:
        return None
    how = "truncated" if size < needed else "longer than declared"
    return f"is {size} bytes, but its idx header ({' x '.join(map(str, dims))} uint8) needs {needed} ({how})"


def _layout(cls: type) -> str:
    """Where torchvision looks for a dataset's files, relative to root (MNIST/raw, cifar-10-batches-py)."""
    return getattr(cls, "base_folder", f"{cls.__name__}/raw")


def _normalized(ds, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> [0, 1] -> per-channel (x - mean) / std, channels first (N, C, H, W)."""
    images = torch.as_tensor(np.asarray(ds.data)).float().div_(255.0)
    if images.ndim == 3:  # grey images (N, H, W)
        images = images.unsqueeze(-1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32)
    std = torch.tensor(cfg.std, dtype=torch.float32)
    images = ((images - mean) / std).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)


SHAPES = ("square", "disk", "triangle", "cross")


def shape_masks(label: np.ndarray, row: np.ndarray, col: np.ndarray, radius: np.ndarray, size: int) -> np.ndarray:
    """Boolean (N, size, size) masks: shape ``SHAPES[label]`` centred at (row, col), half-width ``radius``
    (pixels). Square: max(|dr|, |dc|) <= r; disk: dr^2 + dc^2 <= r^2; triangle (apex up): |dc| <=
    (dr + r) / 2 for |dr| <= r; cross: two bars of half-width r/3 and half-length r."""
    grid = np.arange(size, dtype=np.float64)
    dr = grid[None, :, None] - row[:, None, None]
    dc = grid[None, None, :] - col[:, None, None]
    r = radius[:, None, None]
    inside = np.maximum(np.abs(dr), np.abs(dc)) <= r
    masks = {
        "square": inside,
        "disk": dr ** 2 + dc ** 2 <= r ** 2,
        "triangle": inside & (np.abs(dc) <= (dr + r) / 2),
        "cross": inside & ((np.abs(dr) <= r / 3) | (np.abs(dc) <= r / 3)),
    }
    return np.select([label[:, None, None] == k for k in range(len(SHAPES))], [masks[s] for s in SHAPES], False)


def shapes(cfg) -> Data:
    """Four shape classes (``SHAPES``), balanced in train and in test (``balanced_labels``), at a
    random position and size with a random colour per channel in [0.5, 1] on a black background,
    plus Gaussian pixel noise of std ``cfg.noise``; standardized per channel with the training
    statistics. One seeded draw, train first."""
    rng = np.random.default_rng(cfg.seed)
    n, size = cfg.n_train + cfg.n_test, cfg.size
    label = balanced_labels((cfg.n_train, cfg.n_test), len(SHAPES), rng)
    radius = rng.uniform(0.2, 0.4, size=n) * size
    row, col = (rng.uniform(radius, size - 1 - radius) for _ in range(2))
    colour = rng.uniform(0.5, 1.0, size=(n, cfg.channels))
    images = shape_masks(label, row, col, radius, size)[:, None] * colour[:, :, None, None]
    images = images + cfg.noise * rng.standard_normal(images.shape)
    train, test = standardized(images[:cfg.n_train], images[cfg.n_train:], axis=(0, 2, 3))
    return Data(*tensors(train, label[:cfg.n_train]), *tensors(test, label[cfg.n_train:]),
                kind="images", n_classes=len(SHAPES))


LOADERS = {"digits": digits, "mnist": torchvision_set, "fashion_mnist": torchvision_set,
           "cifar10": torchvision_set, "shapes": shapes}
