"""The paper's experiments as tools (dcgan_cuda.experiments): each on a tiny checkpoint
trained once for this file, checked for its outputs and for the numbers it promises."""
import json

import numpy as np
import pytest
from PIL import Image

from dcgan_cuda import reference, train
from dcgan_cuda.autograd import Tensor, no_grad
from dcgan_cuda.backend import numpy_backend
from dcgan_cuda.experiments import arithmetic, common, forget, nearest, probe, visualize, walk
from dcgan_cuda.models import build_models

B = numpy_backend()
TOOLS = {"walk": (walk, "6.1", "--netG"), "arithmetic": (arithmetic, "6.3.2", "--netG"),
         "probe": (probe, "5.1 and 5.2", "--netD"), "nearest": (nearest, "4.1", "--netG"),
         "visualize": (visualize, "6.2", "--netD"), "forget": (forget, "6.3.1", "--netG")}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A DCGAN trained for one short epoch on 128 digits at 16x16: tiny, but a real
    checkpoint written by dcgan_cuda.train, with batchnorm running statistics."""
    out = tmp_path_factory.mktemp("tiny")
    rc = train.main(["--imageSize", "16", "--ngf", "8", "--ndf", "8", "--nz", "16", "--niter", "1",
                     "--max-images", "128", "--batchSize", "32", "--outf", str(out),
                     "--manualSeed", "3", "--no-progress", "--device", "cpu"])
    assert rc == 0
    return {"G": str(out / "netG_epoch_0.safetensors"), "D": str(out / "netD_epoch_0.safetensors"),
            "state": str(out / "checkpoint.safetensors")}


@pytest.fixture(scope="module")
def netG(ckpt):
    return common.load_generator(ckpt["G"], B).eval()


@pytest.fixture(scope="module")
def netD(ckpt):
    return common.load_discriminator(ckpt["D"], B).eval()


def summary(outf):
    return json.loads((outf / "summary.json").read_text())


def png_shape(path):
    with Image.open(path) as im:
        return im.size[1], im.size[0]  # (height, width)


def grid_size(n_rows, n_cols, size, scale):
    """Height/width of images.make_grid's picture (2-pixel borders), enlarged."""
    return ((n_rows * (size + 2) + 2) * scale, (n_cols * (size + 2) + 2) * scale)


# ----------------------------------------------------------------------- every CLI
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_help_names_the_paper_section(tool, capsys):
    module, section, _ = TOOLS[tool]
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"section {section}" in text and "1511.06434" in text


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_missing_checkpoint_is_a_clear_error(tool, tmp_path, capsys):
    module, _, flag = TOOLS[tool]
    rc = module.main([flag, str(tmp_path / "nope.safetensors"), "--outf", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "nope.safetensors does not exist" in err


def test_wrong_network_kind_is_a_clear_error(ckpt, tmp_path, capsys):
    assert walk.main(["--netG", ckpt["D"], "--outf", str(tmp_path), "--device", "cpu"]) == 2
    assert "holds a discriminator, but --netG needs a generator" in capsys.readouterr().err


def test_training_state_file_loads_both_networks(ckpt, netG, netD):
    g, d = common.load_generator(ckpt["state"], B), common.load_discriminator(ckpt["state"], B)
    for mine, ref in ((g, netG), (d, netD)):
        for k, v in ref.state_dict().items():
            np.testing.assert_array_equal(mine.state_dict()[k], v)


# --------------------------------------------------------------------------- walk (6.1)
@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_walk_end_points_are_G_of_the_end_points(netG, mode):
    ends, z, images = walk.run(netG, B, np.random.default_rng(0), rows=2, points=3, steps=4, mode=mode)
    assert z.shape == (2, 7, 16, 1, 1) and images.shape == (2, 7, 1, 16, 16)
    np.testing.assert_array_equal(z[:, [0, 3, 6]], ends)  # the walk passes through its points exactly
    alone = common.generate(netG, z=ends.reshape(-1, 16, 1, 1), batch_size=1).reshape(2, 3, 1, 16, 16)
    # G of each end point on its own (batch of one, eval batchnorm) vs inside the walk's batch:
    # the same arithmetic up to the matrix product's summation order.
    np.testing.assert_allclose(images[:, [0, 3, 6]], alone, rtol=0, atol=1e-5)


def test_slerp_keeps_the_norm_and_lerp_is_the_chord():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 50, 1, 1)).astype(np.float32)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    t = np.linspace(0, 1, 7)
    s = walk.slerp(a, b, t)
    np.testing.assert_allclose(np.linalg.norm(s.reshape(7, -1), axis=1), np.linalg.norm(a), rtol=1e-5)
    np.testing.assert_allclose(walk.lerp(a, b, t)[3], (a + b) / 2, rtol=1e-6)
    np.testing.assert_array_equal(walk.slerp(a, a, t)[4], a)  # parallel: falls back to the line


