"""Checks that need a real GPU (marked gpu: skipped without one, run by bench/gpu_check.sh).

* every version of every kernel matches the NumPy reference at the real DCGAN shapes
  (batch 128, 64x64, ngf = ndf = 64): each kernel file's ``cases(sim=False)``;
* a whole training step runs with CuPy's math entry points patched to raise: CuPy only
  allocates and copies;
* training is deterministic: two runs of 20 iterations from the same seed give bitwise
  identical weights;
* one training step on the GPU matches the NumPy backend;
* a step captured into a CUDA graph and replayed trains bit for bit like eager steps;
* the direct launch (kernels/jit.py) trains bit for bit like Numba's dispatcher.
"""
import os

import numpy as np
import pytest

from dcgan_cuda.backend import get_backend

from .kernel_files import KERNEL_FILES

pytestmark = pytest.mark.gpu

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("GPU tests need the real CUDA target", allow_module_level=True)


def _kernel_cases():
    from .kernel_files import import_all
    out = []
    modules = import_all()  # an import error here must fail loudly, not leave no cases to run
    for name in KERNEL_FILES:
        module = modules[name]
        for label, make_inputs in module.cases(False):
            for version in sorted(module.VERSIONS):
                out.append(pytest.param(module, label, make_inputs, version,
                                        id=f"{name}-v{version}-{label}"))
    return out


_case_inputs = {}


def _inputs(module, label, make_inputs):
    """A case's host inputs and (once computed) float64 reference, shared by its versions:
    their tests run one after another, so one case is kept at a time."""
    key = (module.__name__, label)
    if key not in _case_inputs:
        _case_inputs.clear()
        _case_inputs[key] = make_inputs(np.random.default_rng(0))
    return _case_inputs[key]


@pytest.mark.parametrize("module,label,make_inputs,version", _kernel_cases())
def test_kernel_matches_reference_at_dcgan_shapes(module, label, make_inputs, version):
    from dcgan_cuda.kernels.harness import close, to_device, to_host
    inputs = _inputs(module, label, make_inputs)
    launch, ref, atol, rtol, _, _ = module.run(version, label, inputs, to_device)
    results = launch()
    results = results if isinstance(results, tuple) else (results,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    for i, (ours, expected) in enumerate(zip(results, refs)):
        err, ok = close(to_host(ours), expected, atol, rtol)
        assert ok, f"output {i}: max |err| {err:.3g} beyond atol {atol} + rtol {rtol}*|ref|"


def _small_models(backend, arch="pytorch"):
    from dcgan_cuda.models import build_models
    from dcgan_cuda.optim import Adam
    netG, netD = build_models(arch, 32, 3, 100, 16, 16, seed=3, backend=backend)
    return netG, netD, Adam(netG.parameters(), 2e-4, (0.5, 0.999)), Adam(netD.parameters(), 2e-4, (0.5, 0.999))


def _batch(netG, n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32), netG.sample_noise(n, rng)


@pytest.mark.parametrize("arch", ["pytorch", "paper"])
def test_training_step_uses_no_cupy_math(monkeypatch, arch):
    """Every public CuPy callable except allocation/copy raises during a whole training step.

    (Operators on cupy.ndarray are implemented in Cython and cannot be patched; the kernel
    backend never applies them to arrays, which test_backend_contract checks on the CPU.)
    """
    import cupy

    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.train import train_step

    backend = get_backend("cuda")
    netG, netD, optG, optD = _small_models(backend, arch)
    real, noise = _batch(netG)
    real_d, noise_d = backend.asarray(real), backend.asarray(noise)
    allowed = {"empty", "array", "asarray", "ascontiguousarray", "ndarray", "cuda", "dtype",
               "float32", "float64", "int32", "int64", "get_array_module", "asnumpy", "get_default_memory_pool",
               "get_default_pinned_memory_pool"}
    patched = []
    for name in dir(cupy):
        obj = getattr(cupy, name)
        if name.startswith("_") or name in allowed or not callable(obj) or isinstance(obj, type):
            continue

        def forbidden(*a, _name=name, **k):
            raise AssertionError(f"cupy.{_name} was called during a training step")
        monkeypatch.setattr(cupy, name, forbidden)
        patched.append(name)
    for name in ("sum", "matmul", "dot", "exp", "sqrt", "maximum", "add", "multiply"):
        assert name in patched
    stats = train_step(netG, netD, optG, optD, Tensor(real_d, backend), Tensor(noise_d, backend))
    backend.synchronize()
    assert all(np.isfinite(v) for v in stats.values())


def test_gpu_step_matches_numpy_step():
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.train import train_step
    results = {}
    for device in ("cuda", "cpu"):
        backend = get_backend(device)
        netG, netD, optG, optD = _small_models(backend)
        real, noise = _batch(netG)
        stats = train_step(netG, netD, optG, optD, Tensor(backend.asarray(real), backend),
                           Tensor(backend.asarray(noise), backend))
        results[device] = (stats, netG.state_dict(), netD.state_dict())
    for key in results["cpu"][0]:
        assert abs(results["cuda"][0][key] - results["cpu"][0][key]) < 2e-4 * max(1, abs(results["cpu"][0][key]))
    for i in (1, 2):
        for name, ref in results["cpu"][i].items():
            ours = results["cuda"][i][name]
            # After one Adam step a weight moves by ~lr; float32 differences in the
            # gradients change the step only slightly.
            np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=2e-5, err_msg=name)


