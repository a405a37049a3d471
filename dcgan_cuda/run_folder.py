"""The output folder of a training run (--outf): one run per folder, one process at a time.

A folder that holds a run's files (its checkpoint, metrics log, pictures and epoch
weights: ``RUN_FILE``) belongs to that run, so that its log and its loss curve tell one
story:

* ``--resume FOLDER/checkpoint.safetensors`` continues the run in its own folder (the
  default ``--outf`` when resuming): the log keeps its rows up to the checkpoint, and the
  iterations after it are run, and logged, again.
* A new run (no ``--resume``), or a resumed one sent to another run's folder, is refused
  there unless ``--overwrite`` is given; then the old run's files are deleted when the new
  run begins training (after every check has passed), and only those: sub-folders (the
  experiment tools write into ``out/<tool>``) and files of other names stay.
* While a run uses a folder it holds a lock on it (``fcntl.flock`` on ``.dcgan_cuda.lock``),
  so a second run into the same folder is refused at once instead of interleaving its
  rows and files with the first. The lock belongs to the open file: it ends with the
  process, however that ends, so a killed run never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
import re

from .checkpoint import remove_stale_temporaries

LOCK_FILE = ".dcgan_cuda.lock"
STATE_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = re.compile(r"checkpoint\.safetensors|metrics\.jsonl|loss_curve\.png|real_samples\.png|"
                      r"fake_samples_epoch_[0-9]+\.png|net[GD]_epoch_[0-9]+\.safetensors")


class RunFolderError(RuntimeError):
    """The folder cannot take this run; the message says why and what to do instead."""


def default_outf(resume):
    """--outf when none is given: the resumed checkpoint's own folder, else out/."""
    return (os.path.dirname(resume) or ".") if resume else "out"


class RunFolder:
    """A claimed --outf: locked for this process until release()."""

    def __init__(self, path):
        self.path = path
        self.lock_fd = None
        self.clear_on_start = []     # the old run's files, with --overwrite

    def run_files(self):
        return sorted(n for n in os.listdir(self.path)
                      if RUN_FILE.fullmatch(n) and os.path.isfile(os.path.join(self.path, n)))

    def lock(self):
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(os.path.join(self.path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise RunFolderError(f"--outf {self.path} cannot be used: {exc.strerror or exc}"
                                 f"{f' ({exc.filename})' if exc.filename else ''}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunFolderError(f"--outf {self.path} is in use by another training run"
                                 f"{f' (process {holder})' if holder.isdigit() else ''}: wait for it "
                                 "to end, or choose another --outf") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.lock_fd = fd

    def release(self):
        if self.lock_fd is not None:
            os.close(self.lock_fd)     # closing the file ends the flock
            self.lock_fd = None

    def check(self, resume, overwrite):
        """Refuse what would mix two runs in this folder (the module's rules)."""
        if resume and not os.path.isfile(resume):
            return       # reading the checkpoint says what is wrong with it, before anything is written
        own = bool(resume) and os.path.isdir(os.path.dirname(resume) or ".") and \
            os.path.samefile(os.path.dirname(resume) or ".", self.path)
        if own:
            if overwrite:
                raise RunFolderError(f"--overwrite would delete the run that --resume {resume} continues "
                                     f"(its folder is --outf {self.path}); leave out --overwrite")
            return
        files = self.run_files()
        if not files:
            return
        if overwrite:
            self.clear_on_start = files
            return
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        if resume:
            raise RunFolderError(f"--outf {self.path} holds another run's files ({shown}); continuing "
                                 f"{resume} there would mix the two runs' logs: leave out --outf to "
                                 "continue in the checkpoint's own folder, choose an empty one, or add "
                                 "--overwrite to delete those files first")
        if STATE_FILE in files:
            way_on = f"continue that run with --resume {os.path.join(self.path, STATE_FILE)}, "
        else:
            way_on = "(it stopped before its first checkpoint, so it cannot be resumed) "
        raise RunFolderError(f"--outf {self.path} already holds a run ({shown}): {way_on}start "
                             "a new one there with --overwrite (deletes those files), or choose "
                             "another --outf")

    def prepare(self):
        """Called as training begins: delete the old run's files (with --overwrite) and
        the temporary files of writes that a kill cut short."""
        for name in self.clear_on_start:
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        self.clear_on_start = []
        return remove_stale_temporaries(self.path)


def claim(outf, resume, overwrite):
    """Lock outf for this run and check that the run may use it; RunFolderError if not."""
    folder = RunFolder(outf)
    folder.lock()
    try:
        folder.check(resume, overwrite)
    except BaseException:
        folder.release()
        raise
    return folder