def test_walk_cli(ckpt, tmp_path):
    rc = walk.main(["--netG", ckpt["state"], "--outf", str(tmp_path), "--device", "cpu",
                    "--rows", "3", "--steps", "5", "--slerp", "--scale", "1"])
    assert rc == 0
    assert png_shape(tmp_path / "walk.png") == grid_size(3, 5, 16, 1)
    doc = summary(tmp_path)
    assert doc["paper_section"] == "6.1" and doc["inputs"]["netG"] == ckpt["state"]
    assert doc["inputs"]["manualSeed"] == 1 and doc["results"]["interpolation"] == "slerp"
    assert np.load(tmp_path / "walk_z.npy").shape == (3, 5, 16, 1, 1)


# -------------------------------------------------------------------- arithmetic (6.3.2)
def test_arithmetic_with_B_equal_C_returns_A_exactly(netG):
    rng = np.random.default_rng(2)
    za, zb = netG.sample_noise(3, rng), netG.sample_noise(3, rng)
    result, means = arithmetic.combine(za, zb, zb)
    np.testing.assert_array_equal(result, means[0])
    np.testing.assert_array_equal(means[0], np.mean(za.astype(np.float64), axis=0).astype(np.float32))
    sheet = np.concatenate([za, zb])
    out = arithmetic.run(netG, B, sheet, {"A": [0, 1, 2], "B": [3, 4, 5], "C": [3, 4, 5]}, count=4)
    np.testing.assert_array_equal(out["result_z"], out["mean_z"][0])
    np.testing.assert_array_equal(out["result_images"][0], out["mean_images"][0])
    assert out["result_images"].shape == (5, 1, 16, 16)
    assert not np.allclose(out["neighbour_z"][1:], out["result_z"])  # neighbours are perturbed
    assert np.abs(out["neighbour_z"][1:] - out["result_z"]).max() <= 0.25


def test_arithmetic_cli_sheet_then_groups(ckpt, tmp_path, capsys):
    args = ["--netG", ckpt["G"], "--outf", str(tmp_path), "--device", "cpu", "--sheet-size", "12"]
    assert arithmetic.main(args) == 0
    assert (tmp_path / "sheet.png").exists() and not (tmp_path / "arithmetic.png").exists()
    sheet_z = np.load(tmp_path / "sheet_z.npy")
    assert arithmetic.main(args + ["--A", "0,1,2", "--B", "3,4,5", "--C", "6,7,8"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "sheet_z.npy"), sheet_z)  # same seed, same sheet
    assert png_shape(tmp_path / "result.png") == grid_size(3, 3, 16, 2)
    res = summary(tmp_path)["results"]
    assert res["groups"] == {"A": [0, 1, 2], "B": [3, 4, 5], "C": [6, 7, 8]}
    expect = sheet_z[[0, 1, 2]].mean(0) + (sheet_z[[6, 7, 8]].mean(0) - sheet_z[[3, 4, 5]].mean(0))
    np.testing.assert_allclose(np.load(tmp_path / "result_z.npy")[0], expect, atol=1e-6)
    assert Image.open(tmp_path / "arithmetic.png").size[0] > png_shape(tmp_path / "result.png")[1]
    assert arithmetic.main(args + ["--A", "0,1", "--B", "2"]) == 2
    assert arithmetic.main(args + ["--A", "0,99", "--B", "2", "--C", "3"]) == 2
    assert "out of range" in capsys.readouterr().err


# ------------------------------------------------------------------------- probe (5.x)
def toy_images(n, rng):
    """Three classes, linearly separable: a bright 4x4 square in a class-specific corner."""
    labels = rng.integers(0, 3, n)
    x = rng.uniform(-1, -0.6, (n, 1, 16, 16)).astype(np.float32)
    for i, k in enumerate(labels):
        y0, x0 = [(0, 0), (0, 12), (12, 0)][k]
        x[i, 0, y0:y0 + 4, x0:x0 + 4] = 1.0
    return x, labels


