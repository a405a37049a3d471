"""Reverse-mode automatic differentiation over arrays, in the spirit of micrograd.

A Tensor wraps one array (NumPy or CuPy) and the backend that computes on it. Calling an
op (a Function subclass, see ops.py) computes the output with the backend and, when
gradients are wanted, records on the output a Node: which Function made it, what it
saved for backward, and which tensors it was made from. ``loss.backward()`` walks these
nodes from the loss in reverse topological order, so every node is visited after all its
consumers have handed it their gradient.

Gradients of leaves (parameters, and any tensor created with requires_grad=True by the
user) *accumulate* into ``.grad``: a tensor used twice receives the sum, and calling
``backward()`` twice without ``zero_grad`` adds. Gradients of intermediate tensors live
only for the duration of one backward pass.

Nothing here looks at which backend a tensor is on: array work is delegated to
``tensor.backend`` (accumulate, fill) and to the ops.
"""
from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Within this block ops record nothing: outputs have no history and require no grad."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def as_backend(device):
    """The backend for ``device``: a backend object is returned as it is; a name ("cpu",
    "cuda", "sim", "auto") goes through backend.get_backend. "auto" falling back to the CPU
    says so with a warning (a library prints nothing of its own)."""
    if not isinstance(device, str):
        return device
    from .backend import get_backend
    return get_backend(device, announce=lambda message: warnings.warn(message, stacklevel=3))


class Tensor:
    __slots__ = ("data", "backend", "requires_grad", "grad", "grad_buffer", "_node", "name")

    def __init__(self, data, backend=None, requires_grad=False, name=None):
        if backend is None:
            from .backend import numpy_backend
            backend = numpy_backend()
            data = np.asarray(data)
        self.data = data
        self.backend = backend
        self.requires_grad = bool(requires_grad)
        self.grad = None
        # Where this leaf's gradient is written when it has none yet: None for a fresh array,
        # or a view that an optimiser keeps in one flat buffer (see optim.Adam).
        self.grad_buffer = None
        self._node = None
        self.name = name

    # -- conveniences ------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self):
        return self._node is None

    def numpy(self):
        """A host NumPy copy of the data."""
        return self.backend.to_numpy(self.data)

    def item(self):
        return float(self.numpy().reshape(-1)[0])

    def detach(self):
        """The same data, cut from the graph: gradients do not flow back through it."""
        return Tensor(self.data, self.backend)

    def zero_grad(self):
        self.grad = None

    def to(self, device):
        """A copy on ``device`` (a backend, or its name: "cpu", "cuda", "sim", "auto"), cut from
        the graph, keeping requires_grad and the dtype (float64 is refused by the ops of the
        cuda and sim backends, whose kernels are float32)."""
        backend = as_backend(device)
        if backend is self.backend:
            return self
        return Tensor(backend.asarray(self.numpy(), dtype=self.dtype), backend,
                      requires_grad=self.requires_grad, name=self.name)

    def __repr__(self):
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, backend={self.backend.name}{flag})"

    # -- backward ----------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's .grad that requires it.

        ``grad`` is d(something)/d(self), as in PyTorch: a Tensor on this tensor's backend,
        or an array or a number, of this tensor's shape and floating-point dtype (a number or
        a list takes the tensor's dtype). It defaults to 1 for a tensor with one element (a
        loss). Another shape or dtype is refused, never broadcast or converted: a float32
        gradient in a float64 graph would quietly lose the precision the graph was built for.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(was it computed under no_grad, or from detached inputs?)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() needs an explicit gradient for a tensor of shape {self.shape}")
            grad = self.backend.full(self.shape, 1.0, dtype=self.dtype)
        else:
            grad = self._gradient_array(grad)
        # id -> gradient of a tensor not yet visited. An op may hand the same array to two
        # inputs (or keep it), so a pending gradient is copied before anything adds to it.
        grads, owned = {id(self): grad}, set()
        for tensor in _reverse_topological(self):
            g = grads.pop(id(tensor), None)
            if g is None:
                continue
            node = tensor._node
            if node is None:
                _accumulate_into_leaf(tensor, g)
                continue
            input_grads = node.function.backward(node.ctx, g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, pg in zip(node.inputs, input_grads):
                if pg is None or not isinstance(parent, Tensor) or not parent.requires_grad:
                    continue
                key = id(parent)
                if key not in grads:
                    grads[key] = pg
                    continue
                if key not in owned:
                    grads[key] = parent.backend.copy(grads[key])
                    owned.add(key)
                parent.backend.accumulate(grads[key], pg)

    def _gradient_array(self, grad):
        """``grad`` as an array of the backend, after the checks backward() describes."""
        if isinstance(grad, Tensor):
            if grad.backend is not self.backend:
                raise ValueError(f"backward(): the gradient lives on the {grad.backend.name} backend, "
                                 f"this tensor on {self.backend.name}")
            grad = grad.data
        elif isinstance(grad, (int, float, list, tuple)):
            grad = np.asarray(grad, dtype=self.dtype)
            if grad.ndim == 0 and self.data.size == 1:   # a number for a one-element tensor
                grad = grad.reshape(self.shape)
        dtype = np.asarray(grad).dtype if getattr(grad, "dtype", None) is None else np.dtype(grad.dtype)
        if dtype != self.dtype:
            raise TypeError(f"backward(): the gradient is {dtype}, this tensor is {self.dtype}; "
                            f"convert it first (e.g. grad.astype(np.{self.dtype}))")
        if tuple(np.shape(grad)) != self.shape:
            raise ValueError(f"backward(): the gradient has shape {tuple(np.shape(grad))}, this "
                             f"tensor {self.shape}")
        if isinstance(grad, type(self.data)):   # already the backend's own array: no copy
            return grad
        return self.backend.asarray(grad, dtype=self.dtype)


def _accumulate_into_leaf(tensor, g):
    if tensor.grad is None:
        # Own the gradient buffer: the op may have returned an array it still references.
        if tensor.grad_buffer is None:
            tensor.grad = tensor.backend.copy(g)
        else:
            tensor.backend.copy_into(tensor.grad_buffer, g)
            tensor.grad = tensor.grad_buffer
    else:
        tensor.backend.accumulate(tensor.grad, g)


def _reverse_topological(root):
    """Tensors reachable from root through recorded nodes, each after all its consumers."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep graphs must not hit the recursion limit
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        if tensor._node is not None:
            for parent in tensor._node.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in seen:
                    stack.append((parent, False))
    return reversed(order)


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self, backend, needs_input_grad):
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.saved = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Node:
    __slots__ = ("function", "ctx", "inputs")

    def __init__(self, function, ctx, inputs):
        self.function, self.ctx, self.inputs = function, ctx, inputs


class Function:
    """An op: ``forward(ctx, *arrays, **params) -> array`` and ``backward(ctx, grad) -> grads``.

    Tensor arguments reach forward as their arrays; other arguments pass through. backward
    returns one gradient (or None) per positional input.
    """

    @staticmethod
    def forward(ctx, *args, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        tensors = [t for t in inputs if isinstance(t, Tensor)]
        backend = tensors[0].backend
        for t in tensors[1:]:
            if t.backend is not backend:
                raise ValueError(f"{cls.__name__}: inputs live on different backends "
                                 f"({backend.name} and {t.backend.name})")
        record = is_grad_enabled() and any(t.requires_grad for t in tensors)
        needs = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        ctx = Context(backend, needs)
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        out = Tensor(cls.forward(ctx, *arrays, **params), backend, requires_grad=record)
        if record:
            out._node = Node(cls, ctx, inputs)
        return out
