"""Sample-quality evaluation: the statistics, the digits classifier and its cache, the
figures' floor and ceiling, the CLI and train's --eval-every.

Everything runs at 16x16, where the classifier trains in a few seconds. One classifier
(the full recipe) is trained per test session into a temporary cache folder and shared;
tests that need to watch training or corrupt the cache use a folder of their own and a
shortened recipe.
"""
import functools
import json
import os

import numpy as np
import pytest
import scipy.linalg

from dcgan_cuda import checkpoint, evaluate, train
from dcgan_cuda.backend import numpy_backend
from dcgan_cuda.data import load_dataset
from dcgan_cuda.models import Generator, init_weights
from dcgan_cuda.sampling import SamplingError

SIZE = 16


# ------------------------------------------------------------------------- statistics
def brute_force_frechet(mu1, s1, mu2, s2):
    """The textbook formula, with a general matrix square root of S1 S2."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("dim", [1, 5, 32])
def test_frechet_distance_matches_brute_force(rng, dim):
    a = rng.standard_normal((400, dim)) @ rng.standard_normal((dim, dim)) + rng.standard_normal(dim)
    b = rng.standard_normal((300, dim)) * rng.uniform(0.5, 2.0, dim) + 0.3
    stats_a, stats_b = evaluate.gaussian_stats(a), evaluate.gaussian_stats(b)
    ours = evaluate.frechet_distance(*stats_a, *stats_b)
    assert ours == pytest.approx(brute_force_frechet(*stats_a, *stats_b), rel=1e-8, abs=1e-9)
    # A distance: symmetric in its two arguments.
    assert evaluate.frechet_distance(*stats_b, *stats_a) == pytest.approx(ours, rel=1e-8)


def test_frechet_distance_known_values():
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2.
    assert evaluate.frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # Same covariance: only the means count.
    cov = np.diag([1.0, 2.0, 3.0])
    assert evaluate.frechet_distance(np.zeros(3), cov, np.ones(3), cov) == pytest.approx(3.0)


def test_frechet_distance_is_zero_for_identical_sets(rng):
    # 50 points in 64 dimensions: a singular covariance, the hard case for a square root.
    for n in (1000, 50):
        f = rng.standard_normal((n, 64))
        stats = evaluate.gaussian_stats(f)
        assert evaluate.frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-8)


def test_kl_from_uniform_on_hand_made_histograms():
    assert evaluate.kl_from_uniform([5] * 10) == pytest.approx(0.0)
    assert evaluate.kl_from_uniform([7] + [0] * 9) == pytest.approx(np.log(10))
    assert evaluate.kl_from_uniform([1, 1, 0, 0]) == pytest.approx(np.log(2))  # half the classes
    with pytest.raises(evaluate.EvaluationError):
        evaluate.kl_from_uniform([0, 0, 0])


def one_hot_probs(classes, confidence, k=10):
    """Softmax-like rows: ``confidence`` on the given class, the rest spread evenly."""
    p = np.full((len(classes), k), (1 - confidence) / (k - 1))
    p[np.arange(len(classes)), classes] = confidence
    return p


def test_histogram_and_coverage_on_hand_made_probabilities():
    # 200 images: class 0 has 150, class 1 has 48 confident, class 2 has 1 (< 1%), class 3
    # has 1 unconfident.
    classes = [0] * 150 + [1] * 48 + [2] + [3]
    probs = np.concatenate([one_hot_probs(classes[:199], 0.9), one_hot_probs(classes[199:], 0.3)])
    assert list(evaluate.class_histogram(probs)) == [150, 48, 1, 1, 0, 0, 0, 0, 0, 0]
    assert evaluate.classes_covered(probs) == [0, 1]
    # With 100 images 1% is one image: class 2's single confident image covers it.
    assert evaluate.classes_covered(probs[100:]) == [0, 1, 2]
    # Unconfident images never cover a class, however many.
    assert evaluate.classes_covered(one_hot_probs([5] * 50, 0.4)) == []
    assert evaluate.classes_covered(one_hot_probs(list(range(10)) * 10, 0.99)) == list(range(10))


# ------------------------------------------------------------------------- classifier
@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """A cache folder holding the full-recipe 16x16 classifier, trained once per session."""
    folder = tmp_path_factory.mktemp("dcgan_cuda_cache")
    previous = os.environ.get("DCGAN_CUDA_CACHE")
    os.environ["DCGAN_CUDA_CACHE"] = str(folder)
    try:
        evaluate.load_classifier(SIZE, 1, 0, log=None)
        yield folder
    finally:
        if previous is None:
            os.environ.pop("DCGAN_CUDA_CACHE", None)
        else:
            os.environ["DCGAN_CUDA_CACHE"] = previous


@pytest.fixture
def cache(session_cache, monkeypatch):
    monkeypatch.setenv("DCGAN_CUDA_CACHE", str(session_cache))
    return session_cache


@pytest.fixture(scope="session")
def evaluator(session_cache):
    return evaluate.Evaluator(SIZE, 1, log=None)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DCGAN_CUDA_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert evaluate.cache_dir() == str(tmp_path / "a")
    monkeypatch.delenv("DCGAN_CUDA_CACHE")
    assert evaluate.cache_dir() == str(tmp_path / "x" / "dcgan_cuda")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert evaluate.cache_dir() == str(tmp_path / "home" / ".cache" / "dcgan_cuda")


def test_classifier_is_deterministic_given_its_seed():
    tiny = dict(epochs=1, max_images=96)
    a, _ = evaluate.train_classifier(SIZE, 1, seed=5, **tiny)
    b, _ = evaluate.train_classifier(SIZE, 1, seed=5, **tiny)
    c, _ = evaluate.train_classifier(SIZE, 1, seed=6, **tiny)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not all(np.array_equal(sa[k], sc[k]) for k in sa if sa[k].dtype.kind == "f")


def test_classifier_reaches_high_held_out_accuracy(cache, evaluator):
    tensors, meta = checkpoint.read_tensors(evaluate.classifier_path(SIZE, 1, 0))
    assert meta["format"] == evaluate.CLASSIFIER_FORMAT
    assert (meta["image_size"], meta["nc"], meta["seed"], meta["recipe_version"]) == \
        (SIZE, 1, 0, evaluate.RECIPE_VERSION)
    assert meta["test_accuracy"] >= 0.95
    # The accuracy recorded is the accuracy of the weights stored.
    assert evaluator.heldout_row["accuracy"] == pytest.approx(meta["test_accuracy"])


def test_features_do_not_depend_on_the_batch(cache, evaluator):
    """Eval-mode batchnorm: an image's features are the same alone or in a crowd."""
    images = load_dataset("digits", image_size=SIZE, split="test").batch(slice(0, 20))
    all_feats, all_probs = evaluate.classify(evaluator.classifier, images)
    two_feats, two_probs = evaluate.classify(evaluator.classifier, images[3:5])
    np.testing.assert_allclose(two_feats, all_feats[3:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two_probs.sum(axis=1), 1.0)


@pytest.fixture
def quick_training(monkeypatch):
    """Count classifier trainings, each shortened to one epoch on 96 images."""
    calls = []
    original = evaluate.train_classifier

    def counted(*args, **kw):
        calls.append(args)
        return functools.partial(original, epochs=1, max_images=96)(*args, **kw)

    monkeypatch.setattr(evaluate, "train_classifier", counted)
    return calls


def test_cache_is_used_and_a_corrupt_cache_is_retrained(tmp_path, monkeypatch, quick_training):
    monkeypatch.setenv("DCGAN_CUDA_CACHE", str(tmp_path / "new" / "folder"))
    first, info = evaluate.load_classifier(SIZE, 1, 0, log=None)
    path = evaluate.classifier_path(SIZE, 1, 0)
    assert len(quick_training) == 1 and not info["cached"] and os.path.isfile(path)

    second, info = evaluate.load_classifier(SIZE, 1, 0, log=None)
    assert len(quick_training) == 1 and info["cached"]
    s1, s2 = first.state_dict(), second.state_dict()
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)

    with open(path, "r+b") as f:  # truncate the file: a torn write from another tool
        f.truncate(100)
    messages = []
    _, info = evaluate.load_classifier(SIZE, 1, 0, log=messages.append)
    assert len(quick_training) == 2 and not info["cached"]
    assert any("unusable" in m and "retraining" in m for m in messages)
    assert evaluate.load_classifier(SIZE, 1, 0, log=None)[1]["cached"]  # rewritten whole


