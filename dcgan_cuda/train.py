"""Train a DCGAN: ``python -m dcgan_cuda.train``.

The flags are pytorch/examples dcgan's (camelCase or kebab-case), with the same meanings
and defaults where they apply, plus --device, --arch and the run-management flags. The
loop is that example's: per batch, one D step on a real and a fake batch, then one G step
with the fake batch labelled real.

Outputs in --outf: real_samples.png, fake_samples_epoch_NNN.png (from fixed noise),
netG_epoch_N.safetensors / netD_epoch_N.safetensors (PyTorch names; they load into the
pytorch/examples networks), checkpoint.safetensors (everything needed to continue the
run exactly: --resume), metrics.jsonl (one JSON line per iteration, plus one per evaluation
with --eval-every) and loss_curve.png. A folder holds one run (run_folder.py: a used one
needs --resume or --overwrite). A first Ctrl-C or SIGTERM finishes the iteration, saves and
stops; a second stops at once.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time

if __name__ == "__main__":
    # Run as a program: a Ctrl-C while the modules below load (NumPy and the rest take a
    # moment) ends it with one line, as one at any later moment does. main() takes over.
    def _interrupted_while_loading(signum, frame):
        print("\n[dcgan_cuda] interrupted during start-up; nothing was written", file=sys.stderr)
        raise SystemExit(128 + signum)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_loading)

import numpy as np

from . import faults, ops
from .autograd import Tensor
from .cli import (MAX_COUNT, MAX_LATENT, MAX_SEED, MAX_WIDTH, Parser, UsageError, check_environment,
                  integer, out_of_memory, path, real)
from .backend import BackendUnavailable, get_backend
from .checkpoint import (CheckpointError, NonFiniteError, load_model_into, load_training_state,
                         save_model, save_training_state)
from .data import DATASETS, DEFAULT_CHANNELS, DatasetError, load_dataset, read_keep_list
from .host_memory import keep_freed_memory
from .images import plot_losses, read_metrics, save_grid
from .models import ARCHS, IMAGE_SIZES, ModelConfigError, build_models
from .optim import Adam
from .run_folder import RunFolderError, claim, default_outf
from .sampling import state_preserved

REAL_LABEL, FAKE_LABEL = 1.0, 0.0
STATE_FILE = "checkpoint.safetensors"
EVAL_SAMPLES = 500  # --eval-every: fewer than evaluate's 1000, so an evaluation stays a small part of an epoch
# What a resumed run takes from its checkpoint; passing a different value is an error.
RESUME_KEYS = ("dataset", "dataroot", "classes", "keep_list", "max_images", "imageSize", "nc", "nz", "ngf", "ndf",
               "arch", "batchSize", "manualSeed", "lr", "beta1", "weight_decay")
# Keys whose value may be None (not given); a checkpoint written before classes and
# keep_list were recorded lacks them, and they were None then.
UNSET_ALLOWED = ("dataroot", "classes", "keep_list", "max_images")
RECORDED_LATER = ("classes", "keep_list")


class TrainingError(RuntimeError):
    """Training cannot continue; the message says why and what was kept."""


# ------------------------------------------------------------------------------ CLI
def build_parser():
    p = Parser(
        prog="python -m dcgan_cuda.train",
        description="Train a DCGAN (Radford et al., 2015) on our own kernels: the NumPy "
                    "reference on a CPU, hand-written Numba CUDA kernels on a GPU. Flags follow "
                    "pytorch/examples' dcgan; each is also accepted in kebab-case.")

    def flag(name, *aliases, **kw):
        kebab = "--" + "".join("-" + c.lower() if c.isupper() else c for c in name).replace("_", "-")
        names = ["--" + name] + ([kebab] if kebab != "--" + name else []) + list(aliases)
        p.add_argument(*names, dest=name, **kw)

    flag("dataset", default=None, choices=DATASETS,
         help="digits is embedded (scikit-learn's 8x8 UCI digits, resized); folder is a folder "
              "of images (recursive), and so are imagenet and lfw; cifar10 / mnist read their files from "
              "--dataroot; lsun reads the LMDB databases of --classes there; fake is "
              "random noise for smoke tests (default: digits)")
    flag("dataroot", type=path, default=None, help="path to the dataset's files (not needed for digits/fake)")
    flag("classes", default=None,
         help="lsun: comma-separated categories, as pytorch/examples (bedroom means the database "
              "bedroom_train_lmdb in --dataroot; bedroom_val names another split) (default: bedroom)")
    flag("keep_list", type=path, default=None,
         help="train only on the images this file names, one a line, as python -m dcgan_cuda.dedup "
              "--write-keep writes it (applied before --max-images)")
    flag("workers", type=integer(0, 256), default=2, help="accepted for compatibility; images are decoded by a thread pool of our own")
    flag("batchSize", type=integer(1, MAX_COUNT), default=None, help="input batch size (default: 64)")
    flag("imageSize", type=int, default=None, choices=IMAGE_SIZES,
         help=f"height/width of the images, one of {IMAGE_SIZES} (default: 32 for digits, 64 otherwise)")
    flag("nc", type=int, default=None, choices=(1, 3),
         help="image channels (default: 1 for digits/mnist, 3 otherwise)")
    flag("nz", type=integer(1, MAX_LATENT), default=None, help="size of the latent z vector (default: 100)")
    flag("ngf", type=integer(1, MAX_WIDTH), default=None, help="generator width (default: 64)")
    flag("ndf", type=integer(1, MAX_WIDTH), default=None, help="discriminator width (default: 64)")
    flag("niter", type=integer(1, MAX_COUNT), default=None,
         help="number of epochs to train for (default: 25 as pytorch/examples; 60 for digits, whose "
              "epochs are only 23 batches long: its samples keep improving until about 60; with "
              "--resume, the resumed run's own)")
    # Adam moves each weight by about lr per step; DCGAN's weights are of order 0.02, so a
    # step above 1 is no learning rate at all.
    flag("lr", type=real(0, 1, low_open=True), default=None, help="learning rate, in (0, 1] (default: 0.0002)")
    flag("beta1", type=real(0, 1, high_open=True), default=None, help="beta1 for Adam, in [0, 1) (default: 0.5)")
    flag("weight_decay", type=real(0, 1), default=None,
         help="L2 weight decay in Adam (default: 0; the paper's code used 1e-5)")
    flag("arch", default=None, choices=ARCHS,
         help="pytorch: 4x4 kernels as pytorch/examples (default); paper: 5x5 kernels, dense "
              "projection and dense D head as the authors' code")
    flag("device", default="auto", choices=("auto", "cpu", "cuda", "sim"),
         help="cuda: our CUDA kernels on a GPU; cpu: the NumPy reference; auto: cuda if a GPU "
              "is usable, else cpu; sim: our kernels under Numba's simulator "
              "(NUMBA_ENABLE_CUDASIM=1, tiny models only)")
    flag("cuda", action="store_true", help="same as --device cuda (pytorch/examples' flag)")
    flag("ngpu", type=integer(), default=1, help="number of GPUs; only 1 is supported")
    flag("netG", default="", help="path to netG weights to start from (model file or checkpoint)")
    flag("netD", default="", help="path to netD weights to start from (model file or checkpoint)")
    flag("resume", default="",
         help="continue a run exactly from a training checkpoint (outf/checkpoint.safetensors)")
    flag("outf", type=path, default=None,
         help="folder to output images and model checkpoints (default: out, or with --resume the "
              "checkpoint's own folder). A folder holding another run's files is refused: see --overwrite")
    flag("overwrite", action="store_true",
         help="start this run in an --outf that holds another run's files, deleting those files "
              "(checkpoint, metrics, pictures, epoch weights) when training begins")
    flag("manualSeed", type=integer(0, MAX_SEED), default=None,
         help=f"manual seed, 0..{MAX_SEED} (random if not given)")
    flag("save_every", type=integer(0, MAX_COUNT), default=0,
         help="also write the training checkpoint every N iterations (0: at epoch ends only)")
    flag("max_images", type=integer(1, MAX_COUNT), default=None, help="use only the first N images of the dataset")
    flag("eval_every", type=integer(0, MAX_COUNT), default=0,
         help="every N epochs (and after the last), measure the samples' quality on "
              f"{EVAL_SAMPLES} images as python -m dcgan_cuda.evaluate does (digits only) and log "
              "it to metrics.jsonl and loss_curve.png; 0: never")
    flag("kernels", nargs="*", default=None, metavar="SPEC",
         help="which numbered version of each kernel family to run (--device cuda or sim): "
              "'default', 'newest' (the highest deterministic ones), or FAMILY=N items, e.g. "
              "--kernels newest conv2d=2 "
              "(kernels/README.md describes the versions)")
    flag("cuda_graph", action="store_true",
         help="capture one training step into a CUDA graph and replay it every iteration: one "
              "launch per step instead of ~134 kernel launches (needs our kernels: --device cuda, "
              "or sim); see dcgan_cuda/cuda_graph.py and bench/train_bench.py for what it saves")
    flag("dry_run", action="store_true", help="check a single training cycle works, then stop")
    flag("no_progress", action="store_true", help="print one line per epoch instead of a progress bar")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    if args.cuda:
        args.device = "cuda"
    if args.ngpu != 1:
        raise TrainingError(f"--ngpu {args.ngpu}: only a single GPU is supported")
    return args


def fill_defaults(args):
    if args.dataset is None:
        args.dataset = "digits"
    defaults = dict(batchSize=64, niter=60 if args.dataset == "digits" else 25, nz=100, ngf=64, ndf=64, lr=2e-4, beta1=0.5, weight_decay=0.0, arch="pytorch",
                    imageSize=32 if args.dataset == "digits" else 64,
                    nc=DEFAULT_CHANNELS[args.dataset])
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.manualSeed is None:
        args.manualSeed = int(np.random.SeedSequence().entropy % 10000) + 1
    if args.eval_every and args.dataset != "digits":
        raise TrainingError(f"--eval-every measures samples against held-out digits: it needs "
                            f"--dataset digits, not {args.dataset}")


def checked_run_config(saved, where):
    """A checkpoint's record of its run's flags, put through the same checks as the flags
    themselves (a crafted or damaged file is refused, naming the field), as parsed values."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where} is not a training checkpoint (it has no run configuration); "
                              "--netG/--netD load model files")
    argv = []
    for k in RESUME_KEYS:
        if k not in saved and k not in RECORDED_LATER:
            raise CheckpointError(f"{where}: the run configuration lacks {k!r}")
        value = saved.get(k)
        if value is None and k in UNSET_ALLOWED:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CheckpointError(f"{where}: the run configuration's {k} is {value!r}; "
                                  "expected a value of the flag --" + k)
        argv.append(f"--{k}={value}")
    try:
        parsed = build_parser().parse_args(argv)
    except UsageError as exc:
        raise CheckpointError(f"{where}: the run configuration holds a value no flag accepts: {exc}") from None
    return {k: getattr(parsed, k) for k in RESUME_KEYS}


