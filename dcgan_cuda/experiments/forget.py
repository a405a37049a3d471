"""Forgetting to draw certain objects (section 6.3.1 of the DCGAN paper).

The paper shows that G's representation separates objects: it found the feature maps of
G's second-highest convolution layer that respond to windows in bedroom scenes, removed
them at every spatial position, and G went on drawing bedrooms, with the windows gone or
replaced by other objects (doors, mirrors).

How the maps are found, as in the paper: the user draws boxes around the object on a few
samples; every spatial position of that layer's activation becomes one example (its
vector of channel activations), labelled 1 if the position lies inside a box and 0
otherwise; a logistic regression is fitted to tell them apart, and every map with a
positive weight (evidence *for* the object) is dropped. Maps can also be named by index.

The layer: "second-highest convolution layer" is the transposed convolution whose output
feeds G's last (output) transposed convolution; maps are dropped after its batchnorm and
ReLU, i.e. from the very input of the output layer (in the pytorch arch at 64x64: the
output of main.11, the ReLU after main.9 -> main.10). G is run layer by layer so the
chosen channels can be zeroed there; with no channel dropped the computation is
exactly G's.

Usage:
1. ``python -m dcgan_cuda.forget --netG G.safetensors`` writes ``sheet.png`` (numbered
   samples, the same sheet as dcgan_cuda.arithmetic for the same seed).
2. Write the boxes as JSON, in each sample's own pixel coordinates (x to the right, y
   down, 0..imageSize, x1 and y1 exclusive):
   ``[{"sample": 3, "box": [4, 2, 12, 10]}, {"sample": 17, "box": [0, 0, 8, 8]}]``
   and run ``--boxes boxes.json``; or drop maps by index with ``--maps 3,5,7``.
``forget.png`` shows new samples in pairs of rows: with all maps, then the same z with
the maps dropped. ``--max-maps K`` keeps only the K largest positive weights (the paper
drops them all).

Numbers in summary.json: with boxes, the fraction of "ink" (brightness) the boxed samples
keep inside their boxes and outside them once the maps are gone, and the same for a
control that drops as many maps chosen at random among the others. The object has been
forgotten when the fitted maps remove more ink inside the boxes than outside, and more
than the control does.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import nn, ops
from ..autograd import no_grad
from ..cli import MAX_SCALE, integer, path
from .common import (MAX_PICTURES, NOISE_STREAM, ExperimentError, add_common_args, backend_for,
                     check_finite, grid_picture, load_generator, make_parser, numbered_sheet,
                     parse_index_list, prepare_outf, quiet_overflow, rng_for, run_main, save_png,
                     sheet_noise, set_bn_mode, to_tensor, write_summary)

SECTION = "6.3.1"


def drop_layer_index(netG):
    """Index in netG.main of the ReLU after G's second-highest (transposed) convolution."""
    layers = list(netG.main)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.ConvTranspose2d)]
    if len(convs) < 2:
        raise ExperimentError("G has a single transposed convolution: no second-highest layer")
    for i in range(convs[-2] + 1, len(layers)):
        if isinstance(layers[i], nn.ReLU):
            return i
    raise ExperimentError("no ReLU after G's second-highest convolution")


def run_generator(netG, z, backend, drop=(), record=False, batch_size=256):
    """G(z) computed layer by layer, with channels ``drop`` of the second-highest layer's
    activation set to 0 at every position. Returns host images and, with record=True, that
    layer's activation (before dropping).

    Zeroing happens on the host (copy out, zero, copy back): the activation is small and
    this is not a training path. With no channel to drop nothing is copied, and the ops are
    exactly Generator.forward's, so the images are bitwise G's.
    """
    at = drop_layer_index(netG)
    drop = list(drop)
    images, acts = [], []
    with no_grad(), quiet_overflow():
        for i in range(0, len(z), batch_size):
            zb = z[i:i + batch_size]
            shape = (len(zb), netG.nz, 1, 1) if netG.arch == "pytorch" else (len(zb), netG.nz)
            x = ops.reshape(to_tensor(zb, backend), shape)  # as Generator.forward does
            for k, module in enumerate(netG.main):
                x = module(x)
                if k != at:
                    continue
                if record:
                    acts.append(x.numpy())
                if drop:
                    a = x.numpy()
                    a[:, drop] = 0.0
                    x = to_tensor(a, backend)
            images.append(check_finite(x.numpy(), "the generator's images"))
    return np.concatenate(images), (np.concatenate(acts) if record else None)