def test_fused_and_unfused_steps_agree_on_the_gpu(monkeypatch):
    """Batchnorm with its activation fused, and Adam over one flat buffer, give the results of
    the separate kernels. (Not asserted bitwise: the compiler may contract the normalisation
    into an FMA differently in two kernels, which moves z by an ulp and can flip the
    activation's slope where z is within an ulp of 0.)"""
    from dcgan_cuda import nn
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.train import train_step
    backend = get_backend("cuda")
    results = []
    for fuse in (True, False):
        monkeypatch.setattr(nn.Sequential, "fuse_activations", fuse)
        netG, netD, optG, optD = _small_models(backend)
        real, noise = _batch(netG)
        stats = train_step(netG, netD, optG, optD, Tensor(backend.asarray(real), backend),
                           Tensor(backend.asarray(noise), backend))
        results.append((stats, netG.state_dict(), netD.state_dict()))
    (stats_f, g_f, d_f), (stats_u, g_u, d_u) = results
    for key in stats_u:
        assert abs(stats_f[key] - stats_u[key]) <= 1e-5 * max(1, abs(stats_u[key])), key
    for fused, unfused in ((g_f, g_u), (d_f, d_u)):
        for name, ref in unfused.items():
            np.testing.assert_allclose(fused[name], ref, rtol=1e-5, atol=1e-7, err_msg=name)


def _graph_and_eager_runs(sizes, versions):
    """The same iterations through GraphedTrainStep and through plain train_step."""
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.cuda_graph import GraphedTrainStep
    from dcgan_cuda.train import train_step
    backend = get_backend("cuda")
    backend.choose_versions([versions])
    runs = []
    for graphed in (True, False):
        netG, netD, optG, optD = _small_models(backend)
        if graphed:
            step = GraphedTrainStep(netG, netD, optG, optD)
        else:
            # Adam's kernel that reads its scalars from memory, as the graph's: two kernels
            # compiled from one expression may still contract multiply-adds differently.
            for opt in (optG, optD):
                opt.keep_scalars_on_device()

            def step(r, z, optG=optG, optD=optD, netG=netG, netD=netD):
                for opt in (optG, optD):
                    opt.write_scalars(opt.step_count + 1)
                return train_step(netG, netD, optG, optD, r, z)
        stats = []
        for i, n in enumerate(sizes):
            real, noise = _batch(netG, n, seed=i)
            stats.append(step(Tensor(backend.asarray(real), backend), Tensor(backend.asarray(noise), backend)))
        backend.synchronize()
        counters = [int(m._buffers["num_batches_tracked"]) for net in (netG, netD)
                    for _, m in net.named_modules() if "num_batches_tracked" in m._buffers]
        runs.append((stats, (optG.step_count, optD.step_count, counters),
                     (netG.state_dict(), netD.state_dict(), optG.state_dict(), optD.state_dict()), step))
    return runs