def read_run_config(path):
    """The checked run configuration of the training checkpoint at path."""
    from .checkpoint import read_tensors
    _, meta = read_tensors(path)
    progress = meta.get("progress")
    return checked_run_config(progress.get("config") if isinstance(progress, dict) else None, path)


def check_counters(progress, batches, where):
    """A checkpoint's position must be one the run can reach: batch 0..batches of the epoch
    (batches itself when it was saved on the epoch's last batch), and the iteration count
    that many batches make. Counters that disagree (a crafted or damaged file) would make
    the run skip its epochs or report iterations it never ran."""
    epoch, batch, iteration = progress["epoch"], progress["batch"], progress["iteration"]
    if batch > batches or iteration != epoch * batches + batch:
        raise CheckpointError(f"{where}: its position (epoch {epoch}, batch {batch}, iteration "
                              f"{iteration}) is not one a run of {batches} batches per epoch reaches "
                              "(the file is damaged or was edited)")


def apply_resume_config(args, saved):
    """Take the run's shape from the checkpoint; refuse flags that contradict it."""
    for k in RESUME_KEYS:
        given = getattr(args, k)
        if given is not None and given != saved[k]:
            raise TrainingError(f"--resume: the checkpoint was trained with --{k} {saved[k]}, "
                                f"but --{k} {given} was passed (leave it out to continue the run)")
        setattr(args, k, saved[k])


