"""Read and write MATLAB ``.mat`` files: v5 (incl. v7 compressed) and v7.3 (HDF5).

v5 files go through :func:`scipy.io.loadmat`; v7.3 files are HDF5 with a 512-byte
MATLAB header in the user block and go through h5py. MATLAB stores arrays column-major,
so h5py sees every v7.3 array with its axes reversed: (bands, cols, rows) for an
(rows, cols, bands) image. :func:`read_mat` reverses them back, so both versions give
the same (rows, cols, bands) arrays.

Values come back in one simplified form for both versions: numeric and logical arrays
as squeezed ``np.ndarray``, char arrays as ``str``, structs as ``dict``, cell arrays as
``list`` (a 1 x 1 cell as its element, as scipy squeezes it). :func:`save_mat` writes the same forms (it exists for tests and fake data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench_core.errors import DatasetError

__all__ = ["MatVersion", "list_variables", "mat_version", "read_mat", "save_mat"]

MatVersion = Literal["5", "7.3"]
_HEADER_SIZE = 128
_USERBLOCK = 512
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_V73_VERSION = 0x0200
_V5_VERSION = 0x0100


def _fix_suffix(fix: str) -> str:
    return f"; {fix}" if fix else ""


def mat_version(path: Path, fix: str = "") -> MatVersion:
    """``"5"`` or ``"7.3"`` from the file's header; raises :class:`DatasetError` otherwise.

    ``fix`` is appended to error messages (e.g. the command that re-downloads the file).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_USERBLOCK + len(_HDF5_MAGIC))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot open ({exc}); expected a readable .mat file{_fix_suffix(fix)}") from exc
    if head.startswith(_HDF5_MAGIC):
        return "7.3"  # plain HDF5 without a MATLAB header: read it the v7.3 way
    if len(head) < _HEADER_SIZE:
        raise DatasetError(
            f"{path}: only {len(head)} bytes; expected a MATLAB .mat file (header alone is "
            f"{_HEADER_SIZE} bytes), the file is truncated{_fix_suffix(fix)}"
        )
    endian = head[126:128]
    if endian not in (b"IM", b"MI") or not head.startswith(b"MATLAB"):
        raise DatasetError(
            f"{path}: no MATLAB v5/v7.3 header (first bytes {head[:20]!r}); expected a .mat file "
            f"saved by MATLAB or scipy (v4 files are not supported){_fix_suffix(fix)}"
        )
    version = int.from_bytes(head[124:126], "little" if endian == b"IM" else "big")
    if version == _V73_VERSION:
        return "7.3"
    if version == _V5_VERSION:
        return "5"
    raise DatasetError(
        f"{path}: MATLAB header version 0x{version:04x}; expected 0x0100 (v5/v7) or 0x0200 (v7.3)"
        f"{_fix_suffix(fix)}"
    )


def _corrupt(path: Path, version: str, exc: BaseException, fix: str) -> DatasetError:
    return DatasetError(
        f"{path}: cannot read as a MATLAB v{version} .mat file ({type(exc).__name__}: {exc}); "
        f"expected a complete, uncorrupted file, it is probably truncated or damaged"
        f"{_fix_suffix(fix or 'download it again')}"
    )


def list_variables(path: Path, fix: str = "") -> list[str]:
    """Names of the top-level variables stored in a ``.mat`` file."""
    path = Path(path)
    version = mat_version(path, fix)
    try:
        if version == "5":
            from scipy.io import whosmat

            return [name for name, _shape, _cls in whosmat(str(path))]
        import h5py

        with h5py.File(path, "r") as f:
            return [k for k in f if not k.startswith("#")]
    except DatasetError:
        raise
    except Exception as exc:  # scipy/h5py raise many types for damaged files
        raise _corrupt(path, version, exc, fix) from exc


def read_mat(path: Path, keys: Sequence[str] | None = None, fix: str = "") -> dict[str, Any]:
    """Read variables ``keys`` (all when ``None``) from a v5 or v7.3 ``.mat`` file.

    Arrays keep MATLAB's axis order (rows, cols, ...) in both versions. A missing key, a
    truncated or corrupt file raises :class:`DatasetError` naming the file, what was
    expected and ``fix``.
    """
    path = Path(path)
    version = mat_version(path, fix)
    try:
        values = _read_v5(path, keys) if version == "5" else _read_v73(path, keys)
    except DatasetError:
        raise
    except Exception as exc:  # zlib.error, ValueError, OSError, MatReadError, ...
        raise _corrupt(path, version, exc, fix) from exc
    if keys is not None:
        missing = [k for k in keys if k not in values]
        if missing:
            found = list_variables(path, fix)
            raise DatasetError(
                f"{path}: variable(s) {missing} not found; the file holds {found}. Expected the "
                f"variables {list(keys)}: this is not the expected file, or it is truncated"
                f"{_fix_suffix(fix)}"
            )
    return values


def _read_v5(path: Path, keys: Sequence[str] | None) -> dict[str, Any]:
    from scipy.io import loadmat

    raw = loadmat(str(path), variable_names=list(keys) if keys is not None else None, simplify_cells=True)
    return {k: _simplify_v5(v) for k, v in raw.items() if not k.startswith("__")}


