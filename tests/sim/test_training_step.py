"""End to end under the simulator: one full DCGAN training step on our kernels equals the
same step on the NumPy backend (D on real and fake, G through D, both Adam steps)."""
import numpy as np
import pytest

from dcgan_cuda.autograd import Tensor
from dcgan_cuda.backend import get_backend
from dcgan_cuda.models import build_models
from dcgan_cuda.optim import Adam
from dcgan_cuda.train import train_step


def one_step(device, arch, versions=("default",)):
    backend = get_backend(device)
    if device == "sim":
        backend.choose_versions(versions)
    netG, netD = build_models(arch, 16, 1, 8, 4, 4, seed=11, backend=backend)
    optG = Adam(netG.parameters(), 2e-4, (0.5, 0.999))
    optD = Adam(netD.parameters(), 2e-4, (0.5, 0.999), weight_decay=1e-5)
    rng = np.random.default_rng(3)
    real = rng.uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32)
    noise = netG.sample_noise(2, rng)
    stats = train_step(netG, netD, optG, optD, Tensor(backend.asarray(real), backend),
                       Tensor(backend.asarray(noise), backend))
    return stats, netG.state_dict(), netD.state_dict(), optD.state_dict()


@pytest.mark.parametrize("arch,versions", [("pytorch", "default"), ("paper", "default"), ("pytorch", "newest")])
def test_simulated_kernels_train_like_the_numpy_reference(arch, versions):
    """With each family's default kernels, and with the newest ones (what gpu_check times)."""
    sim, ref = one_step("sim", arch, [versions]), one_step("cpu", arch)
    for key, value in ref[0].items():
        # Losses are means of a handful of float32 terms: a few ulp apart at most.
        assert abs(sim[0][key] - value) <= 1e-5 * max(1.0, abs(value)), key
    for sim_state, ref_state in zip(sim[1:], ref[1:]):
        assert sim_state.keys() == ref_state.keys()
        for name, expected in ref_state.items():
            # One Adam step moves each weight by about lr = 2e-4 times a ratio m/sqrt(v) that
            # float32 rounding can shift slightly for gradients near zero; 1e-6 absolute is
            # 0.5% of a step, far below any real bug.
            np.testing.assert_allclose(sim_state[name], expected, rtol=1e-4, atol=1e-6, err_msg=name)
