"""The autograd, the layers and the DCGAN models on the NumPy backend.

Gradients of whole graphs are checked against float64 finite differences (the NumPy
backend keeps float64 when the Tensors hold float64 arrays); the bookkeeping that a GAN
training step relies on (accumulation, detach, no_grad, zero_grad) is checked on exact
numbers; and the models are checked name-for-name and number-for-number against the
pytorch/examples DCGAN.
"""
import numpy as np
import pytest

from dcgan_cuda import nn, ops
from dcgan_cuda.autograd import Function, Tensor, is_grad_enabled, no_grad
from dcgan_cuda.models import (Discriminator, Generator, ModelConfigError, build_models,
                               init_weights)
from dcgan_cuda.ops import OpError


# ------------------------------------------------------------------------------ helpers
def leaf(array, dtype=np.float64):
    return Tensor(np.array(array, dtype=dtype), requires_grad=True)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() w.r.t. the array x, perturbed in place."""
    grad = np.empty(x.shape)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)  # views: f sees the perturbation
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = f()
        flat[i] = original - eps
        down = f()
        flat[i] = original
        flat_grad[i] = (up - down) / (2 * eps)
    return grad


def assert_close(actual, expected, rtol, atol):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
    assert np.all(excess <= 0), f"worst excess {excess.max():.3g} (max |expected| {np.abs(expected).max():.3g})"


class Add(Function):
    """a + b, whose backward hands the *same* array to both inputs: the case the autograd
    must copy before it accumulates (test-local: ops.py has no add)."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def as_float64(module):
    """Layers create float32 parameters and buffers; swap in float64 copies so that a whole
    model can be checked at double precision (the NumPy ops keep whatever dtype they get)."""
    for _, m in module.named_modules():
        for p in m._parameters.values():
            if p is not None:
                p.data = p.data.astype(np.float64)
        for name, buf in m._buffers.items():
            if buf.dtype == np.float32:
                m._buffers[name] = buf.astype(np.float64)
    return module


def grads(module):
    return {name: None if p.grad is None else p.grad.copy() for name, p in module.named_parameters()}


# ------------------------------------------------------------- whole-graph gradients
def test_composite_graph_matches_finite_differences():
    """conv2d -> batch_norm -> leaky_relu -> conv_transpose2d -> tanh -> BCE, in float64,
    differentiated w.r.t. every input by backward() and by finite differences."""
    rng = np.random.default_rng(3)
    x = leaf(rng.standard_normal((2, 2, 5, 5)))
    w1 = leaf(rng.standard_normal((3, 2, 3, 3)) * 0.5)
    b1 = leaf(rng.standard_normal(3))
    gamma, beta = leaf(rng.normal(1, 0.3, 3)), leaf(rng.standard_normal(3))
    w2 = leaf(rng.standard_normal((3, 2, 4, 4)) * 0.5)   # (C_in, C_out, k, k)
    b2 = leaf(rng.standard_normal(2))
    inputs = [x, w1, b1, gamma, beta, w2, b2]

    def graph():
        h = ops.conv2d(x, w1, b1, stride=2, padding=1)          # (2, 3, 3, 3)
        h = ops.batch_norm(h, gamma, beta, training=True)       # batch statistics, no buffers
        pre_activation = h
        h = ops.leaky_relu(h, 0.2)
        h = ops.conv_transpose2d(h, w2, b2, stride=2, padding=1, output_padding=1)  # (2, 2, 7, 7)
        h = ops.tanh(h)
        return ops.bce_with_logits(h, 0.3), pre_activation

    loss, pre = graph()
    # float64 in, float64 all the way: nothing in ops or the tape casts to float32
    assert loss.dtype == np.float64 and pre.dtype == np.float64
    # a finite difference straddling LeakyReLU's kink would measure the wrong slope
    assert np.abs(pre.data).min() > 1e-3
    loss.backward()

    for t in inputs:
        expected = numerical_gradient(lambda: graph()[0].item(), t.data)
        # smooth (away from the kink) float64 function: truncation ~eps^2, rounding
        # ~1e-16/eps = 1e-10, against gradients of size ~1e-2..1
        assert t.grad.dtype == np.float64
        assert_close(t.grad, expected, rtol=1e-5, atol=1e-8)


