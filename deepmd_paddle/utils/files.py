"""Outputs that are whole or absent: written to a temporary name in the same folder, then renamed.

A command that fails (bad input, Ctrl-C, a full disk) leaves the file it was to replace as it
was; the rename is atomic on one file system.
"""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on an error it is
    removed. ``suffix`` keeps an extension that a writer needs (e.g. ".png" for matplotlib)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(path: str, what: str) -> None:
    """Raise OSError naming ``what`` when ``path`` cannot be written (a folder, or a missing or
    read-only parent), before any work is done."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    parent = folder
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{what}: cannot write in {parent}")
