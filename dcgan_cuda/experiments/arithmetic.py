"""Vector arithmetic on the latent space (section 6.3.2 of the DCGAN paper).

Word embeddings famously satisfy vector("King") - vector("Man") + vector("Woman") ~
vector("Queen"). The paper asks whether G's input space has similar linear structure:
take the z of a few samples showing concept A (smiling woman), B (neutral woman) and C
(neutral man), and draw G(mean(A) - mean(B) + mean(C)) (smiling man). It found the
arithmetic on single samples unstable and on the average of three samples per concept
stable, so each concept is a group of samples here, averaged in z.

Usage, in two runs with the same --manualSeed:

1. ``python -m dcgan_cuda.arithmetic --netG G.safetensors`` writes ``sheet.png``: numbered
   samples (their z in ``sheet_z.npy``). Pick, e.g., three sevens with a bar (A), three
   sevens without (B) and three ones (C).
2. ``python -m dcgan_cuda.arithmetic --netG G.safetensors --A 3,17,22 --B 5,9,40 --C 1,2,8``
   writes ``arithmetic.png`` laid out like the paper's figure 7: for each group its samples
   in a row with the image of the group's mean z below, then the result and its neighbours
   (the result plus small uniform noise, +-0.25 by default as in the paper) in a square.

Averaging Gaussian z (pytorch arch) shrinks the norm (the mean of three has standard
deviation 1/sqrt(3) per coordinate); we keep the paper's plain average and report the
norms, which is how the paper did it (with uniform z).
"""
from __future__ import annotations

import os

import numpy as np

from ..images import make_grid
from ..cli import MAX_SCALE, integer, real
from .common import (MAX_PICTURES, NOISE_STREAM, ExperimentError, add_common_args, backend_for, enlarge,
                     font, generate, load_generator, make_parser, numbered_sheet, parse_index_list,
                     prepare_outf, rng_for, run_main, sample_sheet, save_png, set_bn_mode,
                     write_summary)

SECTION = "6.3.2"


def combine(z_a, z_b, z_c):
    """mean(A) - mean(B) + mean(C), for groups of noise vectors (k, nz, 1, 1).

    Computed as mean(A) + (mean(C) - mean(B)): when B and C are the same group the bracket
    is exactly 0 and the result is exactly mean(A). Written as (mean(A) - mean(B)) +
    mean(C) it would only be mean(A) up to rounding.
    """
    mean = [np.mean(g.astype(np.float64), axis=0) for g in (z_a, z_b, z_c)]
    return (mean[0] + (mean[2] - mean[1])).astype(np.float32), [m.astype(np.float32) for m in mean]


def neighbours(result, count, noise, rng):
    """The result itself followed by ``count`` copies with Uniform(-noise, noise) added to
    every coordinate (the paper's figure 7 uses +-0.25)."""
    jitter = rng.uniform(-noise, noise, size=(count,) + result.shape).astype(np.float32)
    return np.concatenate([result[None], result[None] + jitter])


