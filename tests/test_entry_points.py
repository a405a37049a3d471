"""No input a user can give ends in a traceback, or in exit status 0 with nonsense.

Every entry point runs here in this process, as ``python -m ...`` runs it (its main(argv)),
with an argument vector that is valid but for one ingredient, which hypothesis draws: a
number out of range, nan or inf, a wrong type, an unknown choice or flag, a flag without
its value, a missing file, a folder or an empty or corrupt file where a file belongs, a
checkpoint whose metadata or weights were tampered with, a bad environment variable. Every
such run must end with exit status 2 and exactly one line on stderr, ``error: ...``, that
names the bad ingredient; nothing may say "Traceback"; and the output folder must hold no
file afterwards (it may have been created, empty).

Each (entry point, ingredient) pair is a test of its own with a few examples, so every
ingredient is tried on every run of the suite, not only those a random draw happens on.
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from dcgan_cuda import cli, evaluate, train
from dcgan_cuda.data import DATASETS
from dcgan_cuda import dedup
from dcgan_cuda.experiments import arithmetic, forget, nearest, probe, visualize, walk
from dcgan_cuda.faults import ENVIRONMENT as FAULT_VARIABLE
from dcgan_cuda.models import ARCHS, IMAGE_SIZES
from dcgan_cuda.run_folder import LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import common as bench_common  # noqa: E402  (bench/common.py)
import conv_bench  # noqa: E402
import ptx_hot_loop  # noqa: E402
import ptxas_report  # noqa: E402
import train_bench  # noqa: E402

SIZE, NZ, NGF, NDF = 16, 8, 4, 4
TRAIN_TINY = ["--device", "cpu", "--imageSize", str(SIZE), "--ngf", str(NGF), "--ndf", str(NDF),
              "--nz", str(NZ), "--batchSize", "8", "--max-images", "16", "--manualSeed", "2",
              "--no-progress", "--dry-run"]
EXAMPLES = settings(max_examples=4, suppress_health_check=list(HealthCheck), deadline=None)
TEXT = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.", min_size=1, max_size=8)


# =============================================================================== running
@contextlib.contextmanager
def environment(changes):
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_main(main, argv, env=None):
    """(exit status, stdout, stderr) of main(argv), as the program would end; stderr
    includes the warnings Python would print there (pytest would otherwise keep them)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), environment(env or {}), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    shown = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    return status, out.getvalue(), "".join(line + "\n" for line in shown) + err.getvalue()


def assert_refused(status, out, err, names, outf, untouched=()):
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in out + err, err
    assert status == 2, f"exit status {status}; stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not one error line: {err!r}"
    assert any(name in lines[0] for name in names), f"{lines[0]!r} names none of {names}"
    if outf is not None and os.path.isdir(outf):
        # The lock of a training run's folder stays (run_folder.py: the flock ends with the
        # process); it is not a file of the run.
        left = [name for name in os.listdir(outf) if name != LOCK_FILE]
        assert left == [], f"files left in the output folder: {left}"
    for folder in untouched:
        assert os.listdir(folder) == [], f"files left in {folder}: {os.listdir(folder)}"


# ================================================================ files the tools are given
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A training state, model files of G and D, and a classifier cache folder that must
    stay empty (no refused run may get as far as training the classifier)."""
    root = tmp_path_factory.mktemp("entry_points")
    run = root / "run"
    status, _, err = run_main(train.main, TRAIN_TINY[:-1] + ["--niter", "1", "--outf", str(run)])
    assert status == 0, err
    cache = root / "cache"
    cache.mkdir()
    with environment({"DCGAN_CUDA_CACHE": str(cache)}):
        yield {"G": str(run / "netG_epoch_0.safetensors"), "D": str(run / "netD_epoch_0.safetensors"),
               "state": str(run / "checkpoint.safetensors"), "root": root}
    assert os.listdir(cache) == []


def read_raw(path):
    """Tensors and the metadata strings of a safetensors file, as written."""
    payload = Path(path).read_bytes()
    header = json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")])
    return st_load(payload), dict(header.get("__metadata__") or {})


def write_raw(path, tensors, metadata):
    """Write without any of checkpoint.save_tensors' checks: a file a user might be handed."""
    Path(path).write_bytes(st_save({k: np.asarray(v, order="C") for k, v in tensors.items()},
                                   metadata=metadata))