def test_float64_generator_and_discriminator_gradients_match_a_directional_difference():
    """The whole generator step, z -> G -> D -> BCE(., 1), in float64: for G's parameters
    and for D's, the gradient dotted with a random direction equals the directional
    finite difference of the loss."""
    G, D = build_models(arch="pytorch", image_size=16, nc=1, nz=6, ngf=4, ndf=4, seed=1)
    as_float64(G), as_float64(D)
    rng = np.random.default_rng(2)
    z = Tensor(rng.standard_normal((3, 6, 1, 1)))

    def g_loss():
        return ops.bce_with_logits(D(G(z)), 1.0)

    loss = g_loss()
    assert loss.dtype == np.float64
    loss.backward()
    eps = 1e-6
    for model in (G, D):
        params = model.parameters()
        direction = [rng.standard_normal(p.shape) for p in params]
        analytic = sum(float(np.sum(p.grad * d)) for p, d in zip(params, direction))
        originals = [p.data.copy() for p in params]
        values = []
        for sign in (1, -1):
            for p, o, d in zip(params, originals, direction):
                p.data = o + sign * eps * d
            values.append(g_loss().item())
        for p, o in zip(params, originals):
            p.data = o
        numeric = (values[0] - values[1]) / (2 * eps)
        # One number summed over ~1e3 parameters in float64 (rounding ~1e-16/eps); a
        # ReLU kink is crossed with probability ~eps per unit, so a correct backward
        # agrees to ~1e-8 and 1e-6 relative leaves margin.
        assert abs(analytic - numeric) <= 1e-6 * abs(numeric) + 1e-9, type(model).__name__
        assert abs(numeric) > 1e-4  # the check is not vacuous


# ---------------------------------------------------------------- tape bookkeeping
def test_tensor_used_twice_in_one_op_gets_the_sum():
    # y = x @ x.T: x is both the input and the weight of linear
    x = leaf([[1.0, 2.0], [3.0, -1.0]])
    y = ops.linear(x, x)
    y.backward(np.array([[1.0, 0.0], [2.0, 1.0]]))
    # dL/dx = dY @ x (through the weight) + dY.T @ x (through the input)
    dY = np.array([[1.0, 0.0], [2.0, 1.0]])
    assert_close(x.grad, dY @ x.data + dY.T @ x.data, 0, 0)


def test_shared_gradient_array_is_not_corrupted_by_accumulation():
    """Add hands one array to both inputs. x reaches the loss through Add and through
    tanh, y only through Add: if the autograd added x's second contribution into the
    shared array, y.grad would change too."""
    x, y = leaf([0.3, -0.7, 1.2]), leaf([0.5, 0.1, -0.4])
    s = Add.apply(x, y)
    out = Add.apply(s, ops.tanh(x))
    g = np.array([1.0, 2.0, 3.0])
    out.backward(g)
    assert_close(y.grad, g, 0, 0)
    assert_close(x.grad, g + g * (1 - np.tanh(x.data) ** 2), 1e-15, 0)
    assert not np.shares_memory(x.grad, y.grad)
    assert not np.shares_memory(x.grad, g) and not np.shares_memory(y.grad, g)

    # the same tensor twice into one op whose backward returns one array for both
    a = leaf([1.0, -2.0])
    Add.apply(a, a).backward(np.array([0.5, 4.0]))
    assert_close(a.grad, [1.0, 8.0], 0, 0)


def test_intermediate_used_by_two_consumers_and_input_by_two_paths():
    """r = relu(x) feeds tanh and sigmoid; x also reaches the loss directly as linear's
    weight. Checked against finite differences in float64."""
    rng = np.random.default_rng(5)
    x_data = rng.standard_normal((3, 3))
    x_data += np.sign(x_data) * 0.1  # off ReLU's kink
    x = leaf(x_data)

    def graph():
        r = ops.relu(x)
        out = ops.linear(ops.tanh(r), ops.sigmoid(r))  # r used twice
        out = ops.linear(out, x)                         # x by a second path
        return ops.bce_with_logits(out, 0.3)

    graph().backward()
    expected = numerical_gradient(lambda: graph().item(), x.data)
    assert_close(x.grad, expected, rtol=1e-6, atol=1e-9)


