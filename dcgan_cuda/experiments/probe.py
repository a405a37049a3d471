"""The discriminator as a feature extractor (sections 5.1 and 5.2 of the DCGAN paper).

The paper measures what D learned without labels by using it as a fixed feature extractor
for a supervised task: the outputs of every convolution layer of D, each max-pooled to a
4x4 spatial grid, flattened and concatenated, feed a regularised linear L2-SVM. With D
trained on ImageNet-1k this gave 82.8 % accuracy on CIFAR-10 (section 5.1); on SVHN with
only 1000 labels, 22.48 % test error (section 5.2).

What is computed here, for each dataset (the embedded digits always; CIFAR-10 and SVHN
when their local copies are given):

* features of three extractors, computed the same way: the trained D, the same D
  architecture with random (DCGAN-initialised) weights, and the raw pixels. The random D
  tells how much of the accuracy is the architecture and how much is training.
* a linear L2-SVM (scikit-learn's LinearSVC: squared hinge loss, L2 penalty) on
  standardised features, its C chosen from a small grid by accuracy on a validation split.
* test accuracy with all training labels, and for few labels per class: the paper's SVHN
  protocol, repeated random draws of a class-balanced labelled subset, reported as
  mean +- 1.96 std over the draws. As in the paper the validation split used to choose C is
  separate from the labelled subset (the paper held out 10,000 SVHN images for it), so the
  few-label numbers are those of a tuned model, not of a model that only ever saw k labels.

Choices:

* Pre-activation features: ``Discriminator.features`` returns each convolution's output
  before batchnorm and LeakyReLU, "D's convolutional features" in the paper's words. Max-
  pooling commutes with any increasing function applied per element, and LeakyReLU is
  increasing, so for the first layer (no batchnorm) pooling before or after the activation
  gives the same information. In the other layers eval-mode batchnorm sits between, a
  per-channel affine map, which commutes with the max too unless its scale is negative;
  we have not measured the difference there. The last convolution of the pytorch arch
  (one channel: D's logit) is not a feature layer and is left out.
* D runs in eval mode (running statistics): an image's features must not depend on which
  other images share its batch.
* The grid of C: on standardised features with thousands of dimensions and at most a
  few thousand examples the classes are (nearly) separable, and validation accuracy is
  flat from C ~ 1e-3 up (measured on the digits with the 7168 features of the default
  model: 93.4 % at 1e-5, 93.7 % from 1e-3 to 1e-1), while the dual solver's time grows
  with C (per fit on 1150 images: 1 s at 1e-5, 8 s at 1e-3, 26 s at 1e-1). The default
  grid therefore stops at 1e-2; --C-grid changes it.
* The random D's batchnorm running statistics are at their initial values (mean 0,
  variance 1), i.e. batchnorm is the identity up to its random gamma: a random network has
  no data statistics of its own.
"""
from __future__ import annotations

import io
import os
import sys
import warnings

import numpy as np

from .. import ops
from ..autograd import no_grad
from ..checkpoint import atomic_write_bytes
from ..cli import MAX_COUNT, integer, number_list, path, real
from ..data import load_dataset, to_channels
from ..models import Discriminator, init_weights
from .common import (ExperimentError, add_common_args, backend_for, check_finite, load_discriminator,
                     make_parser, prepare_outf, quiet_overflow, run_main, set_bn_mode, to_tensor,
                     write_summary)

SECTIONS = "5.1 and 5.2"
PAPER_NUMBERS = {
    "cifar10_accuracy": 0.828,
    "cifar10_note": "D trained on ImageNet-1k, features of all D layers max-pooled to 4x4, L2-SVM (Table 1)",
    "svhn_error_1000_labels": 0.2248,
    "svhn_note": "D trained on SVHN, 1000 class-balanced labels, C chosen on 10,000 held-out "
                 "images (Table 2)",
}
RANDOM_D_SEED = 0x7A4D  # the random-weights baseline's initialisation seed (offset by --manualSeed)


# ------------------------------------------------------------------------- features
def feature_layer_count(netD):
    """How many of D's convolutions are feature layers: all but the pytorch arch's last,
    which maps to the single logit."""
    convs = len([m for m in netD.main if type(m).__name__ == "Conv2d"])
    return convs - 1 if netD.arch == "pytorch" else convs