# ----------------------------------------------------------------------- the step
def train_step(netG, netD, optG, optD, real, noise):
    """One DCGAN iteration. real and noise are Tensors on the networks' backend.

    (1) D: maximise log D(x) + log(1 - D(G(z)))   (2) G: maximise log D(G(z))
    Returns host floats: Loss_D, Loss_G, D(x), D(G(z)) before and after the D step.
    """
    return read_step(step_on_device(netG, netD, optG, optD, real, noise))


def step_on_device(netG, netD, optG, optD, real, noise):
    """The arithmetic of one iteration, queued on the backend with no read-back to the host
    (what a CUDA graph can capture: cuda_graph.py). Returns the tensors read_step reads."""
    netD.zero_grad()
    out_real = netD(real)
    err_real = ops.bce_with_logits(out_real, REAL_LABEL)
    err_real.backward()
    fake = netG(noise)
    out_fake = netD(fake.detach())
    err_fake = ops.bce_with_logits(out_fake, FAKE_LABEL)
    err_fake.backward()
    optD.step()

    netG.zero_grad()
    # D's weights are constants in G's step: not asking for their gradients skips two
    # weight-gradient convolutions per D layer and changes no number (D's grads were
    # zeroed before its own step anyway).
    netD.requires_grad_(False)
    out_g = netD(fake)
    err_g = ops.bce_with_logits(out_g, REAL_LABEL)
    err_g.backward()
    netD.requires_grad_(True)
    optG.step()
    return err_real, err_fake, err_g, out_real, out_fake, out_g