def test_cache_of_another_recipe_is_retrained(tmp_path, monkeypatch, quick_training):
    monkeypatch.setenv("DCGAN_CUDA_CACHE", str(tmp_path))
    net, _ = evaluate.load_classifier(SIZE, 1, 0, log=None)
    path = evaluate.classifier_path(SIZE, 1, 0)
    checkpoint.save_tensors(path, net.state_dict(), dict(format=evaluate.CLASSIFIER_FORMAT,
                                                         recipe_version=0, image_size=SIZE, nc=1,
                                                         seed=0, test_accuracy=0.5))
    evaluate.load_classifier(SIZE, 1, 0, log=None)
    assert len(quick_training) == 2


# ------------------------------------------------------------------ floor and ceiling
def test_real_images_score_near_the_floor_and_untrained_far_above(cache, evaluator):
    # Real images standing in for a generator's: training images, in another subsample
    # than the floor's (the two overlap in part, as two draws from one dataset do).
    train = load_dataset("digits", image_size=SIZE, split="train", max_images=500, seed=42)
    real = evaluator.score_images(train.batch(slice(None)))
    floor = evaluator.real_floor(500)
    assert real["classes_covered"] == floor["classes_covered"] == 10
    assert real["kl_uniform"] < 0.05 and real["mean_confidence"] > 0.85
    assert real["frechet_distance"] < 1.5 * floor["frechet_distance"]

    netG = init_weights(Generator(16, 8, 1, SIZE), np.random.default_rng(0))
    untrained = evaluator.score_generator(netG, 500)
    assert untrained["frechet_distance"] > 20 * floor["frechet_distance"]
    assert untrained["classes_covered"] <= 3


