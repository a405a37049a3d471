"""Both backends offer every op; the kernel backend does no arithmetic on arrays itself."""
import ast
import inspect

from dcgan_cuda import kernel_backend
from dcgan_cuda.backend import OPS, numpy_backend
from dcgan_cuda.kernel_backend import KernelBackend


def test_every_backend_implements_every_op():
    numpy_b = numpy_backend()
    for op in OPS:
        assert callable(getattr(numpy_b, op)), op
        assert callable(getattr(KernelBackend, op, None)), f"KernelBackend lacks {op}"


def test_kernel_backend_leaves_array_math_to_kernels():
    """No operator may touch an array in kernel_backend.py. Host scalars are computed only in
    adam_step (the bias corrections)."""
    tree = ast.parse(inspect.getsource(kernel_backend))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "KernelBackend")
    offenders = []
    for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
        if fn.name == "adam_step":
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.BinOp, ast.AugAssign)) or (
                    isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not)
                    and not isinstance(node.operand, ast.Constant)):  # reshape(-1) is fine
                offenders.append(f"{fn.name}: line {node.lineno}")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "xp" and node.attr not in ("empty", "array", "cuda"):
                offenders.append(f"{fn.name}: xp.{node.attr} at line {node.lineno}")
    assert not offenders, "array arithmetic outside the kernels: " + ", ".join(offenders)
