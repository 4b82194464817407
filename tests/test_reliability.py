"""Inputs a careful user tried (issue 28) that now get a clear answer."""
import subprocess
import sys

from adasmooth import parameters


def test_an_attack_radius_beyond_the_image_is_refused_naming_the_range():
    bad = parameters.problems("00_quickstart", {"eps": 1e9, "norm": "linf"}, ["eps", "norm"])
    assert bad and "eps" in bad[0] and "(0, 1] for ℓ∞" in bad[0]
    assert not parameters.problems("00_quickstart", {"eps": 0.1, "norm": "linf"}, ["eps", "norm"])
    # ℓ2: up to the image's diameter, √(1·28·28) = 28 for Fashion-MNIST
    assert not parameters.problems("02_ri_ablation", {"eps_l2": 1.0, "dataset": "fashion-mnist"}, ["eps_l2", "dataset"])
    assert parameters.problems("02_ri_ablation", {"eps_l2": 28.5, "dataset": "fashion-mnist"}, ["eps_l2", "dataset"])


def test_zoo_verify_of_a_missing_cache_is_an_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "adasmooth", "zoo", "verify", "--cache", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no such zoo cache folder" in out.stderr
