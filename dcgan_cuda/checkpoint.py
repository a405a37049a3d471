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
any moment leaves either the old file or the new one, never a torn one. A kill during a
write does leave the temporary file behind; its name (``.NAME.dcgan_cuda-tmp-PID-XXXXXXXX``)
says which process wrote it, and ``remove_stale_temporaries`` deletes those whose process
is gone (the training run does at its start). Files get the permissions the user's umask
gives any new file.
"""
from __future__ import annotations

import json
import os
import re
import secrets

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from . import faults

FORMAT_MODEL = "dcgan-cuda-model"
FORMAT_STATE = "dcgan-cuda-train-state"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class NonFiniteError(CheckpointError):
    """A state holding NaN or Inf was about to be written; nothing was written."""


# --------------------------------------------------------------------------- writing
# The temporary file of a write in progress: the target's name, hidden, then the writer's
# process id (a leftover is stale once that process is gone) and 32 random bits.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.dcgan_cuda-tmp-(?P<pid>[0-9]+)-[0-9a-f]{8}")


def _temporary_name(path):
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.dcgan_cuda-tmp-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write_bytes(path, payload):
    """Write payload to path so that path holds either its old content or all of payload."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = _temporary_name(path)
        try:
            # Mode 0o666 before the umask, as open() gives any new file (mkstemp's 0o600
            # would make a shared results folder unreadable to the rest of a group).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        faults.reached("write:" + os.path.basename(path))
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


def _process_exists(pid):
    if pid <= 0:          # kill(0, ...) would ask about our own process group
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:       # EPERM: it exists, under another user
        return True
    return True


def remove_stale_temporaries(folder):
    """Delete the temporary files that killed writes left in folder (those of processes
    that no longer run); returns their names. Files of other names are never touched."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in sorted(names):
        match = _TEMPORARY.fullmatch(name)
        if match is None or _process_exists(int(match["pid"])):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            continue
        removed.append(name)
    return removed


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
def foreign_file_kind(path):
    """What a file that is not safetensors is, from its first bytes, with what to do about
    it; None when it looks like nothing we know. A PyTorch user's first try is the .pth
    file that torch.save wrote: that deserves the conversion, not a parser's complaint."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    converted = os.path.splitext(os.path.basename(path))[0] + ".safetensors"
    if head.startswith(b"PK\x03\x04"):
        # A zip archive. torch.save's (PyTorch >= 1.6) opens with its pickle, "<name>/data.pkl";
        # NumPy's .npz holds .npy members.
        name_length = int.from_bytes(head[26:28], "little")
        first = head[30:30 + name_length].decode("utf-8", "replace")
        if first.endswith("data.pkl") or first.endswith("/version"):
            return ("a PyTorch file (torch.save), not safetensors. Convert its state_dict once, "
                    "where PyTorch is installed: python -c \"import torch; from safetensors.torch "
                    "import save_file; save_file({k: v.contiguous() for k, v in torch.load("
                    f"'{path}', map_location='cpu').items()}}, '{converted}')\" (the file must "
                    "hold a state_dict, as pytorch/examples' netG/netD saves do, not a whole model; "
                    "torch.load runs pickled code: convert only files you trust)")
        if first.endswith(".npy"):
            return "a NumPy .npz archive, not safetensors: write the arrays with safetensors.numpy.save_file"
        return "a zip archive, not safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("a Python pickle (an old-style torch.save file, or pickle.dump), not safetensors. "
                "If PyTorch wrote it, convert its state_dict once: python -c \"import torch; from "
                "safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in "
                f"torch.load('{path}', map_location='cpu', weights_only=False).items()}}, "
                f"'{converted}')\" (unpickling runs code: convert only files you trust)")
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array, not safetensors: write the arrays with safetensors.numpy.save_file"
    return None


def read_tensors(path):
    """(tensors, metadata with JSON values decoded) of a safetensors file, or CheckpointError."""
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            payload = f.read()
        tensors = st_load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8:8 + header_len])
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        kind = foreign_file_kind(path)
        if kind is not None:
            raise CheckpointError(f"{path} is {kind}") from None
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