def test_probe_is_near_perfect_on_a_separable_toy_set(netD):
    rng = np.random.default_rng(4)
    (xtr, ytr), (xte, yte) = toy_images(150, rng), toy_images(60, rng)
    f_tr, f_te = probe.d_features(netD, xtr, B), probe.d_features(netD, xte, B)
    # Two feature layers at 16x16 (8 and 16 channels, each pooled to 4x4); the logit conv is not one.
    assert probe.feature_layer_count(netD) == 2 and f_tr.shape == (150, (8 + 16) * 16)
    res = probe.evaluate({"dcgan_D": (f_tr, f_te)}, ytr, yte, labels_per_class=(5,), draws=3,
                         c_grid=(0.01, 1.0))
    assert res["dcgan_D"]["all"]["test_accuracy"] >= 0.98
    few = res["dcgan_D"]["few"]["5"]
    assert few["labels"] == 15 and len(few["test_accuracies"]) == 3 and few["test_accuracy_mean"] >= 0.9


def test_probe_features_are_the_pooled_conv_outputs(netD):
    x = np.random.default_rng(5).uniform(-1, 1, (3, 1, 16, 16)).astype(np.float32)
    with no_grad():
        convs = [f.numpy() for f in netD.features(Tensor(x))][:2]
    want = np.concatenate([reference.adaptive_max_pool2d_forward(c, 4)[0].reshape(3, -1) for c in convs], 1)
    # Batches of 2 vs one batch of 3: equal up to the matrix product's summation order.
    np.testing.assert_allclose(probe.d_features(netD, x, B, batch_size=2), want, rtol=1e-5, atol=1e-7)


def test_probe_cli_on_digits(ckpt, tmp_path):
    rc = probe.main(["--netD", ckpt["D"], "--outf", str(tmp_path), "--device", "cpu",
                     "--max-train", "200", "--max-test", "100", "--labels-per-class", "3",
                     "--draws", "2", "--C-grid", "0.01,0.1"])
    assert rc == 0 and (tmp_path / "probe.png").exists()
    res = summary(tmp_path)["results"]
    assert res["paper"]["cifar10_accuracy"] == 0.828 and res["paper"]["svhn_error_1000_labels"] == 0.2248
    digits = res["accuracy"]["digits"]
    assert set(digits) == {"dcgan_D", "random_D", "pixels"}
    for r in digits.values():
        assert 0.3 < r["all"]["test_accuracy"] <= 1.0  # 10 classes: far above chance even for pixels
        assert r["few"]["3"]["draws"] == 2 and r["few"]["3"]["labels"] == 30
    d = res["paired_differences"]["digits"]["3"]["dcgan_D - pixels"]
    want = np.mean(np.subtract(digits["dcgan_D"]["few"]["3"]["test_accuracies"],
                               digits["pixels"]["few"]["3"]["test_accuracies"]))
    assert d["mean"] == pytest.approx(want)


def test_svhn_loader_reads_the_mat_files(tmp_path):
    from scipy.io import savemat
    x = np.random.default_rng(6).integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [3], [10]])})
    images, labels = probe.load_svhn(str(tmp_path), 16, 1, "test")
    assert images.shape == (5, 1, 16, 16) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 3, 0]  # SVHN's label 10 is the digit 0
    with pytest.raises(common.ExperimentError, match="train_32x32.mat not found"):
        probe.load_svhn(str(tmp_path), 16, 1, "train")


# ----------------------------------------------------------------------- nearest (4.1)
def test_nearest_finds_an_exact_training_image():
    train_x = np.random.default_rng(7).uniform(-1, 1, (50, 1, 16, 16)).astype(np.float32)
    queries = train_x[[5, 17, 5]].copy()
    queries[2] += 0.01  # near, not equal
    idx, dist = nearest.nearest_neighbours(queries, train_x, chunk=2)
    assert idx.tolist() == [5, 17, 5]
    assert dist[0] == 0.0 and dist[1] == 0.0
    np.testing.assert_allclose(dist[2], 0.01 * 16, rtol=1e-4)


