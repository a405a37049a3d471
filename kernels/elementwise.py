"""elementwise — activations forward and backward, and the small utilities of the graph.

What it computes, element by element (i runs over every element of a flat array):
    relu        y = max(x, 0)                   dx = dy * [x > 0]
    leaky_relu  y = x * (x > 0 ? 1 : slope)     dx = dy * (x > 0 ? 1 : slope)
    tanh        y = tanh(x)                     dx = dy * (1 - y^2)        (from the output)
    sigmoid     y = 1 / (1 + e^-x)              dx = dy * y * (1 - y)      (from the output)
    fill        y = value
    add_into    dst += src                      (gradient accumulation: the one '+=' here)
    channel_bias y[n,c,h,w] = x[n,c,h,w] + b[c]
Every other kernel writes its output (=).

How threads map to data: a 1-D grid-stride loop (lesson0_threads.py, version 5). Thread t
of a grid of T threads handles elements t, t + T, t + 2T, ...: consecutive threads touch
consecutive addresses, so each warp's 32 loads of 4 bytes are 4 sectors of 32 bytes (the
access is coalesced), and one launch shape covers any size (jit.grid_1d: at most 4096
blocks of 256 threads, ~4 waves; a wave is as many blocks as the GPU holds at once, here
8 per SM x 132 SMs). Read relu_forward_v1 first: it is that loop with one line in it, and
every activation kernel below is the same loop with a different line.

Napkin math. These kernels do ~1 FLOP per 8 bytes moved: purely memory-bound. The largest
DCGAN activation (batch 128, 64x64, ngf=64: G's last hidden layer, 128x64x32x32 floats =
33.5 MB) costs 67 MB of traffic for relu forward: ~20 us at an H100 SXM's 3.35 TB/s, about
two launches' worth of host time (~10 us a launch from Python, an estimate: see
kernels/README.md); the other layers' activations are 2-8 times smaller and cost about
their launch or less. (kernels/README.md's elementwise table times an activation's
forward and backward together: two launches and 168 MB for relu at this shape.) At
DCGAN sizes launch overhead, not bandwidth, is what to fight: batchnorm/ fuses the ReLU
or LeakyReLU that follows each batchnorm into the batchnorm's own kernels, so those
activations never get a launch of their own.

After the plain kernels: an element's channel without a division per element.
channel_bias (and batchnorm's apply and dx) need the channel c of flat element i of an
NCHW tensor: i = (n*C + c)*HW + s. Recovering (n, c, s) from i takes divisions by runtime
values: s = i % HW, c = (i // HW) % C, n = i // HW // C. All counts here are PTX
instructions per element, one trip of the grid-stride loop in the kernel's PTX for sm_90.
There each division or remainder is one instruction (div or rem), which looks cheap next
to the 35-60 that everything else about an element costs (below); but the GPU has no
integer divider, and ptxas turns each div or rem into a routine of ~20 machine (SASS)
instructions, more at 64 bits. A thread's i, though, only ever grows by the grid's
constant stride, so the thread splits its first i and the stride into digits once
(`digits`) and then adds digit by digit with carries (`carry_add`): two compares per
element. The digits are a **mixed radix** number, each digit with its own base, as in
hours:minutes:seconds: here (n, c, s) with s in base HW and c in base C. With C = 3,
HW = 5 and a stride of 7 = (0, 1, 2):
    i = 0  -> (0, 0, 0)
    i = 7  -> (0, 0, 0) + (0, 1, 2) = (0, 1, 2)                  no carry
    i = 14 -> (0, 1, 2) + (0, 1, 2) = (0, 2, 4)                  no carry
    i = 21 -> (0, 2, 4) + (0, 1, 2): s = 6 >= 5, so s = 1 and c gets 1;
              c = 2 + 1 + 1 = 4 >= 3, so c = 1 and n gets 1: (1, 1, 1) = (1*3 + 1)*5 + 1
This took batchnorm's apply from 91 PTX instructions an element (4 of them div/rem, each
a routine of its own in SASS) to 43, its dx from 118 to 60, channel_bias from 80 to 35:
the 35-60 above (tests/test_ptx_hot_loop.py keeps divisions out).

Versions:
    1  grid-stride  one thread per element per trip of a grid-stride loop
Run:
    python -m dcgan_cuda.kernels.elementwise --sim     validate on the CPU
    python -m dcgan_cuda.kernels.elementwise           validate and time on a GPU
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, uint64

from dcgan_cuda import reference

from .jit import Version, f32, f32_1d, f32_2d, grid_1d, i64, kernel, scalar


# ------------------------------------------------------------------------ version 1
@kernel((f32_1d, f32_1d, i64))
def relu_forward_v1(x, y, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        y[i] = max(x[i], float32(0.0))


@kernel((f32_1d, f32_1d, f32_1d, i64))
def relu_backward_v1(dy, x, dx, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        dx[i] = dy[i] if x[i] > float32(0.0) else float32(0.0)


@kernel((f32_1d, f32_1d, f32, i64))
def leaky_relu_forward_v1(x, y, slope, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        v = x[i]
        y[i] = v if v > float32(0.0) else v * slope


@kernel((f32_1d, f32_1d, f32_1d, f32, i64))
def leaky_relu_backward_v1(dy, x, dx, slope, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        dx[i] = dy[i] if x[i] > float32(0.0) else dy[i] * slope


@kernel((f32_1d, f32_1d, i64))
def tanh_forward_v1(x, y, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        y[i] = math.tanh(x[i])


@kernel((f32_1d, f32_1d, f32_1d, i64))
def tanh_backward_v1(dy, y, dx, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        dx[i] = dy[i] * (float32(1.0) - y[i] * y[i])


@kernel((f32_1d, f32_1d, i64))
def sigmoid_forward_v1(x, y, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        v = x[i]
        # exp of a non-positive number only, so nothing overflows for large |x|.
        e = math.exp(-abs(v))
        y[i] = float32(1.0) / (float32(1.0) + e) if v >= float32(0.0) else e / (float32(1.0) + e)


@kernel((f32_1d, f32_1d, f32_1d, i64))
def sigmoid_backward_v1(dy, y, dx, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        dx[i] = dy[i] * y[i] * (float32(1.0) - y[i])


@kernel((f32_1d, f32, i64))
def fill_v1(y, value, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        y[i] = value


@kernel((f32_1d, f32_1d, i64))
def add_into_v1(dst, src, n):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, n, stride):
        dst[i] += src[i]


# An element's channel without a division per element (see the module docstring).
@cuda.jit(device=True)
def carry_add(hi, mid, lo, d_hi, d_mid, d_lo, mid_size, lo_size):
    """(hi, mid, lo) + (d_hi, d_mid, d_lo) in the mixed radix (.., mid_size, lo_size): worked
    example in the module docstring.

    A flat index walked by a constant step, kept as its digits: e.g. i = (n*C + c)*HW + s as
    (n, c, s), or conv2d's k = (c*kh + i)*kw + j as (c, i, j). Needs d_mid < mid_size and
    d_lo < lo_size (the step's own digits), so each carry is at most 1: two compares
    instead of the divisions that recover the digits.
    """
    lo += d_lo
    if lo >= lo_size:
        lo -= lo_size
        mid += 1
    mid += d_mid
    if mid >= mid_size:
        mid -= mid_size
        hi += 1
    return hi + d_hi, mid, lo


@cuda.jit(device=True)
def digits(flat, mid_size, lo_size):
    """flat as (hi, mid, lo) in the mixed radix (.., mid_size, lo_size)."""
    lo = flat % lo_size
    rest = flat // lo_size
    return rest // mid_size, rest % mid_size, lo


@kernel((f32_2d, f32_1d, f32_2d, i64))
def channel_bias_v1(x, b, y, n):
    """x, y viewed as (N*C, H*W): element (n*C + c, s) gets b[c], its index walked as the
    digits (n, c, s) (carry_add). The digits are in range, hence the unsigned indices:
    a signed one costs Numba's negative-index wraparound on every access."""
    run = x.shape[1]
    channels = b.shape[0]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    if start < n:                    # then C and H*W are > 0
        image, c, s = digits(start, channels, run)
        d_image, dc, ds = digits(stride, channels, run)
        for _ in range(start, n, stride):
            r = uint64(image * channels + c)
            y[r, uint64(s)] = x[r, uint64(s)] + b[uint64(c)]
            image, c, s = carry_add(image, c, s, d_image, dc, ds, channels, run)


VERSIONS = {
    1: Version("grid-stride", "one thread per element per trip of a grid-stride loop", {
        "relu_forward": relu_forward_v1, "relu_backward": relu_backward_v1,
        "leaky_relu_forward": leaky_relu_forward_v1, "leaky_relu_backward": leaky_relu_backward_v1,
        "tanh_forward": tanh_forward_v1, "tanh_backward": tanh_backward_v1,
        "sigmoid_forward": sigmoid_forward_v1, "sigmoid_backward": sigmoid_backward_v1,
        "fill": fill_v1, "add_into": add_into_v1, "channel_bias": channel_bias_v1,
    }),
}
DEFAULT_VERSION = 1


# ------------------------------------------------------------------------ launchers
# Each takes C-contiguous float32 arrays of any shape (CuPy on a GPU, NumPy under the
# simulator) and output arrays allocated by the caller.
def _flat(*arrays):
    return [a.reshape(-1) for a in arrays]


def _launch(op, version, *args):
    n = args[0].size
    VERSIONS[version].ops[op][grid_1d(n)](*args, n)


def relu_forward(x, y, version=DEFAULT_VERSION):
    _launch("relu_forward", version, *_flat(x, y))


def relu_backward(dy, x, dx, version=DEFAULT_VERSION):
    _launch("relu_backward", version, *_flat(dy, x, dx))


def leaky_relu_forward(x, y, slope, version=DEFAULT_VERSION):
    _launch("leaky_relu_forward", version, *_flat(x, y), scalar(slope))


def leaky_relu_backward(dy, x, dx, slope, version=DEFAULT_VERSION):
    _launch("leaky_relu_backward", version, *_flat(dy, x, dx), scalar(slope))


def tanh_forward(x, y, version=DEFAULT_VERSION):
    _launch("tanh_forward", version, *_flat(x, y))


def tanh_backward(dy, y, dx, version=DEFAULT_VERSION):
    _launch("tanh_backward", version, *_flat(dy, y, dx))


def sigmoid_forward(x, y, version=DEFAULT_VERSION):
    _launch("sigmoid_forward", version, *_flat(x, y))


def sigmoid_backward(dy, y, dx, version=DEFAULT_VERSION):
    _launch("sigmoid_backward", version, *_flat(dy, y, dx))


def fill(y, value, version=DEFAULT_VERSION):
    _launch("fill", version, y.reshape(-1), scalar(value))


def add_into(dst, src, version=DEFAULT_VERSION):
    """dst += src (same shape)."""
    _launch("add_into", version, *_flat(dst, src))


def channel_bias(x, b, y, version=DEFAULT_VERSION):
    """y = x + b[channel], for x of shape (N, C, ...) and b of shape (C,)."""
    rows = x.shape[0] * x.shape[1]
    x2, y2 = x.reshape(rows, -1), y.reshape(rows, -1)
    VERSIONS[version].ops["channel_bias"][grid_1d(x.size)](x2, b, y2, x.size)


# ------------------------------------------------------------------ validate / time
def cases(sim):
    shape = (2, 3, 5, 7) if sim else (128, 64, 32, 32)
    return [(f"{op} {'x'.join(map(str, shape))}", lambda rng, op=op: (op, rng.standard_normal(shape).astype(np.float32)))
            for op in ("relu", "leaky_relu", "tanh", "sigmoid", "add_into", "channel_bias")]


def run(version, label, inputs, device):
    op, x = inputs
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    d_x, d_dy = device(x), device(dy)
    out, grad = device(np.empty_like(x)), device(np.empty_like(x))
    nbytes = 3 * x.nbytes  # forward: read x, write y; backward: read dy and x/y, write dx
    if op == "add_into":
        acc = device(x)

        def launch():
            add_into(acc, d_dy, version)
            return acc
        return launch, x + dy, 0.0, 1e-6, x.size, nbytes   # atol, rtol, FLOPs, bytes moved
    if op == "channel_bias":
        b = rng.standard_normal(x.shape[1]).astype(np.float32)
        d_b = device(b)

        def launch():
            channel_bias(d_x, d_b, out, version)
            return out
        return launch, reference.add_channel_bias(x, b), 0.0, 1e-6, x.size, nbytes   # atol, rtol, FLOPs, bytes moved
    slope = 0.2
    fwd = {"relu": lambda: relu_forward(d_x, out, version),
           "leaky_relu": lambda: leaky_relu_forward(d_x, out, slope, version),
           "tanh": lambda: tanh_forward(d_x, out, version),
           "sigmoid": lambda: sigmoid_forward(d_x, out, version)}[op]
    # tanh and sigmoid differentiate from their output, relu-likes from their input.
    bwd = {"relu": lambda: relu_backward(d_dy, d_x, grad, version),
           "leaky_relu": lambda: leaky_relu_backward(d_dy, d_x, grad, slope, version),
           "tanh": lambda: tanh_backward(d_dy, out, grad, version),
           "sigmoid": lambda: sigmoid_backward(d_dy, out, grad, version)}[op]
    ref_fwd = {"relu": reference.relu_forward, "tanh": reference.tanh_forward,
               "sigmoid": reference.sigmoid_forward,
               "leaky_relu": lambda v: reference.leaky_relu_forward(v, slope)}[op](x)
    ref_bwd = {"relu": lambda: reference.relu_backward(dy, x),
               "leaky_relu": lambda: reference.leaky_relu_backward(dy, x, slope),
               "tanh": lambda: reference.tanh_backward(dy, ref_fwd),
               "sigmoid": lambda: reference.sigmoid_backward(dy, ref_fwd)}[op]()

    def launch():
        fwd()
        bwd()
        return out, grad
    # tanh/exp differ from NumPy's by a few ulp; the rest is exact.
    return launch, (ref_fwd, ref_bwd), 1e-6, 1e-5, 2 * x.size, 2 * nbytes   # atol, rtol, FLOPs, bytes moved


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