def test_backward_twice_doubles_and_zero_grad_clears():
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(2, 3, 3, padding=1)
    init_weights(layer, rng)
    x = Tensor(rng.standard_normal((2, 2, 4, 4)).astype(np.float32))
    ops.bce_with_logits(layer(x), 1.0).backward()
    once = grads(layer)
    assert all(np.abs(g).max() > 0 for g in once.values())
    ops.bce_with_logits(layer(x), 1.0).backward()
    for name, g in grads(layer).items():
        assert_close(g, 2 * once[name], rtol=1e-6, atol=0)  # float32: g + g is exact, graphs identical
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())
    t = leaf([1.0])
    ops.tanh(t).backward()
    t.zero_grad()
    assert t.grad is None


def test_no_grad_records_nothing():
    x = leaf(np.ones((2, 3)))
    with no_grad():
        assert not is_grad_enabled()
        y = ops.tanh(ops.linear(x, x))
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward(np.ones((2, 2)))
    assert x.grad is None
    # the switch is restored even when the block raises
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError
    assert is_grad_enabled()


def test_detach_cuts_the_graph():
    x = leaf([0.5, -1.0])
    h = ops.tanh(x)
    d = h.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, h.data)  # same numbers, no copy
    out = ops.sigmoid(d)
    assert not out.requires_grad
    # detached and live paths side by side: only the live one reaches x. Were the graph
    # not cut, x.grad would also get g * (1 - tanh(d)^2) * (1 - tanh(x)^2) through d.
    y = leaf([2.0, 3.0])
    out = Add.apply(Add.apply(ops.tanh(d), h), y)
    g = np.array([1.0, -2.0])
    out.backward(g)
    assert_close(x.grad, g * (1 - np.tanh(x.data) ** 2), 1e-15, 0)
    assert_close(y.grad, g, 0, 0)


def test_gan_step_pattern():
    """pytorch/examples' training step: D on real and on fake.detach(), then G through D."""
    G, D = build_models(arch="pytorch", image_size=16, nc=1, nz=8, ngf=4, ndf=4, seed=0)
    rng = np.random.default_rng(1)
    z = Tensor(G.sample_noise(4, rng))
    real = Tensor(rng.uniform(-1, 1, (4, 1, 16, 16)).astype(np.float32))

    fake = G(z)
    ops.bce_with_logits(D(real), 1.0).backward()
    d_real = grads(D)
    ops.bce_with_logits(D(fake.detach()), 0.0).backward()
    assert all(p.grad is None for p in G.parameters()), "D's loss on fake.detach() reached G"
    d_both = grads(D)

    # D's gradient is the sum of the two terms (each recomputed alone for comparison)
    D.zero_grad()
    ops.bce_with_logits(D(fake.detach()), 0.0).backward()
    d_fake = grads(D)
    for name in d_both:
        # float32: one addition of the two recomputed (bitwise identical) terms
        assert_close(d_both[name], d_real[name] + d_fake[name], rtol=1e-6, atol=1e-9)

    # G's step: the loss on D(fake) flows into G (and, as in PyTorch, into D's grads too)
    D.zero_grad()
    ops.bce_with_logits(D(fake), 1.0).backward()
    g_grads = grads(G)
    assert all(g is not None and np.abs(g).max() > 0 for g in g_grads.values())
    assert all(p.grad is not None for p in D.parameters())


