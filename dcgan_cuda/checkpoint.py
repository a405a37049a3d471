"""Checkpoints in safetensors, written atomically.

Two kinds of file:

* a **model file** (``netG_epoch_3.safetensors``): one network's state_dict under PyTorch's
  names, plus metadata describing the architecture. It loads into the pytorch/examples
  netG/netD with ``safetensors.torch.load_file`` and ``load_state_dict``.
* a **training state** (``checkpoint.safetensors``): both networks, both Adam states and,
  in the metadata, the iteration, the RNG state and the run's configuration: everything
  needed to continue a run exactly where it stopped.

Every write goes to a temporary file in the same folder, is flushed and fsync'ed, then
renamed over the target (atomic on POSIX), and the folder is fsync'ed: a run killed at
any moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

FORMAT_MODEL = "dcgan-cuda-model"
FORMAT_STATE = "dcgan-cuda-train-state"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class NonFiniteError(CheckpointError):
    """A state holding NaN or Inf was about to be written; nothing was written."""


# --------------------------------------------------------------------------- writing
def atomic_write_bytes(path, payload):
    """Write payload to path so that path holds either its old content or all of payload."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _all_finite(tensors):
    return all(np.isfinite(a).all() for a in tensors.values() if a.dtype.kind == "f")


def save_tensors(path, tensors, metadata):
    """Atomically write a safetensors file; refuses arrays holding NaN or Inf."""
    tensors = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # keeps 0-d arrays 0-d
    if not _all_finite(tensors):
        bad = [k for k, v in tensors.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
        raise NonFiniteError(f"refusing to write {path}: non-finite values in {', '.join(bad[:5])}")
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def model_metadata(net):
    """What a loader needs to rebuild the network the state belongs to."""
    kind = "generator" if hasattr(net, "nz") else "discriminator"
    meta = {"format": FORMAT_MODEL, "version": VERSION, "kind": kind, "arch": net.arch,
            "nc": net.nc, "image_size": net.image_size}
    if kind == "generator":
        meta.update(nz=net.nz, ngf=net.ngf)
    else:
        meta.update(ndf=net.ndf)
    return meta


def save_model(path, net):
    save_tensors(path, net.state_dict(), model_metadata(net))


# --------------------------------------------------------------------------- reading
def read_tensors(path):
    """(tensors, metadata with JSON values decoded) of a safetensors file, or CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            payload = f.read()
        tensors = st_load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8:8 + header_len])
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc} "
                              "(truncated, or not a safetensors file)") from None
    metadata = {}
    for k, v in (header.get("__metadata__") or {}).items():
        try:
            metadata[k] = json.loads(v)
        except ValueError:
            metadata[k] = v
    return tensors, metadata


def _describe(meta, keys):
    return ", ".join(f"{k}={meta.get(k)}" for k in keys)


def check_fits(meta, net, path):
    """Refuse, with what differs, a file written for another architecture or size."""
    keys = ["arch", "nc", "image_size"] + (["nz", "ngf"] if hasattr(net, "nz") else ["ndf"])
    mine = model_metadata(net)
    diff = [k for k in keys if k in meta and meta[k] != mine[k]]
    if diff:
        raise CheckpointError(f"{path} was written for a different network: it has "
                              f"{_describe(meta, diff)}, this run has {_describe(mine, diff)}")


def load_model_into(net, path, prefix=None):
    """Load a model file, or one network out of a training state (prefix 'netG.'/'netD.')."""
    tensors, meta = read_tensors(path)
    if meta.get("format") == FORMAT_STATE:
        prefix = prefix or ("netG." if hasattr(net, "nz") else "netD.")
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        meta = meta.get(prefix[:-1] + "_config", {})
    check_fits(meta, net, path)
    try:
        net.load_state_dict(tensors)
    except ValueError as exc:
        raise CheckpointError(f"{path} does not fit this {type(net).__name__}: {exc}") from None
    return meta


# ------------------------------------------------------------------- training state
def save_training_state(path, netG, netD, optG, optD, progress):
    """Everything needed to continue a run: networks, optimizers, and `progress`
    (a JSON-able dict: epoch, iteration, RNG state, configuration, ...)."""
    tensors = {}
    for prefix, state in (("netG.", netG.state_dict()), ("netD.", netD.state_dict()),
                          ("optG.", optG.state_dict()), ("optD.", optD.state_dict())):
        tensors.update({prefix + k: v for k, v in state.items()})
    meta = {"format": FORMAT_STATE, "version": VERSION, "progress": progress,
            "netG_config": model_metadata(netG), "netD_config": model_metadata(netD)}
    save_tensors(path, tensors, meta)


def load_training_state(path, netG, netD, optG, optD):
    """Restore networks and optimizers in place; returns the saved progress dict."""
    tensors, meta = read_tensors(path)
    if meta.get("format") != FORMAT_STATE:
        raise CheckpointError(f"{path} is not a training state (it holds "
                              f"{meta.get('format', 'no format tag')}); use --netG/--netD for model files")
    load_model_into(netG, path, "netG.")
    load_model_into(netD, path, "netD.")
    for prefix, opt in (("optG.", optG), ("optD.", optD)):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            opt.load_state_dict(state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer state {prefix[:-1]} does not fit: {exc}") from None
    return meta["progress"]
