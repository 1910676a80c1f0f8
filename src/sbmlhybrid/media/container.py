"""The zip container of model and campaign files: JSON metadata plus torch tensors.

Hand-written on the standard library (``zipfile``, ``json``) and torch
(``torch.save``, ``torch.load(weights_only=True)``). A file is one zip archive:

    meta.json   UTF-8 JSON {"format": <tag>, "version": 2, ...} (schema: ``modelfile``
                for models, ``campaign`` for campaigns); NaN/inf floats as strings.
    tensors.pt  ``torch.save`` of a flat {name: tensor} dict (network weights).

Reading never unpickles arbitrary objects: the JSON goes through ``json`` and the
tensors through ``torch.load(weights_only=True)``, whose restricted unpickler admits
tensors and plain containers only. Anything else (foreign, truncated, malicious,
or an old version-1 pickle file, recognised by its first bytes without
unpickling) raises InputError. Files are written to a temp file in the same
folder, fsynced and renamed (atomic on POSIX); archive timestamps are fixed so
equal content gives equal bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from sbmlhybrid.errors import InputError, Issue

VERSION = 2
MODEL_FORMAT = "sbmlhybrid.media.model"
CAMPAIGN_FORMAT = "sbmlhybrid.media.campaign"
META, TENSORS = "meta.json", "tensors.pt"
# tags of the version-1 pickle files, found verbatim near the start of their bytes
LEGACY_TAGS = {b"sbmlhybrid.media.model/1": "model", b"sbmlhybrid.media.campaign/1": "campaign"}
_ZIP_MAGIC = b"PK\x03\x04"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

RESAVE_HINT = (
    "re-save it in the current format: re-run `sbmlhybrid media pretrain` / `transfer` "
    "with --model-out, or, only if you trust where the file came from, convert it once with "
    "`sbmlhybrid media resave OLD NEW --trust-pickle`")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_container(path: str | Path, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write ``meta`` (JSON-able, finite floats only) and ``tensors`` to ``path``."""
    tb = io.BytesIO()
    torch.save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, tb)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        text = json.dumps(meta, indent=1, allow_nan=False)
        zf.writestr(zipfile.ZipInfo(META, _FIXED_TIME), text, zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo(TENSORS, _FIXED_TIME), tb.getvalue(), zipfile.ZIP_STORED)
    atomic_write_bytes(path, buf.getvalue())


def legacy_kind(head: bytes) -> str | None:
    """"model"/"campaign" when ``head`` (a file's first bytes) starts a version-1 pickle
    file, "pickle" for any other pickle (protocol 2-5), else None. Nothing is unpickled."""
    if len(head) < 2 or head[0] != 0x80 or head[1] not in (2, 3, 4, 5):
        return None
    return next((kind for tag, kind in LEGACY_TAGS.items() if tag in head[:512]), "pickle")


def read_container(path: str | Path, fmt: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a file written by ``write_container`` whose meta format tag is ``fmt``.

    Returns (meta, tensors). Raises FileNotFoundError for a missing path and
    InputError for anything that is not such a file, without executing its content.
    """
    path = Path(path)
    what = fmt.rsplit(".", 1)[-1]

    def bad(msg: str) -> InputError:
        return InputError(Issue(f"not a readable media {what} file: {msg}", file=str(path)))

    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as err:  # a folder, no permission, ...
        raise bad(f"cannot be read ({err.strerror or err})") from None
    kind = legacy_kind(head)
    if kind in ("model", "campaign"):
        raise InputError(Issue(
            f"this {kind} file is in the old pickle format (version 1), which is no longer "
            f"loaded because unpickling a file can run arbitrary code; {RESAVE_HINT}",
            file=str(path)))
    if kind == "pickle":
        raise bad("it is a Python pickle, which is never loaded (unpickling can run code)")
    if not head.startswith(_ZIP_MAGIC):
        raise bad("not a zip archive")
    try:
        with zipfile.ZipFile(path) as zf:
            if sorted(zf.namelist()) != sorted([META, TENSORS]):
                raise bad(f"the archive must hold exactly {META} and {TENSORS}")
            meta = json.loads(zf.read(META).decode("utf-8"))
            _check_tag(meta, fmt, bad)
            raw = zf.read(TENSORS)
    except InputError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError, ValueError) as err:
        raise bad(f"damaged or truncated ({err})") from None
    try:
        tensors = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # the restricted unpickler refuses anything but tensors
        raise bad(f"{TENSORS} holds something other than plain tensors, refused unexecuted "
                  f"by torch.load(weights_only=True) ({_torch_reason(err)})") from None
    if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise bad(f"{TENSORS} must be a dict of named tensors")
    return meta, tensors


def _torch_reason(err: Exception) -> str:
    """The one informative clause of torch's long weights-only refusal message."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", str(err), re.S)
    return " ".join(found.group(1).split()) if found else type(err).__name__


def _check_tag(meta, fmt: str, bad) -> None:
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        tag = meta.get("format") if isinstance(meta, dict) else None
        raise bad(f"format tag {tag!r}, expected {fmt!r}")
    if meta.get("version") != VERSION:
        raise bad(f"format version {meta.get('version')!r}; this sbmlhybrid reads {VERSION}")


@contextmanager
def decoding(path: str | Path, what: str) -> Iterator[None]:
    """Turn the errors of decoding a well-formed but wrong meta/tensor set into InputError."""
    try:
        yield
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
        raise InputError(Issue(f"damaged or incompatible media {what} file "
                               f"({type(err).__name__}: {err})", file=str(path))) from None


# ------------------------------------------------------------------- JSON value helpers
def enc_float(x: float) -> float | str:
    """JSON-safe float: finite values as numbers, NaN/inf as "nan"/"inf"/"-inf"."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


def enc_scalar(v: object, what: str = "value") -> bool | int | float | str | None:
    """JSON value of a scalar (numpy scalars to Python, NaN/inf as strings); ValueError on
    anything else, naming `what`."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return enc_float(v)
    if v is None or isinstance(v, str):
        return v
    raise ValueError(f"cannot save {what} {v!r}")


def dec_float(v: object) -> float:
    """Inverse of ``enc_float`` (ValueError/TypeError on anything else)."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise TypeError(f"expected a number, got {v!r}")
    if isinstance(v, str) and v not in ("nan", "inf", "-inf"):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def dec_int(v: object) -> int:
    """A JSON integer (bools and floats are refused)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {v!r}")
    return v


def dec_floats(v: object) -> np.ndarray:
    """A JSON list of ``enc_float`` values -> float64 array (k,)."""
    if not isinstance(v, list):
        raise TypeError(f"expected a list of numbers, got {type(v).__name__}")
    return np.array([dec_float(e) for e in v], dtype=float)


def dec_strs(v: object) -> list[str]:
    """A JSON list of strings."""
    if not isinstance(v, list) or not all(isinstance(e, str) for e in v):
        raise TypeError("expected a list of strings")
    return list(v)
