"""Walking in the latent space (section 6.1 of the DCGAN paper).

The paper walks along straight lines between random points of z and looks at the images
along the way: a generator that memorised its training images would jump sharply from one
memorised picture to the next, while one that learned a smooth representation turns one
image into the other gradually, through plausible intermediate images.

Each row of ``walk.png`` is one walk through ``--points`` random noise vectors, with
``--steps`` images per segment (the end points included). ``--slerp`` walks along great
circles instead of chords: for Gaussian z (the pytorch arch) almost all probability lies
near the sphere of radius sqrt(nz), and the chord between two such points passes through
the low-norm interior that G rarely saw in training; spherical interpolation stays at the
typical norm. For the paper arch's uniform z the straight line is the paper's choice.

summary.json reports, per row, the pixel distances between consecutive images: a walk
with no sharp transitions has its largest step not much bigger than its mean step.
"""
from __future__ import annotations

import os

import numpy as np

from ..cli import MAX_SCALE, integer
from .common import (MAX_PICTURES, NOISE_STREAM, ExperimentError, add_common_args, backend_for, generate,
                     grid_picture, load_generator, make_parser, prepare_outf, rng_for, run_main,
                     save_png, set_bn_mode, write_summary)

SECTION = "6.1"


def lerp(z0, z1, t):
    """(1 - t) z0 + t z1 for each t: the straight line of the paper."""
    t = np.asarray(t, dtype=np.float64).reshape((-1,) + (1,) * z0.ndim)
    return ((1.0 - t) * z0 + t * z1).astype(np.float32)


def slerp(z0, z1, t):
    """Spherical interpolation: along the great circle from z0 to z1, with the norm moving
    linearly between theirs. Falls back to lerp when z0 and z1 are (anti)parallel, where
    the great circle is not unique or the formula divides by sin(0)."""
    a, b = z0.astype(np.float64).ravel(), z1.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    t = np.asarray(t, dtype=np.float64)
    if na == 0 or nb == 0:
        return lerp(z0, z1, t)
    cos = np.clip(a @ b / (na * nb), -1.0, 1.0)
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return lerp(z0, z1, t)
    ua, ub = a / na, b / nb
    # Unit-sphere slerp of the directions, scaled by the linearly interpolated norm.
    s = np.sin(omega)
    dirs = (np.sin((1 - t) * omega)[:, None] * ua + np.sin(t * omega)[:, None] * ub) / s
    norms = (1 - t) * na + t * nb
    out = dirs * norms[:, None]
    # The end points must be z0 and z1 exactly, not up to rounding: the tool promises that
    # a walk's first and last images are G(z0) and G(z1).
    out[t == 0.0], out[t == 1.0] = a, b
    return out.reshape((len(t),) + z0.shape).astype(np.float32)


def walk_noise(points, steps, mode="lerp"):
    """The noise of one walk through ``points`` (K, nz, 1, 1): steps images per segment,
    end points included and shared between segments -> ((K-1)*(steps-1)+1, nz, 1, 1)."""
    if steps < 2:
        raise ExperimentError(f"--steps must be at least 2 (the two end points), got {steps}")
    interp = slerp if mode == "slerp" else lerp
    t = np.linspace(0.0, 1.0, steps)
    parts = [interp(points[k], points[k + 1], t)[(1 if k else 0):] for k in range(len(points) - 1)]
    return np.concatenate(parts)


def run(netG, backend, rng, rows=8, points=2, steps=10, mode="lerp"):
    """Draw ``rows`` walks; returns (ends (rows, points, nz, 1, 1), z (rows, L, nz, 1, 1),
    images (rows, L, nc, S, S)) with L images per row."""
    if rows < 1 or points < 2:
        raise ExperimentError(f"need --rows >= 1 and --points >= 2, got {rows} and {points}")
    ends = netG.sample_noise(rows * points, rng).reshape((rows, points) + (netG.nz, 1, 1))
    z = np.stack([walk_noise(ends[r], steps, mode) for r in range(rows)])
    images = generate(netG, z=z.reshape((-1,) + z.shape[2:]))
    return ends, z, images.reshape(z.shape[:2] + images.shape[1:])


def step_distances(images):
    """(rows, L, ...) -> (rows, L-1) root-mean-square pixel change between neighbours."""
    d = np.diff(images.reshape(images.shape[0], images.shape[1], -1).astype(np.float64), axis=1)
    return np.sqrt(np.mean(d * d, axis=2))


def build_parser():
    p = make_parser("walk", SECTION, "walking in the latent space.",
                    "Draws rows of G's images along straight lines (or great circles, --slerp) "
                    "between random points of z, into walk.png; smooth transitions, not sharp "
                    "jumps, are the sign that G has not memorised its training images.")
    add_common_args(p, "walk", netG=True)
    p.add_argument("--rows", type=integer(1, MAX_PICTURES), default=8, help="number of walks (rows of the grid)")
    p.add_argument("--points", type=integer(2, MAX_PICTURES), default=2,
                   help="random points of z each walk passes through (2: one straight line)")
    p.add_argument("--steps", type=integer(2, MAX_PICTURES), default=10,
                   help="images per segment between two points, end points included")
    p.add_argument("--slerp", action="store_true",
                   help="spherical interpolation (natural for Gaussian z) instead of straight lines")
    p.add_argument("--scale", type=integer(1, MAX_SCALE), default=2, help="enlarge the grid this many times")
    return p


def _body(args):
    images = args.rows * ((args.points - 1) * (args.steps - 1) + 1)
    if images > MAX_PICTURES:
        raise ExperimentError(f"--rows {args.rows} --points {args.points} --steps {args.steps} make "
                              f"{images} images, more than the {MAX_PICTURES} one grid can hold")
    netG = load_generator(args.netG)   # a bad file is refused before any device work
    backend = backend_for(args)
    netG = set_bn_mode(netG.to(backend), args.bn_mode)
    outf = prepare_outf(args.outf)
    mode = "slerp" if args.slerp else "lerp"
    ends, z, images = run(netG, backend, rng_for(args, NOISE_STREAM), args.rows, args.points,
                          args.steps, mode)
    per_row = images.shape[1]
    save_png(os.path.join(outf, "walk.png"),
             grid_picture(images.reshape((-1,) + images.shape[2:]), per_row, args.scale))
    np.save(os.path.join(outf, "walk_z.npy"), z)
    d = step_distances(images)
    results = {
        "grid": "walk.png", "noise": "walk_z.npy", "interpolation": mode,
        "rows": args.rows, "images_per_row": per_row, "backend": backend.name,
        "step_rms": {"mean": float(d.mean()), "max": float(d.max()),
                     "per_row_max_over_mean": (d.max(axis=1) / np.maximum(d.mean(axis=1), 1e-12)).tolist()},
        "endpoint_norms": np.linalg.norm(ends.reshape(args.rows, args.points, -1), axis=2).tolist(),
    }
    write_summary(outf, "walk", SECTION, args, results, {"netG": netG})
    print(f"[walk] {args.rows} walks of {per_row} images ({mode}) -> {os.path.join(outf, 'walk.png')}; "
          f"mean step {d.mean():.4f}, largest {d.max():.4f} (rms pixel change)")


def main(argv=None):
    return run_main(_body, build_parser(), argv)