# ----------------------------------------------------------------- the DCGAN models
def pytorch_examples_state_dict_table(nz=100, ngf=64, ndf=64, nc=3):
    """netG / netD of pytorch/examples dcgan/main.py at 64x64: (name, shape) in its order."""
    def conv(prefix, cout, cin):   # Conv2d(cin, cout, 4, ...), bias=False
        return [(f"{prefix}.weight", (cout, cin, 4, 4))]

    def convt(prefix, cin, cout):  # ConvTranspose2d(cin, cout, 4, ...), bias=False
        return [(f"{prefix}.weight", (cin, cout, 4, 4))]

    def bn(prefix, c):
        return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
                (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]

    netG = (convt("main.0", nz, ngf * 8) + bn("main.1", ngf * 8)             # main.2 ReLU
            + convt("main.3", ngf * 8, ngf * 4) + bn("main.4", ngf * 4)      # main.5 ReLU
            + convt("main.6", ngf * 4, ngf * 2) + bn("main.7", ngf * 2)      # main.8 ReLU
            + convt("main.9", ngf * 2, ngf) + bn("main.10", ngf)             # main.11 ReLU
            + convt("main.12", ngf, nc))                                     # main.13 Tanh
    netD = (conv("main.0", ndf, nc)                                          # main.1 LeakyReLU
            + conv("main.2", ndf * 2, ndf) + bn("main.3", ndf * 2)           # main.4 LeakyReLU
            + conv("main.5", ndf * 4, ndf * 2) + bn("main.6", ndf * 4)       # main.7 LeakyReLU
            + conv("main.8", ndf * 8, ndf * 4) + bn("main.9", ndf * 8)       # main.10 LeakyReLU
            + conv("main.11", 1, ndf * 8))                                   # main.12 Sigmoid
    return netG, netD


def test_state_dict_names_and_shapes_equal_pytorch_examples():
    netG, netD = build_models(arch="pytorch", image_size=64, nc=3, nz=100, ngf=64, ndf=64)
    expected_G, expected_D = pytorch_examples_state_dict_table()
    for model, expected in ((netG, expected_G), (netD, expected_D)):
        state = model.state_dict()
        assert [(k, v.shape) for k, v in state.items()] == expected  # names, shapes and order
        for k, v in state.items():
            assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32), k


def _torch_dcgan(torch, nz, ngf, ndf, nc):
    """pytorch/examples' netG and netD, layer for layer."""
    tnn = torch.nn

    class Wrapped(tnn.Module):
        def __init__(self, *layers, squeeze):
            super().__init__()
            self.main = tnn.Sequential(*layers)
            self.squeeze = squeeze

        def forward(self, x):
            out = self.main(x)
            return out.view(-1, 1).squeeze(1) if self.squeeze else out

    netG = Wrapped(
        tnn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), tnn.BatchNorm2d(ngf * 8), tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf * 4), tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf * 2), tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf), tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), tnn.Tanh(), squeeze=False)
    netD = Wrapped(
        tnn.Conv2d(nc, ndf, 4, 2, 1, bias=False), tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 2), tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 4), tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 8), tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), tnn.Sigmoid(), squeeze=True)
    return netG.double(), netD.double()


@pytest.mark.parametrize("training", [False, True])
def test_models_equal_pytorch_examples_dcgan(training):
    """Our state_dict loads (strict) into pytorch/examples' netG/netD, and both compute the
    same outputs, running statistics and parameter gradients. Both sides run in float64
    so that the comparison measures the code, not float32 summation order."""
    torch = pytest.importorskip("torch")
    nz, ngf, ndf, nc, n = 10, 4, 4, 3, 3
    G, D = build_models(arch="pytorch", image_size=64, nc=nc, nz=nz, ngf=ngf, ndf=ndf, seed=4)
    tG, tD = _torch_dcgan(torch, nz, ngf, ndf, nc)
    for ours, theirs in ((G, tG), (D, tD)):
        # a non-trivial starting state for the buffers, so eval mode tests them
        for name, buf in ours.named_buffers():
            if name.endswith("running_mean"):
                buf[...] = np.random.default_rng(len(name)).normal(0, 0.1, buf.shape)
            elif name.endswith("running_var"):
                buf[...] = np.random.default_rng(len(name)).uniform(0.5, 2, buf.shape)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()}, strict=True)
        as_float64(ours)
        ours.train(training)
        theirs.train(training)

    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, nz, 1, 1))
    images = rng.uniform(-1, 1, (n, nc, 64, 64))
    R_img, R_logit = rng.standard_normal((n, nc, 64, 64)), rng.standard_normal(n)

    fake = G(Tensor(z))
    tz = torch.from_numpy(z)
    tfake = tG(tz)
    logits = D(Tensor(images))
    timages = torch.from_numpy(images)
    # pytorch/examples' D ends in Sigmoid; ours returns the logits (the loss applies it).
    # Catch torch's logits on the way, so that each D runs exactly once on each side.
    caught = []
    hook = tD.main[11].register_forward_hook(lambda module, args, out: caught.append(out))
    tprob = tD(timages)
    hook.remove()
    assert fake.dtype == np.float64
    # float64 on both sides: only summation order differs, ~1e-15 relative per layer
    assert_close(fake.numpy(), tfake.detach().numpy(), rtol=1e-9, atol=1e-11)
    assert_close(1 / (1 + np.exp(-logits.numpy())), tprob.detach().numpy(), rtol=1e-9, atol=1e-11)
    assert_close(logits.numpy(), caught[0].view(-1).detach().numpy(), rtol=1e-9, atol=1e-11)

    # gradients: push the same upstream gradient through both
    fake.backward(R_img)
    tfake.backward(torch.from_numpy(R_img))
    logits.backward(R_logit)
    caught[0].view(-1).backward(torch.from_numpy(R_logit))
    for ours, theirs in ((G, tG), (D, tD)):
        t_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            expected = t_params[name].grad.numpy()
            assert_close(p.grad, expected, rtol=1e-8, atol=1e-10 * np.abs(expected).max())
        # train mode folded the batch statistics into the buffers (and counted the batch)
        # as PyTorch did; eval mode left them alone on both sides
        t_buffers = dict(theirs.named_buffers())
        for name, buf in ours.named_buffers():
            assert_close(np.asarray(buf, np.float64), t_buffers[name].numpy(), rtol=1e-12, atol=1e-14)
            if name.endswith("num_batches_tracked"):
                assert int(buf) == int(training)