# Values for a metadata field that describes the network (any other value describes
# another network, which the weights cannot fit): wrong types, odd numbers, any text.
JUNK_JSON = st.one_of(
    st.sampled_from([None, True, False, 1.5, -1, 0, "", "x", [], {}, [16], {"a": 1}, 10**12, -10**12]),
    st.floats(allow_nan=True, allow_infinity=True), TEXT)
# Values no recorded flag, counter or generator state takes (0 would be a valid beta1, seed
# or epoch; 0.5 a valid learning rate).
CONFIG_JUNK = st.sampled_from([None, True, False, [], {}, [16], {"a": 1}, "", "x", "no such", -1, 1.5,
                               -10**12, 10**12, float("nan"), float("inf"), float("-inf")])


@dataclass
class Spoiled:
    """One bad argument vector: argv to append to the valid one, strings of which the error
    line must name one, and environment variables to set."""
    argv: list
    names: tuple
    env: dict = field(default_factory=dict)
    untouched: tuple = ()       # folders that must still be empty afterwards


# ============================================================== the ingredients, drawn
def number_flag(flag, lo=None, hi=None, whole=True, low_open=False, high_open=False):
    """A value the flag's type refuses: outside [lo, hi], not a number, nan, inf."""
    def bad_number(v):
        return (lo is not None and (v < lo or (low_open and v == lo))) or \
               (hi is not None and (v > hi or (high_open and v == hi)))
    numbers = (st.integers(min_value=-10**30, max_value=10**30).filter(bad_number).map(str) if whole else
               st.floats(allow_nan=False, allow_infinity=False).filter(bad_number).map(repr))
    junk = ["abc", "1.5", "", " ", "nan", "inf", "-inf", "1e400", "0x10", "3 4", "--"]
    if not whole:
        junk = [j for j in junk if j != "1.5"]

    def draw(data, ctx):
        if lo is None and hi is None:
            value = data.draw(st.sampled_from(junk))
        else:
            value = data.draw(st.one_of(numbers, st.sampled_from(junk)))
        return Spoiled([f"{flag}={value}"], (value, flag.lstrip("-")))
    return draw


def choice_flag(flag, choices):
    def is_choice(text):
        try:
            return int(text) in choices     # "016" is the int choice 16
        except ValueError:
            return text in choices

    def draw(data, ctx):
        value = data.draw(TEXT.filter(lambda v: not is_choice(v)))
        return Spoiled([f"{flag}={value}"], (value,))
    return draw


def unknown_flag(data, ctx):
    name = "--no-such-" + data.draw(TEXT)
    return Spoiled([name] + data.draw(st.lists(TEXT, max_size=1)), (name,))


def value_missing(flag):
    def draw(data, ctx):
        return Spoiled([flag], (flag,))
    return draw


def bad_path(flag, kinds=("missing", "folder", "empty", "garbage", "text"), extra=()):
    """A path that names no usable file: missing, a folder, empty, random bytes, text
    (``extra``: the flags that make the tool read it)."""
    def draw(data, ctx):
        kind = data.draw(st.sampled_from(kinds))
        path = os.path.join(ctx["tmp"], "given_" + data.draw(TEXT))
        if kind == "folder":
            os.mkdir(path)
        elif kind == "empty":
            Path(path).write_bytes(b"")
        elif kind == "garbage":
            Path(path).write_bytes(data.draw(st.binary(min_size=1, max_size=64)))
        elif kind == "text":
            Path(path).write_text("netG weights\n")
        return Spoiled([f"{flag}={path}"] + list(extra), (path,), untouched=(path,) if kind == "folder" else ())
    return draw