def d_features(netD, images, backend, pool=4, batch_size=128):
    """(N, C, S, S) host images in [-1, 1] -> (N, F) host float32: every feature layer's
    output max-pooled to pool x pool by our adaptive_max_pool2d op, flattened, concatenated
    in layer order."""
    layers = feature_layer_count(netD)
    rows = []
    with no_grad(), quiet_overflow():
        for i in range(0, len(images), batch_size):
            x = to_tensor(images[i:i + batch_size], backend)
            feats = netD.features(x)[:layers]
            rows.append(np.concatenate([ops.adaptive_max_pool2d(f, pool).numpy().reshape(len(x.data), -1)
                                        for f in feats], axis=1))
    return check_finite(np.concatenate(rows).astype(np.float32), "the discriminator's features")


def pixel_features(images):
    return images.reshape(len(images), -1).astype(np.float32)


def random_discriminator(netD, seed, backend):
    """D's architecture with fresh DCGAN-initialised weights: the untrained baseline."""
    net = Discriminator(netD.ndf, netD.nc, netD.image_size, netD.arch)
    init_weights(net, np.random.default_rng(seed))
    return net.to(backend).eval()


# ------------------------------------------------------------------------------ SVM
def fit_l2svm(x_train, y_train, x_val, y_val, c_grid, seed=0):
    """Standardise (statistics of the training features), fit one LinearSVC per C, keep the
    one most accurate on the validation split. Returns (predict function, C, val accuracy)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    scaler = StandardScaler().fit(x_train)
    xt, xv = scaler.transform(x_train), scaler.transform(x_val)
    best = None
    for c in c_grid:
        # The dual problem has one variable per example, the primal one per feature:
        # solve whichever is smaller.
        svm = LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual=len(xt) < xt.shape[1],
                        max_iter=500, random_state=seed)
        with warnings.catch_warnings():
            # At the top of the grid the solver may stop at max_iter short of its tolerance;
            # the accuracy has long stopped moving by then (see the grid's note in the
            # module docstring), and the validation split judges the result anyway.
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm.fit(xt, y_train)
        acc = float(np.mean(svm.predict(xv) == y_val))
        if best is None or acc > best[2]:
            best = (svm, c, acc)
    svm, c, acc = best
    return (lambda x: svm.predict(scaler.transform(x))), c, acc


def balanced_subset(labels, per_class, rng):
    """Indices of up to per_class examples of each class, drawn without replacement."""
    picks = []
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        picks.append(rng.choice(where, size=min(per_class, len(where)), replace=False))
    return np.sort(np.concatenate(picks))


def ci95(values):
    """(mean, 1.96 * sample std): the paper's mean +- interval over repeated draws."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(1.96 * v.std(ddof=1)) if len(v) > 1 else 0.0


def evaluate(feature_sets, y_train, y_test, labels_per_class=(10, 50), draws=10,
             c_grid=(1e-5, 1e-4, 1e-3, 1e-2), val_fraction=0.2, seed=0, log=None):
    """Test accuracy of an L2-SVM on each feature set, with all labels and with few.

    feature_sets: {name: (train features (N, F), test features (M, F))}. The training split
    is divided once into a labelled pool and a validation split (for C); few-label subsets
    are drawn from the pool, the same subsets for every feature set so the comparison is
    paired. Returns {name: {"all": {...}, "few": {k: {...}}}}. log(line), if given, hears
    about each finished feature set (a probe of a big dataset takes minutes).
    """
    rng = np.random.default_rng([seed, 5])
    order = rng.permutation(len(y_train))
    n_val = max(1, int(round(val_fraction * len(y_train))))
    val, pool = np.sort(order[:n_val]), np.sort(order[n_val:])
    if len(np.unique(y_train[pool])) < 2:
        raise ExperimentError("the labelled pool has fewer than two classes; use more training images")
    subsets = {k: [pool[balanced_subset(y_train[pool], k, rng)] for _ in range(draws)]
               for k in labels_per_class}
    out = {}
    for name, (f_train, f_test) in feature_sets.items():
        predict, c, val_acc = fit_l2svm(f_train[pool], y_train[pool], f_train[val], y_train[val],
                                        c_grid, seed)
        res = {"features": int(f_train.shape[1]),
               "all": {"labels": int(len(pool)), "C": c, "val_accuracy": val_acc,
                       "test_accuracy": float(np.mean(predict(f_test) == y_test))},
               "few": {}}
        for k, chosen in subsets.items():
            accs, cs = [], []
            for idx in chosen:
                predict, c, _ = fit_l2svm(f_train[idx], y_train[idx], f_train[val], y_train[val],
                                          c_grid, seed)
                accs.append(float(np.mean(predict(f_test) == y_test)))
                cs.append(c)
            mean, half = ci95(accs)
            res["few"][str(k)] = {"labels_per_class": k, "labels": int(len(chosen[0])),
                                  "draws": len(chosen), "test_accuracy_mean": mean,
                                  "test_accuracy_ci95": half, "test_accuracies": accs, "C": cs}
        out[name] = res
        if log:
            log(f"[probe] {name}: all labels {res['all']['test_accuracy']:.4f} (C={res['all']['C']:g})")
    return out


