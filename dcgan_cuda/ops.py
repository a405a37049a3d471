"""The op table: every differentiable op of the graph, forward and backward.

Each op is a Function whose forward and backward call methods of ``ctx.backend`` (see
backend.OPS); this file is the only place that knows how an op's gradient is assembled
from backend primitives, and it never asks which backend it is talking to.

The public functions at the bottom validate their arguments at the Python boundary, so a
wrong shape or dtype ends in a message that names the op, before any kernel runs.
"""
from __future__ import annotations

import numpy as np

from .autograd import Function, Tensor
from .reference import conv_transpose2d_output_size, pair


class OpError(ValueError):
    """An op was called with arguments it cannot accept."""


# ------------------------------------------------------------------------ convolution
class Conv2d(Function):
    """The input is lowered once (backend.conv2d_lower: the NumPy backend's im2col matrix,
    the kernels' x itself) and that is what the forward and the weight gradient read."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        x_lowered = ctx.backend.conv2d_lower(x, w.shape[2:], stride, padding)
        ctx.save_for_backward(x_lowered if ctx.needs_input_grad[1] else None, w)
        ctx.x_shape, ctx.stride, ctx.padding, ctx.has_bias = x.shape, stride, padding, b is not None
        return ctx.backend.conv2d_forward(x_lowered, w, b, stride, padding)

    @staticmethod
    def backward(ctx, dy):
        x_lowered, w = ctx.saved
        B, need = ctx.backend, ctx.needs_input_grad
        dx = B.conv2d_backward_data(dy, w, ctx.x_shape, ctx.stride, ctx.padding) if need[0] else None
        dw = B.conv2d_backward_weight(x_lowered, dy, w.shape, ctx.stride, ctx.padding) if need[1] else None
        db = B.bias_backward(dy) if ctx.has_bias and need[2] else None
        return dx, dw, db


class ConvTranspose2d(Function):
    """The adjoint of Conv2d: its forward is conv2d's backward-data and vice versa.

    With w of shape (C_in, C_out, k, k), read as a Conv2d weight mapping C_out -> C_in
    channels, y = conv2d_backward_data(x, w) and dx = conv2d_forward(dy, w); the weight
    gradient is conv2d's, with the roles of input (dy) and output gradient (x) swapped. So
    here dy is the convolution input that both gradients read, lowered once.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, output_padding):
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, b is not None
        (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
        out_shape = (x.shape[0], w.shape[1],
                     conv_transpose2d_output_size(x.shape[2], w.shape[2], sh, ph, oph),
                     conv_transpose2d_output_size(x.shape[3], w.shape[3], sw, pw, opw))
        y = ctx.backend.conv2d_backward_data(x, w, out_shape, stride, padding)
        return y if b is None else ctx.backend.add_channel_bias(y, b)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved
        B, need = ctx.backend, ctx.needs_input_grad
        dy_lowered = B.conv2d_lower(dy, w.shape[2:], ctx.stride, ctx.padding) if need[0] or need[1] else None
        dx = B.conv2d_forward(dy_lowered, w, None, ctx.stride, ctx.padding) if need[0] else None
        dw = B.conv2d_backward_weight(dy_lowered, x, w.shape, ctx.stride, ctx.padding) if need[1] else None
        db = B.bias_backward(dy) if ctx.has_bias and need[2] else None
        return dx, dw, db


class Linear(Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return ctx.backend.linear_forward(x, w, b)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved
        B, need = ctx.backend, ctx.needs_input_grad
        dx = B.linear_backward_data(dy, w) if need[0] else None
        dw = B.linear_backward_weight(x, dy) if need[1] else None
        db = B.bias_backward(dy) if ctx.has_bias and need[2] else None
        return dx, dw, db


# -------------------------------------------------------------------------- batchnorm
class BatchNorm2d(Function):
    """Batch normalisation over (N, H, W) per channel, optionally followed by the activation
    max(z, slope*z) in the same kernels (slope 1: none, 0: ReLU, 0.2: LeakyReLU(0.2)).

    In training mode it normalises with the batch's statistics and, as a side effect like
    PyTorch's, folds them into the running buffers; in eval mode it uses the buffers.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps, slope):
        B = ctx.backend
        if training:  # the running buffers, if any, are updated by the same kernels
            y, mean, var = B.batchnorm2d_forward_train(x, gamma, beta, eps, slope=slope,
                                                       running_mean=running_mean,
                                                       running_var=running_var, momentum=momentum)
        else:
            y = B.batchnorm2d_forward_eval(x, gamma, beta, running_mean, running_var, eps, slope=slope)
            # Buffers change at the next training step; backward needs today's values.
            mean, var = B.copy(running_mean), B.copy(running_var)
        # The activation's backward recomputes the normalised value from x, so it needs beta
        # (an array the optimiser updates in place after backward, never before).
        ctx.save_for_backward(x, gamma, beta, mean, var)
        ctx.eps, ctx.training, ctx.slope = eps, training, slope
        return y

    @staticmethod
    def backward(ctx, dy):
        x, gamma, beta, mean, var = ctx.saved
        dx, dgamma, dbeta = ctx.backend.batchnorm2d_backward(dy, x, gamma, mean, var, ctx.eps,
                                                             ctx.training, beta=beta, slope=ctx.slope)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dgamma if need[1] else None, dbeta if need[2] else None)


# ------------------------------------------------------------------------ activations
class ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.backend.relu_forward(x)

    @staticmethod
    def backward(ctx, dy):
        return ctx.backend.relu_backward(dy, ctx.saved[0])


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return ctx.backend.leaky_relu_forward(x, slope)

    @staticmethod
    def backward(ctx, dy):
        return ctx.backend.leaky_relu_backward(dy, ctx.saved[0], ctx.slope), None


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.tanh_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return ctx.backend.tanh_backward(dy, ctx.saved[0])


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.sigmoid_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return ctx.backend.sigmoid_backward(dy, ctx.saved[0])


# ------------------------------------------------------------------- shape and pooling
class Reshape(Function):
    """A view of the same contiguous data with another shape; no arithmetic."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, dy):
        return dy.reshape(ctx.in_shape), None


class AdaptiveMaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        y, argmax = ctx.backend.adaptive_max_pool2d_forward(x, output_size)
        ctx.save_for_backward(argmax)
        ctx.in_shape = x.shape
        return y

    @staticmethod
    def backward(ctx, dy):
        return ctx.backend.adaptive_max_pool2d_backward(dy, ctx.saved[0], ctx.in_shape), None


# ------------------------------------------------------------------------------ losses
class BCEWithLogits(Function):
    @staticmethod
    def forward(ctx, z, target):
        ctx.save_for_backward(z)
        ctx.target = target
        return ctx.backend.bce_with_logits_forward(z, target)

    @staticmethod
    def backward(ctx, dloss):
        return ctx.backend.bce_with_logits_backward(ctx.saved[0], ctx.target, dloss), None


class SoftmaxCrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, labels):
        ctx.save_for_backward(logits, labels)
        return ctx.backend.softmax_cross_entropy_forward(logits, labels)

    @staticmethod
    def backward(ctx, dloss):
        logits, labels = ctx.saved
        return ctx.backend.softmax_cross_entropy_backward(logits, labels, dloss), None


# ======================================================== the functional interface
def _check_tensor(op, name, t, ndim=None):
    if not isinstance(t, Tensor):
        raise OpError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    allowed = (np.float32, np.float64) if t.backend.name == "numpy" else (np.float32,)
    if t.dtype not in allowed:
        raise OpError(f"{op}: {name} must be float32 (float64 only on the numpy backend), "
                      f"got {t.dtype} on the {t.backend.name} backend")
    if not t.data.flags.c_contiguous:
        raise OpError(f"{op}: {name} must be C-contiguous (the kernels index NCHW memory directly)")
    if ndim is not None and t.ndim != ndim:
        raise OpError(f"{op}: {name} must be {ndim}-D, got shape {t.shape}")


def _check_same_dtype(op, first, *others):
    """Every Tensor argument of an op in one dtype: mixing float32 and float64 would leave
    the result's precision to NumPy's promotion rules (or a kernel's float32), unannounced.
    others: (name, tensor or None) pairs; first: (name, tensor)."""
    name, t = first
    for other_name, other in others:
        if other is not None and other.dtype != t.dtype:
            raise OpError(f"{op}: {other_name} is {other.dtype} but {name} is {t.dtype}; give every "
                          f"tensor one dtype (e.g. a module's .float() or .double(), an array's "
                          f".astype(np.{t.dtype}))")


def _check_parameter(op, name, t, shape):
    if t is None:
        return
    _check_tensor(op, name, t)
    if t.shape != tuple(shape):
        raise OpError(f"{op}: {name} must have shape {tuple(shape)}, got {t.shape}")


def _check_window(op, x, w_hw, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = w_hw, pair(stride), pair(padding)
    if min(sh, sw) < 1 or min(ph, pw) < 0:
        raise OpError(f"{op}: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
        raise OpError(f"{op}: the {kh}x{kw} kernel does not fit the padded "
                      f"{x.shape[2] + 2 * ph}x{x.shape[3] + 2 * pw} input (input shape {x.shape})")


def conv2d(x, weight, bias=None, stride=1, padding=0):
    op = "conv2d"
    _check_tensor(op, "input", x, 4)
    _check_tensor(op, "weight", weight, 4)
    if x.shape[1] != weight.shape[1]:
        raise OpError(f"{op}: input has {x.shape[1]} channels but the weight {weight.shape} "
                      f"expects {weight.shape[1]}")
    _check_parameter(op, "bias", bias, (weight.shape[0],))
    _check_same_dtype(op, ("input", x), ("weight", weight), ("bias", bias))
    _check_window(op, x, weight.shape[2:], stride, padding)
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    op = "conv_transpose2d"
    _check_tensor(op, "input", x, 4)
    _check_tensor(op, "weight", weight, 4)
    if x.shape[1] != weight.shape[0]:
        raise OpError(f"{op}: input has {x.shape[1]} channels but the weight {weight.shape} "
                      f"expects {weight.shape[0]}")
    _check_parameter(op, "bias", bias, (weight.shape[1],))
    _check_same_dtype(op, ("input", x), ("weight", weight), ("bias", bias))
    (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
    if min(sh, sw) < 1 or min(ph, pw) < 0 or not (0 <= oph < sh and 0 <= opw < sw):
        raise OpError(f"{op}: need stride >= 1, padding >= 0 and 0 <= output_padding < stride; "
                      f"got stride={stride}, padding={padding}, output_padding={output_padding}")
    h = conv_transpose2d_output_size(x.shape[2], weight.shape[2], sh, ph, oph)
    w = conv_transpose2d_output_size(x.shape[3], weight.shape[3], sw, pw, opw)
    if h < 1 or w < 1:
        raise OpError(f"{op}: the output would be {h}x{w} for input shape {x.shape}")
    return ConvTranspose2d.apply(x, weight, bias, stride=stride, padding=padding,
                                 output_padding=output_padding)


def linear(x, weight, bias=None):
    op = "linear"
    _check_tensor(op, "input", x, 2)
    _check_tensor(op, "weight", weight, 2)
    if x.shape[1] != weight.shape[1]:
        raise OpError(f"{op}: input has {x.shape[1]} features but the weight {weight.shape} "
                      f"expects {weight.shape[1]}")
    _check_parameter(op, "bias", bias, (weight.shape[0],))
    _check_same_dtype(op, ("input", x), ("weight", weight), ("bias", bias))
    return Linear.apply(x, weight, bias)


def batch_norm(x, weight, bias, running_mean=None, running_var=None, training=True,
               momentum=0.1, eps=1e-5, activation_slope=None):
    """Batchnorm, and with activation_slope the activation that follows it fused into the same
    kernels: 0.0 is ReLU, 0.2 is LeakyReLU(0.2); None (default) is no activation."""
    op = "batch_norm"
    _check_tensor(op, "input", x, 4)
    c = x.shape[1]
    _check_parameter(op, "weight", weight, (c,))
    _check_parameter(op, "bias", bias, (c,))
    if not training and (running_mean is None or running_var is None):
        raise OpError(f"{op}: eval mode needs running_mean and running_var")
    if (running_mean is None) != (running_var is None):
        raise OpError(f"{op}: pass both running_mean and running_var, or neither")
    _check_same_dtype(op, ("input", x), ("weight", weight), ("bias", bias))
    for name, buf in (("running_mean", running_mean), ("running_var", running_var)):
        if buf is not None and tuple(buf.shape) != (c,):
            raise OpError(f"{op}: {name} must have shape ({c},), got {tuple(buf.shape)}")
        if buf is not None and buf.dtype != x.dtype:
            raise OpError(f"{op}: {name} is {buf.dtype} but input is {x.dtype}; give every "
                          "array one dtype")
    if training and x.data.size // c < 2:
        raise OpError(f"{op}: training needs more than one value per channel, got input shape {x.shape}")
    slope = 1.0 if activation_slope is None else float(activation_slope)
    if not 0 <= slope <= 1:
        raise OpError(f"{op}: activation_slope must lie in [0, 1] (0: ReLU), got {activation_slope}")
    return BatchNorm2d.apply(x, weight, bias, running_mean=running_mean, running_var=running_var,
                             training=training, momentum=momentum, eps=eps, slope=slope)


def relu(x):
    _check_tensor("relu", "input", x)
    return ReLU.apply(x)


def leaky_relu(x, negative_slope=0.2):
    _check_tensor("leaky_relu", "input", x)
    return LeakyReLU.apply(x, slope=float(negative_slope))


def tanh(x):
    _check_tensor("tanh", "input", x)
    return Tanh.apply(x)


def sigmoid(x):
    _check_tensor("sigmoid", "input", x)
    return Sigmoid.apply(x)


def reshape(x, shape):
    _check_tensor("reshape", "input", x)
    shape = tuple(int(s) for s in shape)
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape = tuple(x.data.size // known if s == -1 else s for s in shape)
    if int(np.prod(shape)) != x.data.size:
        raise OpError(f"reshape: cannot view shape {x.shape} as {shape}")
    return Reshape.apply(x, shape=shape)


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    return reshape(x, (x.shape[0], -1))


def adaptive_max_pool2d(x, output_size):
    _check_tensor("adaptive_max_pool2d", "input", x, 4)
    oh, ow = pair(output_size)
    if not (1 <= oh and 1 <= ow):
        raise OpError(f"adaptive_max_pool2d: output size must be positive, got {output_size}")
    return AdaptiveMaxPool2d.apply(x, output_size=(oh, ow))


def bce_with_logits(logits, target):
    """Mean binary cross-entropy of sigmoid(logits) against ``target``, values in [0, 1]:
    a number (one target for every logit, as DCGAN's real/fake labels) or, as
    torch.nn.functional.binary_cross_entropy_with_logits takes it, a Tensor of the logits'
    shape and dtype. The target is a constant: no gradient flows into it. Per-logit
    targets run on the numpy backend; the CUDA loss kernel takes one number."""
    op = "bce_with_logits"
    _check_tensor(op, "logits", logits)
    if isinstance(target, Tensor):
        _check_tensor(op, "target", target)
        if target.shape != logits.shape:
            raise OpError(f"{op}: target must have the logits' shape {logits.shape}, got {target.shape}")
        _check_same_dtype(op, ("logits", logits), ("target", target))
        if target.requires_grad:
            raise OpError(f"{op}: the target is a constant here and gets no gradient; pass "
                          "target.detach()")
        if logits.backend.name != "numpy":
            raise OpError(f"{op}: a target per logit runs on the numpy backend only (the "
                          f"{logits.backend.name} backend's kernel takes one number for all logits)")
        values = target.data
        if not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise OpError(f"{op}: target values must lie in [0, 1], got values from "
                          f"{values.min()} to {values.max()}")
        return BCEWithLogits.apply(logits, target)
    if isinstance(target, np.ndarray) and target.ndim > 0:
        raise OpError(f"{op}: target is a {target.shape} array: pass a number, or a Tensor of the "
                      f"logits' shape {logits.shape}")
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise OpError(f"{op}: target must be a number or a Tensor, got {type(target).__name__}") from None
    if not 0.0 <= value <= 1.0:
        raise OpError(f"{op}: target must lie in [0, 1], got {target}")
    return BCEWithLogits.apply(logits, value)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy; labels is a Tensor of int32 class indices on the same backend."""
    _check_tensor("cross_entropy", "logits", logits, 2)
    if not isinstance(labels, Tensor) or labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
        raise OpError(f"cross_entropy: labels must be an integer Tensor of shape ({logits.shape[0]},)")
    return SoftmaxCrossEntropy.apply(logits, labels)