@pytest.mark.parametrize("arch", ["pytorch", "paper"])
@pytest.mark.parametrize("image_size", [16, 32, 64, 128])
@pytest.mark.parametrize("nc", [1, 3])
def test_model_output_shapes(arch, image_size, nc):
    G, D = build_models(arch=arch, image_size=image_size, nc=nc, nz=8, ngf=4, ndf=4, seed=0)
    z = Tensor(G.sample_noise(2, np.random.default_rng(0)))
    with no_grad():
        images = G(z)
        assert images.shape == (2, nc, image_size, image_size)
        assert images.dtype == np.float32
        assert np.abs(images.data).max() <= 1.0
        assert np.abs(images.data).max() > 0.0  # not a dead generator
        logits = D(images)
    assert logits.shape == (2,)
    assert np.all(np.isfinite(logits.data))
    # G's noise also works flat (N, nz)
    with no_grad():
        flat = G(Tensor(z.data.reshape(2, 8)))
    np.testing.assert_array_equal(flat.data, images.data)


@pytest.mark.parametrize("image_size", [48, 8, 256, 0, 100])
def test_unsupported_image_sizes_raise(image_size):
    for build in (lambda: Generator(image_size=image_size, ngf=4),
                  lambda: Discriminator(image_size=image_size, ndf=4)):
        with pytest.raises(ModelConfigError, match=rf"image size {image_size} is not supported.*16, 32, 64, 128"):
            build()


def test_bad_model_configs_raise():
    with pytest.raises(ModelConfigError, match="unknown architecture 'resnet'"):
        Generator(arch="resnet")
    with pytest.raises(ModelConfigError, match="1 or 3 channels, got 2"):
        Discriminator(nc=2)
    with pytest.raises(ModelConfigError, match="positive"):
        Generator(ngf=0)
    assert issubclass(ModelConfigError, ValueError)


