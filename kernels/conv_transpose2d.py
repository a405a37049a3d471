"""conv_transpose2d — fractionally-strided ("transposed") convolution, as conv2d's adjoint.

What it computes (NCHW, float32; w is (Ci_T, Co_T, kh, kw) as in PyTorch's ConvTranspose2d):
    forward          y[n,o,h,v] = sum_{c,i,j} w[c,o,i,j] * x[n, c, (h+pad-i)/s, (v+pad-j)/s]
                     over taps where both divisions are exact and in range;
                     H' = (H-1)*s - 2*pad + kh + output_padding
Each input pixel scatters a k x k stamp of its weights, s pixels apart: an upsampling.

The duality. Read w as a conv2d weight: (Co, Ci, kh, kw) with
Co = Ci_T and Ci = Co_T, a conv2d from Co_T channels to Ci_T channels with the same stride and
padding. That conv2d maps a y-shaped tensor to an x-shaped one, and this layer is exactly
its adjoint (its transpose, as a matrix), so:
    conv_transpose2d forward          = conv2d backward_data(dy := x, w) -> dx := y
    conv_transpose2d backward_data    = conv2d forward(x := dy, w)       -> y := dx
    conv_transpose2d backward_weight  = conv2d backward_weight(x := dy, dy := x) -> dw
output_padding needs no code: it only makes y (conv2d's dx) s-1 rows taller at most, rows
that conv2d's floor((H'+2p-k)/s)+1 = H ignores; backward_data writes them 0. This file
defines no kernels of its own: its launchers call conv2d's, so every conv2d version, with
its thread mapping (see kernels/conv2d/), is also a transposed-conv version. Every output is
written (=).

How threads map to data: as in conv2d's kernels, with the roles above. v1 runs one thread
per OUTPUT element of the transposed layer (its forward is conv2d's gather, so threads
never collide: no atomics, unlike the textbook "scatter each input" formulation); v2 tiles
the same outputs through shared memory; v3 computes each direction as a register-blocked
implicit GEMM (128 x 128 tiles of 256 threads, 8 x 8 outputs per thread). v3's forward
is a convolution over x with zeros inserted between its pixels, in effect: it visits all
kh*kw taps of every output pixel, and at s = 2 spends 3/4 of its multiply-adds on taps
that miss. v4's forward is the sub-pixel form of a transposed convolution: the s*s output
phases (h mod s, v mod s) are s*s ordinary stride-1 convolutions of x with the taps
i = i0, i0 + s, ... that reach them (blockIdx.z = phase), and nothing is wasted.

Napkin math: the DCGAN generator (pytorch arch, batch 128, 64x64, ngf = 64). FLOPs =
2*N*Ci_T*H*W*Co_T*kh*kw per direction (multiply-adds of every input pixel with every tap):
    G1 convT 100->512 1->4    k4 s1 p0   0.21 GFLOP   min bytes 7.5 MB
    G2 convT 512->256 4->8    k4 s2 p1   8.6  GFLOP   21 MB
    G3 convT 256->128 8->16   k4 s2 p1   8.6  GFLOP   27 MB
    G4 convT 128->64  16->32  k4 s2 p1   8.6  GFLOP   51 MB
    G5 convT 64->3    32->64  k4 s2 p1   0.81 GFLOP   40 MB
27 GFLOP per direction: >= 400 us on an H100 SXM's 67 TFLOP/s FP32, against ~30 us to
move the 168 MB once at 3.35 TB/s, so G2..G4 (170-400 FLOP/byte) are compute-bound and
G5 (20 FLOP/byte) sits at the ridge. The paper arch's 5x5, stride 2, pad 2, output_padding
1 layers cost 25/16 as much (13.4 GFLOP for G2..G4). With stride 2 and k4 only 4 of the 16
taps meet any one output pixel of the forward gather; the FLOP count already counts only
those. (k5 s2: 9, 6, 6 or 4 of the 25, by phase; 1/4 on average, as for k4.)
The implicit GEMMs at these shapes (PREDICTED, not measured; each conv2d version's file
gives its reasoning): G2..G4's forwards are 128-1024 tiles of 128 x 128 over 4 phases;
G5's forward writes only Nc = 3 channels, 3 of a tile's 128 columns, so versions 3-7 are
predicted slower than v2 there; v8 gives that case a kernel of its own (one thread per pixel).

Versions:
    1  naive          conv2d v1: one thread per output element, operands from global memory
    2  smem-tiles     conv2d v2: input and weight tiles staged in shared memory
    3  implicit-gemm  conv2d v3: register-blocked implicit GEMMs (the GEMM ladder's last rung)
    4  sub-pixel-phases  conv2d v4: the forward as one stride-1 GEMM per output phase
    5  taps-major     conv2d v5: the forward's weights regrouped so that their loads coalesce
    6  split-k        conv2d v6: backward-data (G1) and weight gradients split over blocks
    7  prefetch       conv2d v7: the next slice's loads in flight during the multiply-adds
    8  narrow-channels  conv2d v8: a forward into at most 4 channels (G5) by one thread per pixel
    9  fitted-tiles   conv2d v9: 64 x 64 tiles where 128 x 128 would be half padding (G4's forward)
    10 small-frags    conv2d v10: 4 x 4 outputs per thread in 64 x 64 tiles, two blocks per SM
Run:
    python -m dcgan_cuda.kernels.conv_transpose2d --sim        validate every version on the CPU
    python -m dcgan_cuda.kernels.conv_transpose2d --version 2  validate and time on a GPU
"""
from __future__ import annotations

