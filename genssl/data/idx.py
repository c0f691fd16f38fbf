"""A reader for the IDX file format of (Fashion-)MNIST, plain or gzip-compressed.

IDX: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension, then the data in C order. (Fashion-)MNIST only uses unsigned bytes, but the other type
codes are cheap to support and make a truncated or foreign file fail with a clear message.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from genssl.errors import DataError

# IDX type code -> big-endian numpy dtype.
_IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (``.gz`` or not) into a tensor of its stored shape and dtype."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        # A gzip file cut short raises EOFError, damaged deflate data zlib.error, a bad header OSError.
        raise DataError(
            f"Cannot read the IDX file {path} ({type(exc).__name__}: {exc}); it is probably truncated or "
            "corrupt: replace it with an intact copy."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file (it should start with two zero bytes and a type code); "
            "expected the (Fashion-)MNIST files such as train-images-idx3-ubyte.gz."
        )
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises shape {shape} "
            f"({expected} bytes of data) but it holds {len(raw) - header} bytes."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    # Native byte order and a writable copy, as torch.from_numpy requires.
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def find_idx(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` decompressed if present, else ``directory/stem.gz``, else None."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None