# ------------------------------------------------------------------------------ boxes
def read_boxes(path, sheet_size, image_size):
    """Validate the boxes file: a list of {"sample": i, "box": [x0, y0, x1, y1]}."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except OSError as exc:
        raise ExperimentError(f"--boxes {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ExperimentError(f"--boxes {path} is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ExperimentError(f"--boxes {path}: expected a non-empty list of "
                              '{"sample": i, "box": [x0, y0, x1, y1]}')
    boxes = {}
    for k, e in enumerate(entries):
        try:
            i, (x0, y0, x1, y1) = int(e["sample"]), [float(v) for v in e["box"]]
        except (TypeError, KeyError, ValueError):
            raise ExperimentError(f"--boxes {path}, entry {k}: expected "
                                  '{"sample": i, "box": [x0, y0, x1, y1]}, got ' + json.dumps(e)) from None
        if not 0 <= i < sheet_size:
            raise ExperimentError(f"--boxes {path}, entry {k}: sample {i} is not on the sheet "
                                  f"(0..{sheet_size - 1})")
        if not (0 <= x0 < x1 <= image_size and 0 <= y0 < y1 <= image_size):
            raise ExperimentError(f"--boxes {path}, entry {k}: box {[x0, y0, x1, y1]} is not inside "
                                  f"the {image_size}x{image_size} image with x0 < x1 and y0 < y1")
        boxes.setdefault(i, []).append((x0, y0, x1, y1))
    return boxes


def position_labels(boxes, act_size, image_size):
    """{sample: (h, w) bool}: True where the centre of an activation position (mapped to
    image pixels) lies inside one of the sample's boxes."""
    h, w = act_size
    cy = (np.arange(h) + 0.5) * image_size / h
    cx = (np.arange(w) + 0.5) * image_size / w
    out = {}
    for i, rects in boxes.items():
        inside = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in rects:
            inside |= ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
        out[i] = inside
    return out