import numpy as np

from . import conv2d
from .jit import Version

DIRECTIONS = conv2d.DIRECTIONS

# The same numbered versions as conv2d, each op mapped to the conv2d launcher it reuses.
VERSIONS = {
    number: Version(version.name, f"conv2d v{number} read backwards: {version.idea}", {
        "forward": version.ops["backward_data"],
        "backward_data": version.ops["forward"],
        "backward_weight": version.ops["backward_weight"],
    })
    for number, version in conv2d.VERSIONS.items()
}
DEFAULT_VERSION = conv2d.DEFAULT_VERSION


# ------------------------------------------------------------------------ launchers
# Arrays: C-contiguous float32 NCHW; outputs allocated by the caller and overwritten.
def forward(x, w, y, stride, padding, version=DEFAULT_VERSION):
    """y = conv_transpose2d(x, w): x (N,Ci_T,H,W), w (Ci_T,Co_T,kh,kw) -> y (N,Co_T,H',W').

    output_padding is read from y's shape. Written (=).
    """
    conv2d.backward_data(x, w, y, stride, padding, version)


def backward_data(dy, w, dx, stride, padding, version=DEFAULT_VERSION):
    """dx = dL/dx: dy (N,Co_T,H',W'), w (Ci_T,Co_T,kh,kw) -> dx (N,Ci_T,H,W), written (=)."""
    conv2d.forward(dy, w, dx, stride, padding, version)


def backward_weight(x, dy, dw, stride, padding, version=DEFAULT_VERSION):
    """dw = dL/dw: x (N,Ci_T,H,W), dy (N,Co_T,H',W') -> dw (Ci_T,Co_T,kh,kw), written (=)."""
    conv2d.backward_weight(dy, x, dw, stride, padding, version)


# ------------------------------------------------------------------ validate / time
def cases(sim):
    """The generator's layers (both archs at the DCGAN shapes), or tiny ones in the simulator."""
    if sim:
        layers = [layer for layer in conv2d.sim_layers() if layer.transposed]
        layers.append(conv2d.Layer("tiny-odd", True, 2, 2, 3, (3, 4), (3, 2), (3, 2), (1, 0), (2, 1)))
    else:
        layers = [layer for arch in ("pytorch", "paper") for layer in conv2d.dcgan_layers(arch=arch)
                  if layer.transposed]
    return [(conv2d.layer_label(layer, direction),
             lambda rng, layer=layer, direction=direction: conv2d.make_inputs(rng, layer, direction))
            for layer in layers for direction in DIRECTIONS]


def run(version, label, inputs, device):
    layer, direction = inputs["layer"], inputs["direction"]
    x, w, dy = device(inputs["x"]), device(inputs["w"]), device(inputs["dy"])
    s, p = layer.stride, layer.padding
    result_shape = {"fwd": inputs["dy"].shape, "bwd-data": inputs["x"].shape, "bwd-weight": inputs["w"].shape}[direction]
    out = device(np.full(result_shape, np.nan, np.float32))
    launch = {"fwd": lambda: forward(x, w, out, s, p, version),
              "bwd-data": lambda: backward_data(dy, w, out, s, p, version),
              "bwd-weight": lambda: backward_weight(x, dy, out, s, p, version)}[direction]

    def ours():
        launch()
        return out
    # For a transposed layer conv2d.reference_result is reference.conv_transpose2d_forward /
    # _backward_data / _backward_weight (float64): an oracle that does not share our duality code.
    atol, rtol = conv2d.tolerance(conv2d.reduction_terms(layer, direction))
    nbytes = inputs["x"].nbytes + inputs["w"].nbytes + inputs["dy"].nbytes
    return ours, conv2d.reference_result(inputs), atol, rtol, conv2d.layer_flops(layer), nbytes


if __name__ == "__main__":
    import sys

    from . import harness
    sys.exit(harness.main(sys.modules[__name__]))