def test_evaluate_generator_reports_every_row_and_leaves_g_unchanged(cache, evaluator):
    netG = init_weights(Generator(16, 8, 1, SIZE), np.random.default_rng(1))
    before = netG.state_dict()
    result = evaluate.evaluate_generator(netG, numpy_backend(), n_samples=100, evaluator=evaluator)
    after = netG.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # BN buffers restored too
    assert netG.training
    for key in ("generated", "real_heldout", "real_train", "untrained"):
        row = result[key]
        assert set(row) >= {"images", "frechet_distance", "classes_covered", "kl_uniform",
                            "mean_confidence", "histogram"}
        assert sum(row["histogram"]) == row["images"]
    assert result["real_heldout"]["images"] == 360 and result["real_train"]["images"] == 100
    assert not result["target_met"]
    json.dumps(result)  # JSON-able as it is
    # The same seed gives the same images, hence the same figures.
    again = evaluate.evaluate_generator(netG, n_samples=100, evaluator=evaluator)
    assert again["generated"] == result["generated"]


def test_closeness_ratio():
    assert evaluate.closeness_ratio(2.0, 1.0, 7.0) == pytest.approx(5.0)
    assert evaluate.closeness_ratio(0.5, 1.0, 7.0) is None  # below the floor


def test_generate_sizes_and_modes():
    netG = init_weights(Generator(16, 8, 1, SIZE), np.random.default_rng(1))
    for n in (2, 65, 129):  # 65 = 64 + 1: no batch may be a single image in train mode
        assert evaluate.generate(netG, n).shape == (n, 1, SIZE, SIZE)
    a, b = evaluate.generate(netG, 8, bn_mode="train"), evaluate.generate(netG, 8, bn_mode="eval")
    assert not np.allclose(a, b)
    with pytest.raises(SamplingError):   # train-mode batchnorm has no statistics for one image
        evaluate.generate(netG, 1, bn_mode="train")