@pytest.mark.parametrize("arch", ["pytorch", "paper"])
def test_init_statistics(arch):
    """Conv/linear weights ~ N(0, 0.02), BN weight ~ N(1, 0.02), every bias 0."""
    G, D = build_models(arch=arch, image_size=64, nc=3, nz=100, ngf=32, ndf=32, seed=11)
    bn_weights = []
    for model in (G, D):
        for prefix, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = m.weight.data
                k = w.size  # >= 1536 samples per layer at these widths
                # 5 standard errors: mean's is 0.02/sqrt(k), std's is 0.02/sqrt(2k)
                assert abs(w.mean()) < 5 * 0.02 / np.sqrt(k), prefix
                assert abs(w.std() - 0.02) < 5 * 0.02 / np.sqrt(2 * k), prefix
                if m.bias is not None:
                    np.testing.assert_array_equal(m.bias.data, 0)
            elif isinstance(m, nn.BatchNorm2d):
                bn_weights.append(m.weight.data)
                np.testing.assert_array_equal(m.bias.data, 0)
                np.testing.assert_array_equal(m.running_mean, 0)
                np.testing.assert_array_equal(m.running_var, 1)
    bn = np.concatenate(bn_weights)
    assert bn.size >= 800
    assert abs(bn.mean() - 1) < 5 * 0.02 / np.sqrt(bn.size)
    assert abs(bn.std() - 0.02) < 5 * 0.02 / np.sqrt(2 * bn.size)
    # the same seed draws the same numbers; another seed, others
    G2, _ = build_models(arch=arch, image_size=64, nc=3, nz=100, ngf=32, ndf=32, seed=11)
    G3, _ = build_models(arch=arch, image_size=64, nc=3, nz=100, ngf=32, ndf=32, seed=12)
    w, w2, w3 = (g.main[0].weight.data for g in (G, G2, G3))
    np.testing.assert_array_equal(w, w2)
    assert not np.array_equal(w, w3)


def test_load_state_dict_round_trip_and_errors_name_the_key():
    G, _ = build_models(image_size=16, nc=1, nz=8, ngf=4, ndf=4, seed=0)
    other, _ = build_models(image_size=16, nc=1, nz=8, ngf=4, ndf=4, seed=9)
    state = G.state_dict()
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    assert other.state_dict()["main.1.num_batches_tracked"].dtype == np.int64

    wrong_shape = dict(state)
    wrong_shape["main.3.weight"] = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"main\.3\.weight.*\(1, 2, 3, 3\)"):
        other.load_state_dict(wrong_shape)
    missing = {k: v for k, v in state.items() if k != "main.1.running_var"}
    with pytest.raises(ValueError, match=r"missing.*main\.1\.running_var"):
        other.load_state_dict(missing)
    unexpected = dict(state, **{"main.99.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"unexpected.*main\.99\.weight"):
        other.load_state_dict(unexpected)


def test_batchnorm_layer_tracks_batches_and_uses_running_stats_in_eval():
    layer = nn.BatchNorm2d(1)
    x = Tensor(np.array([1.0, 2.0, 3.0, 6.0], np.float32).reshape(2, 1, 1, 2))
    y = layer(x)  # train mode: batch statistics mean 3, biased var 3.5
    assert_close(y.data.reshape(-1), (np.array([1, 2, 3, 6.0]) - 3) / np.sqrt(3.5 + 1e-5), 1e-6, 1e-6)
    assert int(layer.num_batches_tracked) == 1
    assert_close(layer.running_mean, [0.3], 1e-6, 0)
    assert_close(layer.running_var, [0.9 + 0.1 * 14 / 3], 1e-6, 0)
    layer.eval()
    y = layer(x)
    assert int(layer.num_batches_tracked) == 1  # eval does not count
    expected = (np.array([1, 2, 3, 6.0]) - 0.3) / np.sqrt(0.9 + 0.1 * 14 / 3 + 1e-5)
    assert_close(y.data.reshape(-1), expected, 1e-6, 1e-6)


# --------------------------------------------------------------------- op validation
def _f32(*shape):
    return Tensor(np.zeros(shape, np.float32))


@pytest.mark.parametrize("call, op, fragment", [
    (lambda: ops.conv2d(_f32(1, 3, 8, 8), _f32(4, 2, 3, 3)), "conv2d", "3 channels"),
    (lambda: ops.conv2d(_f32(3, 8, 8), _f32(4, 3, 3, 3)), "conv2d", "input must be 4-D"),
    (lambda: ops.conv2d(_f32(1, 3, 8, 8), _f32(4, 3, 3)), "conv2d", "weight must be 4-D"),
    (lambda: ops.conv2d(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), _f32(3)), "conv2d", "bias must have shape"),
    (lambda: ops.conv2d(_f32(1, 3, 2, 2), _f32(4, 3, 5, 5)), "conv2d", "does not fit"),
    (lambda: ops.conv2d(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), stride=0), "conv2d", "stride"),
    (lambda: ops.conv2d(np.zeros((1, 3, 8, 8), np.float32), _f32(4, 3, 3, 3)), "conv2d", "must be a Tensor"),
    (lambda: ops.conv2d(Tensor(np.zeros((1, 3, 8, 8), np.int32)), _f32(4, 3, 3, 3)), "conv2d", "float32"),
    (lambda: ops.conv_transpose2d(_f32(1, 3, 4, 4), _f32(4, 2, 4, 4)), "conv_transpose2d", "3 channels"),
    (lambda: ops.conv_transpose2d(_f32(1, 3, 4, 4), _f32(3, 2, 4, 4), stride=2, output_padding=2),
     "conv_transpose2d", "output_padding"),
    (lambda: ops.linear(_f32(2, 3), _f32(4, 5)), "linear", "3 features"),
    (lambda: ops.batch_norm(_f32(2, 3, 4, 4), _f32(2), _f32(3)), "batch_norm", "weight must have shape"),
    (lambda: ops.batch_norm(_f32(2, 3, 4, 4), _f32(3), _f32(3), training=False), "batch_norm", "running"),
    (lambda: ops.batch_norm(_f32(1, 3, 1, 1), _f32(3), _f32(3)), "batch_norm", "more than one value"),
    (lambda: ops.batch_norm(_f32(2, 3, 4, 4), _f32(3), _f32(3), running_mean=np.zeros(3, np.float32)),
     "batch_norm", "both running_mean and running_var"),
    (lambda: ops.batch_norm(_f32(2, 3, 4, 4), _f32(3), _f32(3), activation_slope=1.5), "batch_norm",
     r"activation_slope must lie in \[0, 1\]"),
    (lambda: ops.bce_with_logits(_f32(4), 1.5), "bce_with_logits", "target"),
    (lambda: ops.cross_entropy(_f32(4, 3), _f32(4)), "cross_entropy", "integer"),
    (lambda: ops.reshape(_f32(2, 3), (4, 2)), "reshape", "cannot view"),
    (lambda: ops.adaptive_max_pool2d(_f32(1, 1, 4, 4), 0), "adaptive_max_pool2d", "positive"),
    (lambda: Generator(nz=8, ngf=4, image_size=16)(_f32(2, 7, 1, 1)), "Generator", "z must have shape"),
    (lambda: Discriminator(ndf=4, image_size=16)(_f32(2, 3, 32, 32)), "Discriminator", "images must have shape"),
])
def test_ops_reject_bad_arguments_naming_the_op(call, op, fragment):
    with pytest.raises(OpError, match=rf"^{op}: .*{fragment}"):
        call()


