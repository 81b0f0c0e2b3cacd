"""Versioned model files. The ``.npz`` ones (RL policies, spread networks) hold JSON metadata
(``format``, ``version``, config, metrics) as a byte array beside the numeric arrays, no pickle; the
JSON adverse model shares the header check and the atomic write.

Every problem reading one is the caller's one-line error class: missing file, not an npz, missing
array, wrong ``format`` or unsupported ``version``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


def write(path: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON) and ``arrays`` compressed to ``path``, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    write_atomic(path, buf.getvalue())


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that a crash or a full
    disk leaves the old file (or none), never a truncated one that a daemon would then refuse."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(p)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def check_header(meta: Any, where: str, fmt: str, version: int, error: type[Exception]) -> None:
    """Raise ``error`` unless ``meta`` is a dict whose ``format`` is ``fmt`` and ``version`` is
    ``version`` (the JSON adverse model uses the same header as the ``.npz`` files)."""
    if not isinstance(meta, dict):
        raise error(f"{where}: bad metadata (not a JSON object)")
    if meta.get("format") != fmt:
        raise error(f"{where}: wrong format {meta.get('format')!r} (expected {fmt!r})")
    if meta.get("version") != version:
        raise error(f"{where}: unsupported version {meta.get('version')!r} (this build reads version {version})")


def read(
    path: str | Path,
    *,
    what: str,
    kind: str,
    error: type[Exception],
    fmt: str,
    version: int,
    arrays: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write`: ``(meta, arrays)`` with each array of ``arrays``
    (name -> dtype) converted. ``what`` names the file in messages (``"policy file"``), ``kind``
    what it should hold (``"policy"``); ``error`` is raised with a one-line message on any problem."""
    p = Path(path)
    where = f"{what} {str(p)!r}"
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise error(f"{where}: {e.strerror or e}") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            out = {k: np.array(z[k], dtype=dt) for k, dt in arrays.items()}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as e:
        raise error(f"{where}: not a readable {kind} (.npz) file: {type(e).__name__}") from None
    check_header(meta, where, fmt, version, error)
    return meta, out