@pytest.mark.parametrize("versions", ["default", "newest"])
def test_direct_launch_trains_bitwise_like_numbas_dispatcher(monkeypatch, versions):
    """Two training steps with every kernel launched by jit's direct launch (the default)
    and by Numba's dispatcher: the same parameters, bit for bit, so the parameters the
    direct launch flattens are the ones the kernels were compiled for."""
    from dcgan_cuda.autograd import Tensor
    from dcgan_cuda.kernels import jit
    from dcgan_cuda.train import train_step
    assert jit.DIRECT_LAUNCH_AVAILABLE, "this numba-cuda has no cuda.core launch: every launch is Numba's"
    backend = get_backend("cuda")
    backend.choose_versions([versions])
    states = {}
    for path in ("direct", "numba"):
        monkeypatch.setattr(jit, "LAUNCH", path)
        netG, netD, optG, optD = _small_models(backend)
        for i, n in enumerate((16, 7)):
            real, noise = _batch(netG, n, seed=i)
            train_step(netG, netD, optG, optD, Tensor(backend.asarray(real), backend),
                       Tensor(backend.asarray(noise), backend))
        backend.synchronize()
        states[path] = {**netG.state_dict(), **{f"D.{k}": v for k, v in netD.state_dict().items()}}
    assert states["direct"].keys() == states["numba"].keys()
    for name, value in states["numba"].items():
        assert np.asarray(states["direct"][name]).tobytes() == np.asarray(value).tobytes(), name


@pytest.mark.parametrize("versions", ["default", "newest"])
def test_cuda_graph_replays_train_bitwise_like_eager_steps(versions):
    """Warm-up, capture, replays, a smaller last batch (eager) and a replay after it: the same
    bits as the same iterations without a graph, and the same host counters. With the newest
    kernels too (split-K scratch buffers, kept per stream)."""
    (g_stats, g_counters, g_state, step), (e_stats, e_counters, e_state, _) = \
        _graph_and_eager_runs([16, 16, 16, 16, 7, 16], versions)
    assert step.replays == 3
    assert g_stats == e_stats
    assert g_counters == e_counters
    for ours, theirs in zip(g_state, e_state):
        for name in theirs:
            assert np.asarray(ours[name]).tobytes() == np.asarray(theirs[name]).tobytes(), name


def test_twenty_iterations_are_bitwise_reproducible(tmp_path):
    from dcgan_cuda.checkpoint import read_tensors
    from dcgan_cuda.train import main
    finals = []
    for run in ("a", "b"):
        out = tmp_path / run
        rc = main(["--device", "cuda", "--niter", "1", "--max-images", "1280", "--batchSize", "64",
                   "--manualSeed", "5", "--outf", str(out), "--no-progress"])
        assert rc == 0
        finals.append(read_tensors(str(out / "checkpoint.safetensors"))[0])
    a, b = finals
    assert a.keys() == b.keys()
    assert int(a["optG.step"]) == 20
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{name} differs between two identical runs"


def test_resume_on_the_gpu_is_bitwise_the_uninterrupted_run(tmp_path, monkeypatch):
    from dcgan_cuda import train
    from dcgan_cuda.checkpoint import read_tensors
    common = ["--device", "cuda", "--niter", "2", "--max-images", "320", "--batchSize", "64",
              "--manualSeed", "9", "--no-progress"]
    assert train.main(common + ["--outf", str(tmp_path / "whole")]) == 0
    kept = tmp_path / "iteration3.safetensors"
    real_save = train.Run.save_state

    def save_and_keep(self):
        real_save(self)
        if self.iteration == 3:
            kept.write_bytes(open(self.state_path, "rb").read())
    monkeypatch.setattr(train.Run, "save_state", save_and_keep)
    assert train.main(common + ["--outf", str(tmp_path / "first"), "--save-every", "1"]) == 0
    monkeypatch.undo()
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "checkpoint.safetensors").write_bytes(kept.read_bytes())
    assert train.main(["--resume", str(tmp_path / "resumed" / "checkpoint.safetensors"), "--device", "cuda",
                       "--niter", "2", "--outf", str(tmp_path / "resumed"), "--no-progress"]) == 0
    a = read_tensors(str(tmp_path / "whole" / "checkpoint.safetensors"))[0]
    b = read_tensors(str(tmp_path / "resumed" / "checkpoint.safetensors"))[0]
    for name in a:
        assert np.array_equal(a[name], b[name]), name