@pytest.mark.parametrize("arch", ["pytorch", "paper"])
def test_fused_batchnorm_activation_changes_no_result(arch, monkeypatch):
    """Sequential fuses each BatchNorm2d with the ReLU/LeakyReLU after it. In float32 the
    fused models give the same outputs, running statistics and gradients as the layers run
    one by one, and record fewer nodes on the tape."""
    def run(fuse):
        monkeypatch.setattr(nn.Sequential, "fuse_activations", fuse)
        G, D = build_models(arch=arch, image_size=16, nc=3, nz=5, ngf=4, ndf=4, seed=3)
        rng = np.random.default_rng(0)
        logits = D(G(Tensor(rng.standard_normal((2, 5, 1, 1)).astype(np.float32))))
        nodes = _count_nodes(logits)
        ops.bce_with_logits(logits, 1.0).backward()
        state = {**G.state_dict(), **{"D." + k: v for k, v in D.state_dict().items()}}
        grads = [p.grad for m in (G, D) for p in m.parameters()]
        return logits.numpy(), state, grads, nodes

    fused, plain = run(True), run(False)
    np.testing.assert_array_equal(fused[0], plain[0])
    for name in plain[1]:
        np.testing.assert_array_equal(fused[1][name], plain[1][name], err_msg=name)
    for got, want in zip(fused[2], plain[2]):
        np.testing.assert_array_equal(got, want)
    # one node fewer per batchnorm: every batchnorm of both models is followed by an activation
    G, D = build_models(arch=arch, image_size=16, nc=3, nz=5, ngf=4, ndf=4)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for model in (G, D) for _, m in model.named_modules())
    assert batchnorms >= 3
    assert plain[3] - fused[3] == batchnorms


