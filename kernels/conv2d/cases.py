"""The cases the harness validates (and on a GPU times) every version of conv2d on.

    python -m dcgan_cuda.kernels.conv2d [--sim] [--version N]   (kernels/harness.py runs these)

The DCGAN layers (both architectures, batch 128, 64x64, width 64) on a GPU, tiny ones with
the same strides and paddings in the simulator; the float64 reference of each case and the
tolerance its float32 sums allow. bench/conv_bench.py and conv_transpose2d use them too.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from dcgan_cuda import reference
from dcgan_cuda.reference import conv2d_output_size, conv_transpose2d_output_size

DIRECTIONS = ("fwd", "bwd-data", "bwd-weight")

# One convolution layer. For a transposed layer (convT) cin/cout are ITS channels and
# `size` its input size; its weight is (cin, cout, kh, kw), as in PyTorch.
Layer = namedtuple("Layer", "name transposed batch cin cout size kernel stride padding output_padding")


def layer_output_size(layer):
    (kh, kw), (sh, sw), (ph, pw), (oph, opw) = layer.kernel, layer.stride, layer.padding, layer.output_padding
    h, w = layer.size
    if layer.transposed:
        return (conv_transpose2d_output_size(h, kh, sh, ph, oph), conv_transpose2d_output_size(w, kw, sw, pw, opw))
    return conv2d_output_size(h, kh, sh, ph), conv2d_output_size(w, kw, sw, pw)


def layer_label(layer, direction):
    """e.g. 'G2 convT 512->256 4->8 fwd': stable names for tests and benchmarks."""
    def size(hw):
        return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"
    return (f"{layer.name} {'convT' if layer.transposed else 'conv'} {layer.cin}->{layer.cout} "
            f"{size(layer.size)}->{size(layer_output_size(layer))} {direction}")


def dcgan_layers(batch=128, image_size=64, width=64, nc=3, nz=100, arch="pytorch"):
    """Every convolution of DCGAN's G (transposed) and D, named by position in the model.

    pytorch arch: G1 is a 4x4 convT from 1x1, the rest k4 s2 p1; D ends in a 4x4 valid conv.
    paper arch (names prefixed 'paper-'): k5 s2 p2, output_padding 1 in G; its G1 and its
    last D layer are dense (kernels/linear), so its convolutions are G2.. and D1..D4.
    """
    blocks = int(np.log2(image_size // 4))
    channels = width * 2 ** (blocks - 1)                 # the 4x4 volume's channels
    if arch == "pytorch":
        prefix, k, s, p, op = "", (4, 4), (2, 2), (1, 1), (0, 0)
        layers = [Layer("G1", True, batch, nz, channels, (1, 1), (4, 4), (1, 1), (0, 0), (0, 0))]
    else:
        prefix, k, s, p, op = "paper-", (5, 5), (2, 2), (2, 2), (1, 1)
        layers = []
    size = 4
    for index in range(2, blocks + 2):                   # G2 .. G(blocks+1): doubling the size
        out = nc if index == blocks + 1 else channels // 2
        layers.append(Layer(f"{prefix}G{index}", True, batch, channels, out, (size, size), k, s, p, op))
        channels, size = out, size * 2
    cin, channels = nc, width
    for index in range(1, blocks + 1):                   # D1 .. D(blocks): halving it
        layers.append(Layer(f"{prefix}D{index}", False, batch, cin, channels, (size, size), k, s, p, (0, 0)))
        cin, channels, size = channels, channels * 2, size // 2
    if arch == "pytorch":
        layers.append(Layer(f"D{blocks + 1}", False, batch, cin, 1, (4, 4), (4, 4), (1, 1), (0, 0), (0, 0)))
    return layers


def sim_layers():
    """Tiny layers with the DCGAN strides/paddings, plus odd and rectangular ones."""
    return [
        Layer("tiny-D", False, 2, 3, 4, (8, 8), (4, 4), (2, 2), (1, 1), (0, 0)),
        Layer("tiny-Dlast", False, 2, 3, 1, (4, 4), (4, 4), (1, 1), (0, 0), (0, 0)),
        Layer("tiny-odd", False, 1, 2, 3, (7, 5), (3, 2), (2, 1), (1, 0), (0, 0)),
        Layer("tiny-G1", True, 2, 3, 4, (1, 1), (4, 4), (1, 1), (0, 0), (0, 0)),
        Layer("tiny-G", True, 2, 4, 2, (3, 3), (4, 4), (2, 2), (1, 1), (0, 0)),
        Layer("tiny-paperG", True, 1, 3, 2, (3, 3), (5, 5), (2, 2), (2, 2), (1, 1)),
    ]


def cases(sim):
    """Every layer x direction: tiny ones in the simulator; on a GPU every convolution of
    both DCGAN archs at batch 128, 64x64, width 64 (G's transposed layers run through the
    duality, as training runs them)."""
    layers = sim_layers() if sim else dcgan_layers(arch="pytorch") + dcgan_layers(arch="paper")
    return [(layer_label(layer, direction),
             lambda rng, layer=layer, direction=direction: make_inputs(rng, layer, direction))
            for layer in layers for direction in DIRECTIONS]


def make_inputs(rng, layer, direction):
    """Unit-normal x, w and dy for one layer (host float32), and a slot for its reference."""
    out_h, out_w = layer_output_size(layer)
    x = rng.standard_normal((layer.batch, layer.cin) + tuple(layer.size)).astype(np.float32)
    w_shape = ((layer.cin, layer.cout) if layer.transposed else (layer.cout, layer.cin)) + tuple(layer.kernel)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal((layer.batch, layer.cout, out_h, out_w)).astype(np.float32)
    return dict(layer=layer, direction=direction, x=x, w=w, dy=dy, reference=None)


def reference_result(inputs):
    """The float64 NumPy result of the case's direction (computed once per case)."""
    if inputs["reference"] is None:
        layer, direction = inputs["layer"], inputs["direction"]
        x, w, dy = (inputs[k].astype(np.float64) for k in ("x", "w", "dy"))
        s, p = layer.stride, layer.padding
        if layer.transposed:
            out = {"fwd": lambda: reference.conv_transpose2d_forward(x, w, None, s, p, layer.output_padding),
                   "bwd-data": lambda: reference.conv_transpose2d_backward_data(dy, w, s, p),
                   "bwd-weight": lambda: reference.conv_transpose2d_backward_weight(x, dy, w.shape, s, p)}
        else:
            out = {"fwd": lambda: reference.conv2d_forward(x, w, None, s, p),
                   "bwd-data": lambda: reference.conv2d_backward_data(dy, w, x.shape, s, p),
                   "bwd-weight": lambda: reference.conv2d_backward_weight(x, dy, w.shape, s, p)}
        inputs["reference"] = out[direction]()
    return inputs["reference"]


