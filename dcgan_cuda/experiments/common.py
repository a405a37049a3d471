"""What every paper-experiment tool shares: the CLI skeleton, loading a trained network
from a checkpoint, running it, numbered sample sheets, and the JSON summary.

Loading. A tool is handed the path of a file written by ``python -m dcgan_cuda.train``:
a model file (``netG_epoch_N.safetensors``, ``netD_epoch_N.safetensors``) or the training
state (``checkpoint.safetensors``, which holds both networks). Both carry the network's
configuration in their metadata (arch, nc, image_size, nz/ngf or ndf), so the tool rebuilds
the right network from the file alone and needs no --nz/--ngf flags.

Batchnorm mode. The tools run the networks in **eval mode** (batchnorm normalises with the
running statistics gathered during training) unless ``--bn-mode train`` is given. In train
mode every image depends on the other images of its batch, through the batch's mean and
variance; the experiments need each image to be a function of its own z (or its own input
image) only: an interpolation's end point must be G(z0) whatever else shares its batch,
"A - B + C" with B = C must give exactly the picture of A, and guided backpropagation needs
each input's gradient to come from that input alone. pytorch/examples draws its sample
grids in train mode, which is fine for a batch of 64 independent z but not for a row of a
walk (highly correlated z) or a single vector. ``--bn-mode train`` is kept for comparison
(dcgan_cuda.evaluate takes the same flag).

Everything a network computes goes through our ops on the chosen backend (``--device``);
NumPy on the host only prepares inputs (noise, interpolation weights) and post-processes
results already computed (pooling outputs, distances, the SVM).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from .. import ops
from ..autograd import Tensor
from ..backend import BackendUnavailable, get_backend
from ..checkpoint import CheckpointError, atomic_write_bytes, load_discriminator, load_generator  # noqa: F401 (the tools' loaders)
from ..cli import MAX_SEED, Parser, UsageError, check_environment, integer, out_of_memory, path
from ..data import DatasetError
from ..images import make_grid, png_bytes, to_uint8
from ..models import Generator, ModelConfigError
from ..sampling import SamplingError, generate  # noqa: F401 (the tools' generate)

PAPER = "Radford, Metz & Chintala (2015), arXiv:1511.06434"

# Streams of the per-tool random generator: np.random.default_rng([seed, STREAM]). Distinct
# streams keep, e.g., the sample sheet the same whichever tool draws it and whatever else
# that tool draws afterwards.
SHEET_STREAM = 0x5EE7
NOISE_STREAM = 0x2015
# The most images one picture (a grid, a sheet) or one lookup holds: more is no picture a
# person can look at, and at 128x128x3 already 2 GB of floats.
MAX_PICTURES = 10_000


class ExperimentError(ValueError):
    """The experiment cannot run as asked; the message says why."""


# ------------------------------------------------------------------------------ CLI
def make_parser(tool, section, summary, details=""):
    """An argparse parser whose --help opens with the paper section the tool reproduces."""
    return Parser(
        prog=f"python -m dcgan_cuda.{tool}",
        description=f"Reproduces section {section} of {PAPER}: {summary}"
                    + (f" {details}" if details else ""))


def add_common_args(p, tool, netG=False, netD=False, bn=True):
    """--netG/--netD (as the tool needs them), --outf, --device, --manualSeed, --bn-mode (unless
    the tool's method needs eval mode)."""
    if netG:
        p.add_argument("--netG", "--net-g", dest="netG", required=True,
                       help="generator checkpoint written by dcgan_cuda.train "
                            "(netG_epoch_N.safetensors or checkpoint.safetensors)")
    if netD:
        p.add_argument("--netD", "--net-d", dest="netD", required=True,
                       help="discriminator checkpoint written by dcgan_cuda.train "
                            "(netD_epoch_N.safetensors or checkpoint.safetensors)")
    p.add_argument("--outf", type=path, default=os.path.join("out", tool),
                   help="folder for the PNG grids and the JSON summary")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "sim"),
                   help="cuda: our CUDA kernels; cpu: the NumPy reference; auto: cuda if a GPU "
                        "is usable, else cpu")
    p.add_argument("--manualSeed", "--manual-seed", dest="manualSeed", type=integer(0, MAX_SEED), default=1,
                   help="seed of every random draw (noise, sample sheets, subsets); fixed by "
                        "default so a sample's index means the same picture in every run")
    if not bn:
        return p
    p.add_argument("--bn-mode", "--bn", dest="bn_mode", default="eval", choices=("eval", "train"),
                   help="batchnorm mode: eval normalises with the running statistics, so each "
                        "image depends only on its own input; train uses the batch's statistics "
                        "(how pytorch/examples draws its grids)")
    return p


