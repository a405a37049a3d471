"""The Python API: what ``import dcgan_cuda`` offers, and the README's examples of it.

Each part of the API a user meets first is checked against the code underneath it: the
one loader against the networks that wrote the files, the one ``generate`` against G(z)
computed by hand, ``backward`` with a Tensor against ``backward`` with its array, a
per-logit BCE target against the formula; and every way a file, a gradient or a dtype can
be wrong ends in the error the documentation names, with a message that says what to do.
"""
import contextlib
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import dcgan_cuda
from dcgan_cuda import checkpoint, evaluate, nn, ops, sampling, train
from dcgan_cuda.autograd import Tensor
from dcgan_cuda.backend import numpy_backend
from dcgan_cuda.experiments import common
from dcgan_cuda.models import build_models
from dcgan_cuda.optim import Adam

ROOT = Path(__file__).resolve().parent.parent
SIZE, NZ = 16, 8


@pytest.fixture(scope="module")
def nets():
    return build_models("pytorch", SIZE, 1, nz=NZ, ngf=4, ndf=4, seed=3)


@pytest.fixture(scope="module")
def files(nets, tmp_path_factory):
    """A model file of each network and a training state holding both, as train writes them."""
    netG, netD = nets
    folder = tmp_path_factory.mktemp("files")
    paths = {"G": folder / "netG_epoch_0.safetensors", "D": folder / "netD_epoch_0.safetensors",
             "state": folder / "checkpoint.safetensors"}
    checkpoint.save_model(paths["G"], netG)
    checkpoint.save_model(paths["D"], netD)
    checkpoint.save_training_state(paths["state"], netG, netD, Adam(netG.parameters()),
                                   Adam(netD.parameters()), {"epoch": 0, "batch": 0, "iteration": 0,
                                                               "noise_rng": np.random.PCG64(0).state})
    return {k: str(v) for k, v in paths.items()}


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


# ============================================================================ the names
def test_every_public_name_resolves_and_import_stays_light():
    for name in dcgan_cuda.__all__:
        assert getattr(dcgan_cuda, name) is not None, name
    assert dcgan_cuda.load_generator is checkpoint.load_generator
    assert dcgan_cuda.generate is sampling.generate
    assert dcgan_cuda.Tensor is Tensor and dcgan_cuda.ops is ops and dcgan_cuda.nn is nn
    with pytest.raises(AttributeError):
        dcgan_cuda.no_such_name  # noqa: B018
    # Importing the package must not import numba (the simulator is chosen before that).
    code = "import sys, dcgan_cuda; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_one_loader_and_one_generate_in_the_package():
    """The issue's own check: every tool calls the one implementation."""
    found = {"load_generator": [], "generate": []}
    for path in sorted((ROOT / "dcgan_cuda").rglob("*.py")):
        for name in found:
            if re.search(rf"^\s*def {name}\(", path.read_text(encoding="utf-8"), re.M):
                found[name].append(path.name)
    assert found == {"load_generator": ["checkpoint.py"], "generate": ["sampling.py"]}
    assert common.load_generator is checkpoint.load_generator
    assert common.load_discriminator is checkpoint.load_discriminator
    assert common.generate is evaluate.generate is sampling.generate


# ============================================================================ loading
@pytest.mark.parametrize("source", ["model file", "training state"])
def test_load_rebuilds_each_network_from_the_file_alone(nets, files, source):
    netG, netD = nets
    G = dcgan_cuda.load_generator(files["G" if source == "model file" else "state"])
    D = dcgan_cuda.load_discriminator(files["D" if source == "model file" else "state"], device="cpu")
    same_weights(G, netG)
    same_weights(D, netD)
    assert (G.nz, G.ngf, G.nc, G.image_size, G.arch) == (NZ, 4, 1, SIZE, "pytorch")
    assert not G.training and not D.training      # ready to sample, as torch's .eval()
    assert G.backend is numpy_backend()


@pytest.mark.parametrize("arch", ["pytorch", "paper"])
def test_a_state_dict_without_metadata_is_rebuilt_from_its_shapes(arch, tmp_path):
    """What pytorch/examples' netG.pth becomes after the conversion the error message prints."""
    netG, netD = build_models(arch, 32, 3, nz=5, ngf=6, ndf=7, seed=1)
    save_file(netG.state_dict(), tmp_path / "g.safetensors")
    save_file(netD.state_dict(), tmp_path / "d.safetensors", metadata={"format": "pt"})  # as some torch tools tag
    G = dcgan_cuda.load_generator(str(tmp_path / "g.safetensors"))
    D = dcgan_cuda.load_discriminator(str(tmp_path / "d.safetensors"))
    assert (G.arch, G.nz, G.ngf, G.nc, G.image_size) == (arch, 5, 6, 3, 32)
    assert (D.arch, D.ndf, D.nc, D.image_size) == (arch, 7, 3, 32)
    same_weights(G, netG)
    same_weights(D, netD)
    with pytest.raises(dcgan_cuda.CheckpointError, match="not a DCGAN discriminator"):
        dcgan_cuda.load_discriminator(str(tmp_path / "g.safetensors"))