def _whole(value):
    """JSON gives ints for whole numbers; true/false and 16.0 are not sizes."""
    return isinstance(value, int) and not isinstance(value, bool)


def network_config(meta, kind, path):
    """The architecture that a model file's metadata (or a training state's netG_config /
    netD_config) describes, each field checked as the flag that set it is: a crafted or
    damaged file gets a CheckpointError naming the field, never a network of nonsense size.
    kind is "generator" or "discriminator"."""
    from .cli import MAX_LATENT, MAX_WIDTH
    from .models import ARCHS, IMAGE_SIZES
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the {kind}'s configuration is not a table of fields "
                              f"(got {type(meta).__name__})")
    sizes = {"nc": (1, 3), "image_size": IMAGE_SIZES}
    widths = {"nz": MAX_LATENT, "ngf": MAX_WIDTH} if kind == "generator" else {"ndf": MAX_WIDTH}
    config = {}
    for key in ("arch", *sizes, *widths):
        if key not in meta:
            raise CheckpointError(f"{path}: the {kind}'s configuration lacks {key!r}")
        value = meta[key]
        if key == "arch":
            good = isinstance(value, str) and value in ARCHS
            want = " or ".join(ARCHS)
        elif key in sizes:
            good = _whole(value) and value in sizes[key]
            want = "one of " + ", ".join(map(str, sizes[key]))
        else:
            good = _whole(value) and 1 <= value <= widths[key]
            want = f"a whole number from 1 to {widths[key]}"
        if not good:
            raise CheckpointError(f"{path}: the {kind}'s {key} is {value!r}; expected {want}")
        config[key] = value
    return config


def check_fits(meta, net, path):
    """Refuse, with what differs, a file written for another architecture or size."""
    keys = ["arch", "nc", "image_size"] + (["nz", "ngf"] if hasattr(net, "nz") else ["ndf"])
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the network's configuration is not a table of fields")
    mine = model_metadata(net)
    diff = [k for k in keys if k in meta and meta[k] != mine[k]]
    if diff:
        raise CheckpointError(f"{path} was written for a different network: it has "
                              f"{_describe(meta, diff)}, this run has {_describe(mine, diff)}")


