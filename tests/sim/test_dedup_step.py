"""The dedup autoencoder's training step (noise, dropout, squared error, Adam) on our kernels
under the simulator equals the same step on the NumPy backend: the counter-based random
numbers make both draw the same noise and masks."""
import numpy as np

from dcgan_cuda.autograd import Tensor
from dcgan_cuda.backend import get_backend
from dcgan_cuda.dedup import Autoencoder
from dcgan_cuda.dropout import gaussian_noise, squared_error
from dcgan_cuda.optim import Adam


def one_step(device):
    backend = get_backend(device, announce=lambda line: None)
    ae = Autoencoder(12, 6, 4, dropout=0.3, seed=5).to(backend)
    opt = Adam(ae.parameters(), 1e-3, (0.9, 0.999))
    clean = backend.asarray(np.random.default_rng(2).uniform(-1, 1, (3, 12)).astype(np.float32))
    out, code = ae(gaussian_noise(Tensor(clean, backend), 0.1, 77))
    loss = squared_error(out, clean)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), code.numpy(), ae.state_dict()


def test_simulated_kernels_train_the_autoencoder_like_the_numpy_reference():
    sim, ref = one_step("sim"), one_step("cpu")
    # a mean of 36 float32 squares, summed in another order
    assert abs(sim[0] - ref[0]) <= 1e-6 * max(1.0, ref[0])
    np.testing.assert_allclose(sim[1], ref[1], rtol=1e-5, atol=1e-6)
    assert (ref[1] == 0).any() and (ref[1] > 0).any()   # the ReLU code has both kinds of bits
    for name, expected in ref[2].items():
        # one Adam step of lr 1e-3: 1e-6 is a thousandth of a step
        np.testing.assert_allclose(sim[2][name], expected, rtol=0, atol=1e-6, err_msg=name)