def tolerance(terms):
    """(atol, rtol) for a float32 sum of `terms` products of unit-normal numbers vs float64.

    The sum is ~sqrt(K) in size; each addition rounds by up to eps/2 of the running sum, so
    the errors random-walk to about eps*K/5 (relative: ~sqrt(K)*eps). 4*eps*K is ~20 such
    standard deviations: safe for any summation order, yet far below one dropped or doubled
    term (~1).
    """
    eps = float(np.finfo(np.float32).eps)
    return 4 * eps * terms, 4 * eps


def reduction_terms(layer, direction):
    """How many products each output of a direction sums (K), in the layer's own terms."""
    kh, kw = layer.kernel
    out_h, out_w = layer_output_size(layer)
    # The weight gradient sums over the conv2d output side: a transposed layer's input.
    pixels = layer.size[0] * layer.size[1] if layer.transposed else out_h * out_w
    return {"fwd": layer.cin * kh * kw,            # for convT an upper bound: a strided
            "bwd-data": layer.cout * kh * kw,      # gather hits only ~1/s^2 of the taps
            "bwd-weight": layer.batch * pixels}[direction]


def layer_flops(layer):
    """2 * multiply-adds; the same for all three directions."""
    return 2 * reduction_terms(layer, "bwd-weight") * layer.cin * layer.cout * layer.kernel[0] * layer.kernel[1]


def run(version, label, inputs, device):
    """One direction of one layer by one version, its reference and tolerance (harness.main)."""
    from . import backward_data, backward_weight, forward
    layer, direction = inputs["layer"], inputs["direction"]
    x, w, dy = device(inputs["x"]), device(inputs["w"]), device(inputs["dy"])
    s, p = layer.stride, layer.padding
    result_shape = {"fwd": inputs["dy"].shape, "bwd-data": inputs["x"].shape, "bwd-weight": inputs["w"].shape}[direction]
    out = device(np.full(result_shape, np.nan, np.float32))
    if layer.transposed:
        # The duality (conv_transpose2d.py): a transposed layer's forward is conv2d's
        # backward_data, its backward_data is conv2d's forward, and its weight gradient is
        # conv2d's with the input (x) and output gradient (dy) trading places.
        launch = {"fwd": lambda: backward_data(x, w, out, s, p, version),
                  "bwd-data": lambda: forward(dy, w, out, s, p, version),
                  "bwd-weight": lambda: backward_weight(dy, x, out, s, p, version)}[direction]
    else:
        launch = {"fwd": lambda: forward(x, w, out, s, p, version),
                  "bwd-data": lambda: backward_data(dy, w, out, s, p, version),
                  "bwd-weight": lambda: backward_weight(x, dy, out, s, p, version)}[direction]

    def ours():
        launch()
        return out
    terms = reduction_terms(layer, direction)
    nbytes = inputs["x"].nbytes + inputs["w"].nbytes + inputs["dy"].nbytes  # read two, write one
    atol, rtol = tolerance(terms)
    return ours, reference_result(inputs), atol, rtol, layer_flops(layer), nbytes
