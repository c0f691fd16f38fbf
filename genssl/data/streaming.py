"""Data that does not fit in memory: images decoded from files on access, and batches streamed to the device.

:class:`LazyImages` stands in for the uint8 ``[N, C, S, S]`` image tensor of an :class:`ImageSplit`: it
holds only the file paths and decodes the images an index asks for. Every image is decoded with PIL,
converted to RGB (``channels=3``) or L (``channels=1``), resized with PIL's bilinear filter
(antialiased) so that its *shorter* side is ``S`` (the longer side becomes ``int(S * long / short)``)
and centre-cropped to ``S``×``S`` (offsets ``round((H' - S) / 2)``, ``round((W' - S) / 2)``): the rule of
torchvision's ``Compose([Resize(S), CenterCrop(S)])`` on PIL images.

:class:`BatchStream` yields one epoch's batches ``(batch_index, uint8 batch on the device)`` in the order
given. Over a :class:`LazyImages` it decodes in ``torch.utils.data.DataLoader`` workers into pinned memory
and copies with ``non_blocking=True``, so decoding overlaps the training step; over a tensor it indexes in
memory as the in-memory path always has. The batched multi-view augmentation then runs on the device as
for any other dataset. :func:`distributed_order` gives each rank its shard of an epoch's permutation.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genssl.errors import ConfigError, DataError

_MODES = {1: "L", 3: "RGB"}
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, threads) -> pool; a forked worker makes its own
_POOLS_LOCK = threading.Lock()


def default_threads() -> int:
    """Decode threads when none are given: up to 4, no more than the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _pool(threads: int) -> ThreadPoolExecutor:
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="genssl-decode")
        return pool