# ------------------------------------------------------------------------------ CLI
TINY = ["--device", "cpu", "--imageSize", "16", "--ngf", "8", "--ndf", "8", "--nz", "16",
        "--max-images", "128", "--niter", "2", "--manualSeed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(session_cache, tmp_path_factory):
    """A two-epoch run with --eval-every 1 (the session's classifier is in the cache)."""
    outf = tmp_path_factory.mktemp("run")
    previous = os.environ.get("DCGAN_CUDA_CACHE")
    os.environ["DCGAN_CUDA_CACHE"] = str(session_cache)
    try:
        assert train.main(TINY + ["--outf", str(outf), "--eval-every", "1"]) == 0
    finally:
        if previous is None:
            os.environ.pop("DCGAN_CUDA_CACHE", None)
        else:
            os.environ["DCGAN_CUDA_CACHE"] = previous
    return outf


def test_eval_every_writes_eval_rows(tiny_run):
    rows = [json.loads(line) for line in open(tiny_run / "metrics.jsonl")]
    evals = [r for r in rows if "eval" in r]
    assert [(r["epoch"], r["iteration"]) for r in evals] == [(1, 2), (2, 4)]  # 2 batches an epoch
    for row in evals:
        # Each follows the last loss row of its epoch.
        assert rows[rows.index(row) - 1]["iteration"] == row["iteration"]
        figures = row["eval"]
        assert figures["samples"] == train.EVAL_SAMPLES
        assert figures["frechet_distance_real"] < figures["frechet_distance_untrained"]
        assert 0 <= figures["classes_covered"] <= 10 and figures["frechet_distance"] > 0
    assert (tiny_run / "loss_curve.png").stat().st_size > 0


def test_eval_every_does_not_change_training(tiny_run, tmp_path):
    """Evaluating restores G's batchnorm buffers and draws from its own RNG: the run with
    --eval-every ends in exactly the state of the run without (the evaluation after epoch 1
    would otherwise have left its trace in the running statistics saved after epoch 2)."""
    assert train.main(TINY + ["--outf", str(tmp_path)]) == 0
    with_eval = checkpoint.read_tensors(str(tiny_run / "checkpoint.safetensors"))[0]
    without = checkpoint.read_tensors(str(tmp_path / "checkpoint.safetensors"))[0]
    assert with_eval.keys() == without.keys()
    assert all(np.array_equal(with_eval[k], without[k]) for k in with_eval)


def test_eval_every_refuses_other_datasets(tmp_path, capsys):
    assert train.main(TINY + ["--outf", str(tmp_path), "--eval-every", "1", "--dataset", "fake"]) == 2
    assert "--eval-every" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["netG_epoch_0.safetensors", "checkpoint.safetensors"])
def test_cli_reads_model_files_and_training_states(cache, tiny_run, name, capsys):
    assert evaluate.main(["--netG", str(tiny_run / name), "--n-samples", "64", "--device", "cpu",
                          "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["image_size"] == SIZE and result["generated"]["images"] == 64
    assert result["classifier"]["cached"]


def test_cli_table(cache, tiny_run, capsys):
    assert evaluate.main(["--netG", str(tiny_run / "netG_epoch_0.safetensors"), "--n-samples", "64",
                          "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for label in ("generated", "real held-out", "real train (floor)", "untrained (ceiling)", "target"):
        assert label in out


def test_cli_errors_exit_2(cache, tiny_run, tmp_path, capsys):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    cases = [(tmp_path / "missing.safetensors", "does not exist"),
             (garbage, "cannot read"),
             (tiny_run / "netD_epoch_0.safetensors", "needs a generator")]
    for path, message in cases:
        assert evaluate.main(["--netG", str(path), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert evaluate.main(["--netG", str(tiny_run / "netG_epoch_0.safetensors"), "--n-samples", "1"]) == 2


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_cuda_backend_gives_the_numpy_figures(cache, evaluator):
    from dcgan_cuda.backend import get_backend
    cuda = get_backend("cuda")
    netG = init_weights(Generator(16, 8, 1, SIZE), np.random.default_rng(1))
    on_cpu = evaluate.evaluate_generator(netG, n_samples=200, evaluator=evaluator)
    netG.to(cuda)
    on_gpu = evaluate.evaluate_generator(netG, cuda, n_samples=200, evaluator=evaluator)
    assert on_gpu["backend"] == "cuda"
    for key in ("generated", "untrained"):
        # float32 kernels vs NumPy: the images agree to ~1e-5, the statistics closely.
        assert on_gpu[key]["frechet_distance"] == pytest.approx(on_cpu[key]["frechet_distance"], rel=1e-3)
        assert on_gpu[key]["classes_covered"] == on_cpu[key]["classes_covered"]