def test_nearest_cli(ckpt, tmp_path):
    rc = nearest.main(["--netG", ckpt["G"], "--outf", str(tmp_path), "--device", "cpu", "--n", "8",
                       "--max-train", "100", "--scale", "1"])
    assert rc == 0
    assert png_shape(tmp_path / "pairs.png") == grid_size(1, 16, 16, 1)
    res = summary(tmp_path)["results"]
    assert res["train_images"] == 100 and res["generated"]["count"] == 8
    assert res["heldout"]["count"] == 8 and res["heldout"]["mean"] > 0
    ratio = res["generated"]["mean"] / res["heldout"]["mean"]
    assert res["ratio_generated_to_heldout_mean"] == pytest.approx(ratio)


# --------------------------------------------------------------------- visualize (6.2)
def test_guided_gate_passes_only_positive_gradient_where_input_was_positive():
    rng = np.random.default_rng(8)
    x = Tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32), requires_grad=True)
    y = visualize.GuidedLeakyReLU.apply(x, slope=0.2)
    np.testing.assert_array_equal(y.numpy(), reference.leaky_relu_forward(x.data, 0.2))  # forward is D's
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y.backward(dy)
    np.testing.assert_array_equal(x.grad, np.where((x.data > 0) & (dy > 0), dy, 0))


def test_guided_backprop_shape_and_closed_gates(netD):
    x = np.random.default_rng(9).uniform(-1, 1, (4, 1, 16, 16)).astype(np.float32)
    g = visualize.guided_backprop(netD, x, B, layer=0, channels=[0, 3])
    assert g.shape == (2,) + x.shape
    # Layer 0 is conv -> LeakyReLU. The seed is 1 on the chosen map, so the gate is open exactly
    # where the conv's output is positive; the input gradient is the conv's adjoint applied to it.
    with no_grad():
        pre = netD.features(Tensor(x))[0].numpy()
    w = netD.main[0].weight.data
    for k, c in enumerate([0, 3]):
        open_ = np.zeros_like(pre)
        open_[:, c] = pre[:, c] > 0
        want = reference.conv2d_backward_data(open_, w, x.shape, (2, 2), (1, 1))
        np.testing.assert_allclose(g[k], want, rtol=1e-6, atol=1e-7)
        # Input pixels that no open position sees get exactly 0.
        seen = reference.conv2d_backward_data(open_, np.ones_like(w), x.shape, (2, 2), (1, 1)) > 0
        assert np.all(g[k][~seen] == 0) and np.any(g[k] != 0)
    deep = visualize.guided_backprop(netD, x, B, layer=1, channels=[1])
    assert deep.shape == (1,) + x.shape


def test_visualize_cli(ckpt, tmp_path):
    rc = visualize.main(["--netD", ckpt["D"], "--outf", str(tmp_path), "--device", "cpu",
                         "--maps", "0,2", "--n", "3", "--pool", "20", "--scale", "1"])
    assert rc == 0
    for name in ("trained", "random"):
        assert png_shape(tmp_path / f"guided_{name}.png") == grid_size(2, 6, 16, 1)
    res = summary(tmp_path)["results"]
    assert res["layer"] == 1 and set(res["trained"]["maps"]) == {"0", "2"}
    assert visualize.main(["--netD", ckpt["D"], "--outf", str(tmp_path), "--device", "cpu",
                           "--layer", "2"]) == 2  # the logit conv has no activation


# ------------------------------------------------------------------------ forget (6.3.1)
def test_forget_with_no_maps_is_G_and_with_maps_changes_it(netG):
    z = netG.sample_noise(6, np.random.default_rng(10))
    # 16x16 pytorch arch: CT, BN, ReLU, CT (3), BN, ReLU (5), CT, Tanh.
    assert forget.drop_layer_index(netG) == 5
    kept, acts = forget.run_generator(netG, z, B, record=True)
    np.testing.assert_array_equal(kept, common.generate(netG, z=z))
    assert acts.shape == (6, 8, 8, 8)
    some, _ = forget.run_generator(netG, z, B, drop=[0, 1])
    assert np.abs(some - kept).max() > 0
    # Every map gone: the output layer (no bias) sees zeros, and tanh(0) = 0 everywhere.
    none, _ = forget.run_generator(netG, z, B, drop=range(8))
    np.testing.assert_array_equal(none, np.zeros_like(none))


