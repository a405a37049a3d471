"""Adam (Kingma & Ba), with PyTorch's update rule and L2 weight decay.

For each parameter p with gradient g, at the t-th step (t counts from 1):

    g <- g + weight_decay * p                        (L2 penalty, as torch.optim.Adam)
    m <- beta1 * m + (1 - beta1) * g                 (first moment)
    v <- beta2 * v + (1 - beta2) * g^2               (second moment)
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The arithmetic is the backend's ``adam_step``; this class keeps the moments and the step
count, and arranges the memory so that one call updates every parameter.

One flat buffer. Adam treats every element alike, so the optimiser copies all its
parameters into one contiguous buffer and makes each parameter's ``.data`` a view of its
slice; the gradients get the same layout (each parameter's ``grad_buffer``, where autograd
writes the first gradient after ``zero_grad``), and so do the two moments. A step is then
one ``adam_step`` over the whole buffer: one kernel launch per model instead of one per
tensor (13 for the DCGAN generator, 11 for the discriminator, most of them batchnorm
vectors of 64-512 floats that take the GPU less time than the launch). The results are
the same bits as a step per tensor.

If a parameter's array is replaced (``load_state_dict``, ``module.to``), the next step copies
it back into the buffer first; if some parameter has no gradient this step, the step falls
back to one update per parameter that has one, skipping the rest as torch.optim.Adam does.
"""
from __future__ import annotations

import numpy as np


class Adam:
    def __init__(self, params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        if lr <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps <= 0 or weight_decay < 0:
            raise ValueError(f"Adam: need lr > 0, 0 <= betas < 1, eps > 0, weight_decay >= 0; "
                             f"got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        self.backend = self.params[0].backend
        if any(p.backend is not self.backend for p in self.params):
            raise ValueError("Adam: all parameters must live on one backend")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("Adam: a parameter appears twice in the list")
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.step_count = 0
        self.device_scalars = None     # see keep_scalars_on_device
        B = self.backend
        sizes = [int(np.prod(p.shape)) for p in self.params]
        self._slices = [slice(end - size, end) for size, end in zip(sizes, np.cumsum(sizes))]
        total, dtype = sum(sizes), self.params[0].data.dtype
        if any(p.data.dtype != dtype for p in self.params):
            raise ValueError("Adam: all parameters must have one dtype")
        self.flat_params, self.flat_grads = B.empty((total,), dtype), B.empty((total,), dtype)
        self.flat_exp_avg, self.flat_exp_avg_sq = B.zeros((total,), dtype), B.zeros((total,), dtype)
        self._param_views = self._views(self.flat_params)
        self.exp_avg = self._views(self.flat_exp_avg)
        self.exp_avg_sq = self._views(self.flat_exp_avg_sq)
        for p, grad_view in zip(self.params, self._views(self.flat_grads)):
            p.grad_buffer = grad_view
        self._pack_parameters()

    def _views(self, flat):
        return [flat[s].reshape(p.shape) for s, p in zip(self._slices, self.params)]

    def _pack_parameters(self):
        """Make every parameter's data its view of the flat buffer (copying what changed)."""
        for p, view in zip(self.params, self._param_views):
            if p.data is not view:
                if tuple(p.data.shape) != tuple(view.shape):
                    raise ValueError(f"Adam: a parameter changed shape from {tuple(view.shape)} "
                                     f"to {tuple(p.data.shape)}")
                self.backend.copy_into(view, p.data)
                p.data = view

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def keep_scalars_on_device(self):
        """From now on step() leaves the two step-dependent numbers of the update
        (lr/(1 - beta1^t) and sqrt(1 - beta2^t)) in a 2-element device array, which
        write_scalars(t) must fill before each step, instead of passing them to the kernel
        as arguments. A CUDA graph freezes arguments at capture; memory it reads afresh at
        every replay (dcgan_cuda/cuda_graph.py). Kernel backends only."""
        self.device_scalars = self.backend.zeros((2,))

    def write_scalars(self, step):
        """Fill the device scalars for the 1-based step ``step`` (host to device copy)."""
        from .kernels.adam import host_scalars
        host = np.array(host_scalars(step, self.lr, *self.betas), np.float32)
        self.backend.copy_into(self.device_scalars, self.backend.asarray(host))

    def step(self):
        """One update of every parameter that has a gradient."""
        self.step_count += 1
        self._pack_parameters()
        args = (self.step_count, self.lr, *self.betas, self.eps, self.weight_decay)
        flat = (self.flat_params, self.flat_grads, self.flat_exp_avg, self.flat_exp_avg_sq)
        if all(p.grad is p.grad_buffer for p in self.params):
            if self.device_scalars is None:
                self.backend.adam_step(*flat, *args)
            else:
                self.backend.adam_step_scalars_in_memory(*flat, self.device_scalars, *self.betas,
                                                         self.eps, self.weight_decay)
            return
        if self.device_scalars is not None:
            raise RuntimeError("Adam with its scalars on the device updates the flat buffer only: "
                               "every parameter needs a gradient")
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is not None:
                p.backend.adam_step(p.data, p.grad, m, v, *args)

    # -- checkpointing -----------------------------------------------------------------
    def state_dict(self):
        """Host copies: moments named by parameter index, plus the hyper-parameters."""
        state = {"step": np.asarray(self.step_count, dtype=np.int64)}
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            state[f"exp_avg.{i}"] = self.backend.to_numpy(m)
            state[f"exp_avg_sq.{i}"] = self.backend.to_numpy(v)
        return state

    def load_state_dict(self, state):
        for i, p in enumerate(self.params):
            for key in (f"exp_avg.{i}", f"exp_avg_sq.{i}"):
                if key not in state:
                    raise ValueError(f"optimizer state lacks {key}")
                if tuple(state[key].shape) != p.shape:
                    raise ValueError(f"optimizer state {key} has shape {tuple(state[key].shape)}, "
                                     f"parameter has {p.shape}")
        for i in range(len(self.params)):
            self.backend.copy_into(self.exp_avg[i], self.backend.asarray(state[f"exp_avg.{i}"]))
            self.backend.copy_into(self.exp_avg_sq[i], self.backend.asarray(state[f"exp_avg_sq.{i}"]))
        self.step_count = int(state["step"])
        return self