def paired_differences(per_set, reference="dcgan_D"):
    """For each few-label size, reference minus each other feature set, draw by draw (the
    draws are the same labelled subsets for every set), as mean +- 1.96 std: a difference
    smaller than the spread of either set can still be consistent across draws."""
    out = {}
    if reference not in per_set:
        return out
    for k, ref in per_set[reference]["few"].items():
        for name, res in per_set.items():
            if name != reference:
                d = np.subtract(ref["test_accuracies"], res["few"][k]["test_accuracies"])
                mean, half = ci95(d)
                out.setdefault(k, {})[f"{reference} - {name}"] = {"mean": mean, "ci95": half}
    return out


# ---------------------------------------------------------------------------- data
def load_svhn(root, image_size, nc, split):
    """SVHN's cropped digits (train_32x32.mat / test_32x32.mat from
    http://ufldl.stanford.edu/housenumbers/) as (uint8 (N, nc, S, S), labels 0..9)."""
    from scipy.io import loadmat

    from ..data import _resize_array  # the digits/cifar resizer: same filter for every dataset

    path = os.path.join(root, f"{split}_32x32.mat")
    if not os.path.isfile(path):
        raise ExperimentError(f"--svhn {root}: {split}_32x32.mat not found (download the "
                              "'cropped digits' .mat files from http://ufldl.stanford.edu/housenumbers/)")
    try:
        mat = loadmat(path)
        x, y = mat["X"], mat["y"]
    except Exception as exc:  # scipy raises several types for a bad file
        raise ExperimentError(f"cannot read {path}: {exc}") from None
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8)  # (32,32,3,N) -> NCHW
    labels = y.reshape(-1).astype(np.int64) % 10  # SVHN writes the digit 0 as label 10
    return _resize_array(to_channels(images, nc), image_size), labels


def _cap(images, labels, limit, seed):
    if limit is None or limit >= len(images):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))
    return images[idx], labels[idx]


def load_split(name, root, netD, split, limit, seed):
    """Images as uint8 (N, nc, S, S) at D's size and channels, and their labels."""
    s, nc = netD.image_size, netD.nc
    if name == "svhn":
        images, labels = _cap(*load_svhn(root, s, nc, split), limit, seed)
    else:
        data = load_dataset(name, root, s, nc, split=split, max_images=limit, seed=seed)
        images, labels = data.images, data.labels
    return images, np.asarray(labels)


def scaled(images):
    """uint8 images -> float32 in [-1, 1], the range D was trained on."""
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


