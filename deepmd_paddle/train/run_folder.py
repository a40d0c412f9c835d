"""The output folder of a training run: one run at a time, and no run overwrites another's files.

- A lock file (``LOCK_NAME``, holding the pid, host and run id of its owner) is held with
  ``fcntl.flock`` for the whole run: the kernel drops the lock when the process ends, however it
  ends, so a file left by a killed run is stale and is taken over (and said so); a live holder
  makes a second run stop with an error naming it.
- A new run refuses a folder that holds another run's checkpoints (``<save_ckpt>-<step>``, or
  the ``checkpoint`` pointer of another prefix) or learning curve, unless told ``overwrite``:
  then those files are removed once every input has been checked (``remove_replaced``). A
  restart continues its source's run (the run id in the checkpoint) and may write where that
  run wrote; checkpoints of any other run still need ``overwrite``.

DeePMD-kit itself overwrites ``lcurve.out`` and the checkpoints of an earlier run without a word;
its ``--restart`` / ``--init-model`` keep their meaning here.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
import uuid

from deepmd_paddle.io import checkpoint, ckpt_names

log = logging.getLogger(__name__)
LOCK_NAME = ".dpp_train.lock"


class RunFolderError(ValueError):
    """The output folder is in use by, or holds the files of, another training run."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/LOCK_NAME``; ``release()`` (or process exit) drops it."""

    def __init__(self, folder: str, run_id: str):
        import fcntl

        self.path = os.path.join(folder, LOCK_NAME)
        while True:  # the file may be unlinked by its previous owner between our open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read_holder(fd)
                busy = e.errno in (errno.EAGAIN, errno.EACCES)
                if not busy and e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # no flock here
                    busy = _alive(holder)
                    log.warning("%s: the file system has no file locks; checked the pid in the lock file instead",
                                self.path)
                    if not busy:
                        break
                os.close(fd)
                if not busy:
                    raise
                raise RunFolderError(
                    f"{folder} is in use by another training run ({_describe(holder)}; lock file {self.path}); "
                    "wait for it to end or train into another folder (--outdir)") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(fd)
        if stale:
            log.warning("%s: a lock left by a run that has ended (%s) was taken over", self.path, _describe(stale))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "run": run_id,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # while still locked: nobody can hold a lock on this inode now
        except OSError:
            pass
        os.close(self.fd)  # drops the flock
        self.fd = None


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        holder = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        holder = None
    return holder if isinstance(holder, dict) else {"pid": "?", "host": "?"}