def _simplify_v5(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _simplify_v5(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_simplify_v5(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_simplify_v5(v) for v in value.ravel(order="F")]
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return str(value.item()) if value.size == 1 else [str(v) for v in value.ravel()]
    if isinstance(value, (np.generic, int, float, bool, complex)):
        return np.asarray(value)
    return value


# ----------------------------------------------------------------------------- v7.3 reading


def _read_v73(path: Path, keys: Sequence[str] | None) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        names = [k for k in f if not k.startswith("#")] if keys is None else [k for k in keys if k in f]
        return {name: _h5_value(f, f[name]) for name in names}


def _matlab_class(obj: Any) -> str:
    value = obj.attrs.get("MATLAB_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _h5_value(f: Any, obj: Any) -> Any:
    import h5py

    cls = _matlab_class(obj)
    if isinstance(obj, h5py.Group):
        return {k: _h5_value(f, v) for k, v in obj.items() if not k.startswith("#")}
    if obj.attrs.get("MATLAB_empty", 0):
        return np.zeros(tuple(int(n) for n in np.asarray(obj[()]).ravel())[::-1] or (0,))
    data = obj[()]
    if cls == "cell" or (isinstance(data, np.ndarray) and data.dtype == h5py.ref_dtype):
        # Column-major order; a 1 x 1 cell is squeezed to its element, as scipy does.
        items = [_h5_value(f, f[ref]) for ref in np.asarray(data).T.ravel(order="F")]
        return items[0] if len(items) == 1 else items
    array = np.asarray(data)
    if array.dtype.names and {"real", "imag"} <= set(array.dtype.names):
        array = array["real"] + 1j * array["imag"]
    array = array.T  # back to MATLAB's (rows, cols, ...) order
    if cls == "char":
        rows = ["".join(map(chr, row)) for row in np.atleast_2d(array)]
        return rows[0] if len(rows) == 1 else rows
    if cls == "logical":
        array = array.astype(bool)
    return np.squeeze(array)


# ----------------------------------------------------------------------------- writing


def save_mat(path: Path, variables: Mapping[str, Any], version: MatVersion = "5") -> None:
    """Write ``variables`` as a MATLAB v5 (compressed) or v7.3 file.

    Accepts arrays, ``str``, ``dict`` (a struct) and ``list`` (a 1 x n cell array). The bytes depend only on the variables. v7.3
    files carry MATLAB's 512-byte header and ``MATLAB_class`` attributes, with axes
    reversed the way MATLAB writes them, so they read back exactly like real ones.
    """
    path = Path(path)
    if version == "5":
        from scipy.io import savemat

        savemat(str(path), {k: _to_v5(v) for k, v in variables.items()}, do_compression=True, oned_as="column")
        with path.open("r+b") as fh:  # a fixed header text: same variables, same bytes
            fh.write(b"MATLAB 5.0 MAT-file, written by bench_core.data.save_mat".ljust(116, b" "))
        return
    if version != "7.3":
        raise DatasetError(f"save_mat: version {version!r}; expected '5' or '7.3'")
    import h5py

    with h5py.File(path, "w", userblock_size=_USERBLOCK, libver="earliest") as f:
        for key, value in variables.items():
            _h5_write(f, f, key, value)
    header = b"MATLAB 7.3 MAT-file, written by bench_core.data.save_mat, HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b" " * 8 + _V73_VERSION.to_bytes(2, "little") + b"IM"
    with path.open("r+b") as fh:
        fh.write(header.ljust(_USERBLOCK, b"\0"))


def _to_v5(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_v5(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        cell = np.empty((1, len(value)), dtype=object)
        for i, v in enumerate(value):
            cell[0, i] = _to_v5(v)
        return cell
    return value


_CLASSES = {
    "f8": "double", "f4": "single", "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
    "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64", "b1": "logical",
}


def _h5_write(f: Any, parent: Any, key: str, value: Any) -> None:
    import h5py

    if isinstance(value, dict):
        group = parent.create_group(key)
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        for k, v in value.items():
            _h5_write(f, group, k, v)
        return
    if isinstance(value, (list, tuple)):
        refs_group = f.require_group("#refs#")
        refs = np.empty((len(value), 1), dtype=h5py.ref_dtype)  # a 1 x n cell, axes reversed
        for i, item in enumerate(value):
            name = f"c{len(refs_group)}"
            _h5_write(f, refs_group, name, item)
            refs[i, 0] = refs_group[name].ref
        ds = parent.create_dataset(key, data=refs)
        ds.attrs["MATLAB_class"] = np.bytes_("cell")
        return
    if isinstance(value, str):
        codes = np.array([[ord(c) for c in value]], dtype=np.uint16)  # 1 x n char row
        ds = parent.create_dataset(key, data=codes.T)
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        return
    array = np.asarray(value)
    if array.ndim < 2:
        array = array.reshape(-1, 1)  # MATLAB has no 1-D arrays: a column, as scipy writes
    cls = _CLASSES.get(array.dtype.str[1:] if array.dtype.kind != "b" else "b1")
    if cls is None:
        raise DatasetError(f"save_mat: variable {key!r} has dtype {array.dtype}; expected a numeric or bool array")
    data = array.astype(np.uint8) if array.dtype.kind == "b" else array
    ds = parent.create_dataset(key, data=np.ascontiguousarray(data.T))
    ds.attrs["MATLAB_class"] = np.bytes_(cls)
    if cls == "logical":
        ds.attrs["MATLAB_int_decode"] = np.int32(1)
