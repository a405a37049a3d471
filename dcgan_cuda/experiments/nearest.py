"""Does G copy its training images? (section 4.1 of the DCGAN paper).

The paper worried that a GAN trained long enough might memorise its training set and argued
it did not (samples after one epoch and after convergence; de-duplication of the data).
The direct check is to look up, for each generated sample, the training image closest to
it: a memorising generator's samples sit on top of training images.

Distances are Euclidean (L2) in pixel space, images in [-1, 1]. A single distance means
little on its own, so the same lookup is done for held-out real images (the test split,
which G never saw): if generated samples are much closer to the training set than real
unseen images of the same distribution are, G is reproducing training images. A ratio
near or above 1 says it is not (above 1 is usual: samples are imperfect).

Outputs: ``pairs.png`` (each generated sample beside its nearest training image),
``heldout_pairs.png`` (the same for held-out real images), summary.json with the mean,
median and minimum distances, their ratio and how many distinct training images were
someone's nearest neighbour.
"""
from __future__ import annotations

import os

import numpy as np

from ..cli import MAX_COUNT, MAX_SCALE, integer, path
from ..data import DATASETS, DatasetError, load_dataset
from .common import (MAX_PICTURES, NOISE_STREAM, ExperimentError, add_common_args, backend_for, generate,
                     grid_picture, load_generator, make_parser, prepare_outf, rng_for, run_main,
                     save_png, set_bn_mode, write_summary)

SECTION = "4.1"


def nearest_neighbours(queries, references, chunk=512):
    """For each query image, the index of the closest reference image (L2 over all pixels)
    and the distance to it.

    The search uses ||q||^2 + ||r||^2 - 2 q.r (one matrix product per chunk), in float64;
    the reported distance is then recomputed directly as ||q - r|| for the winner, so an
    exact copy of a training image reports 0, not the expansion's cancellation error.
    """
    q = queries.reshape(len(queries), -1).astype(np.float64)
    r = references.reshape(len(references), -1).astype(np.float64)
    if len(r) == 0:
        raise ExperimentError("no reference images to compare with")
    r_sq = np.einsum("ij,ij->i", r, r)
    index = np.empty(len(q), np.int64)
    for i in range(0, len(q), chunk):
        block = q[i:i + chunk]
        d2 = np.einsum("ij,ij->i", block, block)[:, None] + r_sq[None, :] - 2.0 * block @ r.T
        index[i:i + chunk] = np.argmin(d2, axis=1)
    dist = np.linalg.norm(q - r[index], axis=1)
    return index, dist


def stats(dist):
    return {"mean": float(np.mean(dist)), "median": float(np.median(dist)),
            "min": float(np.min(dist)), "max": float(np.max(dist))}


def pairs(queries, references, index):
    """Interleave query k and its neighbour: (2N, C, H, W)."""
    out = np.empty((2 * len(queries),) + queries.shape[1:], np.float32)
    out[0::2], out[1::2] = queries, references[index]
    return out


def build_parser():
    p = make_parser("nearest", SECTION, "checking that G does not memorise its training images.",
                    "Each generated sample beside its nearest training image (L2 in pixel space), "
                    "and the mean nearest-neighbour distance of generated samples compared with "
                    "that of held-out real images.")
    add_common_args(p, "nearest", netG=True)
    p.add_argument("--n", type=integer(1, MAX_PICTURES), default=64, help="generated samples (and held-out images) to look up")
    p.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="the dataset G was trained on (digits, folder, cifar10, mnist)")
    p.add_argument("--dataroot", type=path, default=None, help="its files, as for dcgan_cuda.train")
    p.add_argument("--max-train", type=integer(1, MAX_COUNT), default=None,
                   help="search only this many training images (random subset)")
    p.add_argument("--scale", type=integer(1, MAX_SCALE), default=2, help="enlarge the grids this many times")
    return p


def _body(args):
    netG = load_generator(args.netG)   # a bad file is refused before any device work
    backend = backend_for(args)
    netG = set_bn_mode(netG.to(backend), args.bn_mode)
    outf = prepare_outf(args.outf)
    s, nc = netG.image_size, netG.nc
    train = load_dataset(args.dataset, args.dataroot, s, nc, split="train",
                         max_images=args.max_train, seed=args.manualSeed)
    train_x = train.batch(slice(None))
    fake = generate(netG, z=netG.sample_noise(args.n, rng_for(args, NOISE_STREAM)))
    fake_idx, fake_d = nearest_neighbours(fake, train_x)
    save_png(os.path.join(outf, "pairs.png"), grid_picture(pairs(fake, train_x, fake_idx), 16, args.scale))
    results = {"grid": "pairs.png", "backend": backend.name, "train_images": len(train_x),
               "generated": {"count": args.n, **stats(fake_d),
                             "distinct_nearest": int(len(np.unique(fake_idx)))}}
    try:
        held = load_dataset(args.dataset, args.dataroot, s, nc, split="test", max_images=args.n,
                            seed=args.manualSeed)
    except DatasetError as exc:  # a folder dataset has no test split: say so, keep the rest
        results["heldout"] = {"unavailable": str(exc)}
    else:
        held_x = held.batch(slice(None))
        held_idx, held_d = nearest_neighbours(held_x, train_x)
        save_png(os.path.join(outf, "heldout_pairs.png"),
                 grid_picture(pairs(held_x, train_x, held_idx), 16, args.scale))
        results["heldout"] = {"grid": "heldout_pairs.png", "count": len(held_x), **stats(held_d),
                              "distinct_nearest": int(len(np.unique(held_idx)))}
        results["ratio_generated_to_heldout_mean"] = float(fake_d.mean() / max(held_d.mean(), 1e-12))
    # The pixel-space diagonal: distances relative to it compare across image sizes.
    results["max_possible_distance"] = float(2.0 * np.sqrt(nc * s * s))
    write_summary(outf, "nearest", SECTION, args, results, {"netG": netG})
    line = f"[nearest] generated: mean NN distance {fake_d.mean():.3f}"
    if "mean" in results["heldout"]:
        line += (f"; held-out real: {results['heldout']['mean']:.3f} "
                 f"(ratio {results['ratio_generated_to_heldout_mean']:.3f})")
    print(line + f" -> {os.path.join(outf, 'pairs.png')}")


def main(argv=None):
    return run_main(_body, build_parser(), argv)