def _count_nodes(root):
    seen, stack = set(), [root]
    while stack:
        t = stack.pop()
        if id(t) in seen or t._node is None:
            continue
        seen.add(id(t))
        stack.extend(i for i in t._node.inputs if isinstance(i, Tensor))
    return len(seen)


# ---------------------------------------------------------------- Adam's flat buffer
def _generator_and_loss(seed=3):
    G, _ = build_models(arch="pytorch", image_size=16, nc=1, nz=5, ngf=4, ndf=4, seed=seed)
    z = Tensor(np.random.default_rng(seed).standard_normal((2, 5, 1, 1)).astype(np.float32))
    R = np.random.default_rng(seed + 1).standard_normal((2, 1, 16, 16)).astype(np.float32)
    return G, lambda: G(z).backward(R)


def test_adam_updates_all_parameters_in_one_call_with_the_bits_of_one_call_per_tensor(monkeypatch):
    from dcgan_cuda import reference
    from dcgan_cuda.backend import numpy_backend
    from dcgan_cuda.optim import Adam
    G, backward = _generator_and_loss()
    G_ref, backward_ref = _generator_and_loss()
    params, params_ref = G.parameters(), G_ref.parameters()
    opt = Adam(params, lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-4)
    moments = [(np.zeros(p.shape, np.float32), np.zeros(p.shape, np.float32)) for p in params_ref]
    calls = []
    backend = numpy_backend()
    monkeypatch.setattr(backend, "adam_step", lambda *a, **k: calls.append(a[0].shape) or
                        reference.adam_step(*a, **k))
    for step in range(1, 4):
        opt.zero_grad()
        G_ref.zero_grad()
        backward()
        backward_ref()
        assert all(p.grad is p.grad_buffer for p in params)
        opt.step()
        for p, (m, v) in zip(params_ref, moments):
            reference.adam_step(p.data, p.grad, m, v, step, 1e-3, 0.5, 0.999, 1e-8, 1e-4)
    assert calls == [(sum(p.data.size for p in params),)] * 3  # one update per step, whole buffer
    for p, p_ref, m, v, (m_ref, v_ref) in zip(params, params_ref, opt.exp_avg, opt.exp_avg_sq, moments):
        np.testing.assert_array_equal(p.data, p_ref.data)
        np.testing.assert_array_equal(m, m_ref)
        np.testing.assert_array_equal(v, v_ref)
        assert np.shares_memory(p.data, opt.flat_params) and np.shares_memory(m, opt.flat_exp_avg)


def test_adam_follows_parameters_whose_arrays_were_replaced():
    """load_state_dict gives each parameter a new array; the next step copies it into the flat
    buffer and updates what the model now holds."""
    from dcgan_cuda.optim import Adam
    G, backward = _generator_and_loss()
    opt = Adam(G.parameters(), lr=1e-2)
    loaded = {k: np.full_like(v, 0.5) if k.endswith("weight") else v for k, v in G.state_dict().items()}
    G.load_state_dict(loaded)
    backward()
    opt.step()
    for name, p in G.named_parameters():
        assert np.shares_memory(p.data, opt.flat_params), name
        if name.endswith("weight"):
            # Adam's first step moves every element by ~lr against its gradient's sign
            moved = np.abs(p.data - 0.5)
            assert np.all((moved > 0.9e-2) & (moved < 1.1e-2) | (p.grad == 0)), name


def test_adam_state_round_trip_keeps_the_flat_layout():
    from dcgan_cuda.optim import Adam
    G, backward = _generator_and_loss()
    opt = Adam(G.parameters())
    backward()
    opt.step()
    state = opt.state_dict()
    G2, backward2 = _generator_and_loss()
    opt2 = Adam(G2.parameters()).load_state_dict(state)
    assert opt2.step_count == 1
    for i, m in enumerate(opt2.exp_avg):
        np.testing.assert_array_equal(m, state[f"exp_avg.{i}"])
        assert np.shares_memory(m, opt2.flat_exp_avg)
    with pytest.raises(ValueError, match="lacks exp_avg_sq.0"):
        opt2.load_state_dict({"step": np.int64(1), "exp_avg.0": state["exp_avg.0"]})
