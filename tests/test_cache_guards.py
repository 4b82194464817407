"""The attack cache's guards: keys that do not ride on calibrated floats, the code version, a replay that
recomputes a sample and fails on a contradicted entry, and the check mode that computes nothing."""
import json

import pytest
import torch

from adasmooth import ablation, attack_cache
from adasmooth.adaptive import AdaptiveMixedClassifier
from adasmooth.mixing_net import for_models

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cache(empty_attack_cache):
    return empty_attack_cache


def _mask(n=200, seed=0):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) > 0.4


def test_a_tampered_entry_is_caught_by_the_replay(cache):
    calls = []

    def compute():
        calls.append(1)
        return _mask()

    first, _, hit = attack_cache.cached_values("k1", compute, True)
    assert not hit and len(calls) == 1
    with attack_cache.verifying(1.0, seed=3):  # an honest entry: recomputed, identical, read
        again, _, hit = attack_cache.cached_values("k1", compute, True)
    assert hit and torch.equal(again, first) and len(calls) == 2
    assert attack_cache.stats["verified"] == 1 and attack_cache.stats["identical"] == 1
    doc = json.loads((cache / "k1.json").read_text())
    assert doc["code_version"] == attack_cache.CODE_VERSION
    doc["correct"][:4] = [not v for v in doc["correct"][:4]]  # 4 of 200 images flipped: over the 1 % tolerance
    (cache / "k1.json").write_text(json.dumps(doc))
    with pytest.raises(attack_cache.CacheMismatch, match=r"k1\.json.*differs on 4 of 200 images \(tolerance 2\)"):
        with attack_cache.verifying(1.0):
            attack_cache.cached_values("k1", compute, True)
    # without verification the tampered answer would be read: that is why every replay verifies a sample
    assert attack_cache.cached_values("k1", compute, True)[2] is True


def test_sampled_verification_recomputes_the_first_and_a_seeded_fraction(cache):
    for i in range(40):
        attack_cache.cached_values(f"e{i}", lambda i=i: _mask(100, i), True)
    picked = []
    for seed in (0, 0, 1):
        attack_cache.stats.update(verified=0, verified_keys=[])
        with attack_cache.verifying(0.25, seed=seed):
            for i in range(40):
                attack_cache.cached_values(f"e{i}", lambda i=i: _mask(100, i), True)
        picked.append(list(attack_cache.stats["verified_keys"]))
    assert picked[0] == picked[1] and picked[0] != picked[2]  # the same seed picks the same entries
    assert picked[0][0] == "e0" and 4 <= len(picked[0]) <= 20  # the first read, then about a quarter
    assert attack_cache.stats["differing_images"] == 0


def test_entries_of_another_code_version_are_recomputed(cache):
    attack_cache.cached_values("old", lambda: _mask(), True)
    doc = json.loads((cache / "old.json").read_text())
    doc["code_version"] = attack_cache.CODE_VERSION - 1
    (cache / "old.json").write_text(json.dumps(doc))
    _, _, hit = attack_cache.cached_values("old", lambda: _mask(), True)
    assert not hit and json.loads((cache / "old.json").read_text())["code_version"] == attack_cache.CODE_VERSION


def test_check_mode_computes_nothing_and_names_the_miss(cache):
    attack_cache.cached_values("have", lambda: _mask(), True)
    with attack_cache.checking() as asked:
        assert attack_cache.cached_values("have", lambda: 1 / 0, True)[2]
        with pytest.raises(attack_cache.CacheMiss, match="missing-one"):
            attack_cache.cached_values("missing-one", lambda: 1 / 0, True)
    assert asked == ["have", "missing-one"]
    assert not (cache / "missing-one.json").exists()


def test_differing_counts_images_in_masks_and_per_image_rows():
    a = torch.tensor([True, False, True, True])
    assert attack_cache.differing(a, a, 4) == 0 and attack_cache.differing(a, ~a, 4) == 4
    assert attack_cache.differing(a, a[:3], 4) == 4  # another shape: every image
    assert attack_cache.tolerance(200) == 2 and attack_cache.tolerance(99) == 0
    votes = torch.tensor([[10, 0, 0], [4, 6, 0], [0, 0, 10]])  # per-image vote counts: rows are images
    moved = votes.clone()
    moved[1] = torch.tensor([5, 5, 0])  # one image, two of its counts
    assert attack_cache.differing(votes, moved, 3) == 1 and attack_cache.differing(votes, votes, 3) == 0


