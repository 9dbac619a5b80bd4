"""Writing results without leaving half-written files behind, and checking, before any work,
that an output path can be written at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from helixlib.core.errors import HelixInputError


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as err:
        os.unlink(tmp)
        if isinstance(err, OSError) and err.filename is None:  # say which output failed (a full disk)
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` for text (UTF-8)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def check_writable(field: str, path: str | Path, folder: bool = False) -> Path:
    """``path`` as a Path if it can be written: a file path that is not a folder (``folder``: a
    folder path that is not a file) below a folder where this process can create files. Checked
    before the work, so a bad path costs nothing; nothing is left behind (the probe is an
    unnamed temporary file). Raises :class:`HelixInputError` naming ``field``."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise HelixInputError(field, "must be a file path" if not folder else "must be a folder path", path)
    path = Path(path)
    try:
        if folder and path.exists() and not path.is_dir():
            raise HelixInputError(field, "is a file, not a folder", str(path))
        if not folder and path.is_dir():
            raise HelixInputError(field, "is a folder, not a file path", str(path))
        base = (path if folder else path.parent).absolute()
        while not base.exists():  # the folders still to be made go where the first existing one is
            base = base.parent
        if not base.is_dir():
            raise HelixInputError(field, f"{base} is a file, not a folder", str(path))
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise HelixInputError(field, f"cannot be written ({err.strerror or type(err).__name__})",
                              str(path)[:200]) from None
    return path
