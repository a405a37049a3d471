"""NumPy forward and backward of every op DCGAN needs: the oracle and the CPU backend.

Every function here is vectorised (no Python loop touches individual pixels; the only
loops run over the kh*kw taps of a kernel or the cells of a pooling grid) and keeps the
dtype it is given, so the same code serves float32 training and float64 gradient checks.

Conventions, shared with the CUDA kernels that are checked against these functions:
  * tensors are NCHW; Conv2d weights are (C_out, C_in, kH, kW), ConvTranspose2d weights
    are (C_in, C_out, kH, kW), Linear weights are (out_features, in_features): PyTorch's;
  * a *_backward_* function returns fresh gradients; accumulation into ``.grad`` is the
    autograd's business, not the op's;
  * stride and padding are ints or (h, w) pairs.

Convolution is lowered to one matrix multiply (im2col): every receptive field becomes a
row of a (N*Ho*Wo, kH*kW*C) matrix, so that the C_out outputs of all pixels come out of a
single BLAS call. Backward-data is the adjoint (col2im: a scatter-add of the rows back
onto the padded image). Transposed convolution is literally the adjoint of convolution,
so it is written with the same two functions. The forward and the weight gradient read
the same im2col matrix: conv2d_lower builds it once as Patches, which both accept.

As the CPU backend this file is also what `--device cpu` trains with, so the layout work
around the multiplies is kept lean: on a 2-core machine a DCGAN step at 32x32 is about
half BLAS time and half copies, adds and batchnorm passes (bench/train_bench.py).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pair(v):
    """(v, v) for an int, the pair itself for a pair."""
    if isinstance(v, (tuple, list)):
        h, w = v
        return int(h), int(w)
    return int(v), int(v)


def conv2d_output_size(size, kernel, stride, padding):
    """Spatial output size of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose2d_output_size(size, kernel, stride, padding, output_padding=0):
    """Spatial output size of a transposed convolution along one axis (PyTorch's rule)."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


# ---------------------------------------------------------------- convolution (im2col)
# Inside the convolution functions images are channels-last (N, H, W, C): then one
# receptive-field row is kH runs of kW*C contiguous numbers, and every strided copy or
# add below moves runs of C (or kW*C) floats instead of single pixels. The layout
# changes cost one transpose in and one out; the speed-up over NCHW rows is several-fold.
def _padded_nhwc(x, ph, pw):
    """NCHW -> zero-padded NHWC, in one copy."""
    n, c, h, w = x.shape
    out = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    out[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
    return out


def _im2col(x, kernel, stride, padding):
    """Receptive fields as rows: (N*Ho*Wo, kH*kW*C), in (i, j, c) order inside a row."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = conv2d_output_size(h, kh, sh, ph), conv2d_output_size(w, kw, sw, pw)
    xp = _padded_nhwc(x, ph, pw)
    s_n, s_h, s_w, s_c = xp.strides
    windows = as_strided(xp, shape=(n, ho, wo, kh, kw, c),
                         strides=(s_n, s_h * sh, s_w * sw, s_h, s_w, s_c), writeable=False)
    return windows.reshape(n * ho * wo, kh * kw * c), ho, wo


class Patches:
    """An input lowered for one convolution geometry: its receptive fields as the rows of
    one (N*Ho*Wo, kH*kW*C) matrix (_im2col). A convolution's forward and its weight
    gradient both multiply by this matrix, so a layer lowers its input once
    (conv2d_lower) and hands the Patches to both; every function that takes a convolution
    input x takes Patches as well."""

    def __init__(self, x, kernel, stride, padding):
        self.shape, self.geometry = x.shape, (kernel, stride, padding)
        self.rows, self.ho, self.wo = _im2col(x, kernel, stride, padding)


def conv2d_lower(x, kernel, stride=1, padding=0):
    """x as Patches for a kernel of size ``kernel`` (the backends' hook: see ops.Conv2d)."""
    return Patches(x, pair(kernel), pair(stride), pair(padding))