def test_a_calibrated_model_is_keyed_by_what_calibration_read(cache, g_model, h_model, test_batch, monkeypatch):
    """Two CPUs whose bisections return shifts in their 5th significant digit apart ask the same question (the shift is not in the key)."""
    x, y = test_batch[0][:40], test_batch[1][:40]
    torch.manual_seed(0)
    model = AdaptiveMixedClassifier(g_model, h_model, for_models(g_model, h_model, width=8)).eval()
    real = ablation.calibrate_shift
    jitter = iter([0.0, 1e-5, 0.0])

    def calibrate_on_another_cpu(m, *a, **k):
        res = real(m, *a, **k)
        s = float(m.net.shift)
        m.net.set_head(shift=s + next(jitter) * max(1.0, abs(s)))
        return res

    monkeypatch.setattr(ablation, "calibrate_shift", calibrate_on_another_cpu)
    kw = dict(eps=0.1, steps=1, norm="linf", seed=0, apgd_iter=0, surrogate_scale=None, use_cache=True)
    with torch.no_grad():
        accs = sorted((m(x).argmax(1) == y).float().mean().item() for m in (g_model, h_model))
    assert accs[0] < accs[1]
    first = ablation.evaluate_network(model, x, y, accs[1], range_width=None, **kw)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    second = ablation.evaluate_network(model, x, y, accs[1], range_width=None, **kw)
    assert not first["cached"] and second["cached"]
    assert float(state["net.shift"]) != float(model.net.shift)  # the floats differ, the question does not
    other = ablation.evaluate_network(model, x, y, accs[0], range_width=None, **kw)  # another target: another question
    assert not other["cached"]


def test_the_shipped_cache_answers_every_question_of_the_default_profile():
    """`cache check --profile default` on the shipped data/attack-cache: calibrations run, nothing is attacked,
    and every question the default notebooks ask is answered (a fresh clone's `make reproduce` replays)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "adasmooth", "cache", "check", "--profile", "default"],
                         capture_output=True, text=True, timeout=900, env={**__import__("os").environ,
                                                                           "OMP_NUM_THREADS": "1"})
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:]
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    n = int(last.split()[0])
    assert last == f"{n} questions, {n} cached, 0 missing" and n > 300


def test_noise_votes_for_some_images_equal_the_full_call(g_model, test_batch):
    from adasmooth.certify import Smooth

    x = test_batch[0][:6]
    smooth = Smooth(g_model, 10, 0.25)
    full = smooth.sample(x, 30, batch_size=20, seed=5)  # blocks of one image x 20 draws: the stream is walked
    mask = torch.tensor([False, True, False, False, True, False])
    part = smooth.sample(x, 30, batch_size=20, seed=5, only=mask)
    assert torch.equal(part[mask], full[mask]) and int(part[~mask].abs().sum()) == 0 and int(full.sum()) == 6 * 30
    with pytest.raises(ValueError, match="only must be a bool mask of the 6 inputs"):
        smooth.sample(x, 30, batch_size=20, only=torch.ones(5, dtype=torch.bool))


def test_a_partially_recomputable_entry_is_verified_on_a_seeded_sample_of_its_images(cache):
    votes = torch.randint(0, 50, (200, 10), generator=torch.Generator().manual_seed(1))
    asked = []

    def partial(mask):
        asked.append(int(mask.sum()))
        return torch.where(mask[:, None], votes, torch.zeros_like(votes))

    def full():
        asked.append("full")
        return votes

    attack_cache.cached_values("v", full, True, dtype=torch.int64, partial=partial)
    with attack_cache.verifying(0.1, seed=2):  # every read, on 10 % of the images (20 of 200): never the full cost
        got, _, hit = attack_cache.cached_values("v", full, True, dtype=torch.int64, partial=partial)
    assert hit and torch.equal(got, votes) and asked == ["full", 20]
    assert attack_cache.stats["sampled"] == 1 and attack_cache.stats["identical"] == 1
    with attack_cache.verifying(0.001, seed=2):  # at least SAMPLE_MIN images
        attack_cache.cached_values("v", full, True, dtype=torch.int64, partial=partial)
    assert asked[-1] == attack_cache.SAMPLE_MIN
    doc = json.loads((cache / "v.json").read_text())
    doc["correct"] = [[c + 1 for c in row] for row in doc["correct"]]  # every image's counts altered
    (cache / "v.json").write_text(json.dumps(doc))
    with pytest.raises(attack_cache.CacheMismatch, match=r"v\.json.*a seeded sample of 20 of its 200 images"):
        with attack_cache.verifying(0.1, seed=2):
            attack_cache.cached_values("v", full, True, dtype=torch.int64, partial=partial)


def test_an_entry_two_notebooks_sample_is_recomputed_once_per_run(cache, monkeypatch, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _mask()

    attack_cache.cached_values("shared", compute, True)
    claims = tmp_path / "claims"
    claims.mkdir()
    monkeypatch.setenv(attack_cache.VERIFY_CLAIMS_ENV, str(claims))
    for _ in range(2):  # two notebooks of one run read the same sampled entry: the first checks it, the second not
        with attack_cache.verifying(1.0):
            assert attack_cache.cached_values("shared", compute, True)[2]
    assert len(calls) == 2 and attack_cache.stats["verified"] == 1 and attack_cache.stats["verified_elsewhere"] == 1
    with attack_cache.verifying(1.0, keys=["shared"]):  # an entry named on demand is always recomputed
        attack_cache.cached_values("shared", compute, True)
    assert len(calls) == 3
    monkeypatch.delenv(attack_cache.VERIFY_CLAIMS_ENV)  # without a run's claims folder: every read of the sample
    with attack_cache.verifying(1.0):
        attack_cache.cached_values("shared", compute, True)
    assert len(calls) == 4
