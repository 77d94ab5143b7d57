"""Handlers of the ``crypto`` channel: what ``bridge.crypto`` runs in a worker.

Data flow::

    CryptoBridge plan (parent: validation, nonce-reuse check) --payload dict-->
        handler(ctx, payload) --> engine function of ._aead --> bytes / str / int

    parallel file paths: encrypt_range / decrypt_range seal or open a run of
    stream chunks and write them at their fixed offsets into the one temporary
    file the parent created, chunk by chunk from one reused buffer
    (._files.PlacedWriter); file/assemble commits it.

Keys arrive in the payload and live only as long as the call; nothing here
stores or logs them, and the engine's error messages never contain them.
"""

from __future__ import annotations

from typing import Any

from .._registry import Context, handler
from . import _aead, _parts

__all__: list[str] = []


@handler("crypto", "encrypt")
def encrypt(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _aead.encrypt(
        p["data"], p["key"], nonce=p["nonce"], aad=p["aad"], algorithm=p["algorithm"]
    )


@handler("crypto", "decrypt")
def decrypt(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _aead.decrypt(p["blob"], p["key"], aad=p["aad"], algorithm=p["algorithm"])


@handler("crypto", "encrypt_file")
def encrypt_file(ctx: Context, p: dict[str, Any]) -> int:
    return _aead.encrypt_file(p["src"], p["dst"], p["key"], algorithm=p["algorithm"], ctx=ctx)


@handler("crypto", "decrypt_file")
def decrypt_file(ctx: Context, p: dict[str, Any]) -> int:
    return _aead.decrypt_file(p["src"], p["dst"], p["key"], algorithm=p["algorithm"], ctx=ctx)


@handler("crypto", "encrypt_range")
def encrypt_range(ctx: Context, p: dict[str, Any]) -> int:
    """Seal ``count`` chunks from ``first``, each written at its place in ``out``."""
    if p["first"] == 0:
        _parts.write_at(p["out"], p["header"], 0)
    return _aead.encrypt_file_range_to(
        p["src"],
        p["key"],
        p["header"],
        p["first"],
        p["count"],
        is_last_range=p["last"],
        dst=p["out"],
        offset=p["offset"],
        ctx=ctx,
    )


@handler("crypto", "decrypt_range")
def decrypt_range(ctx: Context, p: dict[str, Any]) -> int:
    """Open ``count`` chunks from ``first``, writing the plaintext from ``offset`` of ``out``."""
    return _aead.decrypt_file_range_to(
        p["src"],
        p["key"],
        p["first"],
        p["count"],
        is_last_range=p["last"],
        algorithm=p["algorithm"],
        dst=p["out"],
        offset=p["offset"],
        ctx=ctx,
    )


@handler("crypto", "hash")
def hash_(ctx: Context, p: dict[str, Any]) -> str:
    ctx.check_cancelled()
    return _aead.hash_bytes(p["data"], p["algorithm"])


@handler("crypto", "derive_key")
def derive_key(ctx: Context, p: dict[str, Any]) -> bytes:
    ctx.check_cancelled()
    return _aead.derive_key(p["password"], p["salt"], kdf=p["kdf"], length=p["length"])


@handler("crypto", "generate_key")
def generate_key(ctx: Context, p: dict[str, Any]) -> bytes:
    return _aead.generate_key(p["algorithm"])