def _patches(x, kernel, stride, padding):
    """(rows, Ho, Wo) of x's im2col matrix, built now or taken from Patches made before."""
    if not isinstance(x, Patches):
        return _im2col(x, kernel, stride, padding)
    if x.geometry != (kernel, stride, padding):
        raise ValueError(f"Patches lowered for (kernel, stride, padding) {x.geometry}, "
                         f"used with {(kernel, stride, padding)}")
    return x.rows, x.ho, x.wo


def _col2im(cols, x_shape, kernel, stride, padding):
    """Adjoint of _im2col: add every row back onto the pixels it was read from (NCHW out).

    Tap (i, j) of output pixel (p, q) lands on padded pixel (s*p + i, s*q + j). Writing
    i = s*di + a splits the padded rows into s phases a, and inside phase a into blocks
    di + p: so the s*s taps (a, b) of one block offset (di, dj) land on s*s different
    phases at the same block positions, and one add moves all of them. That is
    ceil(kH/s)*ceil(kW/s) adds of whole (a, b, c) runs instead of kH*kW adds of C-long
    runs (4 instead of 16 for DCGAN's 4x4 stride-2 layers; C is 3 at the image). The
    first block is assigned, not added, and only what it leaves uncovered is zeroed: one
    pass over the image fewer than zeros-then-add.
    """
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = conv2d_output_size(h, kh, sh, ph), conv2d_output_size(w, kw, sw, pw)
    taps = cols.reshape(n, ho, wo, kh, kw, c)
    mh, mw = -(-kh // sh), -(-kw // sw)                    # block offsets per axis
    bh = max(ho + mh - 1, -(-(h + 2 * ph) // sh))          # blocks that cover the padded image
    bw = max(wo + mw - 1, -(-(w + 2 * pw) // sw))
    padded = np.empty((n, bh, sh, bw, sw, c), dtype=cols.dtype)
    ah, aw = min(sh, kh), min(sw, kw)                      # phases block (0, 0) reaches
    padded[:, ho:] = 0
    padded[:, :ho, ah:] = 0
    padded[:, :ho, :ah, wo:] = 0
    padded[:, :ho, :ah, :wo, aw:] = 0
    for di in range(mh):
        rows = slice(sh * di, min(sh * di + sh, kh))
        for dj in range(mw):
            cols_ = slice(sw * dj, min(sw * dj + sw, kw))
            block = taps[:, :, :, rows, cols_, :].transpose(0, 1, 3, 2, 4, 5)
            onto = padded[:, di:di + ho, :block.shape[2], dj:dj + wo, :block.shape[4], :]
            if di == dj == 0:
                onto[...] = block
            else:
                onto += block
    padded = padded.reshape(n, bh * sh, bw * sw, c)
    return np.ascontiguousarray(padded[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2))


def _weight_rows(w):
    """(C_out, C_in, kH, kW) -> (C_out, kH*kW*C_in), matching the (i, j, c) order of _im2col."""
    cout = w.shape[0]
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(cout, -1)


def _channel_rows(t):
    """(N, C, H, W) -> contiguous (C, N*H*W): the pixels of a channel as one row, a copy of
    whole H*W planes. The backward matrix multiplies read it transposed where they need
    pixel-major rows: BLAS transposes for free, a transposing copy would not be."""
    n, c, h, w = t.shape
    return np.ascontiguousarray(t.transpose(1, 0, 2, 3)).reshape(c, n * h * w)


def _rows_to_nchw(rows, n, ho, wo):
    """(N*Ho*Wo, C) -> contiguous (N, C, Ho, Wo)."""
    return np.ascontiguousarray(rows.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2))


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """y[n,o,p,q] = b[o] + sum_{c,i,j} w[o,c,i,j] * x[n, c, p*s+i-pad, q*s+j-pad].

    Pixel-major (N*Ho*Wo, C_out) output and a transposing copy to NCHW: measured faster
    than the channel-major product W @ cols.T, which BLAS runs ~20% slower here."""
    kh, kw = w.shape[2:]
    cols, ho, wo = _patches(x, (kh, kw), pair(stride), pair(padding))
    rows = cols @ _weight_rows(w).T
    if b is not None:
        rows += b
    return _rows_to_nchw(rows, x.shape[0], ho, wo)


def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0):
    """dL/dx of conv2d: dy (N, C_out, Ho, Wo), w (C_out, C_in, kH, kW) -> (N, C_in, H, W)."""
    cols = _channel_rows(dy).T @ _weight_rows(w)       # (N*Ho*Wo, kH*kW*C_in)
    return _col2im(cols, tuple(x_shape), w.shape[2:], pair(stride), pair(padding))


def conv2d_backward_weight(x, dy, w_shape, stride=1, padding=0):
    """dL/dw of conv2d: sum over n, p, q of dy[n,o,p,q] * x[n, c, p*s+i-pad, q*s+j-pad]."""
    cout, cin, kh, kw = w_shape
    cols, _, _ = _patches(x, (kh, kw), pair(stride), pair(padding))
    dw = _channel_rows(dy) @ cols
    return np.ascontiguousarray(dw.reshape(cout, kh, kw, cin).transpose(0, 3, 1, 2))


def bias_backward(dy):
    """dL/db of a per-channel bias: dy summed over every axis but the channel axis 1."""
    per_sample = dy.sum(axis=0)          # batch first, as _per_channel_sum
    return per_sample.reshape(per_sample.shape[0], -1).sum(axis=1)


def add_channel_bias(y, b):
    """y + b broadcast over channels (axis 1), as a new array."""
    return y + b.reshape((1, -1) + (1,) * (y.ndim - 2))


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution = conv2d's backward-data with the same weight.

    x (N, C_in, H, W), w (C_in, C_out, kH, kW) -> (N, C_out, H', W') with
    H' = (H - 1)*stride - 2*padding + kH + output_padding.
    """
    cin, cout, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
    out_shape = (x.shape[0], cout,
                 conv_transpose2d_output_size(x.shape[2], kh, sh, ph, oph),
                 conv_transpose2d_output_size(x.shape[3], kw, sw, pw, opw))
    y = conv2d_backward_data(x, w, out_shape, (sh, sw), (ph, pw))
    return y if b is None else add_channel_bias(y, b)


def conv_transpose2d_backward_data(dy, w, stride=1, padding=0):
    """dL/dx of conv_transpose2d = conv2d forward of dy with the same weight."""
    return conv2d_forward(dy, w, None, stride, padding)


def conv_transpose2d_backward_weight(x, dy, w_shape, stride=1, padding=0):
    """dL/dw of conv_transpose2d: conv2d's weight gradient with input and output swapped."""
    return conv2d_backward_weight(dy, x, w_shape, stride, padding)


# ---------------------------------------------------------------------------- linear
def linear_forward(x, w, b=None):
    """y = x @ w.T + b; x (N, in), w (out, in)."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward_data(dy, w):
    return dy @ w


def linear_backward_weight(x, dy):
    return dy.T @ x


# ------------------------------------------------------------------------- batchnorm
def _channel_view(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _per_channel_sum(a, b=None):
    """Sum over every axis but 1 of a (or of a*b, without materialising the product)."""
    n, c = a.shape[:2]
    a3 = a.reshape(n, c, -1)
    if b is None:   # batch first: adding whole (C, H*W) planes is several times faster
        return a3.sum(axis=0).sum(axis=1)
    return np.einsum("ncs,ncs->c", a3, b.reshape(n, c, -1))


def _normalise(centred, var, gamma, beta, eps, out=None):
    """gamma*(x - mean)/sqrt(var + eps) + beta per channel, from centred = x - mean (into out,
    which may be centred itself). Centring first: the algebraically equal
    x*scale + (beta - mean*scale) cancels catastrophically when |mean| >> std."""
    scale = _channel_view((gamma / np.sqrt(var + eps)).astype(centred.dtype), centred.ndim)
    z = np.multiply(centred, scale, out=out)
    z += _channel_view(beta.astype(centred.dtype), centred.ndim)
    return z


def _activate(z, slope):
    """The activation fused after batchnorm, in place: z where z > 0, slope*z elsewhere.
    slope 1 is no activation, 0 is ReLU, 0.2 is LeakyReLU(0.2)."""
    if slope == 0:
        np.maximum(z, 0, out=z)
    elif slope != 1:      # for 0 < slope < 1 the same bits as z * (1 or slope), in two passes
        np.maximum(z, z * z.dtype.type(slope), out=z)
    return z


def batchnorm2d_forward_train(x, gamma, beta, eps=1e-5, slope=1.0, running_mean=None, running_var=None,
                              momentum=0.1):
    """Normalise with the batch's statistics, then the activation of the given negative slope
    (1: none). Returns y and the per-channel mean and biased var; given the running buffers,
    also folds the statistics into them (batchnorm2d_update_running, in place).

    The variance is the mean of squared deviations from the mean (two passes): the one-pass
    E[x^2] - E[x]^2 loses every digit when |mean| >> std.
    """
    m = x.size // x.shape[1]
    mean = _per_channel_sum(x) / m
    centred = x - _channel_view(mean, x.ndim)
    var = _per_channel_sum(centred, centred) / m
    if running_mean is not None:
        batchnorm2d_update_running(running_mean, running_var, mean, var, m, momentum)
    return _activate(_normalise(centred, var, gamma, beta, eps, out=centred), slope), mean, var


def batchnorm2d_forward_eval(x, gamma, beta, running_mean, running_var, eps=1e-5, slope=1.0):
    """Normalise with the running statistics (an affine map per channel), then the activation."""
    centred = x - _channel_view(running_mean.astype(x.dtype), x.ndim)
    return _activate(_normalise(centred, running_var, gamma, beta, eps, out=centred), slope)


def batchnorm2d_update_running(running_mean, running_var, mean, var, count, momentum=0.1):
    """In place, as PyTorch: r = (1 - momentum)*r + momentum*stat, var made unbiased (n/(n-1))."""
    unbiased = var * (count / max(count - 1, 1))
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * unbiased


def batchnorm2d_backward(dy, x, gamma, mean, var, eps=1e-5, batch_stats=True, beta=None, slope=1.0):
    """Gradients of batchnorm (followed by the activation of negative slope ``slope``) for x,
    gamma and beta.

    The activation's gradient is 1 where the normalised value z is positive and slope
    elsewhere; z is recomputed from x (which batchnorm's backward reads anyway) with the
    forward's formula, so the fused layer stores nothing more than batchnorm alone. That
    needs beta whenever slope != 1. Then, with batch statistics the mean and var depend on x,
    which adds the two centring terms:
        dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
    With running statistics (eval mode) they are constants and dx = gamma*invstd*dy.
    Written per channel as dx = a*dy + b*(x - mean) + c, so each pass touches whole arrays once.
    """
    m = x.size // x.shape[1]
    invstd = 1 / np.sqrt(var + eps)
    centred = x - _channel_view(mean.astype(x.dtype), x.ndim)
    if slope != 1:
        if beta is None:
            raise ValueError("batchnorm2d_backward with a fused activation (slope != 1) needs beta")
        dy = dy * _leaky_slopes(_normalise(centred, var, gamma, beta, eps), slope)
    dbeta = _per_channel_sum(dy)
    dgamma = _per_channel_sum(dy, centred) * invstd
    a = (gamma * invstd).astype(x.dtype)
    dx = dy * _channel_view(a, x.ndim)
    if batch_stats:
        centred *= _channel_view((-a * invstd * dgamma / m).astype(x.dtype), x.ndim)
        dx += centred
        dx += _channel_view((-a * dbeta / m).astype(x.dtype), x.ndim)
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------- activations
def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, x):
    return dy * (x > 0)


def _leaky_slopes(x, slope):
    """1 where x > 0, slope elsewhere. Arithmetic on the mask, not np.where: a data-dependent
    select branches on every element and is ~15x slower on random signs."""
    t = x.dtype.type
    m = (x > 0).astype(x.dtype)
    m *= t(1 - slope)
    m += t(slope)
    return m


def leaky_relu_forward(x, slope=0.2):
    return _activate(x.copy(), slope) if 0 <= slope <= 1 else x * _leaky_slopes(x, slope)


def leaky_relu_backward(dy, x, slope=0.2):
    return dy * _leaky_slopes(x, slope)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dy, y):
    """Written with the output: d tanh = 1 - tanh^2."""
    return dy * (1 - y * y)


def sigmoid_forward(x):
    # exp of a non-positive number only: no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


# ------------------------------------------------------------------------------ loss
def bce_with_logits_forward(z, target):
    """mean_i [ max(z,0) - z*t + log(1 + exp(-|z|)) ] = mean BCE(sigmoid(z), t), never overflows.

    target: a scalar, or an array with one value per logit (shaped like z, or flat)."""
    z = z.reshape(-1)
    target = np.broadcast_to(np.asarray(target, dtype=z.dtype).reshape(-1), z.shape)
    per_item = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
    return np.asarray(per_item.mean(), dtype=z.dtype)


def bce_with_logits_backward(z, target, dloss=1.0):
    """d mean BCE / dz = (sigmoid(z) - t) / N, times the upstream gradient."""
    shape = z.shape
    z = z.reshape(-1)
    target = np.broadcast_to(np.asarray(target, dtype=z.dtype).reshape(-1), z.shape)
    scale = z.dtype.type(np.asarray(dloss).item() / z.size)
    return ((sigmoid_forward(z) - target) * scale).reshape(shape)


def softmax_cross_entropy_forward(logits, labels):
    """mean_i [ logsumexp(z_i) - z_i[label_i] ] for logits (N, K) and integer labels (N,)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    picked = shifted[np.arange(len(labels)), labels]
    return np.asarray((log_norm - picked).mean(), dtype=logits.dtype)


def softmax_cross_entropy_backward(logits, labels, dloss=1.0):
    """(softmax(z) - onehot(label)) / N, times the upstream gradient."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p * logits.dtype.type(np.asarray(dloss).item() / len(labels))


# ---------------------------------------------------------------- adaptive max-pool
def adaptive_pool_bounds(size, out):
    """PyTorch's adaptive bins along one axis: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_max_pool2d_forward(x, output_size):
    """Max over each adaptive bin. Returns y (N, C, oh, ow) and the flat argmax (h*W + w) per output."""
    n, c, h, w = x.shape
    oh, ow = pair(output_size)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    for a, (h0, h1) in enumerate(adaptive_pool_bounds(h, oh)):
        for b, (w0, w1) in enumerate(adaptive_pool_bounds(w, ow)):
            cell = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            k = cell.argmax(axis=2)  # first maximum wins, as in PyTorch
            y[:, :, a, b] = np.take_along_axis(cell, k[..., None], axis=2)[..., 0]
            argmax[:, :, a, b] = (h0 + k // (w1 - w0)) * w + (w0 + k % (w1 - w0))
    return y, argmax


def adaptive_max_pool2d_backward(dy, argmax, x_shape):
    """Route each output gradient to the input pixel that won; bins may overlap, so add."""
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dtype=dy.dtype)
    rows = np.repeat(np.arange(n * c), argmax[0, 0].size)
    np.add.at(dx, (rows, argmax.reshape(-1)), dy.reshape(-1))
    return dx.reshape(x_shape)


# ------------------------------------------------------------------------------ adam
def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr=2e-4, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0):
    """One Adam update in place (PyTorch's torch.optim.Adam, L2 weight decay added to the grad).

    step is the 1-based count of this update, for the bias corrections.
        g = grad + wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
        p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
    """
    t = param.dtype.type
    g = grad + t(weight_decay) * param if weight_decay else grad
    exp_avg *= t(beta1)
    exp_avg += t(1 - beta1) * g
    exp_avg_sq *= t(beta2)
    exp_avg_sq += t(1 - beta2) * (g * g)
    bias1 = 1 - beta1 ** step
    bias2 = 1 - beta2 ** step
    denom = np.sqrt(exp_avg_sq) / t(np.sqrt(bias2)) + t(eps)
    param -= t(lr / bias1) * exp_avg / denom


# ---------------------------------------------------- dropout and noise (counter-based)
# Random numbers as a pure function of (key, element index): hash32(key, i) below. A
# kernel computes the same function in each thread, so nothing random is stored or copied
# from the host, the backward pass recomputes the forward's mask instead of keeping it,
# and the same key gives the same numbers on the NumPy backend, the simulator and a GPU.
_MASK32 = np.uint64(0xFFFFFFFF)


def lowbias32(x):
    """A bijective mix of 32-bit integers (held in uint64 so no product overflows): xor-shift,
    multiply, three times over. The shifts and odd multipliers are the "lowbias32" found by
    Chris Wellons' hash search, chosen for low bias of every output bit to every input bit."""
    x = np.asarray(x, dtype=np.uint64) & _MASK32
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & _MASK32
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & _MASK32
    return x ^ (x >> np.uint64(16))


def hash32(key, index):
    """32 random-looking bits for element ``index`` under ``key`` (both < 2**32): different
    indices never collide under one key, since both mixes are bijections."""
    return lowbias32(lowbias32(index) ^ (np.uint64(key) & _MASK32))


def counter_uniform(key, index):
    """Uniform float32 in [0, 1) on a grid of 2**-24 (the top 24 bits of the hash: every
    value is exact in float32)."""
    return (hash32(key, index) >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)


def dropout_mask_scale(shape, p, key, dtype=np.float32):
    """1/(1-p) where an element is kept (its uniform number is >= p), 0 where dropped."""
    u = counter_uniform(key, np.arange(int(np.prod(shape)), dtype=np.uint64)).reshape(shape)
    # the scale is computed in float64 and rounded once, as the kernels' launchers pass it
    return np.where(u >= np.float32(p), dtype(1.0 / (1.0 - float(p))), dtype(0.0)).astype(dtype)


def dropout_forward(x, p, key):
    """Inverted dropout: y = x / (1 - p) where kept, 0 where dropped, so E[y] = x and the
    network needs no rescaling at evaluation time (where dropout is the identity)."""
    return x * dropout_mask_scale(x.shape, p, key, x.dtype.type)


def dropout_backward(dy, p, key):
    """dx = dy / (1 - p) where the forward (same key) kept the element, else 0."""
    return dy * dropout_mask_scale(dy.shape, p, key, dy.dtype.type)


def gaussian_noise(x, sigma, key):
    """The denoising corruption: y = x + sigma * z, z standard normal by Box-Muller from the
    uniform numbers of indices 2i and 2i + 1 (u1 shifted into (0, 1] so its log is finite).
    Computed in float32, as the kernel does, whatever x's dtype."""
    n = x.size
    i = np.arange(n, dtype=np.uint64)
    u1 = counter_uniform(key, 2 * i) + np.float32(2.0 ** -24)
    u2 = counter_uniform(key, 2 * i + np.uint64(1))
    z = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u2)
    return (x + (np.float32(sigma) * z).reshape(x.shape).astype(x.dtype)).astype(x.dtype)


def squared_error_forward(y, target):
    """mean (y - t)^2 over every element: the denoising autoencoder's reconstruction loss."""
    d = y - target
    return np.asarray(np.mean(d * d), dtype=y.dtype)


def squared_error_backward(y, target, dloss=1.0):
    """d mean (y - t)^2 / dy = 2 (y - t) / n, times the upstream gradient."""
    scale = y.dtype.type(2.0 * np.asarray(dloss).item() / y.size)
    return scale * (y - target)
