"""Layers with PyTorch's parameter names, shapes and layouts.

A Module owns parameters (Tensors that require grad), buffers (arrays that are state but
not trained, like batchnorm's running statistics) and child modules. Names compose with
dots exactly as in torch.nn (``main.3.weight``), so a state_dict written here loads into
the equivalent PyTorch module and back.

Parameters are created on the host in float32, then moved with ``module.to(backend)``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import ops
from .autograd import Tensor, as_backend
from .backend import numpy_backend
from .reference import pair


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_host_buffers", set())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "backend", numpy_backend())

    # -- registration ------------------------------------------------------------
    def register_parameter(self, name, array):
        self._parameters[name] = None if array is None else Tensor(
            self.backend.asarray(array), self.backend, requires_grad=True, name=name)

    def register_buffer(self, name, array, dtype=np.float32, on_host=False):
        """State that is saved but not trained. A buffer ``on_host`` stays a NumPy array
        whatever the backend (a counter read by Python, never by a kernel)."""
        if on_host:
            self._host_buffers.add(name)
        self._buffers[name] = self._place(name, array, dtype)

    def _place(self, name, array, dtype):
        if name in self._host_buffers:
            return np.array(array, dtype=dtype)
        return self.backend.asarray(array, dtype=dtype)

    def add_module(self, name, module):
        self._modules[name] = module

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only called when normal lookup fails
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- traversal ---------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                if p is not None:
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), b

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, flag=True):
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def to(self, device):
        """Move every parameter and buffer to ``device``: a backend, or its name ("cpu",
        "cuda", "sim", "auto"), as torch's ``module.to("cuda")``. A copy through the host;
        every array keeps its dtype."""
        backend = as_backend(device)
        for _, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    p.data = backend.asarray(p.backend.to_numpy(p.data), dtype=p.dtype)
                    p.backend, p.grad = backend, None
            host = {name: np.asarray(b) if name in m._host_buffers else m.backend.to_numpy(b)
                    for name, b in m._buffers.items()}
            object.__setattr__(m, "backend", backend)
            for name, b in host.items():
                m._buffers[name] = m._place(name, b, b.dtype)
        return self

    def float(self):
        """Parameters and floating-point buffers in float32: what training and every kernel use."""
        return self._cast(np.float32)

    def double(self):
        """Parameters and floating-point buffers in float64 (the numpy backend only, whose
        reference ops compute in either precision): for gradient checks."""
        return self._cast(np.float64)

    def _cast(self, dtype):
        for _, m in self.named_modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data, p.grad = m.backend.asarray(p.backend.to_numpy(p.data), dtype=dtype), None
            for name, b in m._buffers.items():
                if name not in m._host_buffers and np.dtype(b.dtype).kind == "f":
                    m._buffers[name] = m.backend.asarray(m.backend.to_numpy(b), dtype=dtype)
        return self

    # -- state ---------------------------------------------------------------------
    def state_dict(self):
        """Host NumPy copies of parameters and buffers, in PyTorch's order and names."""
        out = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[dot + name] = p.numpy()
            for name, b in module._buffers.items():
                out[dot + name] = (np.array(b) if name in module._host_buffers
                                   else module.backend.to_numpy(b))
        return out

    def load_state_dict(self, state):
        """Copy arrays into this module; names and shapes must match exactly."""
        mine = self.state_dict()
        missing = [k for k in mine if k not in state]
        unexpected = [k for k in state if k not in mine]
        wrong = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {mine[k].shape}"
                 for k in mine if k in state and tuple(np.shape(state[k])) != mine[k].shape]
        # A value of another dtype is refused, not converted: float64 weights cast to float32
        # would lose digits unannounced (convert them, or the module with .double()).
        retyped = [f"{k}: checkpoint {np.asarray(state[k]).dtype} vs model {mine[k].dtype}"
                   for k in mine if k in state and np.asarray(state[k]).dtype != mine[k].dtype]
        if missing or unexpected or wrong or retyped:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} entries (e.g. {', '.join(missing[:3])})")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)} entries (e.g. {', '.join(unexpected[:3])})")
            if wrong:
                parts.append("shape mismatch: " + "; ".join(wrong[:3]))
            if retyped:
                parts.append("dtype mismatch: " + "; ".join(retyped[:3]) + " (convert the arrays "
                             "with .astype, or the module with .float() / .double())")
            raise ValueError(f"state does not fit {type(self).__name__}: " + "; ".join(parts))
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    p.data = module.backend.asarray(state[dot + name], dtype=p.dtype)
                    p.grad = None
            for name, b in module._buffers.items():
                module._buffers[name] = module._place(name, state[dot + name], b.dtype)
        return self

    def __call__(self, *args):
        return self.forward(*args)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + ")" if len(lines) > 1 else lines[0] + ")"


class Sequential(Module):
    """Layers applied in order. A BatchNorm2d directly followed by a ReLU or LeakyReLU runs as
    one fused layer (one kernel each way instead of two; see kernels/batchnorm/); the two
    modules, their names and their state stay as they are. ``fuse_activations = False`` on an
    instance (or on the class) runs every layer on its own, for comparison."""

    fuse_activations = True

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            layer, following = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if (self.fuse_activations and isinstance(layer, BatchNorm2d)
                    and isinstance(following, (ReLU, LeakyReLU))):
                x = layer.forward(x, activation_slope=following.negative_slope)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        kh, kw = pair(kernel_size)
        self.stride, self.padding = pair(stride), pair(padding)
        self.shape = (out_channels, in_channels, kh, kw)
        self.register_parameter("weight", np.zeros(self.shape, np.float32))
        self.register_parameter("bias", np.zeros(out_channels, np.float32) if bias else None)

    def forward(self, x):
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        o, i, kh, kw = self.shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}"


class ConvTranspose2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        super().__init__()
        kh, kw = pair(kernel_size)
        self.stride, self.padding, self.output_padding = pair(stride), pair(padding), pair(output_padding)
        self.shape = (in_channels, out_channels, kh, kw)
        self.register_parameter("weight", np.zeros(self.shape, np.float32))
        self.register_parameter("bias", np.zeros(out_channels, np.float32) if bias else None)

    def forward(self, x):
        return ops.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                    self.output_padding)

    def extra_repr(self):
        i, o, kh, kw = self.shape
        return (f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}"
                + (f", output_padding={self.output_padding}" if any(self.output_padding) else ""))


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.shape = (out_features, in_features)
        self.register_parameter("weight", np.zeros(self.shape, np.float32))
        self.register_parameter("bias", np.zeros(out_features, np.float32) if bias else None)

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.shape[1]}, out_features={self.shape[0]}"


class BatchNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.register_parameter("weight", np.ones(num_features, np.float32))
        self.register_parameter("bias", np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(num_features))
        self.register_buffer("running_var", np.ones(num_features))
        self.register_buffer("num_batches_tracked", 0, dtype=np.int64, on_host=True)

    def forward(self, x, activation_slope=None):
        """activation_slope: the negative slope of an activation to fuse after (0.0 ReLU)."""
        if self.training:
            self._buffers["num_batches_tracked"] += 1
        return ops.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                              self.training, self.momentum, self.eps, activation_slope)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    negative_slope = 0.0  # as a LeakyReLU, for the fusion into a preceding batchnorm

    def forward(self, x):
        return ops.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class Flatten(Module):
    def forward(self, x):
        return ops.flatten(x)


class Unflatten(Module):
    """(N, C*H*W) -> (N, C, H, W)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return ops.reshape(x, (x.shape[0],) + self.shape)

    def extra_repr(self):
        return f"{self.shape}"