def read_step(tensors):
    """The log line's numbers from step_on_device's tensors (host reads: they wait for the step)."""
    err_real, err_fake, err_g, out_real, out_fake, out_g = tensors

    def mean_probability(logits):  # for display only, on the host copy of N numbers
        z = logits.numpy().astype(np.float64)
        return float(np.mean(1 / (1 + np.exp(-z))))

    return {"loss_D": err_real.item() + err_fake.item(), "loss_G": err_g.item(),
            "D_x": mean_probability(out_real), "D_G_z1": mean_probability(out_fake),
            "D_G_z2": mean_probability(out_g)}


def epoch_order(n, seed, epoch):
    """The shuffled order of the dataset in an epoch: a function of (seed, epoch) only, so a
    resumed run sees the same batches as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def fixed_noise(netG, seed, n=64):
    return netG.sample_noise(n, np.random.default_rng([seed, 0xF1CED]))


# ------------------------------------------------------------------------ the run
class Run:
    def __init__(self, args, folder, log=print):
        """folder: the claimed --outf (run_folder.claim), locked for this run."""
        self.args, self.log, self.folder = args, log, folder
        self.state_path = os.path.join(args.outf, STATE_FILE)
        self.metrics_path = os.path.join(args.outf, "metrics.jsonl")
        if args.resume:
            apply_resume_config(args, read_run_config(args.resume))
        niter_given = args.niter is not None   # else a resumed run ends where it was going to
        fill_defaults(args)

        self.backend = get_backend(args.device, announce=log)
        if args.kernels:
            if self.backend.name == "numpy":
                raise TrainingError("--kernels picks versions of our CUDA kernels: it needs --device cuda "
                                    "(or sim), not the NumPy backend")
            try:
                chosen = self.backend.choose_versions(args.kernels)
            except ValueError as exc:
                raise TrainingError(f"--kernels: {exc}") from None
            log("[dcgan_cuda] kernel versions: " + ", ".join(f"{f} {v}" for f, v in sorted(chosen.items())))
        self.data = load_dataset(args.dataset, args.dataroot, args.imageSize, args.nc,
                                 split="train", max_images=args.max_images, seed=args.manualSeed,
                                 warn=log, classes=args.classes,
                                 keep=read_keep_list(args.keep_list) if args.keep_list else None)
        self.netG, self.netD = build_models(args.arch, args.imageSize, args.nc, args.nz, args.ngf,
                                            args.ndf, seed=args.manualSeed, backend=self.backend)
        betas = (args.beta1, 0.999)
        self.optG = Adam(self.netG.parameters(), args.lr, betas, weight_decay=args.weight_decay)
        self.optD = Adam(self.netD.parameters(), args.lr, betas, weight_decay=args.weight_decay)
        self.noise_rng = np.random.default_rng([args.manualSeed, 1])
        self.epoch, self.batch, self.iteration = 0, 0, 0
        if args.netG:
            load_model_into(self.netG, args.netG)
        if args.netD:
            load_model_into(self.netD, args.netD)
        if args.resume:
            progress = load_training_state(args.resume, self.netG, self.netD, self.optG, self.optD)
            self.epoch, self.batch, self.iteration = progress["epoch"], progress["batch"], progress["iteration"]
            self.noise_rng.bit_generator.state = progress["noise_rng"]
            planned = progress.get("niter")
            if not niter_given and isinstance(planned, int) and not isinstance(planned, bool) and planned >= 1:
                args.niter = planned
            images = progress.get("images")   # absent in checkpoints written before it was recorded
            if images is not None and images != len(self.data):
                raise TrainingError(
                    f"--resume: the run had {images} images in its dataset, which now holds "
                    f"{len(self.data)}: its epochs and batches cannot continue as they were. Start a "
                    f"new run from its weights instead: --netG {args.resume} --netD {args.resume}")
            check_counters(progress, math.ceil(len(self.data) / args.batchSize), args.resume)
            log(f"[dcgan_cuda] resuming {args.resume} at epoch {self.epoch + 1}, "
                f"batch {self.batch}, iteration {self.iteration}")
        self.fixed_noise = Tensor(self.backend.asarray(fixed_noise(self.netG, args.manualSeed)), self.backend)
        self.step = self._eager_step
        if args.cuda_graph:
            if self.backend.name not in ("cuda", "sim"):
                raise TrainingError("--cuda-graph replays our CUDA kernels: it needs --device cuda "
                                    f"(or sim), not the {self.backend.name} backend")
            from .cuda_graph import GraphedTrainStep
            self.step = GraphedTrainStep(self.netG, self.netD, self.optG, self.optD)
        self.last_checkpoint = args.resume or None
        self.last_checkpoint_iteration = self.iteration
        self.stop_requested = False
        self.stop_signal = None    # the signal that asked for the stop, when one did
        self.stopped = False       # train() ended early at a stop request, after saving

    def _eager_step(self, real, noise):
        return train_step(self.netG, self.netD, self.optG, self.optD, real, noise)

    def _step(self, real, noise):
        from .cuda_graph import GraphCaptureError
        try:
            return self.step(real, noise)
        except GraphCaptureError as exc:   # nothing ran: the same iteration again, eagerly
            self.log(f"[dcgan_cuda] warning: {exc}; continuing without the CUDA graph")
            self.step.release()
            self.step = self._eager_step
            return self.step(real, noise)

    def request_stop(self, signum=signal.SIGINT, frame=None):
        """The handler of SIGINT and SIGTERM. The first: finish the current iteration, save,
        stop. A second: stop at once, without saving (the last checkpoint stays)."""
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested, self.stop_signal = True, signum
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n[dcgan_cuda] stopping after this iteration ({again} again to abort without saving)",
              file=sys.stderr)

    def config(self):
        return {k: getattr(self.args, k) for k in RESUME_KEYS}

    def progress(self):
        return {"epoch": self.epoch, "batch": self.batch, "iteration": self.iteration,
                "noise_rng": self.noise_rng.bit_generator.state, "config": self.config(),
                "images": len(self.data), "niter": self.args.niter}

    def _truncate_metrics(self):
        """Drop log lines from iterations after the checkpoint: they will be run again."""
        if not os.path.exists(self.metrics_path):
            return
        from .checkpoint import atomic_write_bytes
        rows = [r for r in read_metrics(self.metrics_path) if r.get("iteration", 0) <= self.iteration]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())

    # -- saving -------------------------------------------------------------------
    def save_state(self):
        try:
            save_training_state(self.state_path, self.netG, self.netD, self.optG, self.optD,
                                self.progress())
        except NonFiniteError as exc:
            # A gradient that was Inf/NaN turns the weights into NaN at the optimizer step,
            # often before any loss shows it.
            raise self._diverged(f"the weights became non-finite ({exc})") from None
        self.last_checkpoint, self.last_checkpoint_iteration = self.state_path, self.iteration
        faults.reached("save")

    def save_epoch(self, epoch):
        out = self.args.outf
        try:
            save_model(os.path.join(out, f"netG_epoch_{epoch}.safetensors"), self.netG)
            save_model(os.path.join(out, f"netD_epoch_{epoch}.safetensors"), self.netD)
        except NonFiniteError as exc:
            raise self._diverged(f"the weights became non-finite ({exc})") from None
        self.save_state()

    def save_samples(self, epoch, keep_state=False):
        """G's images of the fixed noise, in train-mode batchnorm as pytorch/examples draws
        them at an epoch's end, where the forward pass's update of G's running statistics is
        part of the run. keep_state: a picture taken when a run stops mid-epoch, which the
        uninterrupted run never takes: G's buffers are put back afterwards, so the state
        (saved before it) and a resumed run are exactly those of the uninterrupted run."""
        from .autograd import no_grad
        with (state_preserved(self.netG) if keep_state else contextlib.nullcontext()), no_grad():
            fake = self.netG(self.fixed_noise)
        save_grid(fake.numpy(), os.path.join(self.args.outf, f"fake_samples_epoch_{epoch:03d}.png"))

    # -- the loop -------------------------------------------------------------------
    def train(self):
        """Train to --niter epochs, or until a stop request (then self.stopped, after saving)."""
        args, n = self.args, len(self.data)
        batches = math.ceil(n / args.batchSize)
        for name in self.folder.prepare():
            self.log(f"[dcgan_cuda] removed {name}, the temporary file of a write that was cut short")
        if args.resume:
            self._truncate_metrics()
        if self.iteration == 0:
            first = self.data.batch(np.arange(min(64, n)))
            save_grid(first, os.path.join(args.outf, "real_samples.png"))
        self.log(f"[dcgan_cuda] {args.dataset}: {n} images {args.nc}x{args.imageSize}x{args.imageSize}, "
                 f"arch {args.arch}, backend {self.backend.name}, seed {args.manualSeed}, "
                 f"{batches} batches of {args.batchSize} per epoch, epochs {self.epoch + 1}..{args.niter}")
        self.evaluator = None  # built at the first evaluation: the classifier is loaded once per run
        with open(self.metrics_path, "a" if args.resume else "w", encoding="utf-8") as metrics:
            while self.epoch < args.niter:
                order = epoch_order(n, args.manualSeed, self.epoch)
                bar = self._progress_bar(batches)
                t_epoch = time.perf_counter()
                stats = None   # stays None when a resumed run starts at its epoch's end
                while self.batch < batches:
                    idx = order[self.batch * args.batchSize:(self.batch + 1) * args.batchSize]
                    real = Tensor(self.backend.asarray(self.data.batch(idx)), self.backend)
                    noise = Tensor(self.backend.asarray(self.netG.sample_noise(len(idx), self.noise_rng)),
                                   self.backend)
                    t0 = time.perf_counter()
                    stats = self._step(real, noise)
                    self.batch += 1
                    self.iteration += 1
                    self._guard(stats)
                    row = {"epoch": self.epoch + 1, "batch": self.batch, "iteration": self.iteration,
                           **{k: round(v, 6) for k, v in stats.items()},
                           "step_ms": round((time.perf_counter() - t0) * 1e3, 2)}
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    faults.reached("iteration")
                    if bar is not None:
                        bar.set_postfix_str(f"Loss_D {stats['loss_D']:.3f} Loss_G {stats['loss_G']:.3f} "
                                            f"D(x) {stats['D_x']:.3f} D(G(z)) {stats['D_G_z1']:.3f}/"
                                            f"{stats['D_G_z2']:.3f}")
                        bar.update(1)
                    if args.save_every and self.iteration % args.save_every == 0:
                        self.save_state()
                    if args.dry_run or self.stop_requested:
                        break
                if bar is not None:
                    bar.close()
                elif stats is None:
                    self.log(f"[{self.epoch + 1}/{args.niter}] all {batches} batches ran before the "
                             "checkpoint; finishing the epoch")
                else:
                    self.log(f"[{self.epoch + 1}/{args.niter}] Loss_D {stats['loss_D']:.4f} "
                             f"Loss_G {stats['loss_G']:.4f} D(x) {stats['D_x']:.4f} "
                             f"D(G(z)) {stats['D_G_z1']:.4f}/{stats['D_G_z2']:.4f} "
                             f"({time.perf_counter() - t_epoch:.1f}s)")
                finished_epoch, complete = self.epoch, self.batch >= batches
                if complete:
                    self.epoch, self.batch = self.epoch + 1, 0
                    self.save_samples(finished_epoch)
                    self.save_epoch(finished_epoch)
                else:  # stopped mid-epoch: no epoch files; the state first, then a picture that leaves it alone
                    self.save_state()
                    self.save_samples(finished_epoch, keep_state=True)
                if complete and args.eval_every and (self.epoch % args.eval_every == 0
                                                     or self.epoch == args.niter):
                    self.evaluate(metrics)  # after the save: a failing evaluation loses no epoch
                metrics.flush()
                plot_losses(read_metrics(self.metrics_path), os.path.join(args.outf, "loss_curve.png"))
                if args.dry_run or self.stop_requested:
                    break
        if self.stop_requested:
            self.stopped = True
            return
        self.log(f"[dcgan_cuda] done: {self.iteration} iterations; samples and checkpoints in {args.outf}")

    def evaluate(self, metrics):
        """Append G's sample-quality figures (dcgan_cuda/evaluate.py) as a metrics row
        {"iteration", "epoch", "eval": {...}}, with the real-data floor and the untrained
        generator's ceiling beside them. G's state and the training RNG are left untouched,
        so a run with --eval-every trains exactly as one without."""
        from .evaluate import Evaluator, evaluate_generator  # imported only by runs that evaluate
        t0 = time.perf_counter()
        if self.evaluator is None:
            self.evaluator = Evaluator(self.args.imageSize, self.args.nc, log=self.log)
        r = evaluate_generator(self.netG, self.backend, EVAL_SAMPLES, evaluator=self.evaluator, log=self.log)
        g = r["generated"]
        figures = {"frechet_distance": round(g["frechet_distance"], 4),
                   "frechet_distance_real": round(r["real_train"]["frechet_distance"], 4),
                   "frechet_distance_untrained": round(r["untrained"]["frechet_distance"], 4),
                   "classes_covered": g["classes_covered"], "kl_uniform": round(g["kl_uniform"], 4),
                   "mean_confidence": round(g["mean_confidence"], 4), "samples": EVAL_SAMPLES,
                   "seconds": round(time.perf_counter() - t0, 2)}
        metrics.write(json.dumps({"iteration": self.iteration, "epoch": self.epoch, "eval": figures}) + "\n")
        self.log(f"[eval {self.epoch}] Frechet distance {figures['frechet_distance']:.2f} (real "
                 f"{figures['frechet_distance_real']:.2f}, untrained {figures['frechet_distance_untrained']:.2f}), "
                 f"classes {figures['classes_covered']}/10, KL {figures['kl_uniform']:.3f}, "
                 f"confidence {figures['mean_confidence']:.3f} ({figures['seconds']:.1f}s)")

    def _progress_bar(self, batches):
        if self.args.no_progress:
            return None
        from tqdm import tqdm
        return tqdm(total=batches, initial=self.batch, desc=f"[{self.epoch + 1}/{self.args.niter}]",
                    unit="it", dynamic_ncols=True, leave=True)

    def _guard(self, stats):
        bad = [k for k, v in stats.items() if not math.isfinite(v)]
        if bad:
            raise self._diverged(f"{', '.join(bad)} became non-finite")

    def _diverged(self, what):
        where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                 else "no checkpoint was written yet")
        return TrainingError(f"training diverged at iteration {self.iteration}: {what}; nothing was "
                             f"saved from this iteration on; {where}")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install(handlers):
    """Set signal handlers; returns the ones they replace. A signal that the caller's shell
    ignores (a background job ignores SIGINT) stays ignored; off the main thread, where
    Python cannot set handlers, nothing changes."""
    replaced = {}
    for signum, handler in handlers.items():
        previous = signal.getsignal(signum)
        if previous is None or previous is signal.SIG_IGN:
            continue
        try:
            signal.signal(signum, handler)
        except ValueError:
            continue
        replaced[signum] = previous
    return replaced


def main(argv=None):
    run = folder = None
    # Until the run's own handler takes over, a Ctrl-C raises KeyboardInterrupt, answered
    # below with one line: nothing of the run exists yet to save.
    startup = _install({signal.SIGINT: signal.default_int_handler})
    try:
        check_environment()
        args = parse_args(argv)
        faults.arm()
        if args.outf is None:
            args.outf = default_outf(args.resume)
        folder = claim(args.outf, args.resume, args.overwrite)
        run = Run(args, folder)
        handlers = _install({signum: run.request_stop for signum in STOP_SIGNALS})
        try:
            run.train()
        except KeyboardInterrupt:      # asked twice: stopped at once, nothing more saved
            where = (f"--resume {run.last_checkpoint} continues from iteration {run.last_checkpoint_iteration}"
                     if run.last_checkpoint else "no checkpoint was written")
            print(f"[dcgan_cuda] aborted at iteration {run.iteration} without saving; {where}",
                  file=sys.stderr)
            return 128 + (run.stop_signal or signal.SIGINT)
        finally:
            _install(handlers)
        if run.stopped:
            print(f"[dcgan_cuda] interrupted at iteration {run.iteration}; state saved; continue "
                  f"with --resume {run.state_path}", file=sys.stderr)
            return 128 + run.stop_signal
    except KeyboardInterrupt:
        print("\n[dcgan_cuda] interrupted " + ("during start-up, before training began" if run is None
                                                else f"at iteration {run.iteration}"), file=sys.stderr)
        return 128 + signal.SIGINT
    except (UsageError, DatasetError, ModelConfigError, BackendUnavailable, CheckpointError,
            TrainingError, ops.OpError, RunFolderError, faults.FaultSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:   # host or GPU (CuPy's OutOfMemoryError is one)
        print("error: " + out_of_memory(exc, "this model and batch (--imageSize, --nz, --ngf, --ndf, "
                                        "--batchSize)"), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write output ({exc.strerror or exc}: {exc.filename or ''}); "
              "the previous checkpoint is left as it was", file=sys.stderr)
        return 2
    finally:
        if folder is not None:
            folder.release()
        faults.disarm()
        _install(startup)
    return 0


if __name__ == "__main__":
    keep_freed_memory()      # a process that trains: see host_memory.py
    sys.exit(main())
