"""The CUDA-graph training step, with the simulator's stand-in for a graph (jit.recording):
capture once, replay, and it must train exactly as eager steps do, bit for bit, keeping
every host-side counter a step advances."""
import numpy as np
import pytest

from dcgan_cuda.autograd import Tensor
from dcgan_cuda.backend import get_backend
from dcgan_cuda.cuda_graph import GraphCaptureError, GraphedTrainStep
from dcgan_cuda.kernels import jit
from dcgan_cuda.models import build_models
from dcgan_cuda.optim import Adam
from dcgan_cuda.train import train_step


def run(graphed, batches, arch="pytorch"):
    backend = get_backend("sim")
    netG, netD = build_models(arch, 16, 1, 8, 4, 4, seed=5, backend=backend)
    optG = Adam(netG.parameters(), 2e-4, (0.5, 0.999))
    optD = Adam(netD.parameters(), 2e-4, (0.5, 0.999), weight_decay=1e-5)
    step = GraphedTrainStep(netG, netD, optG, optD) if graphed else \
        (lambda real, noise: train_step(netG, netD, optG, optD, real, noise))
    stats, launches = [], []
    for real, noise in batches:
        jit.LAUNCHES.clear()
        stats.append(step(Tensor(backend.asarray(real), backend), Tensor(backend.asarray(noise), backend)))
        launches.append(sum(jit.LAUNCHES.values()))
    counters = (optG.step_count, optD.step_count,
                [m._buffers["num_batches_tracked"] for net in (netG, netD) for _, m in net.named_modules()
                 if "num_batches_tracked" in m._buffers])
    return stats, launches, counters, (netG.state_dict(), netD.state_dict(), optG.state_dict(),
                                       optD.state_dict()), step


def batches(sizes, seed=8):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-1, 1, (n, 1, 16, 16)).astype(np.float32),
             rng.standard_normal((n, 8, 1, 1)).astype(np.float32)) for n in sizes]


# The paper arch (dense projection and head as well as convolutions); the CLI test below
# runs the pytorch arch through the same class.
@pytest.mark.parametrize("arch", ["paper"])
def test_replayed_steps_equal_eager_steps_bitwise(arch):
    # warm-up, capture, a replay, an odd-sized batch (eager), one more replay
    data = batches([2, 2, 2, 3, 2])
    eager_stats, eager_launches, eager_counters, eager_state, _ = run(False, data, arch)
    stats, launches, counters, state, step = run(True, data, arch)
    assert stats == eager_stats
    assert counters == eager_counters
    for ours, theirs in zip(state, eager_state):
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert np.asarray(ours[name]).tobytes() == np.asarray(theirs[name]).tobytes(), name
    assert step.replays == 2
    # The capture queues the step's kernels once; a replay launches none of its own.
    full = eager_launches[0]
    assert launches[0] == full and launches[1] == full
    assert launches[2] == launches[4] == 0
    assert launches[3] == eager_launches[3]
    # and the steps did train: the parameters moved
    assert stats[0] != stats[2]


def test_a_failed_capture_leaves_the_counters_as_they_were(monkeypatch):
    data = batches([2, 2])
    backend = get_backend("sim")
    netG, netD = build_models("pytorch", 16, 1, 8, 4, 4, seed=5, backend=backend)
    optG, optD = Adam(netG.parameters()), Adam(netD.parameters())
    step = GraphedTrainStep(netG, netD, optG, optD)
    step(*(Tensor(backend.asarray(a), backend) for a in data[0]))
    before = (optG.step_count, optD.step_count)

    def broken(*args):
        raise RuntimeError("an operation that cannot be captured")
    monkeypatch.setattr("dcgan_cuda.cuda_graph.step_on_device", broken)
    with pytest.raises(RuntimeError, match="cannot be captured"):
        step(*(Tensor(backend.asarray(a), backend) for a in data[1]))
    assert (optG.step_count, optD.step_count) == before
    step.release()
    assert optG.device_scalars is None and optD.device_scalars is None


def test_the_numpy_backend_is_refused():
    netG, netD = build_models("pytorch", 16, 1, 8, 4, 4, seed=5, backend=get_backend("cpu"))
    with pytest.raises(GraphCaptureError, match="--device cuda"):
        GraphedTrainStep(netG, netD, Adam(netG.parameters()), Adam(netD.parameters()))


def test_training_cli_with_cuda_graph_writes_the_eager_runs_checkpoint(tmp_path):
    """python -m dcgan_cuda.train --cuda-graph: 7 images in batches of 2 make a warm-up, a
    capture, a replay and a last batch of 1 (eager); the checkpoint equals the run without."""
    from dcgan_cuda.checkpoint import read_tensors
    from dcgan_cuda.train import main
    finals = []
    for graph in (False, True):
        out = tmp_path / ("graph" if graph else "eager")
        argv = ["--device", "sim", "--imageSize", "16", "--ngf", "4", "--ndf", "4", "--nz", "8",
                "--batchSize", "2", "--max-images", "7", "--niter", "1", "--manualSeed", "3",
                "--outf", str(out), "--no-progress"] + (["--cuda-graph"] if graph else [])
        assert main(argv) == 0
        finals.append(read_tensors(str(out / "checkpoint.safetensors"))[0])
    eager, graphed = finals
    assert eager.keys() == graphed.keys() and int(eager["optG.step"]) == 4
    for name in eager:
        assert np.asarray(eager[name]).tobytes() == np.asarray(graphed[name]).tobytes(), name


def test_training_cli_refuses_an_unknown_kernel_version(tmp_path, capsys):
    from dcgan_cuda.train import main
    assert main(["--device", "sim", "--kernels", "newest", "conv2d=99", "--outf", str(tmp_path),
                 "--dry-run", "--no-progress"]) == 2
    from dcgan_cuda.kernels import conv2d
    err = capsys.readouterr().err
    assert "--kernels" in err and f"conv2d {sorted(conv2d.VERSIONS)}" in err