def run(netG, backend, sheet_z, groups, count=8, noise=0.25, rng=None):
    """The arithmetic on the sheet's noise. groups: {'A': [i, ...], 'B': [...], 'C': [...]}.

    Returns a dict of host arrays: group_images {name: (k, nc, S, S)}, mean_z, mean_images
    (3, nc, S, S), result_z (nz, 1, 1), result_images (1 + count, nc, S, S), the first
    being G(result) itself.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    zs = {g: sheet_z[groups[g]] for g in "ABC"}
    result, means = combine(zs["A"], zs["B"], zs["C"])
    near = neighbours(result, count, noise, rng)
    # One batch for all the pictures: with eval batchnorm each image depends only on its z.
    batch = np.concatenate([np.stack(means), near])
    images = generate(netG, z=batch)
    return {"group_images": {g: generate(netG, z=zs[g]) for g in "ABC"},
            "mean_z": np.stack(means), "mean_images": images[:3],
            "result_z": result, "neighbour_z": near, "result_images": images[3:]}


def figure(out, scale=2):
    """The paper's figure 7 layout as one uint8 picture: three group blocks (samples in a
    row, the mean's image centred below), '-', '+' and '=' signs between them, then the
    result (top-left) and its neighbours in a square."""
    from PIL import Image, ImageDraw

    def tile(images, nrow):
        return enlarge(make_grid(images, nrow), scale)

    blocks = []
    for g, mean_image in zip("ABC", out["mean_images"]):
        top, bottom = tile(out["group_images"][g], len(out["group_images"][g])), tile(mean_image[None], 1)
        width = max(top.shape[1], bottom.shape[1])
        block = np.zeros((top.shape[0] + bottom.shape[0] + 6 * scale, width, top.shape[2]), np.uint8)
        x = (width - top.shape[1]) // 2
        block[:top.shape[0], x:x + top.shape[1]] = top
        y, x = top.shape[0] + 6 * scale, (width - bottom.shape[1]) // 2
        block[y:y + bottom.shape[0], x:x + bottom.shape[1]] = bottom
        blocks.append(block)
    n_res = len(out["result_images"])
    side = int(np.ceil(np.sqrt(n_res)))
    result = tile(out["result_images"], side)
    title = 16
    height = max(max(b.shape[0] for b in blocks), result.shape[0]) + title
    gap = 28
    parts, signs = blocks + [result], ["-", "+", "="]
    width = sum(p.shape[1] for p in parts) + gap * len(signs)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    names = ["A (mean below)", "B (mean below)", "C (mean below)", "A - B + C, neighbours"]
    for k, (part, name) in enumerate(zip(parts, names)):
        rgb = np.repeat(part, 3, axis=2) if part.shape[2] == 1 else part
        canvas.paste(Image.fromarray(np.ascontiguousarray(rgb)), (x, title))
        draw.text((x + 1, 1), name, fill=(0, 0, 0), font=font(12))
        x += part.shape[1]
        if k < len(signs):
            draw.text((x + gap // 2, title + part.shape[0] // 2), signs[k], fill=(0, 0, 0),
                      font=font(24), anchor="mm")
            x += gap
    return np.asarray(canvas)


def build_parser():
    p = make_parser("arithmetic", SECTION, "vector arithmetic on the latent space.",
                    "Without --A/--B/--C it writes a numbered sample sheet (sheet.png); name "
                    "three groups of its samples and it draws G(mean(A) - mean(B) + mean(C)) and "
                    "its neighbours, laid out like the paper's figure 7 (arithmetic.png).")
    add_common_args(p, "arithmetic", netG=True)
    p.add_argument("--sheet-size", "--sheetSize", dest="sheet_size", type=integer(1, MAX_PICTURES), default=64,
                   help="samples on the numbered sheet")
    for g, example in (("A", "e.g. sevens with a bar"), ("B", "e.g. sevens without"), ("C", "e.g. ones")):
        p.add_argument(f"--{g}", dest=g, default=None,
                       help=f"comma-separated sheet indices of group {g} ({example}); the paper "
                            "averages three")
    p.add_argument("--neighbours", type=integer(0, MAX_PICTURES), default=8,
                   help="noisy neighbours of the result to draw besides the result itself")
    p.add_argument("--noise", type=real(0, 100), default=0.25,
                   help="neighbours add Uniform(-noise, noise) to each coordinate of the result")
    p.add_argument("--scale", type=integer(1, MAX_SCALE), default=2, help="enlarge the pictures this many times")
    return p


def _body(args):
    given = [g for g in "ABC" if getattr(args, g) is not None]
    if given and len(given) != 3:
        raise ExperimentError("give all three groups --A, --B and --C (or none, for the sheet only)")
    groups = {g: parse_index_list(getattr(args, g), f"--{g}", args.sheet_size) for g in given}
    netG = load_generator(args.netG)   # a bad file is refused before any device work
    backend = backend_for(args)
    netG = set_bn_mode(netG.to(backend), args.bn_mode)
    outf = prepare_outf(args.outf)
    sheet_z, sheet = sample_sheet(netG, backend, args, args.sheet_size)
    save_png(os.path.join(outf, "sheet.png"), numbered_sheet(sheet, scale=max(1, args.scale + 1)))
    np.save(os.path.join(outf, "sheet_z.npy"), sheet_z)
    results = {"sheet": "sheet.png", "sheet_noise": "sheet_z.npy", "sheet_size": args.sheet_size,
               "backend": backend.name}
    if not groups:
        write_summary(outf, "arithmetic", SECTION, args, results, {"netG": netG})
        print(f"[arithmetic] numbered samples in {os.path.join(outf, 'sheet.png')}; "
              "now name three groups: --A i,j,k --B ... --C ...")
        return
    out = run(netG, backend, sheet_z, groups, args.neighbours, args.noise, rng_for(args, NOISE_STREAM))
    save_png(os.path.join(outf, "arithmetic.png"), figure(out, args.scale))
    save_png(os.path.join(outf, "result.png"),
             enlarge(make_grid(out["result_images"], int(np.ceil(np.sqrt(len(out["result_images"]))))),
                     args.scale))
    np.save(os.path.join(outf, "result_z.npy"), out["neighbour_z"])
    norm = lambda v: float(np.linalg.norm(v))  # noqa: E731
    results.update({
        "figure": "arithmetic.png", "result_grid": "result.png", "result_noise": "result_z.npy",
        "groups": groups,
        "mean_norms": {g: norm(out["mean_z"][i]) for i, g in enumerate("ABC")},
        "result_norm": norm(out["result_z"]),
        "result_minus_mean_A_norm": norm(out["result_z"] - out["mean_z"][0]),
        "neighbours": args.neighbours, "noise": args.noise,
        # How far the result's picture is from each group mean's picture (rms, pixels in [-1, 1]):
        # an arithmetic that worked lands nearer to C's look than to A's or B's.
        "result_image_rms_to_mean_images": {
            g: float(np.sqrt(np.mean((out["result_images"][0] - out["mean_images"][i]) ** 2)))
            for i, g in enumerate("ABC")},
    })
    write_summary(outf, "arithmetic", SECTION, args, results, {"netG": netG})
    print(f"[arithmetic] mean(A) - mean(B) + mean(C) and {args.neighbours} neighbours -> "
          f"{os.path.join(outf, 'arithmetic.png')}")


def main(argv=None):
    return run_main(_body, build_parser(), argv)

