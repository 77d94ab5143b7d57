"""The bridges: typed operations that run in a :class:`~workerbridge.WorkerBridge`'s workers.

Reach them as ``bridge.compression``, ``bridge.crypto``, ``bridge.file`` and
``bridge.network`` (:class:`~workerbridge.WorkerBridge`), or as the same
attributes of an :class:`~workerbridge.AsyncWorkerBridge`, whose methods are
coroutines.  The classes are importable from here for type annotations.

The classes load on first use (PEP 562), so importing :mod:`workerbridge` (as
every worker process does) does not import ``cryptography``, ``zstandard`` or
``snappy`` until a bridge needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._compression import AsyncCompressionBridge as AsyncCompressionBridge
    from ._compression import CompressionBridge as CompressionBridge
    from ._crypto import AsyncCryptoBridge as AsyncCryptoBridge
    from ._crypto import CryptoBridge as CryptoBridge
    from ._file import AsyncFileBridge as AsyncFileBridge
    from ._file import FileBridge as FileBridge
    from ._network import AsyncNetworkBridge as AsyncNetworkBridge
    from ._network import NetworkBridge as NetworkBridge

__all__ = [
    "AsyncCompressionBridge",
    "AsyncCryptoBridge",
    "AsyncFileBridge",
    "AsyncNetworkBridge",
    "CompressionBridge",
    "CryptoBridge",
    "FileBridge",
    "NetworkBridge",
]

_HOMES = {
    "AsyncCompressionBridge": "._compression",
    "CompressionBridge": "._compression",
    "AsyncCryptoBridge": "._crypto",
    "CryptoBridge": "._crypto",
    "AsyncFileBridge": "._file",
    "FileBridge": "._file",
    "AsyncNetworkBridge": "._network",
    "NetworkBridge": "._network",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