def decoded_metadata(meta):
    """The metadata as dcgan_cuda reads it: JSON where a string parses as JSON."""
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def tampered(flag, source, fields, tensors=None, junk_only=(), values=None):
    """A checkpoint derived from a good one (files[source]) with one metadata field
    changed or removed, or one floating-point tensor spoilt (NaN, Inf, integer dtype, wrong
    shape, missing). ``fields`` are dotted paths into the metadata that this entry point
    reads and that no other value of may pass (another value describes another network);
    ``junk_only`` are fields where another valid value is a sound run of its own, so only
    invalid ones are drawn (``values``, default CONFIG_JUNK); ``tensors`` is the prefix of
    the tensors the entry point reads (None: no tensor)."""
    def draw(data, ctx):
        arrays, raw = read_raw(ctx["files"][source])
        meta = decoded_metadata(raw)
        kinds = ["field"] * bool(list(fields) + list(junk_only)) + ["tensor"] * (tensors is not None)
        if data.draw(st.sampled_from(kinds)) == "field":
            dotted = data.draw(st.sampled_from(list(fields) + list(junk_only)))
            *parents, leaf = dotted.split(".")
            holder = meta
            for key in parents:
                holder = holder[key]
            old = json.dumps(holder.get(leaf))
            junk = JUNK_JSON if dotted in fields else (CONFIG_JUNK if values is None else values)
            if dotted in fields and data.draw(st.booleans()):
                del holder[leaf]
            else:
                holder[leaf] = data.draw(junk.filter(lambda v: json.dumps(v) != old))
            top = parents[0] if parents else leaf
            raw.pop(top)
            if top in meta:     # as JSON, so that a string like "16" stays a string
                raw[top] = json.dumps(meta[top])
        else:
            name = data.draw(st.sampled_from(sorted(
                k for k, v in arrays.items() if k.startswith(tensors) and v.dtype.kind == "f")))
            array = arrays[name].copy()
            how = data.draw(st.sampled_from(["nan", "inf", "int", "shape", "missing"]))
            if how in ("nan", "inf"):
                array.reshape(-1)[data.draw(st.integers(0, array.size - 1))] = np.nan if how == "nan" else -np.inf
                arrays[name] = array
            elif how == "int":
                arrays[name] = array.astype(np.int32)
            elif how == "shape":
                arrays[name] = np.append(array.reshape(-1), np.float32(0.5))
            else:
                del arrays[name]
        path = os.path.join(ctx["tmp"], "tampered.safetensors")
        write_raw(path, arrays, raw)
        return Spoiled([f"{flag}={path}"], (path,))
    return draw


def empty_dataset(data, ctx):
    """Well-formed dataset files that hold no image: MNIST IDX files of 0 images, or
    CIFAR-10 batches of 0 rows."""
    name = data.draw(st.sampled_from(["mnist", "cifar10"]))
    root = Path(ctx["tmp"]) / "empty_dataset"
    root.mkdir()
    if name == "mnist":
        for stem, dims in (("images-idx3-ubyte", (0, 28, 28)), ("labels-idx1-ubyte", (0,))):
            for split in ("train", "t10k"):
                header = (0x0800 | len(dims)).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
                (root / f"{split}-{stem}").write_bytes(header)
    else:
        import pickle
        batches = root / "cifar-10-batches-py"
        batches.mkdir()
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (batches / batch).write_bytes(pickle.dumps({"data": np.zeros((0, 3072), np.uint8), "labels": []}))
    return Spoiled([f"--dataset={name}", f"--dataroot={root}"], ("no images",))


def bad_step_count(data, ctx):
    """A training state whose optimizer step count is negative, fractional or not a scalar."""
    arrays, raw = read_raw(ctx["files"]["state"])
    name = data.draw(st.sampled_from(["optG.step", "optD.step"]))
    arrays[name] = data.draw(st.sampled_from([np.asarray(-1, np.int64), np.asarray(1.5, np.float32),
                                              np.asarray([1, 2], np.int64), np.asarray(True)]))
    path = os.path.join(ctx["tmp"], "step.safetensors")
    write_raw(path, arrays, raw)
    return Spoiled([f"--resume={path}"], (path,))


def overflowing(flag, source):
    """A network's weights at float32's limit: finite, but what it computes (G's images,
    D's features) comes out NaN/Inf."""
    def draw(data, ctx):
        tensors, meta = read_raw(ctx["files"][source])
        sign = data.draw(st.sampled_from([1.0, -1.0]))
        for k, v in tensors.items():
            if v.dtype.kind == "f" and not k.endswith(("running_mean", "running_var", "bias")):
                tensors[k] = np.where(v >= 0, sign, -sign).astype(np.float32) * np.float32(3e38)
        path = os.path.join(ctx["tmp"], "overflowing.safetensors")
        write_raw(path, tensors, meta)
        return Spoiled([f"{flag}={path}"], ("NaN or Inf",))
    return draw


def bad_environment(data, ctx):
    value = data.draw(TEXT.filter(lambda v: v not in cli.LAUNCH_PATHS))
    return Spoiled([], ("DCGAN_CUDA_LAUNCH",), {"DCGAN_CUDA_LAUNCH": value})


