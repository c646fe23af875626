"""Atomic file writes, the one way the project writes a file: a reader sees the old file or the new
one, never half of either, and two writers of one file never share a temporary name.

- :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`write_yaml` for data in memory;
- :func:`replacing` for libraries that write a file themselves (``torch.save``, SB3's ``model.save``):
  they write to the temporary path it yields, which moves into place only when the block succeeds;
- :func:`replace_dir` for libraries that write a folder (RLlib's checkpoints);
- :func:`append_line` for append-only logs (learning curves, progress): earlier lines are never rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# The process's umask, read once at import (reading it means setting it): files get the mode a plain
# open() would give them, not mkstemp's owner-only 0600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def replacing(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a unique temporary path beside ``path`` (``.<name>.*<suffix>``: hidden, and never matching
    ``*<path's suffix>`` unless a writer insists on an extension, as SB3's ``.zip``); when the block ends
    without an exception the file is flushed to disk and moved onto ``path`` with ``os.replace``,
    otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode())


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(payload, indent=2) + "\n")


def write_yaml(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as YAML (keys in their order) to ``path`` atomically."""
    import yaml

    write_text(path, yaml.safe_dump(payload, sort_keys=False))


def replace_dir(source: str | Path, target: str | Path) -> None:
    """Move the finished folder ``source`` onto ``target``; the old ``target`` is kept (as a hidden ``.old``
    sibling) until the new one is in place, so a crash leaves one whole folder or the other."""
    source, target = Path(source), Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    if old.exists():
        shutil.rmtree(old)


def append_line(path: str | Path, line: str) -> None:
    """Append one line to ``path`` and flush it to disk (append-only: a crash can tear only the last line)."""
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
