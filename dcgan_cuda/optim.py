"""Adam (Kingma & Ba), with PyTorch's update rule and L2 weight decay.

For each parameter p with gradient g, at the t-th step (t counts from 1):

    g <- g + weight_decay * p                        (L2 penalty, as torch.optim.Adam)
    m <- beta1 * m + (1 - beta1) * g                 (first moment)
    v <- beta2 * v + (1 - beta2) * g^2               (second moment)
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The arithmetic is the backend's ``adam_step`` (one fused kernel per parameter on the GPU);
this class only keeps the moments and the step count.
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
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.step_count = 0
        self.exp_avg = [p.backend.zeros(p.shape) for p in self.params]
        self.exp_avg_sq = [p.backend.zeros(p.shape) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        """One update of every parameter that has a gradient."""
        self.step_count += 1
        beta1, beta2 = self.betas
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            p.backend.adam_step(p.data, p.grad, m, v, self.step_count, self.lr, beta1, beta2,
                                self.eps, self.weight_decay)

    # -- checkpointing -----------------------------------------------------------------
    def state_dict(self):
        """Host copies: moments named by parameter index, plus the hyper-parameters."""
        state = {"step": np.asarray(self.step_count, dtype=np.int64)}
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            state[f"exp_avg.{i}"] = self.params[i].backend.to_numpy(m)
            state[f"exp_avg_sq.{i}"] = self.params[i].backend.to_numpy(v)
        return state

    def load_state_dict(self, state):
        for i, p in enumerate(self.params):
            for key in (f"exp_avg.{i}", f"exp_avg_sq.{i}"):
                if key not in state:
                    raise ValueError(f"optimizer state lacks {key}")
                if tuple(state[key].shape) != p.shape:
                    raise ValueError(f"optimizer state {key} has shape {tuple(state[key].shape)}, "
                                     f"parameter has {p.shape}")
            self.exp_avg[i] = p.backend.asarray(state[f"exp_avg.{i}"])
            self.exp_avg_sq[i] = p.backend.asarray(state[f"exp_avg_sq.{i}"])
        self.step_count = int(state["step"])
        return self
