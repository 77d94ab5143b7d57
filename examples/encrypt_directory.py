"""Encrypt a directory tree with a progress bar, then verify every file and show tampering caught.

Each file is encrypted with ``bridge.crypto.encrypt_file`` (the streaming,
chunked AEAD format of the documentation's file-format page) into a mirror
tree of ``.wbse`` files; several files are in flight at once, and one tqdm bar
(``wb.progress.tqdm``, from the optional ``progress`` extra) follows them all.
The key is derived from a passphrase with scrypt, in a worker.  Then every
file is decrypted again and compared by SHA-256, and a flipped byte and a
wrong key are shown to be refused without leaving any output behind.

Run it with ``python examples/encrypt_directory.py``; it works on a tree it
makes in a temporary directory and removes.
"""

from __future__ import annotations

import os
import pathlib
import random
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import workerbridge as wb
import workerbridge.progress

Callback = Callable[[wb.Progress], object] | None


def make_tree(root: pathlib.Path) -> list[pathlib.Path]:
    """A small tree of files from empty to 3 MiB, text and binary."""
    rng = random.Random(6)
    layout = {
        "notes": [0, 120, 4_000, 30_000],
        "photos/2024": [900_000, 1_500_000, 2_200_000],
        "photos/2025": [700_000, 3_000_000],
        "logs": [50_000, 250_000, 600_000],
        "": [64, 16_384, 16_385],
    }
    files = []
    for folder, sizes in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, size in enumerate(sizes):
            path = root / folder / f"file{i}.{'txt' if folder in ('notes', 'logs') else 'bin'}"
            if path.suffix == ".txt":
                line = b"2025-01-01 12:00:00 INFO request served in 12 ms\n"
                data = (line * (size // len(line) + 1))[:size]
            else:
                data = rng.randbytes(size)
            path.write_bytes(data)
            files.append(path)
    return files


def progress_bar(desc: str, total: int) -> wb.progress.ProgressAdapter | None:
    """One bar for many calls, or none when tqdm is not installed."""
    try:
        return wb.progress.tqdm(desc=desc, total=total)
    except ModuleNotFoundError as exc:
        print(f"  ({exc}; going on without a progress bar)")
        return None


def part(bar: wb.progress.ProgressAdapter | None) -> Callback:
    return bar.part() if bar is not None else None


def main() -> None:
    with wb.WorkerBridge(workers=2) as bridge, tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp)
        src_root, enc_root, out_root = base / "plain", base / "encrypted", base / "restored"
        files = make_tree(src_root)
        total = sum(p.stat().st_size for p in files)
        print(f"encrypting {len(files)} files, {total / 2**20:.1f} MiB, {bridge.workers} workers")

        salt = os.urandom(16)
        key = bridge.crypto.derive_key("correct horse battery staple", salt, kdf="scrypt")
        print(f"  key derived with scrypt in a worker (salt {salt.hex()[:8]}...)")

        def target(path: pathlib.Path, root: pathlib.Path, suffix: str) -> pathlib.Path:
            dst = root / path.relative_to(src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            return dst.with_name(dst.name + suffix)

        # 1. Encrypt: four files in flight, one bar for all of them.
        bar = progress_bar("encrypt", total)
        with ThreadPoolExecutor(max_workers=4) as pool:
            jobs = [
                pool.submit(
                    bridge.crypto.encrypt_file,
                    path,
                    target(path, enc_root, ".wbse"),
                    key,
                    on_progress=part(bar),
                )
                for path in files
            ]
            for job in jobs:
                job.result()
        encrypted = sorted(enc_root.rglob("*.wbse"))
        overhead = sum(p.stat().st_size for p in encrypted) - total
        print(f"  wrote {len(encrypted)} .wbse files ({overhead:,} bytes of headers and tags)")

        # 2. Verify: decrypt every file and compare digests with the originals.
        bar = progress_bar("verify", sum(p.stat().st_size for p in encrypted))
        mismatches = 0
        for path in files:
            restored = target(path, out_root, "")
            bridge.crypto.decrypt_file(
                target(path, enc_root, ".wbse"), restored, key, on_progress=part(bar)
            )
            if bridge.file.hash(restored) != bridge.file.hash(path):
                mismatches += 1
        print(f"  verified {len(files)} files: {mismatches} mismatches")

        # 3. Tampering and a wrong key are detected; no output file is created.
        victim, other = sorted(encrypted, key=lambda p: p.stat().st_size)[-2:]
        blob = bytearray(victim.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        victim.write_bytes(bytes(blob))
        for what, path, key_used in (
            ("one flipped bit", victim, key),
            ("a wrong key", other, bridge.crypto.generate_key()),
        ):
            dst = base / "should-not-exist"
            try:
                bridge.crypto.decrypt_file(path, dst, key_used)
            except wb.IntegrityError as exc:
                print(f"  {what}: IntegrityError ({exc}); output created: {dst.exists()}")
        leftovers = [p.name for p in base.iterdir()]
        print(f"  in the work directory: {sorted(leftovers)}")


if __name__ == "__main__":
    main()