def _alive(holder: dict) -> bool:
    """Whether the process named in a lock file may still run (``os.kill(pid, 0)`` on this host;
    a process on another host or of unknown pid counts as alive)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return bool(holder)
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _describe(holder: dict) -> str:
    if not holder:
        return "owner unknown"
    gone = "" if _alive(holder) else ", no longer running"
    return f"pid {holder.get('pid')} on {holder.get('host')}{gone}, started {holder.get('started', '?')}"


def find_conflicts(prefix: str, lcurve: str | None, source_run, restarting: bool) -> list[str]:
    """Files of another run at the checkpoint ``prefix`` and ``lcurve``: checkpoints (bases) whose run
    differs from ``source_run``, the pointer file when it names another prefix's checkpoint (of
    another run), and a non-empty ``lcurve`` when the run is new or when another run's checkpoints
    lie beside it. ``source_run``: the run id a restart continues (None for a new run)."""
    found = []
    for base in checkpoint.list_checkpoints(prefix):
        if not restarting or checkpoint.run_of(base) != source_run:
            found.append(base)
    pointer = os.path.join(os.path.dirname(os.path.abspath(prefix)), checkpoint.POINTER)
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8", errors="replace") as f:
            target = os.path.join(os.path.dirname(pointer), f.read().strip())
        if (os.path.isfile(target + ".json") and not target.startswith(os.path.abspath(prefix) + "-")
                and (not restarting or checkpoint.run_of(target) != source_run)):
            found.append(pointer)  # another prefix's run: its pointer would be replaced
    index = prefix + ckpt_names.INDEX  # the newest checkpoint under DeePMD-kit's names (io/ckpt_names.py)
    if os.path.isfile(index) and not (restarting and ckpt_names.run_of_index(index) == source_run):
        found += [prefix + ext for ext in (ckpt_names.INDEX, ckpt_names.META, ckpt_names.DATA)
                  if os.path.isfile(prefix + ext)]  # another run's: a new save would replace them
    if lcurve and (not restarting or found) and os.path.isfile(lcurve) and os.path.getsize(lcurve) > 0:
        found.append(lcurve)  # a new run's, or beside another run's checkpoints: not the restarted run's
    return found


def check_folder(prefix: str, lcurve: str | None, source_run, restarting: bool, overwrite: bool) -> list[str]:
    """Raise ``RunFolderError`` when another run's files are in the way (see ``find_conflicts``),
    unless ``overwrite``; returns the files that ``remove_replaced`` will then remove."""
    found = find_conflicts(prefix, lcurve, source_run, restarting)
    if found and not overwrite:
        names = ", ".join(os.path.basename(p) for p in found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4
                                                                     else "")
        folder = os.path.dirname(os.path.abspath(prefix))
        raise RunFolderError(
            f"{folder} holds the files of another training run ({names}); continue that run with "
            f"--restart {folder}, train into another folder with --outdir, or give --overwrite to replace them")
    return found


def remove_replaced(found: list[str], keep: str | None = None) -> None:
    """Remove the files ``check_folder`` found (checkpoint pairs and the learning curve), except
    the checkpoint ``keep`` (the one this run starts from: --restart or --init-model)."""
    for path in found:
        if keep is not None and os.path.abspath(path) in [os.path.abspath(keep + ext) for ext in
                                                         ("", ckpt_names.INDEX, ckpt_names.META, ckpt_names.DATA)]:
            log.warning("--overwrite: kept %s, the checkpoint this run starts from", path)
            continue
        exts = (".safetensors", ".json") if not os.path.isfile(path) else ("",)
        for ext in exts:
            if os.path.exists(path + ext):
                os.remove(path + ext)
        log.warning("--overwrite: removed %s%s of an earlier run", path, " (.safetensors + .json)" if len(exts) > 1
                    else "")


def check_free(outdir: str, save_ckpt: str, disp_file: str | None, restart: str | None, overwrite: bool) -> None:
    """``claim`` and release at once: refuse a busy folder, or another run's files, before any work."""
    for lock in claim(outdir, os.path.join(outdir, save_ckpt), disp_file and os.path.join(outdir, disp_file),
                      restart, overwrite)[1]:
        lock.release()


def claim(outdir: str, prefix: str, lcurve: str | None, restart: str | None, overwrite: bool):
    """(run id, locks, files to replace) for a run writing ``lcurve`` in ``outdir`` and checkpoints
    at ``prefix``: both folders locked, then ``check_folder``; the locks are dropped on an error."""
    source_run = checkpoint.run_of(checkpoint.resolve(restart)) if restart else None
    run_id = source_run or new_run_id()
    locks = []
    try:
        for folder in sorted({os.path.abspath(outdir), os.path.dirname(os.path.abspath(prefix))}):
            if os.path.exists(folder) and not os.path.isdir(folder):
                raise RunFolderError(f"{folder} is a file; training writes into a folder (--outdir, training/save_ckpt)")
            os.makedirs(folder, exist_ok=True)
            locks.append(FolderLock(folder, run_id))
        return run_id, locks, check_folder(prefix, lcurve, source_run, bool(restart), overwrite)
    except BaseException:
        for lock in locks:
            lock.release()
        raise


def lcurve_rows_before(path: str, step: int) -> list[str]:
    """The lines of learning curve ``path`` to keep on a restart at ``step``: comments and rows of
    earlier steps. A line that is neither is kept as a comment (with a warning), never dropped."""
    kept, dropped = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if not words or line.startswith("#"):
                kept.append(line)
            elif words[0].isdigit():
                if int(words[0]) < step:
                    kept.append(line)
                else:
                    dropped += 1
            else:
                log.warning("%s, line %d is not a row of the learning curve; kept as a comment: %s", path, number,
                            line.strip()[:80])
                kept.append("# " + line if line.endswith("\n") else "# " + line + "\n")
    if dropped:
        log.info("%s: %d row(s) of steps >= %d replaced by this restart", path, dropped, step)
    return kept