def test_forget_fits_maps_from_boxes():
    labels = forget.position_labels({0: [(0, 0, 8, 16)], 1: [(8, 8, 16, 16)]}, (8, 8), 16)
    assert labels[0][:, :4].all() and not labels[0][:, 4:].any()  # left half of a 16-pixel image
    assert labels[1].sum() == 16 and labels[1][4:, 4:].all()
    rng = np.random.default_rng(11)
    acts = rng.uniform(0, 1, (2, 5, 8, 8))
    for i in (0, 1):
        acts[i, 2][labels[i]] += 3.0  # map 2 fires on the boxed object
        acts[i, 4][~labels[i]] += 3.0  # map 4 fires everywhere else
    w, drop, acc, counts = forget.fit_maps(acts, labels)
    assert 2 in drop and 4 not in drop and w[2] > 0 > w[4]
    assert acc > 0.95 and counts == {"inside": 48, "outside": 80}


def test_ink_kept_inside_and_outside_boxes():
    kept = np.full((1, 1, 4, 4), 1.0, np.float32)  # all white: ink 1 everywhere
    dropped = kept.copy()
    dropped[0, 0, :2, :2] = -1.0  # the boxed corner goes black
    inside, outside = forget.ink_kept(kept, dropped, {0: [(0, 0, 2, 2)]})
    assert inside == 0.0 and outside == 1.0
    assert forget.ink_kept(kept, kept, {0: [(0, 0, 2, 2)]}) == (1.0, 1.0)


def test_forget_cli(ckpt, tmp_path, capsys):
    base = ["--netG", ckpt["G"], "--outf", str(tmp_path), "--device", "cpu", "--sheet-size", "8",
            "--n", "4", "--cols", "4", "--scale", "1"]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"sample": 1, "box": [0, 0, 8, 8]}, {"sample": 3, "box": [4, 4, 12, 16]}]))
    assert forget.main(base + ["--boxes", str(boxes)]) == 0
    assert png_shape(tmp_path / "forget.png") == grid_size(2, 4, 16, 1)
    res = summary(tmp_path)["results"]
    assert res["layer"] == "main.5" and res["fit"]["positions"]["inside"] > 0
    assert res["dropped_maps"] == [i for i, w in enumerate(res["fit"]["weights"]) if w > 0]
    fit = res["fit"]
    assert 0 < fit["ink_kept_in_boxes"] and 0 < fit["control_ink_kept_in_boxes"]
    assert len(fit["control_random_maps"]) == min(len(res["dropped_maps"]), 8 - len(res["dropped_maps"]))
    assert forget.main(base + ["--boxes", str(boxes), "--max-maps", "1"]) == 0
    weights = np.array(res["fit"]["weights"])
    assert summary(tmp_path)["results"]["dropped_maps"] == [int(np.argmax(weights))]
    assert forget.main(base + ["--maps", "1,2"]) == 0
    assert summary(tmp_path)["results"]["dropped_maps"] == [1, 2]
    boxes.write_text(json.dumps([{"sample": 1, "box": [0, 0, 99, 8]}]))
    assert forget.main(base + ["--boxes", str(boxes)]) == 2
    assert "is not inside the 16x16 image" in capsys.readouterr().err


def test_sheet_is_the_same_in_every_tool(ckpt, netG, tmp_path):
    """An index on arithmetic's sheet names the same sample as on forget's (same seed)."""
    assert arithmetic.main(["--netG", ckpt["G"], "--outf", str(tmp_path / "a"), "--device", "cpu",
                            "--sheet-size", "8"]) == 0
    assert forget.main(["--netG", ckpt["G"], "--outf", str(tmp_path / "f"), "--device", "cpu",
                        "--sheet-size", "8"]) == 0
    a = np.asarray(Image.open(tmp_path / "a" / "sheet.png"))
    f = np.asarray(Image.open(tmp_path / "f" / "sheet.png"))
    np.testing.assert_array_equal(a, f)


def test_random_baseline_differs_from_trained(netD):
    rand = probe.random_discriminator(netD, 123, B)
    assert not np.allclose(rand.main[0].weight.data, netD.main[0].weight.data)
    _, fresh = build_models("pytorch", 16, 1, 16, 8, 8, seed=0)
    assert fresh.state_dict().keys() == rand.state_dict().keys()
