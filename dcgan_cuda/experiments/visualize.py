"""What the discriminator has learned (section 6.2 of the DCGAN paper).

The paper shows, with guided backpropagation (Springenberg et al., 2014), that features of
a trained D respond to meaningful parts of its images (beds and windows in bedrooms),
while the same features of a randomly initialised D respond to nothing in particular.

Guided backpropagation is the gradient of a feature map's activation with respect to the
input image, with one change: at every rectifier the gradient passes only where the
forward input was positive (as for an ordinary ReLU) *and* the incoming gradient is
positive. Keeping only positive evidence at each layer gives sharp pictures of the input
pattern that excites the feature, where the plain gradient is noisy. D uses LeakyReLU(0.2),
whose ordinary gradient is 0.2 for negative inputs; for the guided pass each LeakyReLU is
treated as a ReLU gate:  dx = dy if (x > 0 and dy > 0) else 0.  Its forward is unchanged,
so the activations explained are exactly D's own.

What the tool draws: the feature maps are channels of one convolution layer of D (by
default the highest one with an activation, as the paper's figure 5; ``--layer``), the
maps ``--maps`` (the paper shows the first six). For each map, the ``--n`` images of a pool
of held-out real images on which the map responds most strongly (largest single
activation), and beside each its guided gradient of the sum of the map's activations. Once
for the trained D (``guided_trained.png``) and once for a randomly initialised D of the
same shape (``guided_random.png``), each choosing its own strongest images.

D runs in eval mode so that each image's gradient comes from that image alone.
"""
from __future__ import annotations

import os

import numpy as np

from .. import nn
from ..autograd import Function, no_grad
from ..cli import MAX_COUNT, MAX_SCALE, integer, path
from ..data import DATASETS, load_dataset
from .common import (MAX_PICTURES, ExperimentError, add_common_args, backend_for, check_finite,
                     grid_picture, load_discriminator, make_parser, parse_index_list, prepare_outf,
                     quiet_overflow, run_main, save_png, to_tensor, write_summary)
from .probe import RANDOM_D_SEED, random_discriminator

SECTION = "6.2"


class GuidedLeakyReLU(Function):
    """LeakyReLU forward; guided-backpropagation backward: dx = dy where x > 0 and dy > 0.

    The gate is composed of backend ops, so it runs on whichever backend D lives on:
    relu_forward(dy) keeps the positive part of the incoming gradient, and
    relu_backward(., x) passes it where the forward input was positive.
    """

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        return ctx.backend.leaky_relu_forward(x, slope)

    @staticmethod
    def backward(ctx, dy):
        B = ctx.backend
        return B.relu_backward(B.relu_forward(dy), ctx.saved[0]), None


def activation_layers(netD):
    """Indices (into D's convolutions) of the layers followed by an activation: every
    convolution but the pytorch arch's last, which produces the logit."""
    convs = [m for m in netD.main if isinstance(m, nn.Conv2d)]
    return list(range(len(convs) - 1 if netD.arch == "pytorch" else len(convs)))


def guided_forward(netD, x, layer):
    """D's forward up to the activation after its ``layer``-th convolution, with every
    LeakyReLU replaced by the guided gate. Returns that activation (N, C_l, H_l, W_l)."""
    if layer not in activation_layers(netD):
        raise ExperimentError(f"--layer {layer}: D's layers with an activation are "
                              f"{activation_layers(netD)}")
    seen = -1
    for module in netD.main:
        if isinstance(module, nn.LeakyReLU):
            x = GuidedLeakyReLU.apply(x, slope=float(module.negative_slope))
            if seen == layer:
                return x
        else:
            x = module(x)
            seen += isinstance(module, nn.Conv2d)
    raise AssertionError("unreachable: every activation layer ends in a LeakyReLU")


def layer_activations(netD, images, backend, layer, batch_size=128):
    """The activation after the layer-th convolution, on the host, without a tape."""
    out = []
    with no_grad(), quiet_overflow():
        for i in range(0, len(images), batch_size):
            out.append(guided_forward(netD, to_tensor(images[i:i + batch_size], backend), layer).numpy())
    return check_finite(np.concatenate(out), "the discriminator's activations")


def guided_backprop(netD, images, backend, layer, channels):
    """Guided gradients of sum(activation[:, c]) w.r.t. the images, for each c in channels.

    images: host (N, nc, S, S). Returns host (len(channels), N, nc, S, S). One forward,
    one backward per channel: the backward is seeded with a one-hot channel gradient (1 on
    every position of channel c, 0 elsewhere) built on the host.
    """
    netD.eval().requires_grad_(False)  # only the input's gradient is wanted
    x = to_tensor(images, backend, requires_grad=True)
    with quiet_overflow():
        act = guided_forward(netD, x, layer)
        bad = [c for c in channels if not 0 <= c < act.shape[1]]
        if bad:
            raise ExperimentError(f"--maps {bad}: layer {layer} has {act.shape[1]} feature maps")
        grads = []
        for c in channels:
            seed = np.zeros(act.shape, np.float32)
            seed[:, c] = 1.0
            x.grad = None
            act.backward(backend.asarray(seed))
            grads.append(backend.to_numpy(x.grad))
    return check_finite(np.stack(grads), "the guided gradients")


