# Types of the optional C extension workerbridge._fast (see _fast.c).
from collections.abc import Sequence
from types import NotImplementedType
from typing import Any, TypeVar

_F = TypeVar("_F")

def spin_readable(fds: Sequence[int], seconds: float, /) -> bool: ...
def encode_frame(
    kind: str,
    id: int | None,
    channel: str,
    op: str,
    payload: bytes | None,
    bufs: Sequence[Sequence[object]],
    direct: bool,
    /,
) -> bytes | NotImplementedType: ...
def decode_frame(data: Any, frame_type: type[_F], /) -> _F | None: ...