def bad_fault_hook(data, ctx):
    """The test hook's variable (faults.py) set to something that is no fault."""
    value = data.draw(st.one_of(TEXT, st.sampled_from(["kill", "kill@", "kill@save", "kill@save:0",
                                                       "boom@save:1", "kill@nowhere:1"])))
    return Spoiled([], (FAULT_VARIABLE,), {FAULT_VARIABLE: value})


def literal(argv, names):
    """A fixed bad combination of flags that are each fine alone."""
    def draw(data, ctx):
        return Spoiled([a.format(**ctx["files"]) for a in argv], names)
    return draw


def index_list(flag, upper, extra=()):
    """A comma-separated index list no tool accepts: out of range, negative, not numbers."""
    def draw(data, ctx):
        value = data.draw(st.one_of(
            st.lists(st.integers(upper, 10**6), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
            st.integers(-10**6, -1).map(str),
            st.sampled_from(["", ",", "a,b", "1.5", "nan", "1;2"])))
        return Spoiled([f"{flag}={value}"] + list(extra), (flag,))
    return draw


def number_list(flag, bad_items):
    def draw(data, ctx):
        items = data.draw(st.lists(st.sampled_from(["1", "2"]), max_size=2))
        items.insert(data.draw(st.integers(0, len(items))), data.draw(st.sampled_from(bad_items)))
        return Spoiled([f"{flag}={','.join(items)}"], (flag,))
    return draw


def boxes_file(data, ctx):
    """A --boxes file forget cannot use: not JSON, the wrong shape, boxes off the sheet or
    outside the image, or one covering a whole sample (nothing left outside to contrast)."""
    content = data.draw(st.sampled_from([
        "not json", "{}", "[]", "[1, 2]", '[{"sample": 0}]', '[{"box": [0, 0, 4, 4]}]',
        '[{"sample": 99, "box": [0, 0, 4, 4]}]', '[{"sample": -1, "box": [0, 0, 4, 4]}]',
        '[{"sample": 0, "box": [0, 0, 99, 4]}]', '[{"sample": 0, "box": [4, 4, 2, 2]}]',
        '[{"sample": 0, "box": [0, 0, "a", 4]}]', '[{"sample": "x", "box": [0, 0, 4, 4]}]',
        f'[{{"sample": 0, "box": [0, 0, {SIZE}, {SIZE}]}}]']))
    path = os.path.join(ctx["tmp"], "boxes_" + data.draw(TEXT) + ".json")
    Path(path).write_text(content)
    return Spoiled([f"--boxes={path}"], (path, "--boxes"))


# =========================================================================== entry points
def model_fields(kind):
    return ["format", "kind", "arch", "nc", "image_size"] + (["nz", "ngf"] if kind == "G" else ["ndf"])


def network_file_ingredients(flag, kind):
    """Everything a --netG/--netD file can be wrong in, for a tool that rebuilds the
    network from the file (evaluate and the experiments)."""
    config = "netG_config" if kind == "G" else "netD_config"
    prefix = "netG." if kind == "G" else "netD."
    return {
        "file_unusable": bad_path(flag),
        "model_file_metadata": tampered(flag, kind, model_fields(kind)),
        "model_file_weights": tampered(flag, kind, [], tensors=""),
        "state_file_metadata": tampered(flag, "state", ["format"] + [f"{config}.{k}" for k in
                                                                   model_fields(kind)[2:]]),
        "state_file_weights": tampered(flag, "state", [], tensors=prefix),
        "wrong_network": literal([f"{flag}={{{'D' if kind == 'G' else 'G'}}}"], ("needs a",)),
    }


def common_tool_ingredients(net_flag, kind, scale=True):
    out = {
        "manual_seed": number_flag("--manualSeed", 0, cli.MAX_SEED),
        "device": choice_flag("--device", ("auto", "cpu", "cuda", "sim")),
        "device_sim_without_simulator": literal(["--device=sim"], ("NUMBA_ENABLE_CUDASIM",)),
        "outf_empty": literal(["--outf="], ("--outf",)),
        "unknown_flag": unknown_flag,
        "value_missing": value_missing("--manualSeed"),
        "environment": bad_environment,
        **network_file_ingredients(net_flag, kind),
    }
    if scale:
        out["scale"] = number_flag("--scale", 1, cli.MAX_SCALE)
    return out


TOOLS = {
    "walk": (walk.main, ["--netG", "{G}", "--rows", "2", "--steps", "3"], {
        **common_tool_ingredients("--netG", "G"),
        "bn_mode": choice_flag("--bn-mode", ("eval", "train")),
        "rows": number_flag("--rows", 1, 10_000),
        "points": number_flag("--points", 2, 10_000),
        "steps": number_flag("--steps", 2, 10_000),
        "too_many_images": literal(["--rows=100", "--steps=102"], ("--rows",)),
        "overflowing_generator": overflowing("--netG", "G"),
    }),
    "arithmetic": (arithmetic.main, ["--netG", "{G}", "--sheet-size", "8"], {
        **common_tool_ingredients("--netG", "G"),
        "sheet_size": number_flag("--sheet-size", 1, 10_000),
        "neighbours": number_flag("--neighbours", 0, 10_000),
        "noise": number_flag("--noise", 0, 100, whole=False),
        "group_indices": index_list("--A", 8, ["--B=1", "--C=2"]),
        "groups_incomplete": literal(["--A=1", "--C=2"], ("--A",)),
        "overflowing_generator": overflowing("--netG", "G"),
    }),
    "nearest": (nearest.main, ["--netG", "{G}", "--n", "4", "--max-train", "16"], {
        **common_tool_ingredients("--netG", "G"),
        "n": number_flag("--n", 1, 10_000),
        "max_train": number_flag("--max-train", 1, cli.MAX_COUNT),
        "dataset": choice_flag("--dataset", DATASETS),
        "dataroot_unusable": bad_path("--dataroot", ("missing", "empty", "text"), ["--dataset=mnist"]),
        "dataroot_empty_text": literal(["--dataroot="], ("--dataroot",)),
        "mnist_without_files": literal(["--dataset=mnist", "--dataroot={root}"], ("MNIST",)),
        "dataset_of_no_images": empty_dataset,
        "overflowing_generator": overflowing("--netG", "G"),
    }),
    "forget": (forget.main, ["--netG", "{G}", "--sheet-size", "8", "--n", "4"], {
        **common_tool_ingredients("--netG", "G"),
        "maps": index_list("--maps", NGF),
        "boxes_file_unusable": bad_path("--boxes"),
        "boxes_content": boxes_file,
        "maps_and_boxes": literal(["--maps=1", "--boxes={G}"], ("--maps",)),
        "max_maps": number_flag("--max-maps", 1, 10_000),
        "sheet_size": number_flag("--sheet-size", 1, 10_000),
        "n": number_flag("--n", 1, 10_000),
        "cols": number_flag("--cols", 1, 10_000),
        "overflowing_generator": overflowing("--netG", "G"),
    }),
    "probe": (probe.main, ["--netD", "{D}", "--max-train", "40", "--max-test", "20", "--draws", "2",
                           "--labels-per-class", "2", "--C-grid", "0.01"], {
        **common_tool_ingredients("--netD", "D", scale=False),
        "bn_mode": choice_flag("--bn-mode", ("eval", "train")),
        "draws": number_flag("--draws", 1, 1000),
        "val_fraction": number_flag("--val-fraction", 0, 1, whole=False, low_open=True, high_open=True),
        "max_train": number_flag("--max-train", 1, cli.MAX_COUNT),
        "max_test": number_flag("--max-test", 1, cli.MAX_COUNT),
        "labels_per_class": number_list("--labels-per-class", ["0", "-1", "abc", "nan", "1.5"]),
        "c_grid": number_list("--C-grid", ["0", "-1", "abc", "nan", "inf", "1e400", "-inf"]),
        "svhn_unusable": bad_path("--svhn", ("missing", "folder", "text")),
        "cifar10_unusable": bad_path("--cifar10", ("missing", "folder", "text")),
        "nothing_to_probe": literal(["--skip-digits"], ("--skip-digits",)),
        "overflowing_discriminator": overflowing("--netD", "D"),
    }),
    "visualize": (visualize.main, ["--netD", "{D}", "--pool", "16", "--n", "2", "--maps", "0"], {
        **common_tool_ingredients("--netD", "D"),
        "layer": number_flag("--layer", 0, 1),     # D at 16x16 has activations after layers 0 and 1
        "maps": index_list("--maps", 2 * NDF),
        "n": number_flag("--n", 1, 10_000),
        "pool": number_flag("--pool", 1, cli.MAX_COUNT),
        "n_above_pool": literal(["--n=5", "--pool=4"], ("--n",)),
        "dataset": choice_flag("--dataset", DATASETS),
        "dataroot_empty_text": literal(["--dataroot="], ("--dataroot",)),
        "overflowing_discriminator": overflowing("--netD", "D"),
    }),
}

ENTRIES = {name: (main, base + ["--device", "cpu"], ingredients, "--outf")
           for name, (main, base, ingredients) in TOOLS.items()}

ENTRIES["evaluate"] = (evaluate.main, ["--netG", "{G}", "--device", "cpu", "--n-samples", "8"], {
    "n_samples": number_flag("--n-samples", 2, evaluate.MAX_SAMPLES),
    "batch_size": number_flag("--batch-size", 2, evaluate.MAX_SAMPLES),
    "seed": number_flag("--seed", 0, cli.MAX_SEED),
    "classifier_seed": number_flag("--classifier-seed", 0, cli.MAX_SEED),
    "bn_mode": choice_flag("--bn-mode", ("train", "eval")),
    "device": choice_flag("--device", ("auto", "cpu", "cuda", "sim")),
    "unknown_flag": unknown_flag,
    "value_missing": value_missing("--n-samples"),
    "environment": bad_environment,
    "trained_on_another_dataset": tampered("--netG", "state", [], junk_only=["progress.config.dataset"],
                                           values=st.sampled_from([d for d in DATASETS if d != "digits"]
                                                                  + ["x", 5, [], True])),
    "overflowing_generator": overflowing("--netG", "G"),
    **network_file_ingredients("--netG", "G"),
}, None)

ENTRIES["dedup"] = (dedup.main, ["--device", "cpu", "--epochs", "1", "--max-images", "32", "--hidden", "8",
                                  "--code-bits", "8", "--no-progress"], {
    "dataset": choice_flag("--dataset", DATASETS),
    "max_images": number_flag("--max-images", 1, cli.MAX_COUNT),
    "keep_list_unusable": bad_path("--keep-list", ("missing", "folder")),
    "seed": number_flag("--seed", 0, cli.MAX_SEED),
    "epochs": number_flag("--epochs", 1, 10_000),
    "batch_size": number_flag("--batch-size", 1, 100_000),
    "hidden": number_flag("--hidden", 1, 65_536),
    "code_bits": number_flag("--code-bits", 1, 4096),
    "threshold": number_flag("--threshold", 0, None, whole=False),
    "dropout": number_flag("--dropout", 0, 1, whole=False, high_open=True),
    "noise": number_flag("--noise", 0, 10, whole=False),
    "lr": number_flag("--lr", 0, 1, whole=False, low_open=True),
    "plant": number_flag("--plant", 0, cli.MAX_COUNT),
    "top_groups": number_flag("--top-groups", 1, 1000),
    "device": choice_flag("--device", ("auto", "cpu", "cuda", "sim")),
    "unknown_flag": unknown_flag,
    "value_missing": value_missing("--epochs"),
    "dataset_of_no_images": empty_dataset,
}, "--outf")

STATE_CONFIG = [f"progress.config.{k}" for k in train.RESUME_KEYS if k not in train.UNSET_ALLOWED]
ENTRIES["train"] = (train.main, TRAIN_TINY, {
    **{name: number_flag(f"--{name}", lo, hi) for name, lo, hi in [
        ("batchSize", 1, cli.MAX_COUNT), ("nz", 1, cli.MAX_LATENT), ("ngf", 1, cli.MAX_WIDTH),
        ("ndf", 1, cli.MAX_WIDTH), ("niter", 1, cli.MAX_COUNT), ("workers", 0, 256),
        ("manualSeed", 0, cli.MAX_SEED), ("save_every", 0, cli.MAX_COUNT),
        ("max_images", 1, cli.MAX_COUNT), ("eval_every", 0, cli.MAX_COUNT)]},
    "lr": number_flag("--lr", 0, 1, whole=False, low_open=True),
    "beta1": number_flag("--beta1", 0, 1, whole=False, high_open=True),
    "weight_decay": number_flag("--weight-decay", 0, 1, whole=False),
    "ngpu": number_flag("--ngpu"),
    "ngpu_several": literal(["--ngpu=2"], ("--ngpu",)),
    "dataset": choice_flag("--dataset", DATASETS),
    "imageSize": choice_flag("--imageSize", IMAGE_SIZES),
    "nc": choice_flag("--nc", (1, 3)),
    "arch": choice_flag("--arch", ARCHS),
    "device": choice_flag("--device", ("auto", "cpu", "cuda", "sim")),
    "device_sim_without_simulator": literal(["--device=sim"], ("NUMBA_ENABLE_CUDASIM",)),
    "unknown_flag": unknown_flag,
    "value_missing": value_missing("--lr"),
    "environment": bad_environment,
    "fault_hook": bad_fault_hook,
    "outf_empty": literal(["--outf="], ("--outf",)),
    "outf_is_a_file": literal(["--outf={G}"], ("{G}",)),
    "dataroot_empty_text": literal(["--dataroot="], ("--dataroot",)),
    "folder_without_dataroot": literal(["--dataset=folder"], ("--dataroot",)),
    "folder_dataroot_unusable": literal(["--dataset=folder", "--dataroot={G}"], ("{G}",)),
    "mnist_without_files": literal(["--dataset=mnist", "--dataroot={root}"], ("MNIST",)),
    "dataset_of_no_images": empty_dataset,
    "cifar10_without_files": literal(["--dataset=cifar10", "--dataroot={root}"], ("CIFAR-10",)),
    "eval_every_off_digits": literal(["--dataset=fake", "--eval-every=1"], ("--eval-every",)),
    "kernels_on_numpy": literal(["--kernels", "newest"], ("--kernels",)),
    "cuda_graph_on_numpy": literal(["--cuda-graph"], ("--cuda-graph",)),
    "netG_unusable": bad_path("--netG"),
    "netD_unusable": bad_path("--netD"),
    "netG_metadata": tampered("--netG", "G", model_fields("G")[1:]),
    "netG_weights": tampered("--netG", "G", [], tensors=""),
    "netD_metadata": tampered("--netD", "D", model_fields("D")[1:]),
    "netD_weights": tampered("--netD", "D", [], tensors=""),
    "netG_is_a_discriminator": literal(["--netG={D}"], ("{D}",)),
    "resume_unusable": bad_path("--resume"),
    "resume_model_file": literal(["--resume={G}"], ("{G}",)),
    "resume_format": tampered("--resume", "state", ["format"]),
    "resume_counters": tampered("--resume", "state", ["progress.epoch", "progress.batch", "progress.iteration"]),
    "resume_noise_state": tampered("--resume", "state", [], junk_only=["progress.noise_rng"]),
    "resume_run_config": tampered("--resume", "state", [], junk_only=STATE_CONFIG + ["progress.config"]),
    "resume_network_config": tampered("--resume", "state", [
        f"{net}_config.{k}" for net, kind in (("netG", "G"), ("netD", "D")) for k in model_fields(kind)[2:]]),
    "resume_network_weights": tampered("--resume", "state", [], tensors="net"),
    "resume_optimizer_state": tampered("--resume", "state", [], tensors="opt"),
    "resume_optimizer_step": bad_step_count,
}, "--outf")

def not_a_compute_capability(data, ctx):
    def valid(text):
        try:
            bench_common.compute_capability(text)
            return True
        except Exception:
            return False
    value = data.draw(st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(["sm_90", "9.0", "abc", ""]))
                      .filter(lambda v: not valid(v)))
    return Spoiled([f"--cc={value}"], (value,))