def fit_maps(acts, labels, seed=0):
    """Logistic regression of inside-vs-outside on per-position activation vectors.

    acts: (N, C, h, w) activations of the sheet; labels: {sample: (h, w) bool}. Returns
    (weights (C,), maps with positive weight, training accuracy, counts). Classes are
    weighted to balance, since a box covers few positions of its image.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([acts[i].reshape(acts.shape[1], -1).T for i in labels])
    y = np.concatenate([labels[i].reshape(-1) for i in labels]).astype(int)
    if y.min() == y.max():
        raise ExperimentError("--boxes: the boxes cover " + ("every" if y.min() else "no") +
                              " position of that layer: draw boxes around part of a sample")
    model = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed).fit(x, y)
    w = model.coef_[0]
    return w, np.flatnonzero(w > 0), float(model.score(x, y)), {"inside": int(y.sum()),
                                                                "outside": int(len(y) - y.sum())}


def ink_kept(kept, dropped, boxes):
    """How much of the drawing survives the drop, inside the boxes and outside them, over
    the boxed samples: ink = (pixel + 1) / 2 (0 black, 1 white), and each number is
    sum(ink after) / sum(ink before) over that region. Forgetting the boxed object keeps
    less ink inside the boxes than outside."""
    ink = lambda a: (a.astype(np.float64) + 1.0) / 2.0  # noqa: E731
    sums = np.zeros((2, 2))  # [inside, outside] x [before, after]
    for i, rects in boxes.items():
        mask = np.zeros(kept.shape[2:], bool)
        for x0, y0, x1, y1 in rects:
            mask[int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = True
        for row, m in enumerate((mask, ~mask)):
            sums[row] += ink(kept[i][:, m]).sum(), ink(dropped[i][:, m]).sum()
    return float(sums[0, 1] / max(sums[0, 0], 1e-12)), float(sums[1, 1] / max(sums[1, 0], 1e-12))


def pair_rows(kept, dropped, cols):
    """Rows alternate: cols samples with every map, then the same z with maps dropped."""
    out = []
    for i in range(0, len(kept), cols):
        out += [kept[i:i + cols], dropped[i:i + cols]]
    return np.concatenate(out)


def build_parser():
    p = make_parser("forget", SECTION, "forgetting to draw certain objects.",
                    "Drops chosen feature maps of G's second-highest convolution layer at every "
                    "position and draws the same z with and without them (forget.png). Maps by "
                    "index (--maps), or as the paper: a logistic regression on that layer's "
                    "activations inside vs outside boxes drawn on sheet samples (--boxes), "
                    "dropping the maps with positive weight. Without either it writes the "
                    "numbered sheet.png to draw boxes on.")
    add_common_args(p, "forget", netG=True)
    p.add_argument("--maps", default=None, help="comma-separated feature maps to drop")
    p.add_argument("--boxes", type=path, default=None,
                   help='JSON file: [{"sample": i, "box": [x0, y0, x1, y1]}, ...] in the '
                        "sample's own pixel coordinates (0..imageSize, x1/y1 exclusive)")
    p.add_argument("--max-maps", type=integer(1, MAX_PICTURES), default=None,
                   help="with --boxes, drop only the this many maps of largest positive weight "
                        "(default: every map with positive weight, as the paper)")
    p.add_argument("--sheet-size", "--sheetSize", dest="sheet_size", type=integer(1, MAX_PICTURES), default=64,
                   help="samples on the numbered sheet")
    p.add_argument("--n", type=integer(1, MAX_PICTURES), default=16, help="new samples drawn with and without the maps")
    p.add_argument("--cols", type=integer(1, MAX_PICTURES), default=8, help="samples per row of forget.png")
    p.add_argument("--scale", type=integer(1, MAX_SCALE), default=2, help="enlarge the pictures this many times")
    return p


def _maps_from_boxes(args, netG, backend, sheet_z, sheet, acts, boxes):
    """The paper's selection (positive weights of the inside-vs-outside logistic regression),
    and how much ink the boxed samples keep inside and outside their boxes without those
    maps, beside a control that drops as many maps drawn at random from the others: the
    object-specific effect is the difference between the two."""
    labels = position_labels(boxes, acts.shape[2:], netG.image_size)
    weights, drop, accuracy, counts = fit_maps(acts, labels, args.manualSeed)
    if args.max_maps is not None:
        # The strongest evidence for the object first; stable order for equal weights.
        drop = np.sort(drop[np.argsort(-weights[drop], kind="stable")][:max(0, args.max_maps)])
    drop = drop.tolist()
    rest = np.setdiff1d(np.arange(acts.shape[1]), drop)
    control = np.sort(rng_for(args, NOISE_STREAM + 1).choice(rest, min(len(drop), len(rest)),
                                                              replace=False)).tolist()
    inside, outside = ink_kept(sheet, run_generator(netG, sheet_z, backend, drop=drop)[0], boxes)
    c_in, c_out = ink_kept(sheet, run_generator(netG, sheet_z, backend, drop=control)[0], boxes)
    return drop, {"boxes": {str(k): v for k, v in boxes.items()}, "positions": counts,
                  "train_accuracy": accuracy, "weights": weights.tolist(),
                  "ink_kept_in_boxes": inside, "ink_kept_outside_boxes": outside,
                  "control_random_maps": control, "control_ink_kept_in_boxes": c_in,
                  "control_ink_kept_outside_boxes": c_out}


def _body(args):
    if args.maps is not None and args.boxes is not None:
        raise ExperimentError("give --maps or --boxes, not both")
    netG = load_generator(args.netG)   # a bad file is refused before any device work
    backend = backend_for(args)
    netG = set_bn_mode(netG.to(backend), args.bn_mode)
    outf = prepare_outf(args.outf)
    at = drop_layer_index(netG)
    sheet_z = sheet_noise(netG, args, args.sheet_size)
    sheet, acts = run_generator(netG, sheet_z, backend, record=True)
    channels = acts.shape[1]
    results = {"layer": f"main.{at}", "layer_shape": list(acts.shape[1:]), "sheet": "sheet.png",
               "backend": backend.name}
    boxes = read_boxes(args.boxes, args.sheet_size, netG.image_size) if args.boxes else None
    # Which maps to drop is settled (and a bad --maps or --boxes refused) before any file is written.
    drop = None
    if boxes is not None:
        drop, results["fit"] = _maps_from_boxes(args, netG, backend, sheet_z, sheet, acts, boxes)
    elif args.maps is not None:
        drop = parse_index_list(args.maps, "--maps", channels)
    save_png(os.path.join(outf, "sheet.png"),
             numbered_sheet(sheet, scale=max(1, args.scale + 1), boxes=boxes))
    if drop is None:
        write_summary(outf, "forget", SECTION, args, results, {"netG": netG})
        print(f"[forget] numbered samples in {os.path.join(outf, 'sheet.png')}; draw boxes "
              "(--boxes FILE) or name maps (--maps i,j)")
        return
    z = netG.sample_noise(args.n, rng_for(args, NOISE_STREAM))
    kept, new_acts = run_generator(netG, z, backend, record=True)
    dropped, _ = run_generator(netG, z, backend, drop=drop)
    save_png(os.path.join(outf, "forget.png"), grid_picture(pair_rows(kept, dropped, args.cols),
                                                            min(args.cols, args.n), args.scale))
    energy = np.sum(new_acts.astype(np.float64) ** 2, axis=(0, 2, 3))
    results.update({
        "grid": "forget.png", "dropped_maps": drop, "dropped_count": len(drop), "channels": channels,
        # How much of the layer's activity the dropped maps carried, and how much the pictures moved.
        "dropped_energy_fraction": float(energy[drop].sum() / max(energy.sum(), 1e-30)),
        "pixel_rms_change": float(np.sqrt(np.mean((kept.astype(np.float64) - dropped) ** 2))),
    })
    write_summary(outf, "forget", SECTION, args, results, {"netG": netG})
    print(f"[forget] dropped {len(drop)} of {channels} maps of main.{at} -> "
          f"{os.path.join(outf, 'forget.png')} (rms pixel change {results['pixel_rms_change']:.4f})")


def main(argv=None):
    return run_main(_body, build_parser(), argv)