def decode_image(path: str | os.PathLike[str], size: int, channels: int = 3) -> np.ndarray:
    """One image file as uint8 ``[C, size, size]`` (see the module docstring for the resize rule).

    Raises :class:`DataError` naming the file when PIL cannot read it.
    """
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert(_MODES[channels])
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for missing, truncated, foreign files
        raise DataError(
            f"The image {path} could not be read ({type(exc).__name__}: {exc}); replace or remove it."
        ) from exc
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    if new != (width, height):
        image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    if new != (size, size):
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class LazyImages:
    """A read-only, tensor-like view of image files, decoded on access as uint8 ``[N, C, S, S]``.

    Args:
        paths: the ``N`` image files, in dataset order.
        size: ``S``, the side of every decoded image.
        channels: 3 (converted to RGB) or 1 (converted to L).
        device: where indexed batches are returned (decoding is always on the CPU).
        threads: decode threads used for a batch in this process (default :func:`default_threads`;
            1 decodes serially).
        num_workers: how many DataLoader workers :class:`BatchStream` uses by default for these images.

    ``images[i]`` gives ``[C, S, S]``; a slice, a list, a numpy array or an int64/bool tensor of
    indices gives ``[n, C, S, S]`` (negative indices count from the end). Nothing is cached.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]] | np.ndarray,
        size: int,
        channels: int = 3,
        *,
        device: torch.device | str | None = None,
        threads: int | None = None,
        num_workers: int = 0,
    ) -> None:
        if channels not in _MODES:
            raise ConfigError(f"Images can have 1 (grey) or 3 (RGB) channels, got channels={channels!r}.")
        if isinstance(size, bool) or int(size) != size or int(size) < 1:
            raise ConfigError(f"The image size must be a positive integer, got {size!r}.")
        # One numpy array of encoded paths, not a list of Python objects: DataLoader workers forked from
        # this process would otherwise copy every page as they touch the objects' reference counts (and
        # bytes take a quarter of the room of numpy's str).
        if isinstance(paths, np.ndarray) and paths.dtype.kind == "S":
            self._paths = paths
        else:
            self._paths = np.asarray([os.fsencode(p) for p in paths], dtype=np.bytes_)
        if self._paths.ndim != 1:
            raise ValueError(f"paths must be one-dimensional, got shape {self._paths.shape}.")
        self.image_size, self.channels = int(size), int(channels)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.num_workers = max(0, int(num_workers))

    # --- tensor-like metadata -------------------------------------------------------------------

    @property
    def paths(self) -> list[str]:
        """The files, in dataset order."""
        return [os.fsdecode(bytes(p)) for p in self._paths]

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._paths), self.channels, self.image_size, self.image_size))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def ndim(self) -> int:
        return 4

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def dim(self) -> int:
        return 4

    def size(self, dim: int | None = None) -> torch.Size | int:
        """Like ``Tensor.size``: the shape, or its length along ``dim``."""
        return self.shape if dim is None else int(self.shape[dim])

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return (
            f"LazyImages({len(self)} files, shape={tuple(self.shape)}, dtype=torch.uint8, device={self.device}, "
            f"threads={self.threads})"
        )

    # --- views ----------------------------------------------------------------------------------

    def _like(self, paths: np.ndarray, device: torch.device | None = None, threads: int | None = None) -> LazyImages:
        return LazyImages(
            paths,
            self.image_size,
            self.channels,
            device=self.device if device is None else device,
            threads=self.threads if threads is None else threads,
            num_workers=self.num_workers,
        )

    def to(self, device: torch.device | str | torch.dtype | None = None, *args: Any, **kwargs: Any) -> LazyImages:
        """The same files, with indexed batches returned on ``device``; nothing is decoded here.

        ``dtype=torch.uint8`` (or ``.to(torch.uint8)``) is accepted and changes nothing; ``non_blocking``
        and ``copy`` are ignored. Any other dtype is a TypeError: convert the decoded batches instead.
        """
        dtype = kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        kwargs.pop("copy", None)
        if kwargs:
            raise TypeError(f"LazyImages.to() got unexpected arguments {sorted(kwargs)}.")
        for arg in (device, *args):
            if isinstance(arg, torch.dtype):
                dtype = arg
            elif isinstance(arg, (torch.device, str)):
                device = arg
        if dtype is not None and dtype != torch.uint8:
            raise TypeError(f"LazyImages are uint8; convert decoded batches to {dtype} instead.")
        if device is None or isinstance(device, torch.dtype):
            return self
        return self._like(self._paths, torch.device(device))

    def cpu(self) -> LazyImages:
        return self.to("cpu")

    def contiguous(self) -> LazyImages:
        return self

    def select(self, index: Any) -> LazyImages:
        """Another LazyImages over the files at ``index`` (anything :meth:`__getitem__` takes but an int)."""
        return self._like(self._paths[self._positions(index)])

    subset = select

    # --- decoding -------------------------------------------------------------------------------

    def _positions(self, index: Any) -> np.ndarray:
        n = len(self._paths)
        if isinstance(index, slice):
            return np.arange(n)[index]
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        positions = np.asarray(index)
        if positions.dtype == np.bool_:
            if positions.shape != (n,):
                raise IndexError(f"A boolean mask over {n} images must have shape [{n}], got {list(positions.shape)}.")
            return np.flatnonzero(positions)
        if positions.size == 0:
            return np.zeros(0, dtype=np.int64)
        if not np.issubdtype(positions.dtype, np.integer):
            raise IndexError(f"Images are indexed with integers, slices or boolean masks, not {positions.dtype}.")
        positions = positions.astype(np.int64).reshape(-1)
        bad = (positions < -n) | (positions >= n)
        if bad.any():
            raise IndexError(f"Index {int(positions[bad][0])} is out of range for {n} images.")
        return np.where(positions < 0, positions + n, positions)

    def __getitem__(self, index: Any) -> torch.Tensor:
        scalar = isinstance(index, (int, np.integer)) and not isinstance(index, bool)
        if isinstance(index, torch.Tensor) and index.dim() == 0 and index.dtype != torch.bool:
            scalar, index = True, int(index)
        positions = self._positions([index] if scalar else index)
        batch = self.decode(positions)
        return batch[0] if scalar else batch

    def decode(self, positions: np.ndarray | Sequence[int], threads: int | None = None) -> torch.Tensor:
        """The images at the (non-negative) ``positions`` as uint8 ``[n, C, S, S]`` on :attr:`device`.

        Decoded on the CPU with ``threads`` threads (default :attr:`threads`), into pinned memory when
        the device is a GPU, then copied with ``non_blocking=True``.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        pin = self.device.type == "cuda" and torch.cuda.is_available()
        side = self.image_size
        out = torch.empty((len(positions), self.channels, side, side), dtype=torch.uint8, pin_memory=pin)
        target = out.numpy()
        paths = self._paths

        def one(slot: int) -> None:
            target[slot] = decode_image(os.fsdecode(bytes(paths[positions[slot]])), side, self.channels)

        threads = self.threads if threads is None else max(1, int(threads))
        if threads > 1 and len(positions) > 1:
            for done in _pool(threads).map(one, range(len(positions))):
                del done  # map re-raises the first failure here
        else:
            for slot in range(len(positions)):
                one(slot)
        if self.device.type == "cpu":
            return out
        return out.to(self.device, non_blocking=pin)