def run_main(body, parser, argv):
    """Parse argv and call body(args); turn the errors a user can cause into 'error: ...' and
    exit status 2 (as dcgan_cuda.train does), with no traceback."""
    try:
        check_environment()
        body(parser.parse_args(argv))
    except (UsageError, CheckpointError, ExperimentError, DatasetError, ModelConfigError,
            BackendUnavailable, ops.OpError, SamplingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print("error: " + out_of_memory(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2
    return 0


def backend_for(args):
    return get_backend(args.device, announce=lambda msg: print(msg, file=sys.stderr))


def prepare_outf(path):
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise ExperimentError(f"--outf {path} is not writable")
    return path


def rng_for(args, stream):
    return np.random.default_rng([args.manualSeed, stream])


# -------------------------------------------------------------------------- running
def quiet_overflow():
    """NumPy's overflow warnings off while a network runs: check_finite then says what
    happened in one line, instead of a page of RuntimeWarnings before it."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def check_finite(array, what):
    """Refuse to draw or measure NaN/Inf: finite weights far outside any trained range can
    still overflow (inf - inf in batchnorm), and a picture or a figure of that is nonsense."""
    if not np.isfinite(array).all():
        raise ExperimentError(f"{what} hold NaN or Inf although the network's weights are finite: "
                              "its weights are far outside any trained range")
    return array


def set_bn_mode(net, mode):
    """eval or train batchnorm; see the module docstring for why eval is the default."""
    net.train(mode == "train")
    return net


def config_of(net):
    """The network's configuration, for the JSON summary."""
    keys = ("arch", "nc", "image_size") + (("nz", "ngf") if isinstance(net, Generator) else ("ndf",))
    return {k: getattr(net, k) for k in keys}


def to_tensor(array, backend, requires_grad=False):
    return Tensor(backend.asarray(array), backend, requires_grad=requires_grad)


def sheet_noise(netG, args, n):
    """The numbered sample sheet's noise: n vectors from the sheet stream of --manualSeed.
    The same seed gives the same sheet in every tool, so an index picked from one run's
    sheet means the same sample in the next run (and in the other tools)."""
    return netG.sample_noise(n, rng_for(args, SHEET_STREAM))


def sample_sheet(netG, backend, args, n):
    """The sheet's noise and its images."""
    z = sheet_noise(netG, args, n)
    return z, generate(netG, z=z)


# ------------------------------------------------------------------------- pictures
def save_png(path, picture):
    """Write an (H, W, C) uint8 picture atomically."""
    atomic_write_bytes(path, png_bytes(picture))


def enlarge(picture, scale):
    return picture.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else picture


def grid_picture(images, nrow, scale=1):
    return enlarge(make_grid(images, nrow), scale)


def font(size):
    """Pillow's built-in font at ``size`` pixels (scalable since Pillow 10.1; older Pillow
    has only its small bitmap font, which is used then)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def numbered_sheet(images, cols=8, scale=3, boxes=None):
    """A picture of the images, each enlarged ``scale`` times with its index written above
    it, so a user can name samples by number (and draw boxes on them, see forget).

    boxes: optional {index: [(x0, y0, x1, y1), ...]} in the sample's own pixel coordinates,
    drawn as red rectangles.
    """
    from PIL import Image, ImageDraw

    pics = to_uint8(images)
    n, c, h, w = pics.shape
    label, pad = 13, 2
    cell_h, cell_w = h * scale + label + pad, w * scale + pad
    rows = -(-n // cols)
    sheet = Image.new("RGB", (min(n, cols) * cell_w + pad, rows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k in range(n):
        r, q = divmod(k, cols)
        x, y = pad + q * cell_w, pad + r * cell_h
        tile = enlarge(pics[k].transpose(1, 2, 0), scale)
        tile = np.repeat(tile, 3, axis=2) if c == 1 else tile
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, y + label))
        draw.text((x + 1, y), str(k), fill=(0, 0, 0), font=font(11))
        for x0, y0, x1, y1 in (boxes or {}).get(k, ()):
            draw.rectangle([x + x0 * scale, y + label + y0 * scale,
                            x + x1 * scale - 1, y + label + y1 * scale - 1], outline=(255, 0, 0))
    return np.asarray(sheet)


# -------------------------------------------------------------------------- summary
def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_summary(outf, tool, section, args, results, networks=None):
    """Write outf/summary.json: the tool, the paper section, its inputs (every flag, the
    checkpoint paths and the networks' configurations) and its numbers."""
    doc = {"tool": f"dcgan_cuda.{tool}", "paper_section": section, "paper": PAPER,
           "inputs": {k: v for k, v in vars(args).items()},
           "networks": {name: config_of(net) for name, net in (networks or {}).items()},
           "results": results}
    path = os.path.join(outf, "summary.json")
    atomic_write_bytes(path, (json.dumps(_jsonable(doc), indent=2) + "\n").encode())
    return path


def parse_index_list(text, what, upper=None):
    """'3,17, 22' -> [3, 17, 22], with a clear error for anything else."""
    try:
        values = [int(t) for t in str(text).replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ExperimentError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ExperimentError(f"{what}: no indices given")
    bad = [v for v in values if v < 0 or (upper is not None and v >= upper)]
    if bad:
        raise ExperimentError(f"{what}: indices {bad} are out of range 0..{(upper or 1) - 1}")
    return values
