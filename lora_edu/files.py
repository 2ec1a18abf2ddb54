"""Files written atomically: a folder or a file appears complete or not at all, and a swap can be undone.

``publish_folder`` moves a finished temporary folder into place with renames only (the previous folder is
kept aside until the new one is in, restored if the swap fails or is interrupted with Ctrl-C, and its place
named if even that fails); ``replace_file`` writes a file beside its old self and renames it over it. Both
give what they write the permissions a normally created file or folder would have. Used by ``io.save_adapter``
(notebook 05 saves an adapter) and by ``lora-edu finetune`` (notebook 08), whose outputs must never be left
half-written: the rename of a file or folder within one file system is atomic (POSIX ``rename(2)``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)  # reading the umask means setting it; put it back at once
    return umask


def replace_files(writers: dict) -> None:
    """For each ``path: write`` pair, ``write(tmp)`` into a temporary file beside ``path``; once every file
    is written, rename each over its ``path`` (each rename atomic, the renames back to back with Ctrl-C held,
    so a failed or interrupted write changes none of the files)."""
    tmps = {}
    try:
        for path, write in writers.items():
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
            os.close(fd)
            tmps[path] = Path(name)
            write(tmps[path])
            os.chmod(tmps[path], 0o666 & ~current_umask())  # mkstemp makes it 0600
        with deferred_interrupt():
            for path, tmp in tmps.items():
                os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)  # gone already after a successful rename


@contextlib.contextmanager
def deferred_interrupt():
    """Hold a Ctrl-C (SIGINT) until the block is done, so a two-rename swap is not cut in the middle."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def publish_folder(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path`` with renames only (an old ``path`` comes back if the swap
    fails or is interrupted), after giving it the permissions of a normally created folder: ``tempfile`` makes
    it 0700 (and some writers make files 0600), which would hide an adapter from the other users of a shared
    machine. ``path`` must not be a symbolic link (the swap would replace the link by a folder)."""
    tmp, path = Path(tmp), Path(path)
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link (to {os.readlink(path)}); replacing it would put a folder "
                         f"where the link was. Pass its target instead: {path.resolve()}.")
    umask = current_umask()
    for item in [tmp, *tmp.rglob("*")]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)
    if not path.exists():
        os.replace(tmp, path)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    backup = holder / "old"
    with deferred_interrupt():
        try:
            os.replace(path, backup)
        except BaseException:
            holder.rmdir()
            raise
        try:
            os.replace(tmp, path)
        except BaseException as error:  # an OSError, or a Ctrl-C that came before the deferral
            try:
                os.replace(backup, path)
            except OSError as restore_error:
                raise OSError(f"Replacing {path} failed ({error!r}), and putting the previous folder back "
                              f"failed too ({restore_error}). The previous folder is kept at {backup}; move it "
                              f"back with: mv '{backup}' '{path}'") from error
            holder.rmdir()
            raise
    shutil.rmtree(holder, ignore_errors=True)