# ---------------------------------------------------------------------------- tool
def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (dataset, per_set) in zip(axes[0], results.items()):
        for name, res in per_set.items():
            ks = [v["labels_per_class"] for v in res["few"].values()]
            means = [v["test_accuracy_mean"] for v in res["few"].values()]
            half = [v["test_accuracy_ci95"] for v in res["few"].values()]
            line = ax.errorbar(ks, means, yerr=half, marker="o", capsize=3, label=name)
            ax.axhline(res["all"]["test_accuracy"], color=line[0].get_color(), linestyle="--",
                       linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("labels per class (dashed: all labels)")
        ax.set_ylabel("test accuracy")
        ax.set_title(dataset)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def build_parser():
    p = make_parser("probe", SECTIONS, "the discriminator as a feature extractor for classification.",
                    "Features of every D convolution layer, max-pooled to 4x4 and concatenated, "
                    "feed a linear L2-SVM; test accuracy with all labels and with few labels per "
                    "class (repeated draws, mean +- 1.96 std), beside the same SVM on raw pixels "
                    "and on a randomly initialised D. Always on the embedded digits; on CIFAR-10 / "
                    "SVHN with --cifar10 / --svhn.")
    add_common_args(p, "probe", netD=True)
    p.add_argument("--cifar10", type=path, default=None, metavar="DIR",
                   help="also probe CIFAR-10 from this folder (the python-version batches or their .tar.gz)")
    p.add_argument("--svhn", type=path, default=None, metavar="DIR",
                   help="also probe SVHN from this folder (train_32x32.mat and test_32x32.mat)")
    p.add_argument("--skip-digits", action="store_true", help="do not probe the embedded digits")
    p.add_argument("--labels-per-class", default="10,50",
                   help="few-label protocol: sizes of the class-balanced labelled subsets")
    p.add_argument("--draws", type=integer(1, 1000), default=10, help="random labelled subsets per size")
    p.add_argument("--C-grid", "--c-grid", dest="c_grid", default="0.00001,0.0001,0.001,0.01",
                   help="values of the SVM's C tried on the validation split")
    p.add_argument("--val-fraction", type=real(0, 1, low_open=True, high_open=True), default=0.2,
                   help="share of the training split held out to choose C")
    p.add_argument("--max-train", type=integer(1, MAX_COUNT), default=None,
                   help="use at most this many training images per dataset (random subset)")
    p.add_argument("--max-test", type=integer(1, MAX_COUNT), default=None, help="at most this many test images")
    return p


def _body(args):
    ks = number_list(args.labels_per_class, "--labels-per-class", integer(1, MAX_COUNT))
    c_grid = number_list(args.c_grid, "--C-grid", real(0, 1e6, low_open=True))
    datasets = ([] if args.skip_digits else [("digits", None)]) + \
        [(n, r) for n, r in (("cifar10", args.cifar10), ("svhn", args.svhn)) if r]
    if not datasets:
        raise ExperimentError("nothing to probe: --skip-digits without --cifar10 or --svhn")
    netD = load_discriminator(args.netD)   # a bad file is refused before any device work
    backend = backend_for(args)
    netD = set_bn_mode(netD.to(backend), args.bn_mode)
    randD = random_discriminator(netD, [args.manualSeed, RANDOM_D_SEED], backend)
    outf = prepare_outf(args.outf)
    # Every dataset is read before any is probed: a missing or damaged file is reported at
    # once, not after minutes of fitting (kept as uint8: a quarter of the memory of floats).
    splits = {name: (load_split(name, root, netD, "train", args.max_train, args.manualSeed),
                     load_split(name, root, netD, "test", args.max_test, args.manualSeed))
              for name, root in datasets}
    results, sizes, diffs = {}, {}, {}
    for name, ((x_train, y_train), (x_test, y_test)) in splits.items():
        x_train, x_test = scaled(x_train), scaled(x_test)
        sets = {"dcgan_D": (d_features(netD, x_train, backend), d_features(netD, x_test, backend)),
                "random_D": (d_features(randD, x_train, backend), d_features(randD, x_test, backend)),
                "pixels": (pixel_features(x_train), pixel_features(x_test))}
        results[name] = evaluate(sets, y_train, y_test, ks, args.draws, c_grid, args.val_fraction,
                                 args.manualSeed, log=lambda line: print(line, file=sys.stderr))
        sizes[name] = {"train": int(len(y_train)), "test": int(len(y_test))}
        diffs[name] = paired_differences(results[name])
        for fs, res in results[name].items():
            few = ", ".join(f"{k}/class {v['test_accuracy_mean']:.3f}+-{v['test_accuracy_ci95']:.3f}"
                            for k, v in res["few"].items())
            print(f"[probe] {name:8s} {fs:9s} ({res['features']} features): all labels "
                  f"{res['all']['test_accuracy']:.4f}; {few}")
    plot(results, os.path.join(outf, "probe.png"))
    write_summary(outf, "probe", SECTIONS, args,
                  {"plot": "probe.png", "backend": backend.name, "sizes": sizes,
                   "feature_layers": feature_layer_count(netD), "pool": "4x4 max, pre-activation",
                   "accuracy": results, "paired_differences": diffs, "paper": PAPER_NUMBERS},
                  {"netD": netD})


def main(argv=None):
    return run_main(_body, build_parser(), argv)
