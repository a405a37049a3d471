"""The kernel backend: every op of backend.OPS computed by our Numba CUDA kernels.

On a GPU the arrays are CuPy arrays and CuPy does nothing but allocate and copy; under
Numba's simulator the arrays are NumPy arrays and the same kernels run on the CPU. This
file allocates outputs and calls the launchers of kernels/ (installed as
dcgan_cuda.kernels); it contains no arithmetic on array contents. Host-side scalars (the
Adam bias corrections, a batchnorm element count) are computed here in Python.

Which numbered version of each kernel family runs is chosen in ``versions`` (family ->
version number), so a benchmark can train with any combination.
"""
from __future__ import annotations

import numpy as np

from .reference import conv2d_output_size, pair


class KernelBackend:
    is_gpu = True

    def __init__(self, xp, name, versions=None):
        from .kernels import (adam, batchnorm, conv2d, dropout, elementwise, jit, linear, loss,
                              pool, reduction)
        self.xp, self.name = xp, name
        self.k = dict(adam=adam, batchnorm=batchnorm, conv2d=conv2d, dropout=dropout,
                      elementwise=elementwise, linear=linear, loss=loss, pool=pool,
                      reduction=reduction)
        self.versions = {family: module.DEFAULT_VERSION for family, module in self.k.items()}
        self.versions.update(versions or {})
        self.is_gpu = name == "cuda"
        self._host_copy = jit.record_copy  # simulator: np.copyto, unless a graph is being recorded

    @staticmethod
    def _trainable(module):
        """A family's versions that may train: not those whose results change from run to
        run (reduction's atomic version), which would break bitwise reproducibility."""
        return sorted(v for v in module.VERSIONS if v not in getattr(module, "NONDETERMINISTIC", ()))

    def choose_versions(self, specs):
        """Set the kernel versions from items 'default' (each family's DEFAULT_VERSION),
        'newest' (each family's highest deterministic one) and FAMILY=N, applied in order;
        returns the choice. Raises ValueError, naming every family and the versions it
        can train with, for anything else (a non-deterministic version included)."""
        chosen = dict(self.versions)
        for spec in specs:
            if spec in ("default", "newest"):
                for family, module in self.k.items():
                    chosen[family] = module.DEFAULT_VERSION if spec == "default" else self._trainable(module)[-1]
                continue
            family, sep, number = spec.partition("=")
            module = self.k.get(family)
            if not sep or module is None or not number.isdigit() or int(number) not in self._trainable(module):
                known = ", ".join(f"{f} {self._trainable(m)}" for f, m in sorted(self.k.items()))
                why = (" (not deterministic: never used for training)"
                       if module is not None and number.isdigit() and int(number) in module.VERSIONS else "")
                raise ValueError(f"cannot use kernel version {spec!r}{why}; families and their versions: {known}")
            chosen[family] = int(number)
        self.versions = chosen
        return dict(chosen)

    @classmethod
    def gpu(cls, versions=None):
        import cupy
        return cls(cupy, "cuda", versions)

    @classmethod
    def simulator(cls, versions=None):
        return cls(np, "sim", versions)

    def _v(self, family):
        return self.versions[family]

    # -- array management: allocation and copies only ------------------------------
    def asarray(self, a, dtype=np.float32):
        host = np.asarray(a, dtype=dtype, order="C")
        return self.xp.array(host) if self.is_gpu else host.copy()

    def to_numpy(self, a):
        return a.get() if self.is_gpu else np.array(a, copy=True)

    def empty(self, shape, dtype=np.float32):
        if not self.is_gpu and dtype == np.float32:
            # Under the simulator, fresh memory is NaN: a kernel that forgets to write an
            # element shows up in every comparison instead of passing by luck.
            return np.full(shape, np.nan, dtype=dtype)
        return self.xp.empty(shape, dtype=dtype)

    def full(self, shape, value, dtype=np.float32):
        out = self.empty(shape, dtype)
        if out.size:
            self.k["elementwise"].fill(out, value, self._v("elementwise"))
        return out

    def zeros(self, shape, dtype=np.float32):
        return self.full(shape, 0.0, dtype)

    def copy(self, a):
        out = self.empty(a.shape, a.dtype)
        self.copy_into(out, a)
        return out

    def copy_into(self, dst, src):
        """dst[...] = src for two C-contiguous arrays of one shape and dtype.

        On a GPU a raw device-to-device memcpy on the current stream. Not CuPy's ``copy()`` or
        ``dst[...] = src``: those may run CuPy's own copy kernel, compiled at run time with
        NVRTC, a launch that nothing here counts and a dependency the training path does not
        otherwise have.
        """
        if dst.shape != src.shape or dst.dtype != src.dtype:
            raise ValueError(f"copy_into: {src.dtype}{src.shape} into {dst.dtype}{dst.shape}")
        if not self.is_gpu:
            self._host_copy(dst, src)
            return
        if not (dst.flags.c_contiguous and src.flags.c_contiguous):
            raise ValueError("copy_into: both arrays must be C-contiguous")
        if src.nbytes:
            dst.data.copy_from_device_async(src.data, src.nbytes, self.xp.cuda.get_current_stream())

    def accumulate(self, dst, src):
        self.k["elementwise"].add_into(dst, src, self._v("elementwise"))

    def synchronize(self):
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    # -- convolution ---------------------------------------------------------------
    def conv2d_lower(self, x, kernel, stride=1, padding=0):
        """The kernels read x itself (implicit GEMM: the im2col matrix exists only as index
        arithmetic), so there is nothing to lower; compare reference.conv2d_lower."""
        return x

    def conv2d_forward(self, x, w, b=None, stride=1, padding=0):
        (sh, sw), (ph, pw) = pair(stride), pair(padding)
        n, _, h, wd = x.shape
        cout, _, kh, kw = w.shape
        y = self.empty((n, cout, conv2d_output_size(h, kh, sh, ph), conv2d_output_size(wd, kw, sw, pw)))
        self.k["conv2d"].forward(x, w, y, (sh, sw), (ph, pw), self._v("conv2d"))
        return y if b is None else self.add_channel_bias(y, b)

    def conv2d_backward_data(self, dy, w, x_shape, stride=1, padding=0):
        dx = self.empty(tuple(x_shape))
        self.k["conv2d"].backward_data(dy, w, dx, pair(stride), pair(padding), self._v("conv2d"))
        return dx

    def conv2d_backward_weight(self, x, dy, w_shape, stride=1, padding=0):
        dw = self.empty(tuple(w_shape))
        self.k["conv2d"].backward_weight(x, dy, dw, pair(stride), pair(padding), self._v("conv2d"))
        return dw

    def bias_backward(self, dy):
        out = self.empty((dy.shape[1],))
        self.k["reduction"].channel_sum(dy, out, self._v("reduction"))
        return out

    def add_channel_bias(self, y, b):
        out = self.empty(y.shape)
        self.k["elementwise"].channel_bias(y, b, out, self._v("elementwise"))
        return out

    # -- linear --------------------------------------------------------------------
    def linear_forward(self, x, w, b=None):
        y = self.empty((x.shape[0], w.shape[0]))
        self.k["linear"].forward(x, w, y, self._v("linear"))
        return y if b is None else self.add_channel_bias(y, b)

    def linear_backward_data(self, dy, w):
        dx = self.empty((dy.shape[0], w.shape[1]))
        self.k["linear"].backward_data(dy, w, dx, self._v("linear"))
        return dx

    def linear_backward_weight(self, x, dy):
        dw = self.empty((dy.shape[1], x.shape[1]))
        self.k["linear"].backward_weight(x, dy, dw, self._v("linear"))
        return dw

    # -- batchnorm -----------------------------------------------------------------
    # The activation after a batchnorm is fused into its kernels (see kernels/batchnorm/):
    # slope is its negative slope, 1 for none, 0 for ReLU, 0.2 for LeakyReLU(0.2).
    def batchnorm2d_forward_train(self, x, gamma, beta, eps=1e-5, slope=1.0, running_mean=None,
                                  running_var=None, momentum=0.1):
        c = x.shape[1]
        y, mean, var = self.empty(x.shape), self.empty((c,)), self.empty((c,))
        self.k["batchnorm"].forward_train(x, gamma, beta, y, mean, var, eps, self._v("batchnorm"),
                                          slope=slope, running_mean=running_mean,
                                          running_var=running_var, momentum=momentum)
        return y, mean, var

    def batchnorm2d_forward_eval(self, x, gamma, beta, running_mean, running_var, eps=1e-5, slope=1.0):
        y = self.empty(x.shape)
        self.k["batchnorm"].forward_eval(x, gamma, beta, running_mean, running_var, y, eps,
                                         self._v("batchnorm"), slope=slope)
        return y

    def batchnorm2d_backward(self, dy, x, gamma, mean, var, eps=1e-5, batch_stats=True, beta=None,
                             slope=1.0):
        c = x.shape[1]
        dx, dgamma, dbeta = self.empty(x.shape), self.empty((c,)), self.empty((c,))
        self.k["batchnorm"].backward(dy, x, gamma, mean, var, dx, dgamma, dbeta, eps, batch_stats,
                                     self._v("batchnorm"), beta=beta, slope=slope)
        return dx, dgamma, dbeta

    # -- activations ---------------------------------------------------------------
    def relu_forward(self, x):
        y = self.empty(x.shape)
        self.k["elementwise"].relu_forward(x, y, self._v("elementwise"))
        return y

    def relu_backward(self, dy, x):
        dx = self.empty(x.shape)
        self.k["elementwise"].relu_backward(dy, x, dx, self._v("elementwise"))
        return dx

    def leaky_relu_forward(self, x, slope=0.2):
        y = self.empty(x.shape)
        self.k["elementwise"].leaky_relu_forward(x, y, slope, self._v("elementwise"))
        return y

    def leaky_relu_backward(self, dy, x, slope=0.2):
        dx = self.empty(x.shape)
        self.k["elementwise"].leaky_relu_backward(dy, x, dx, slope, self._v("elementwise"))
        return dx

    def tanh_forward(self, x):
        y = self.empty(x.shape)
        self.k["elementwise"].tanh_forward(x, y, self._v("elementwise"))
        return y

    def tanh_backward(self, dy, y):
        dx = self.empty(y.shape)
        self.k["elementwise"].tanh_backward(dy, y, dx, self._v("elementwise"))
        return dx

    def dropout_forward(self, x, p, key):
        y = self.empty(x.shape)
        self.k["dropout"].dropout_forward(x, y, p, key, self._v("dropout"))
        return y

    def dropout_backward(self, dy, p, key):
        dx = self.empty(dy.shape)
        self.k["dropout"].dropout_backward(dy, dx, p, key, self._v("dropout"))
        return dx

    def gaussian_noise(self, x, sigma, key):
        y = self.empty(x.shape)
        self.k["dropout"].gaussian_noise(x, y, sigma, key, self._v("dropout"))
        return y

    def squared_error_forward(self, y, target):
        loss = self.empty((1,))
        self.k["dropout"].squared_error_forward(y, target, loss, self._v("dropout"))
        return loss.reshape(())

    def squared_error_backward(self, y, target, dloss=1.0):
        dy = self.empty(y.shape)
        self.k["dropout"].squared_error_backward(y, target, self._as_scalar(dloss), dy, self._v("dropout"))
        return dy

    def sigmoid_forward(self, x):
        y = self.empty(x.shape)
        self.k["elementwise"].sigmoid_forward(x, y, self._v("elementwise"))
        return y

    def sigmoid_backward(self, dy, y):
        dx = self.empty(y.shape)
        self.k["elementwise"].sigmoid_backward(dy, y, dx, self._v("elementwise"))
        return dx

    # -- losses --------------------------------------------------------------------
    # A loss is a 0-d array; kernels write it through a 1-element view, and read the
    # upstream gradient the same way, so nothing waits for the host.
    def bce_with_logits_forward(self, z, target):
        loss = self.empty((1,))
        self.k["loss"].bce_with_logits_forward(z.reshape(-1), float(target), loss, self._v("loss"))
        return loss.reshape(())

    def bce_with_logits_backward(self, z, target, dloss=1.0):
        dz = self.empty(z.shape)
        self.k["loss"].bce_with_logits_backward(z.reshape(-1), float(target), self._as_scalar(dloss),
                                                dz.reshape(-1), self._v("loss"))
        return dz

    def softmax_cross_entropy_forward(self, logits, labels):
        loss = self.empty((1,))
        self.k["loss"].softmax_cross_entropy_forward(logits, labels, loss, self._v("loss"))
        return loss.reshape(())

    def softmax_cross_entropy_backward(self, logits, labels, dloss=1.0):
        dlogits = self.empty(logits.shape)
        self.k["loss"].softmax_cross_entropy_backward(logits, labels, self._as_scalar(dloss), dlogits,
                                                      self._v("loss"))
        return dlogits

    def _as_scalar(self, dloss):
        """The upstream gradient as a 1-element device array."""
        if isinstance(dloss, (int, float)):
            return self.full((1,), dloss)
        return dloss.reshape(1)

    # -- pooling -------------------------------------------------------------------
    def adaptive_max_pool2d_forward(self, x, output_size):
        oh, ow = pair(output_size)
        shape = (x.shape[0], x.shape[1], oh, ow)
        y, argmax = self.empty(shape), self.empty(shape, dtype=np.int64)
        self.k["pool"].adaptive_max_pool2d_forward(x, y, argmax, self._v("pool"))
        return y, argmax

    def adaptive_max_pool2d_backward(self, dy, argmax, x_shape):
        dx = self.empty(tuple(x_shape))
        self.k["pool"].adaptive_max_pool2d_backward(dy, argmax, dx, self._v("pool"))
        return dx

    # -- optimizer -----------------------------------------------------------------
    def adam_step(self, param, grad, exp_avg, exp_avg_sq, step, lr=2e-4, beta1=0.9, beta2=0.999,
                  eps=1e-8, weight_decay=0.0):
        # The bias corrections depend only on the step count: computed once on the host.
        step_size, bias2_sqrt = self.k["adam"].host_scalars(step, lr, beta1, beta2)
        self.k["adam"].adam_step(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2,
                                 bias2_sqrt, eps, weight_decay, self._v("adam"))

    def adam_step_scalars_in_memory(self, param, grad, exp_avg, exp_avg_sq, scalars, beta1=0.9,
                                    beta2=0.999, eps=1e-8, weight_decay=0.0):
        """adam_step with step_size and bias2_sqrt read from the device array ``scalars``
        (for CUDA-graph replay; optim.Adam.keep_scalars_on_device). Kernel backends only."""
        self.k["adam"].adam_step_scalars_in_memory(param, grad, exp_avg, exp_avg_sq, scalars, beta1,
                                                   beta2, eps, weight_decay, self._v("adam"))