def normalise(grad, percentile=99.0):
    """Each gradient image divided by its 99th-percentile magnitude and clipped to [-1, 1]:
    0 shows as mid-grey, positive evidence brighter. Scaling by the largest magnitude
    instead lets a handful of extreme pixels squash everything else to grey."""
    flat = np.abs(grad.reshape(len(grad), -1))
    q = np.percentile(flat, percentile, axis=1)
    q = np.where(q > 0, q, flat.max(axis=1))  # a sparse gradient: fall back to the maximum
    return np.clip(grad / np.maximum(q, 1e-12).reshape((-1,) + (1,) * (grad.ndim - 1)), -1.0, 1.0)


def strongest(netD, pool, backend, layer, channels, n):
    """For each channel, the indices of the n pool images with the largest activation."""
    act = layer_activations(netD, pool, backend, layer)
    peak = act.reshape(act.shape[0], act.shape[1], -1).max(axis=2)  # (N, C)
    return {c: np.argsort(-peak[:, c], kind="stable")[:n] for c in channels}, peak


def figure(netD, pool, backend, layer, channels, n):
    """Rows = maps; each row alternates an image and its guided gradient. Also returns
    numbers for the summary."""
    picks, peak = strongest(netD, pool, backend, layer, channels, n)
    tiles, info = [], {}
    for c in channels:
        imgs = pool[picks[c]]
        g = guided_backprop(netD, imgs, backend, layer, [c])[0]
        row = np.empty((2 * len(imgs),) + imgs.shape[1:], np.float32)
        row[0::2], row[1::2] = imgs, normalise(g)
        tiles.append(row)
        info[str(c)] = {"images": picks[c].tolist(), "peak_activations": peak[picks[c], c].tolist(),
                        "gradient_abs_mean": float(np.abs(g).mean()),
                        "gradient_zero_fraction": float(np.mean(g == 0))}
    return np.concatenate(tiles), info


def build_parser():
    p = make_parser("visualize", SECTION, "visualising the discriminator's features.",
                    "Guided backpropagation of chosen feature maps of a D layer back to the input "
                    "image, on the held-out images each map responds to most, for the trained D "
                    "and for a randomly initialised one (guided_trained.png, guided_random.png).")
    # No --bn-mode: guided backpropagation needs eval mode (per-image gradients).
    add_common_args(p, "visualize", netD=True, bn=False)
    p.add_argument("--layer", type=integer(0, 64), default=None,
                   help="which convolution of D (0 = first); default: the highest with an activation")
    p.add_argument("--maps", default="0,1,2,3,4,5", help="feature maps (channels) of that layer")
    p.add_argument("--n", type=integer(1, MAX_PICTURES), default=6, help="images per map")
    p.add_argument("--pool", type=integer(1, MAX_COUNT), default=256, help="held-out images to choose them from")
    p.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="where the images come from (as for train)")
    p.add_argument("--dataroot", type=path, default=None, help="its files, as for dcgan_cuda.train")
    p.add_argument("--scale", type=integer(1, MAX_SCALE), default=2, help="enlarge the grids this many times")
    return p


def _body(args):
    if args.n < 1 or args.pool < args.n:
        raise ExperimentError(f"need 1 <= --n <= --pool, got --n {args.n} --pool {args.pool}")
    netD = load_discriminator(args.netD)   # a bad file is refused before any device work
    backend = backend_for(args)
    netD = netD.to(backend).eval()
    layers = activation_layers(netD)
    layer = layers[-1] if args.layer is None else args.layer
    if layer not in layers:
        raise ExperimentError(f"--layer {layer}: D's layers with an activation are {layers}")
    channels = [m for m in netD.main if isinstance(m, nn.Conv2d)][layer].shape[0]
    maps = parse_index_list(args.maps, f"--maps (layer {layer} has {channels} feature maps)", channels)
    randD = random_discriminator(netD, [args.manualSeed, RANDOM_D_SEED], backend)
    outf = prepare_outf(args.outf)
    split = "all" if args.dataset == "folder" else "test"
    data = load_dataset(args.dataset, args.dataroot, netD.image_size, netD.nc, split=split,
                        max_images=args.pool, seed=args.manualSeed)
    pool = data.batch(slice(None))
    if len(pool) < args.n:
        raise ExperimentError(f"only {len(pool)} images available, fewer than --n {args.n}")
    results = {"layer": layer, "maps": maps, "backend": backend.name, "pool": len(pool)}
    for name, net in (("trained", netD), ("random", randD)):
        tiles, info = figure(net, pool, backend, layer, maps, args.n)
        save_png(os.path.join(outf, f"guided_{name}.png"), grid_picture(tiles, 2 * args.n, args.scale))
        results[name] = {"grid": f"guided_{name}.png", "maps": info}
    write_summary(outf, "visualize", SECTION, args, results, {"netD": netD})
    print(f"[visualize] guided backpropagation of maps {maps} of D layer {layer} -> "
          f"{os.path.join(outf, 'guided_trained.png')}, guided_random.png")


def main(argv=None):
    return run_main(_body, build_parser(), argv)