def torch_zip_file(path):
    """A file laid out as torch.save (PyTorch >= 1.6) writes one: a zip whose first member is
    the pickle, then the storages (PyTorch itself is not needed to recognise it)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("netG/data.pkl", pickle.dumps({"main.0.weight": "storage 0"}, protocol=2))
        archive.writestr("netG/byteorder", "little")
        archive.writestr("netG/data/0", b"\0" * 64)
        archive.writestr("netG/version", "3\n")


def bad_files(folder, files):
    """(what, path) of files that are not a generator; each must be a CheckpointError."""
    folder = Path(folder)
    payload = Path(files["G"]).read_bytes()
    (folder / "truncated.safetensors").write_bytes(payload[: len(payload) // 2])
    (folder / "empty.safetensors").write_bytes(b"")
    torch_zip_file(folder / "netG.pth")
    (folder / "legacy.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    np.save(folder / "array.npy", np.zeros(3))
    tensors = load_file(files["G"])
    meta = {"format": "dcgan-cuda-model", "version": "1", "kind": "generator", "arch": "pytorch",
            "nc": "1", "image_size": str(SIZE), "nz": str(NZ), "ngf": "4"}
    save_file(tensors, folder / "nz_text.safetensors", metadata={**meta, "nz": '"abc"'})
    save_file(tensors, folder / "nz_float.safetensors", metadata={**meta, "nz": "8.0"})
    save_file({k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in tensors.items()},
              folder / "float64.safetensors", metadata=meta)
    save_file({**tensors, "main.0.weight": np.full_like(tensors["main.0.weight"], np.nan)},
              folder / "nan.safetensors", metadata=meta)
    save_file({"x": np.zeros(3, np.float32)}, folder / "other.safetensors", metadata={"format": "something"})
    untagged = {k: v for k, v in meta.items() if k != "format"}
    save_file(tensors, folder / "untagged.safetensors", metadata=untagged)   # edited: ours, less the tag
    return [("missing", folder / "missing.safetensors"), ("folder", folder),
            ("truncated", folder / "truncated.safetensors"), ("empty", folder / "empty.safetensors"),
            ("pytorch zip", folder / "netG.pth"), ("pickle", folder / "legacy.pth"),
            ("numpy", folder / "array.npy"), ("discriminator", Path(files["D"])),
            ("nz not a number", folder / "nz_text.safetensors"),
            ("nz not whole", folder / "nz_float.safetensors"),
            ("float64 weights", folder / "float64.safetensors"), ("NaN weights", folder / "nan.safetensors"),
            ("another format", folder / "other.safetensors"),
            ("our fields without our tag", folder / "untagged.safetensors")]


def test_every_wrong_file_is_one_checkpoint_error_of_one_line(files, tmp_path):
    for what, path in bad_files(tmp_path, files):
        with pytest.raises(dcgan_cuda.CheckpointError) as caught:
            dcgan_cuda.load_generator(str(path))
        message = str(caught.value)
        assert "\n" not in message and str(path) in message, (what, message)


def test_a_pytorch_file_is_named_with_the_conversion(files, tmp_path):
    bad = dict((what, path) for what, path in bad_files(tmp_path, files))
    with pytest.raises(dcgan_cuda.CheckpointError) as caught:
        dcgan_cuda.load_generator(str(bad["pytorch zip"]))
    message = str(caught.value)
    assert "PyTorch file (torch.save)" in message
    assert "save_file(" in message and "torch.load(" in message and "netG.safetensors" in message
    assert "header too large" not in message
    with pytest.raises(dcgan_cuda.CheckpointError, match="Python pickle"):
        dcgan_cuda.load_generator(str(bad["pickle"]))
    # The command line says the same in its one line (evaluate reads the file first).
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = evaluate.main(["--netG", str(bad["pytorch zip"]), "--device", "cpu"])
    assert status == 2
    assert err.getvalue().count("\n") == 1 and "PyTorch file (torch.save)" in err.getvalue()


def test_the_device_is_chosen_by_name_or_backend(files):
    G = dcgan_cuda.load_generator(files["G"], device=numpy_backend())
    assert G.backend is numpy_backend()
    with pytest.raises(dcgan_cuda.BackendUnavailable):
        dcgan_cuda.load_generator(files["G"], device="tpu")


# ============================================================================ sampling
def test_generate_is_G_of_the_seeded_noise_in_either_batchnorm_mode(nets):
    netG = nets[0]
    before = netG.state_dict()
    z = netG.sample_noise(5, np.random.default_rng([7, sampling.NOISE_STREAM]))
    for mode in ("eval", "train"):
        twin = build_models("pytorch", SIZE, 1, nz=NZ, ngf=4, ndf=4, seed=3)[0].train(mode == "train")
        with dcgan_cuda.no_grad():
            by_hand = twin(Tensor(z)).numpy()
        np.testing.assert_array_equal(dcgan_cuda.generate(netG, 5, seed=7, bn_mode=mode, batch_size=5), by_hand)
        np.testing.assert_array_equal(dcgan_cuda.generate(netG, z=z, bn_mode=mode, batch_size=5), by_hand)
    for k, v in netG.state_dict().items():  # running statistics and counters as they were
        np.testing.assert_array_equal(v, before[k])
    assert netG.training
    # None: the generator's own mode, as calling it would use.
    netG.eval()
    np.testing.assert_array_equal(dcgan_cuda.generate(netG, 3, seed=1), dcgan_cuda.generate(netG, 3, seed=1,
                                                                                          bn_mode="eval"))
    netG.train()


def test_generate_refuses_what_it_cannot_do(nets):
    netG = nets[0]
    z = netG.sample_noise(4, np.random.default_rng(0))
    for kwargs, words in [(dict(n=4, z=z), "not both"), (dict(), "not both"),
                          (dict(z=z.astype(np.float64)), "z is float64 but the generator computes in float32"),
                          (dict(z=z[:, :3]), "must have shape"), (dict(n=1, bn_mode="train"), "at least 2"),
                          (dict(n=4, bn_mode="batch"), "bn_mode")]:
        with pytest.raises(dcgan_cuda.SamplingError, match=words):
            dcgan_cuda.generate(netG, **kwargs)


# ============================================================================ autograd
def test_backward_takes_a_tensor_an_array_or_a_number():
    x = np.random.default_rng(0).standard_normal((3, 4))
    seed = np.random.default_rng(1).standard_normal((3, 4))
    grads = []
    for grad in (seed, Tensor(seed)):
        leaf = Tensor(x.copy(), requires_grad=True)
        ops.tanh(leaf).backward(grad)
        grads.append(leaf.grad)
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_allclose(grads[0], seed * (1 - np.tanh(x) ** 2), rtol=1e-12)
    one = Tensor(np.ones((1,)), requires_grad=True)
    ops.tanh(one).backward(2.0)
    np.testing.assert_allclose(one.grad, [2.0 * (1 - np.tanh(1.0) ** 2)])


def test_backward_refuses_another_dtype_or_shape():
    leaf = Tensor(np.ones((2, 3)), requires_grad=True)        # float64
    out = ops.tanh(leaf)
    with pytest.raises(TypeError, match="gradient is float32, this tensor is float64"):
        out.backward(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="gradient is float32"):
        out.backward(Tensor(np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        out.backward(np.ones(3))
    assert leaf.grad is None                                   # nothing was accumulated


def test_bce_takes_a_target_per_logit():
    rng = np.random.default_rng(2)
    z, t = rng.standard_normal(6), rng.uniform(0, 1, 6)
    logits = Tensor(z.copy(), requires_grad=True)
    loss = ops.bce_with_logits(logits, Tensor(t))
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(loss.item(), np.mean(-t * np.log(p) - (1 - t) * np.log(1 - p)), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(logits.grad, (p - t) / 6, rtol=1e-12)
    # A number is still one target for all logits.
    np.testing.assert_allclose(ops.bce_with_logits(Tensor(z), 0.25).item(),
                               ops.bce_with_logits(Tensor(z), Tensor(np.full(6, 0.25))).item(), rtol=1e-15)
    for target, words in [(Tensor(t[:3]), "shape"), (Tensor(t.astype(np.float32)), "float32"),
                          (Tensor(t, requires_grad=True), "detach"), (t, "pass a number, or a Tensor"),
                          (Tensor(t + 1), r"\[0, 1\]"), ("x", "a number or a Tensor")]:
        with pytest.raises(ops.OpError, match=words):
            ops.bce_with_logits(Tensor(z), target)


# ============================================================================ dtypes
def test_modules_keep_their_dtype_and_refuse_another(nets):
    netD = build_models("pytorch", SIZE, 1, nz=NZ, ngf=4, ndf=4, seed=3)[1]
    state = netD.state_dict()
    wide = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in state.items()}
    with pytest.raises(ValueError, match="dtype mismatch: main.0.weight: checkpoint float64 vs model float32"):
        netD.load_state_dict(wide)
    same_weights(netD, nets[1])                                # refused whole: nothing changed
    netD.double().load_state_dict(wide)                         # converted on purpose: accepted
    assert all(p.dtype == np.float64 for p in netD.parameters())
    assert netD.to("cpu").main[0].weight.dtype == np.float64    # moving keeps the dtype
    x = Tensor(np.random.default_rng(0).uniform(-1, 1, (2, 1, SIZE, SIZE)))
    narrow = build_models("pytorch", SIZE, 1, nz=NZ, ngf=4, ndf=4, seed=3)[1].eval()
    with dcgan_cuda.no_grad():
        wide_out = netD.eval()(x).numpy()
        narrow_out = narrow(Tensor(x.numpy().astype(np.float32))).numpy()
    assert wide_out.dtype == np.float64 and narrow_out.dtype == np.float32
    np.testing.assert_allclose(wide_out, narrow_out, rtol=1e-4, atol=1e-5)
    with pytest.raises(ops.OpError, match="weight is float32 but input is float64|input is float64"):
        nets[1](x)                                              # a float64 batch into a float32 network
    assert netD.float().main[0].weight.dtype == np.float32


def test_a_training_state_with_moments_of_another_dtype_is_refused(nets, files, tmp_path):
    tensors, meta = checkpoint.read_tensors(files["state"])
    wide = {k: v.astype(np.float64) if k.startswith("optG.exp_avg") else v for k, v in tensors.items()}
    checkpoint.save_tensors(str(tmp_path / "wide.safetensors"), wide, meta)
    netG, netD = build_models("pytorch", SIZE, 1, nz=NZ, ngf=4, ndf=4, seed=0)
    optG, optD = Adam(netG.parameters()), Adam(netD.parameters())
    with pytest.raises(dcgan_cuda.CheckpointError, match="float64 moments where the optimizer keeps float32"):
        checkpoint.load_training_state(str(tmp_path / "wide.safetensors"), netG, netD, optG, optD)
    checkpoint.load_training_state(files["state"], netG, netD, optG, optD)   # the file as written loads


# ============================================================================ the README
def readme_python_blocks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Use from Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)\n```", section, re.S)


def test_the_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    """After a (tiny) run of the quickstart's command into out/, the README's blocks run as
    written, one after the other, in one namespace, as a user pasting them would."""
    blocks = readme_python_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    status = train.main(["--device", "cpu", "--imageSize", str(SIZE), "--ngf", "4", "--ndf", "4",
                         "--nz", str(NZ), "--batchSize", "8", "--max-images", "16", "--niter", "1",
                         "--manualSeed", "1", "--no-progress", "--outf", "out"])
    assert status == 0 and os.path.exists("out/checkpoint.safetensors")
    namespace = {"__name__": "readme"}
    for number, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {number + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Loss_G" in printed and "ld.global.f32" in printed


def test_state_preserved_puts_the_buffers_back_into_the_same_arrays():
    """A CUDA graph captured with --cuda-graph keeps the buffers' addresses: sampling in
    train mode (an epoch's grid, evaluate during training) must restore values, not arrays."""
    from dcgan_cuda.models import build_models
    from dcgan_cuda.sampling import state_preserved
    netG, _ = build_models("pytorch", 16, 1, 8, 4, 4, seed=0)
    buffers = {(id(m), k): b for _, m in netG.named_modules() for k, b in m._buffers.items()}
    before = {key: np.array(b) for key, b in buffers.items()}
    noise = netG.sample_noise(4, np.random.default_rng(0))
    with state_preserved(netG):
        netG(dcgan_cuda.Tensor(noise, netG.backend))       # train mode: running statistics move
        assert any(not np.array_equal(before[k], buffers[k]) for k in buffers)
    after = {(id(m), k): b for _, m in netG.named_modules() for k, b in m._buffers.items()}
    assert all(after[k] is buffers[k] for k in buffers)
    assert all(np.array_equal(before[k], buffers[k]) for k in buffers)
