"""Sample grids and the loss plot.

Images arrive as NCHW float arrays in [-1, 1] (the generator's tanh range) and leave as
8-bit PNGs laid out like torchvision's make_grid: ``nrow`` images per row, a 2-pixel
black border around each.
"""
from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from .checkpoint import atomic_write_bytes


def to_uint8(images):
    """[-1, 1] floats -> [0, 255] uint8, clipped."""
    return np.clip(np.rint((np.asarray(images, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images, nrow=8, padding=2, pad_value=0):
    """(N, C, H, W) in [-1, 1] -> one (rows*(H+p)+p, cols*(W+p)+p, C) uint8 picture."""
    images = to_uint8(images)
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y:y + h, x:x + w] = images[k].transpose(1, 2, 0)
    return grid


def png_bytes(picture):
    """Encode an (H, W, C) uint8 picture (C = 1 or 3) as PNG."""
    picture = picture[..., 0] if picture.shape[-1] == 1 else picture
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images, path, nrow=8, padding=2, scale=1):
    """Write a grid of images as a PNG (atomically), enlarged ``scale`` times (nearest)."""
    picture = make_grid(images, nrow, padding)
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    atomic_write_bytes(path, png_bytes(picture))


def read_metrics(path):
    """The JSON lines of a metrics log, skipping a torn last line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


def plot_losses(rows, path):
    """Loss_D and Loss_G per iteration (faint) with a moving average, and D(x), D(G(z))."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["iteration"] for r in rows if "loss_D" in r]
    if not steps:
        return
    fig, (ax_loss, ax_prob) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    window = max(1, len(steps) // 50)
    for key, label in (("loss_D", "Loss_D"), ("loss_G", "Loss_G")):
        values = np.array([r[key] for r in rows if "loss_D" in r])
        line, = ax_loss.plot(steps, values, alpha=0.25, linewidth=0.8)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax_loss.plot(steps[window - 1:], smooth, color=line.get_color(), label=label)
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key, label in (("D_x", "D(x)"), ("D_G_z1", "D(G(z)) before D step"), ("D_G_z2", "D(G(z)) after")):
        ax_prob.plot(steps, [r[key] for r in rows if "loss_D" in r], label=label, linewidth=0.8)
    ax_prob.set_ylim(0, 1)
    ax_prob.set_xlabel("iteration")
    ax_prob.set_ylabel("mean D output")
    ax_prob.legend()
    evals = [r for r in rows if "eval" in r]
    if evals:
        ax_fd = ax_loss.twinx()
        ax_fd.plot([r["iteration"] for r in evals], [r["eval"]["frechet_distance"] for r in evals],
                   "k.-", label="Frechet distance")
        ax_fd.set_ylabel("Frechet distance")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
