"""The direct launch (kernels/jit.py) hands each kernel the parameters Numba's own launcher
would: checked without a GPU against Numba's _Kernel._prepare_args and against the .param
list of every kernel's PTX. (On a GPU, tests/test_gpu.py runs both launch paths.)"""
import ctypes
import math
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("needs the real Numba CUDA target", allow_module_level=True)

from numba import types  # noqa: E402
from numba.np import numpy_support  # noqa: E402
from numba.cuda import dispatcher as numba_dispatcher  # noqa: E402

from dcgan_cuda.kernels import jit  # noqa: E402

from .kernel_files import import_all  # noqa: E402


class DeviceArray:
    """What the direct launch reads of a CuPy array, without a GPU."""

    def __init__(self, shape, dtype, ptr, contiguous=True):
        self.shape, self.ndim, self.dtype = tuple(shape), len(shape), np.dtype(dtype)
        self.itemsize, self.size = self.dtype.itemsize, math.prod(shape)
        self.data, self.flags = SimpleNamespace(ptr=ptr), SimpleNamespace(c_contiguous=contiguous)


def sample_arguments(argtypes, shapes):
    """Arguments of the right kinds for argtypes: arrays of the given shapes (by ndim), ints, floats."""
    args = []
    for n, ty in enumerate(argtypes):
        if isinstance(ty, types.Array):
            dtype = numpy_support.as_dtype(ty.dtype)
            args.append(DeviceArray(shapes[ty.ndim], dtype, ptr=0x7f0000000000 + 4096 * n))
        elif isinstance(ty, types.Integer):
            args.append(3 + n)
        else:
            args.append(np.float32(0.5 + n))
    return args


def numba_parameters(argtypes, args, monkeypatch):
    """Numba's own flattening (_Kernel._prepare_args), its device-array import replaced by
    the attributes a device array of that shape would have."""
    from numba.cuda.api_util import prepare_shape_strides_dtype

    def wrap_arg(value):
        # A C-contiguous CuPy array exports no strides; Numba then derives them as here.
        _, strides, _ = prepare_shape_strides_dtype(value.shape, None, value.dtype, order="C")
        device = SimpleNamespace(size=value.size, dtype=value.dtype, ptr=value.data.ptr, shape=value.shape,
                                 _layout=SimpleNamespace(strides_in_bytes=strides))
        return SimpleNamespace(to_device=lambda retr, stream: device)
    monkeypatch.setattr(numba_dispatcher, "wrap_arg", wrap_arg)
    params = []
    this = SimpleNamespace(extensions=[])
    for ty, value in zip(argtypes, args):
        numba_dispatcher._Kernel._prepare_args(this, ty, value, None, [], params)
    return params


def plain(params):
    return [(type(p).__name__, p.value if isinstance(p, ctypes._SimpleCData) else p) for p in params]


SHAPES = {1: (5,), 2: (3, 7), 3: (2, 1, 6), 4: (2, 3, 1, 5)}
ODD_SHAPES = {1: (0,), 2: (1, 1), 3: (4, 0, 2), 4: (1, 2, 3, 4)}


@pytest.mark.parametrize("shapes", [SHAPES, ODD_SHAPES], ids=["shapes", "empty-and-unit-axes"])
def test_parameters_are_numbas_for_every_kernel_signature(shapes, monkeypatch):
    import_all()
    checked = 0
    for k in jit.REGISTRY:
        for signature in k.signatures:
            argtypes = tuple(signature)
            args = sample_arguments(argtypes, shapes)
            ours = jit.kernel_parameters(jit.parameter_plan(argtypes), args)
            assert ours is not None, k.name
            assert plain(ours) == plain(numba_parameters(argtypes, args, monkeypatch)), k.name
            checked += 1
    assert checked > 50


PARAM = re.compile(r"\.param\s+\.([a-z]+)(\d+)\s+\S+_param_(\d+)")