def bad_assembler(data, ctx):
    kind = data.draw(st.sampled_from(["missing", "folder", "not executable"]))
    path = os.path.join(ctx["tmp"], "ptxas_" + data.draw(TEXT))
    if kind == "folder":
        os.mkdir(path)
    elif kind == "not executable":
        Path(path).write_text("#!/bin/sh\n")
    return Spoiled([], ("PTXAS",), {"PTXAS": path})


def kernel_prefix(data, ctx):
    name = "zz" + data.draw(TEXT)       # no kernel's name starts with "zz"
    return Spoiled([name], (name,))


BENCH_COMMON = {"unknown_flag": unknown_flag, "environment": bad_environment,
                "json_is_a_folder": bad_path("--json", ("folder",))}
ENTRIES["bench/conv_bench.py"] = (conv_bench.main, [
    "--batch", "2", "--image-size", "16", "--ngf", "4", "--ndf", "4", "--nz", "8", "--no-sim",
    "--cpu-reps", "1", "--layers", "G1"], {
    **BENCH_COMMON,
    "batch": number_flag("--batch", 1, cli.MAX_COUNT),
    "image_size": choice_flag("--image-size", IMAGE_SIZES),
    "nc": choice_flag("--nc", (1, 3)),
    "nz": number_flag("--nz", 1, cli.MAX_LATENT),
    "ngf": number_flag("--ngf", 1, cli.MAX_WIDTH),
    "ndf": number_flag("--ndf", 1, cli.MAX_WIDTH),
    "arch": choice_flag("--arch", ARCHS),
    "layers": choice_flag("--layers", ("G1", "G2", "G3", "G4", "G5", "D1", "D2", "D3", "D4", "D5")),
    "directions": choice_flag("--directions", conv_bench.DIRECTIONS),
    "versions": choice_flag("--versions", tuple(range(1, 8))),
    "warmup": number_flag("--warmup", 0, cli.MAX_COUNT),
    "reps": number_flag("--reps", 1, cli.MAX_COUNT),
    "budget_ms": number_flag("--budget-ms", 0, 1e9, whole=False, low_open=True),
    "cpu_reps": number_flag("--cpu-reps", 1, cli.MAX_COUNT),
    "value_missing": value_missing("--batch"),
}, None)
ENTRIES["bench/train_bench.py"] = (train_bench.main, [
    "--device", "cpu", "--batch", "2", "--image-size", "16", "--ngf", "4", "--ndf", "4", "--nz", "8",
    "--steps", "1", "--warmup", "0", "--no-torch"], {
    **BENCH_COMMON,
    "device": choice_flag("--device", ("cpu", "cuda", "sim")),
    "device_sim_without_simulator": literal(["--device=sim"], ("NUMBA_ENABLE_CUDASIM",)),
    "batch": number_flag("--batch", 1, cli.MAX_COUNT),
    "image_size": choice_flag("--image-size", IMAGE_SIZES),
    "nc": choice_flag("--nc", (1, 3)),
    "nz": number_flag("--nz", 1, cli.MAX_LATENT),
    "ngf": number_flag("--ngf", 1, cli.MAX_WIDTH),
    "ndf": number_flag("--ndf", 1, cli.MAX_WIDTH),
    "arch": choice_flag("--arch", ARCHS),
    "steps": number_flag("--steps", 1, cli.MAX_COUNT),
    "warmup": number_flag("--warmup", 0, cli.MAX_COUNT),
    "versions_on_numpy": literal(["--versions", "newest"], ("--versions",)),
    "value_missing": value_missing("--steps"),
}, None)
ENTRIES["bench/ptxas_report.py"] = (ptxas_report.main, [], {
    **BENCH_COMMON,
    "cc": not_a_compute_capability,
    "assembler": bad_assembler,
    "value_missing": value_missing("--cc"),
}, None)
ENTRIES["bench/ptx_hot_loop.py"] = (ptx_hot_loop.main, [], {
    **BENCH_COMMON,
    "cc": not_a_compute_capability,
    "kernel_names": kernel_prefix,
    "value_missing": value_missing("--cc"),
}, None)

CASES = [(entry, ingredient) for entry, (_, _, ingredients, _) in ENTRIES.items() for ingredient in ingredients]


@pytest.mark.parametrize("entry,ingredient", CASES, ids=[f"{e}-{i}" for e, i in CASES])
@EXAMPLES
@given(data=st.data())
def test_bad_input_is_refused_in_one_line(files, entry, ingredient, data):
    main, base, ingredients, outf_flag = ENTRIES[entry]
    tmp = tempfile.mkdtemp(dir=files["root"])
    try:
        ctx = {"files": {**files, "root": tmp}, "tmp": tmp}
        spoiled = ingredients[ingredient](data, ctx)
        outf = os.path.join(tmp, "out")
        argv = [a.format(**ctx["files"]) for a in base] + ([outf_flag, outf] if outf_flag else []) + spoiled.argv
        names = tuple(n.format(**ctx["files"]) for n in spoiled.names)
        status, out, err = run_main(main, argv, spoiled.env)
        assert_refused(status, out, err, names, outf, spoiled.untouched)
    finally:
        shutil.rmtree(tmp)