def _check_arrays(tensors, path, what):
    """Every floating-point array finite: a NaN or Inf weight (a diverged run, a damaged
    file) would make every picture and figure computed from it nonsense."""
    bad = [k for k, v in tensors.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: {what} {', '.join(sorted(bad)[:3])} holds NaN or Inf (the "
                              "run that wrote it diverged, or the file is damaged); use an earlier "
                              "checkpoint")


def _file_config(meta, kind, path):
    """The checked configuration of the ``kind`` network in a file of ours: a model file
    (whose kind tag must be ``kind``) or a training state (which holds both networks)."""
    if meta.get("format") == FORMAT_STATE:
        return network_config(meta.get("netG_config" if kind == "generator" else "netD_config"),
                              kind, path)
    if meta.get("kind") != kind:
        flag, name = ("--netG", "netG") if kind == "generator" else ("--netD", "netD")
        raise CheckpointError(f"{path} holds a {meta.get('kind', 'network')!s}, but {flag} needs a {kind}: "
                              f"pass a {name}_epoch_N.safetensors file or checkpoint.safetensors")
    return network_config(meta, kind, path)


def _network_part(tensors, meta, net, path, prefix):
    """(the net's own tensors, its checked configuration) from a model file or, under
    prefix, from a training state. A file without our format tag (a PyTorch state_dict
    saved with safetensors) has no configuration: its tensors must fit by name and shape."""
    kind = "generator" if hasattr(net, "nz") else "discriminator"
    fmt = meta.get("format")
    if fmt == FORMAT_STATE:
        prefix = prefix or ("netG." if kind == "generator" else "netD.")
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if fmt in (FORMAT_STATE, FORMAT_MODEL):
        return tensors, _file_config(meta, kind, path)
    return tensors, {}


def _load_into(net, tensors, meta, path, prefix=None):
    tensors, config = _network_part(tensors, meta, net, path, prefix)
    check_fits(config, net, path)
    mine = net.state_dict()
    # Another dtype is refused, not cast: float64 or float16 weights (a PyTorch model saved
    # after .double() or .half()) would change precision without a word.
    kinds = [k for k in mine if k in tensors and tensors[k].dtype != mine[k].dtype]
    if kinds:
        raise CheckpointError(f"{path}: {kinds[0]} holds {tensors[kinds[0]].dtype} values where "
                              f"{type(net).__name__} keeps {mine[kinds[0]].dtype} (convert the "
                              "weights before saving them)")
    _check_arrays({k: v for k, v in tensors.items() if k in mine}, path, "weight")
    try:
        net.load_state_dict(tensors)
    except ValueError as exc:
        raise CheckpointError(f"{path} does not fit this {type(net).__name__}: {exc}") from None
    return config


def load_model_into(net, path, prefix=None):
    """Load a model file, or one network out of a training state (prefix 'netG.'/'netD.')."""
    tensors, meta = read_tensors(path)
    return _load_into(net, tensors, meta, path, prefix)


def _shape_config(tensors, kind, path):
    """The configuration of a DCGAN network read off its weights' shapes, for a state_dict
    saved without our metadata (pytorch/examples' netG.pth converted to safetensors). The
    network built from it must then take every tensor by name and shape, or nothing loads."""
    weights = []   # the shapes of main.<i>.weight, in layer order
    for key in sorted(tensors, key=lambda k: [int(p) if p.isdigit() else p for p in k.split(".")]):
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "main" and parts[1].isdigit() and parts[2] == "weight":
            weights.append(tuple(tensors[key].shape))
    kernels = [w for w in weights if len(w) == 4]
    try:
        if not kernels:
            raise ValueError
        arch = {4: "pytorch", 5: "paper"}[kernels[0][2]]
        dense_first = len(weights[0]) == 2
        if kind == "generator":
            # pytorch: a 4x4 transposed conv from 1x1, then one per doubling; paper: a dense
            # projection to 4x4, then one transposed conv per doubling.
            blocks = len(kernels) - (1 if arch == "pytorch" else 0)
            width, nz = (weights[0][1], weights[0][0]) if not dense_first else (weights[0][0] // 16, weights[0][1])
            config = dict(arch=arch, nz=nz, ngf=width // 2 ** (blocks - 1), nc=kernels[-1][1],
                          image_size=4 * 2 ** blocks)
        else:
            blocks = len(kernels) - (1 if arch == "pytorch" else 0)
            config = dict(arch=arch, ndf=kernels[0][0], nc=kernels[0][1], image_size=4 * 2 ** blocks)
    except (ValueError, KeyError, IndexError, ZeroDivisionError):
        config = None
    refusal = (f"{path} holds no dcgan_cuda metadata, and its tensors are not a DCGAN {kind}'s "
               "state_dict{why}: pass a netG_/netD_epoch_N.safetensors or checkpoint.safetensors file")
    if config is None:
        raise CheckpointError(refusal.format(why=" (main.0.weight, main.1.weight, ...)"))
    try:
        return network_config(config, kind, "read off the weights' shapes")
    except CheckpointError as exc:
        raise CheckpointError(refusal.format(why=f" ({exc})")) from None


def load_network(path, kind):
    """Rebuild the network (kind "generator" or "discriminator") that a model file or a
    training state describes, with its weights, on the NumPy backend; and the file's
    metadata. A safetensors state_dict without our metadata (pytorch/examples' weights,
    converted) is rebuilt from its weights' shapes. Every field and weight is checked:
    anything else is a CheckpointError."""
    from .models import Discriminator, Generator
    tensors, meta = read_tensors(path)
    fmt = meta.get("format")
    if fmt in (FORMAT_STATE, FORMAT_MODEL):
        config = _file_config(meta, kind, path)
    elif set(meta) <= {"format"} and fmt in (None, "pt"):
        # No metadata at all, or only the {"format": "pt"} some PyTorch tools add: a plain
        # state_dict. A file with some of our fields but not our tag was damaged or edited.
        config = _shape_config(tensors, kind, path)
    else:
        raise CheckpointError(f"{path} is not a checkpoint written by dcgan_cuda.train (format tag "
                              f"{fmt!r}); pass a netG_/netD_epoch_N.safetensors or "
                              "checkpoint.safetensors file")
    if kind == "generator":
        net = Generator(config["nz"], config["ngf"], config["nc"], config["image_size"], config["arch"])
    else:
        net = Discriminator(config["ndf"], config["nc"], config["image_size"], config["arch"])
    _load_into(net, tensors, meta, path)
    return net, meta


def load_generator(path, device="cpu"):
    """The generator in ``path`` — any file the CLI writes: a model file
    (``netG_epoch_N.safetensors``) or a training state (``checkpoint.safetensors``) — rebuilt
    from the file alone, with its weights, on ``device`` (a backend or "cpu", "cuda", "sim",
    "auto"), in eval mode (batchnorm uses the running statistics, as torch's ``.eval()``;
    ``.train()`` switches back). A file that is not such a generator is a CheckpointError."""
    return load_network(path, "generator")[0].to(device).eval()


def load_discriminator(path, device="cpu"):
    """The discriminator in ``path`` (``netD_epoch_N.safetensors`` or
    ``checkpoint.safetensors``), as load_generator does it for the generator."""
    return load_network(path, "discriminator")[0].to(device).eval()


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


def _check_progress(progress, path):
    """The counters and the noise generator's state of a training state, checked."""
    if not isinstance(progress, dict):
        raise CheckpointError(f"{path} is not a training checkpoint (it has no progress record); "
                              "--netG/--netD load model files")
    for key in ("epoch", "batch", "iteration"):
        value = progress.get(key)
        if not (_whole(value) and value >= 0):
            raise CheckpointError(f"{path}: progress field {key!r} is {value!r}; expected a whole "
                                  "number >= 0")
    try:
        np.random.PCG64().state = progress.get("noise_rng")
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"{path}: the noise generator's saved state is unusable ({exc})") from None
    return progress


def _check_optimizer_state(state, path, name):
    step = state.get("step")
    if step is None or step.ndim != 0 or step.dtype.kind not in "iu" or int(step) < 0:
        raise CheckpointError(f"{path}: optimizer state {name} has no valid step count "
                              f"(got {None if step is None else f'{step.dtype} {step.shape}'})")
    moments = [k for k, v in state.items() if k.startswith("exp_avg") and v.dtype.kind != "f"]
    if moments:
        raise CheckpointError(f"{path}: optimizer state {name} {moments[0]} holds "
                              f"{state[moments[0]].dtype} values, not floating-point moments")
    _check_arrays(state, path, f"optimizer state {name}")
    negative = [k for k, v in state.items() if k.startswith("exp_avg_sq.") and (v < 0).any()]
    if negative:
        raise CheckpointError(f"{path}: optimizer state {name} {negative[0]} holds negative "
                              "second moments (the file is damaged)")


def load_training_state(path, netG, netD, optG, optD):
    """Restore networks and optimizers in place; returns the saved progress dict (its
    counters and noise state checked; its config is the caller's to check)."""
    tensors, meta = read_tensors(path)
    if meta.get("format") != FORMAT_STATE:
        raise CheckpointError(f"{path} is not a training state (it holds "
                              f"{meta.get('format', 'no format tag')}); use --netG/--netD for model files")
    progress = _check_progress(meta.get("progress"), path)
    _load_into(netG, tensors, meta, path, "netG.")
    _load_into(netD, tensors, meta, path, "netD.")
    for prefix, opt in (("optG.", optG), ("optD.", optD)):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        _check_optimizer_state(state, path, prefix[:-1])
        retyped = [k for k, v in state.items() if k.startswith("exp_avg") and v.dtype != opt.flat_exp_avg.dtype]
        if retyped:   # refused, not cast: the optimizer would narrow them without a word
            raise CheckpointError(f"{path}: optimizer state {prefix[:-1]} {retyped[0]} holds "
                                  f"{state[retyped[0]].dtype} moments where the optimizer keeps "
                                  f"{opt.flat_exp_avg.dtype}")
        try:
            opt.load_state_dict(state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer state {prefix[:-1]} does not fit: {exc}") from None
    return progress