def test_parameters_match_the_compiled_kernels_param_lists():
    """Count and width of every parameter, against the .param declarations of the PTX the
    kernel compiles to: 8 bytes for Python ints (pointers, sizes), ctypes' own widths."""
    import_all()
    # a few kernels of several families, between them every kind of argument
    names = {"conv2d.forward_v7", "conv2d.sum_splits", "conv2d.backward_data_narrow_v8",
             "batchnorm.normalise_v1", "batchnorm.statistics_v1", "loss.bce_with_logits_forward_v1"}
    found = 0
    for k in jit.REGISTRY:
        if k.name not in names:
            continue
        for signature, ptx in zip(k.signatures, k.ptx()):
            entry = ptx[ptx.index(".entry"):ptx.index(")")]
            declared = [int(bits) // 8 for _, bits, _ in PARAM.findall(entry)]
            params = jit.kernel_parameters(jit.parameter_plan(tuple(signature)),
                                           sample_arguments(tuple(signature), SHAPES))
            widths = [8 if isinstance(p, int) else ctypes.sizeof(p) for p in params]
            assert widths == declared, k.name
            found += 1
    assert found == len(names)


def test_arguments_that_do_not_fit_the_signature_are_left_to_numba():
    plan = jit.parameter_plan((jit.f32_2d, jit.i64, jit.f32))
    good = [DeviceArray((2, 3), np.float32, 64), 5, np.float32(1.0)]
    assert jit.kernel_parameters(plan, good) is not None
    for bad in ([DeviceArray((6,), np.float32, 64), 5, np.float32(1.0)],                    # wrong rank
                [DeviceArray((2, 3), np.float64, 64), 5, np.float32(1.0)],                  # wrong dtype
                [DeviceArray((2, 3), np.float32, 64, contiguous=False), 5, np.float32(1.0)],
                [DeviceArray((2, 3), np.float32, 64), 5.0, np.float32(1.0)],                # a float for an int
                [DeviceArray((2, 3), np.float32, 64), 5]):                                  # one missing
        assert jit.kernel_parameters(plan, bad) is None
    # and a type the direct launch does not flatten (a non-contiguous array) has no plan
    assert jit.parameter_plan((jit.types.float32[:, :], jit.i64)) is None


class FakeDispatcher:
    """Numba's dispatcher for one compiled overload, without a GPU: records its launches."""

    def __init__(self, argtypes, launches):
        compiled = SimpleNamespace(_codelibrary=SimpleNamespace(get_cufunc=lambda: SimpleNamespace(kernel="cufunc")))
        self.overloads = {argtypes: compiled}
        self.launches = launches

    def __getitem__(self, config):
        return lambda *args: self.launches.append(("numba", args))


def fake_kernels(monkeypatch, driver_launch):
    """Two kernels of (f32_1d, i64) whose dispatchers are fakes, the driver call replaced by
    driver_launch, and the process's launch state as at start-up."""
    monkeypatch.setattr(jit, "LAUNCH", "direct")
    monkeypatch.setattr(jit, "DIRECT_LAUNCH_AVAILABLE", True)
    monkeypatch.setattr(jit, "DIRECT_LAUNCH_FAILURE", None)
    monkeypatch.setattr(jit, "current_stream", lambda core=False: "stream")
    monkeypatch.setattr(jit._numba_dispatcher, "launch", driver_launch)
    monkeypatch.setattr(jit, "REGISTRY", [])      # the fakes stay out of the real registry
    launches, kernels = [], []
    for name in ("first", "second"):
        def body(x, n):
            pass
        body.__name__ = name
        k = jit.Kernel(body, [(jit.f32_1d, jit.i64)])
        k._dispatcher = FakeDispatcher((jit.f32_1d, jit.i64), launches)
        kernels.append(k)
    return kernels, launches


def test_the_direct_launch_calls_the_driver_with_flattened_parameters(monkeypatch):
    driver_calls = []
    kernels, launches = fake_kernels(monkeypatch, lambda stream, config, fn, *params: driver_calls.append(params))
    x = DeviceArray((8,), np.float32, ptr=4096)
    kernels[0][1, 32](x, 8)
    assert launches == [] and len(driver_calls) == 1
    assert plain(driver_calls[0]) == plain(jit.kernel_parameters(jit.parameter_plan((jit.f32_1d, jit.i64)), [x, 8]))
    assert jit.launch_path() == "direct"


def test_a_failing_direct_launch_falls_back_to_numba_once_for_the_whole_process(monkeypatch, capsys):
    driver_calls = []

    def broken_driver(stream, config, fn, *params):
        driver_calls.append(params)
        raise RuntimeError("CUDA_ERROR_INVALID_HANDLE")
    kernels, launches = fake_kernels(monkeypatch, broken_driver)
    x = DeviceArray((8,), np.float32, ptr=4096)
    kernels[0][1, 32](x, 8)                      # fails in the driver call, then runs through Numba
    kernels[0][1, 32](x, 8)                      # straight to Numba
    kernels[1][1, 32](x, 4)                      # another kernel too
    assert len(driver_calls) == 1
    assert launches == [("numba", (x, 8)), ("numba", (x, 8)), ("numba", (x, 4))]
    assert jit.launch_path() == "numba (the direct launch failed: test_direct_launch.first: " \
                                "RuntimeError: CUDA_ERROR_INVALID_HANDLE)"
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "CUDA_ERROR_INVALID_HANDLE" in said[0] and "dispatcher" in said[0]