def distributed_order(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s shard of an epoch's permutation ``order``, as ``DistributedSampler(drop_last=True)``
    splits its permutation: the last ``len(order) % world_size`` entries are dropped and rank ``r`` takes
    every ``world_size``-th entry from position ``r``, so all shards are equally long and disjoint.

    Draw ``order`` from the epoch's generator identically on every rank (same seed, same device type).
    """
    if isinstance(world_size, bool) or int(world_size) != world_size or world_size < 1:
        raise ConfigError(f"world_size must be a positive integer, got {world_size!r}.")
    if isinstance(rank, bool) or int(rank) != rank or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be an integer from 0 to {world_size - 1}, got {rank!r}.")
    total = (len(order) // world_size) * world_size
    return order[rank:total:world_size]


class _Failure:
    """A decode error raised in a DataLoader worker, carried back to be re-raised as one paragraph."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Decode(Dataset):
    """DataLoader dataset keyed by dataset index; a batch sampler hands it whole batches of indices."""

    def __init__(self, images: LazyImages, threads: int) -> None:
        self.images = images.to("cpu")  # workers decode on the CPU; the main process copies to the device
        self.threads = threads

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> torch.Tensor | _Failure:
        try:
            return self.images.decode(indices, threads=self.threads)
        except DataError as exc:
            return _Failure(str(exc))


class _Batches:
    """The batch sampler: consecutive ``batch_size`` slices of the current order (read at each epoch)."""

    def __init__(self, batch_size: int, drop_last: bool) -> None:
        self.batch_size, self.drop_last = batch_size, drop_last
        self.order = np.zeros(0, dtype=np.int64)
        self.start = 0

    def __len__(self) -> int:
        n = len(self.order)
        full = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return max(full - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, self.start + len(self)):
            yield self.order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def _whole(batch: Any) -> Any:
    return batch


class BatchStream:
    """One epoch's batches of ``images`` in ``order``: iterate for ``(batch_index, batch)``.

    Args:
        images: a :class:`LazyImages` (decoded in DataLoader workers) or a uint8 tensor ``[N, C, H, W]``
            on any device (indexed in memory, no workers).
        order: int64 dataset indices for this epoch and rank (e.g. ``distributed_order(randperm)``), on
            any device.
        batch_size: images per batch.
        num_workers: DataLoader worker processes for :class:`LazyImages` (default
            ``images.num_workers``); 0 decodes in this process with the images' threads.
        pin_memory: decode into pinned memory and copy with ``non_blocking=True`` (GPU devices only).
        device: where batches are returned (default: the images' device).
        drop_last: drop the ragged last batch (the trainer's rule: batches stay full); False keeps it
            (evaluation).
        start: the first batch to yield (resuming a stopped epoch at its step).
        prefetch_factor: batches each worker decodes ahead.

    Yields ``batch_index`` (``order``'s slice, on ``order``'s device) and the uint8 ``[b, C, S, S]``
    batch on ``device``. ``len()`` is the number of batches still to come. With workers the stream
    keeps them between epochs: call :meth:`set_order` with the next epoch's order and iterate again,
    and :meth:`close` (or use ``with``) at the end. Iterating the same stream twice repeats the epoch.
    """

    def __init__(
        self,
        images: LazyImages | torch.Tensor,
        order: torch.Tensor,
        batch_size: int,
        *,
        num_workers: int | None = None,
        pin_memory: bool = True,
        device: torch.device | str | None = None,
        drop_last: bool = True,
        start: int = 0,
        prefetch_factor: int = 2,
    ) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.images = images
        self.batch_size = int(batch_size)
        self.lazy = isinstance(images, LazyImages)
        self.device = torch.device(device) if device is not None else images.device
        self.pin = bool(pin_memory) and self.device.type == "cuda" and torch.cuda.is_available()
        workers = getattr(images, "num_workers", 0) if num_workers is None else num_workers
        self.num_workers = max(0, int(workers)) if self.lazy else 0
        self.drop_last = bool(drop_last)
        self.prefetch_factor = int(prefetch_factor)
        self._batches = _Batches(self.batch_size, self.drop_last)
        self._loader: DataLoader | None = None
        self.set_order(order, start)

    @classmethod
    def in_order(cls, images: LazyImages | torch.Tensor, batch_size: int, **kwargs: Any) -> BatchStream:
        """Every image once, in dataset order, the last batch kept: evaluation's feature stream."""
        kwargs.setdefault("drop_last", False)
        return cls(images, torch.arange(len(images)), batch_size, **kwargs)

    def set_order(self, order: torch.Tensor, start: int = 0, drop_last: bool | None = None) -> BatchStream:
        """Use ``order`` (from batch ``start``; ``drop_last`` unchanged unless given) from the next
        iteration on; workers are kept."""
        if not isinstance(order, torch.Tensor):
            order = torch.as_tensor(order, dtype=torch.int64)
        if order.dim() != 1 or order.is_floating_point() or order.dtype == torch.bool:
            raise ConfigError(f"order must be a 1-D integer tensor, got {order.dtype} {tuple(order.shape)}.")
        if isinstance(start, bool) or int(start) != start or start < 0:
            raise ConfigError(f"start must be a non-negative integer, got {start!r}.")
        if drop_last is not None:
            self.drop_last = self._batches.drop_last = bool(drop_last)
        self.order = order
        self._batches.order = order.detach().cpu().numpy().astype(np.int64, copy=False)
        self._batches.start = int(start)
        return self

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.lazy:
            yield from self._in_memory()
            return
        bs, start = self.batch_size, self._batches.start
        for b, batch in enumerate(self._make_loader(), start=start):
            if isinstance(batch, _Failure):
                raise DataError(batch.message)
            yield self.order[b * bs : (b + 1) * bs], batch.to(self.device, non_blocking=self.pin)

    def _in_memory(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, bs = self.images, self.batch_size
        for b in range(self._batches.start, self._batches.start + len(self._batches)):
            batch_index = self.order[b * bs : (b + 1) * bs]
            batch = images[batch_index.to(images.device)]
            if batch.device != self.device:
                if self.pin and batch.device.type == "cpu":
                    batch = batch.pin_memory()
                batch = batch.to(self.device, non_blocking=self.pin)
            yield batch_index, batch

    def _make_loader(self) -> DataLoader:
        if self._loader is None:
            workers = self.num_workers
            threads = 1 if workers > 0 else self.images.threads  # workers already decode in parallel
            self._loader = DataLoader(
                _Decode(self.images, threads),
                batch_sampler=self._batches,
                collate_fn=_whole,
                num_workers=workers,
                pin_memory=self.pin,
                persistent_workers=workers > 0,
                prefetch_factor=self.prefetch_factor if workers > 0 else None,
            )
        return self._loader

    def close(self) -> None:
        """Stop the workers (a later iteration starts new ones)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["BatchStream", "LazyImages", "decode_image", "default_threads", "distributed_order"]
