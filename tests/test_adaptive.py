"""Adaptive smoothing: the mixed model with α_θ(x), composite loss, training, calibration, threat models."""
import math

import pytest
import torch
import torch.nn.functional as F

from adasmooth import AdaptiveMixedClassifier, checkpoint, zoo
from adasmooth.adaptive import (MixingConfig, attack_adaptive, calibrate_constant_alpha, calibrate_shift,
                                composite_loss, get_mixing_network, mixing_stem, robust_accuracy_adaptive,
                                train_mixing_network, training_attack)
from adasmooth.attacks import pgd
from adasmooth.mixing import mix_log_probs
from adasmooth.mixing_net import for_models

from conftest import TINY

FAST = dict(eps=0.1, batch_size=16, steps_df=2, lr=3e-3, width=8, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(g_model, h_model):
    torch.manual_seed(0)
    return AdaptiveMixedClassifier(g_model, h_model, for_models(g_model, h_model, width=8)).eval()


def test_base_models_frozen_in_eval_mode_and_run_once(model, test_batch):
    calls = {"g": 0, "h": 0}
    hooks = [model.g.stage1.register_forward_hook(lambda *_: calls.__setitem__("g", calls["g"] + 1)),
             model.h.stage1.register_forward_hook(lambda *_: calls.__setitem__("h", calls["h"] + 1))]
    model.train()
    try:
        assert model.net.training and not model.g.training and not model.h.training
        assert not any(p.requires_grad for p in list(model.g.parameters()) + list(model.h.parameters()))
        x, y = test_batch
        logp, alpha, gamma = model(x[:16], return_alpha=True)
        assert calls == {"g": 1, "h": 1}
        # forward = mix_log_probs of the base models' log-softmaxes with the per-sample α
        ref = mix_log_probs(F.log_softmax(model.g(x[:16]), 1), F.log_softmax(model.h(x[:16]), 1), alpha)
        torch.testing.assert_close(logp, ref)
    finally:
        for hk in hooks:
            hk.remove()
        model.eval()


def test_composite_loss_matches_hand_computation():
    logp = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
    y = torch.tensor([0, 1, 1])
    gamma = torch.tensor([-1.0, 0.5, 2.0])
    pseudo = torch.tensor([0.0, 1.0, 1.0])
    c_ce, c_bce, c_prod = 0.5, 1.0, 0.2
    ce = [-math.log(0.7), -math.log(0.25), -math.log(0.6)]
    sig = [1 / (1 + math.exp(-v)) for v in (-1.0, 0.5, 2.0)]
    bce = [-math.log(1 - sig[0]), -math.log(sig[1]), -math.log(sig[2])]
    per = [c_ce * a + c_bce * b + c_prod * a * b for a, b in zip(ce, bce)]
    mean, parts = composite_loss(logp, y, gamma, pseudo, c_ce=c_ce, c_bce=c_bce, c_prod=c_prod)
    assert mean.item() == pytest.approx(sum(per) / 3, rel=1e-6)
    torch.testing.assert_close(parts["ce"], torch.tensor(ce))
    torch.testing.assert_close(parts["bce"], torch.tensor(bce))
    w = torch.tensor([2.0, 1.0, 1.0])
    assert composite_loss(logp, y, gamma, pseudo, c_ce=c_ce, c_bce=c_bce, c_prod=c_prod, weight=w)[0].item() \
        == pytest.approx((2 * per[0] + per[1] + per[2]) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="pseudo"):
        composite_loss(logp, y, gamma, torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        composite_loss(logp, y[:2], gamma, pseudo)


def test_gradients_reach_the_input_through_alpha_only_under_full(model, test_batch):
    x = test_batch[0][:8].clone().requires_grad_(True)
    with model.threat("full"):
        logp, alpha, _ = model(x, return_alpha=True)
        (ga,) = torch.autograd.grad(alpha.sum(), x, retain_graph=True)
        (gl_full,) = torch.autograd.grad(logp[:, 0].sum(), x)
    assert ga.abs().sum() > 0
    with model.threat("detached"):
        logp, alpha, _ = model(x, return_alpha=True)
        # α_θ(x) is a constant for the attacker (it still depends on θ)
        (ga_det,) = torch.autograd.grad(alpha.sum(), x, retain_graph=True, allow_unused=True)
        assert ga_det is None
        (gl_det,) = torch.autograd.grad(logp[:, 0].sum(), x)
    # detached gradient = gradient of the mixture with α held fixed
    x2 = x.detach().clone().requires_grad_(True)
    ref = mix_log_probs(F.log_softmax(model.g(x2), 1), F.log_softmax(model.h(x2), 1), alpha.detach())
    (gl_ref,) = torch.autograd.grad(ref[:, 0].sum(), x2)
    torch.testing.assert_close(gl_det, gl_ref)
    assert not torch.allclose(gl_full, gl_det)
    assert model.attack_through_alpha  # the switch is restored
    with pytest.raises(ValueError, match="threat"):
        with model.threat("setting-a"):
            pass


def test_alpha_term_changes_full_attack_but_not_detached(model, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    kw = dict(eps=0.1, steps=3, seed=1)
    full0 = attack_adaptive(model, x, y, threat="full", alpha_weight=0.0, **kw)
    full5 = attack_adaptive(model, x, y, threat="full", alpha_weight=0.5, **kw)
    det0 = attack_adaptive(model, x, y, threat="detached", alpha_weight=0.0, **kw)
    det5 = attack_adaptive(model, x, y, threat="detached", alpha_weight=0.5, **kw)
    assert not torch.equal(full0, full5) and torch.equal(det0, det5)
    assert not torch.equal(full0, det0)
    assert (full5 - x).abs().max() <= 0.1 + 1e-6 and full5.min() >= 0 and full5.max() <= 1
    with pytest.raises(ValueError, match="threat"):
        attack_adaptive(model, x, y, threat="A", eps=0.1)
    with pytest.raises(ValueError, match="loss"):
        attack_adaptive(model, x, y, eps=0.1, loss="hinge")


def test_training_attack_is_seeded_and_stays_in_randomized_ball(model, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    a1 = training_attack(model, x, y, eps=0.1, seed=5, steps_df=2)
    a2 = training_attack(model, x, y, eps=0.1, seed=5, steps_df=2)
    a3 = training_attack(model, x, y, eps=0.1, seed=6, steps_df=2)
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    dist = (a1 - x).flatten(1).abs().max(1).values
    assert (dist <= 0.11 + 1e-6).all() and dist.max() > 0.04
    assert len(set(dist.round(decimals=4).tolist())) > 1  # per-sample radii
    assert not model.training


def _objective(model, x, y, eps):
    """The composite loss on clean (ᾱ=0) + freshly attacked (ᾱ=1) inputs, fixed attack seed,
    BatchNorm in batch-statistics mode as in training."""
    adv = training_attack(model, x, y, eps=eps, seed=123, steps_df=2)
    model.train()
    with torch.no_grad():
        logp, _, gamma = model(torch.cat([x, adv]), return_alpha=True)
    model.eval()
    pseudo = torch.cat([torch.zeros(len(x)), torch.ones(len(x))])
    return composite_loss(logp, torch.cat([y, y]), gamma, pseudo)[0].item()


def test_a_few_training_steps_lower_the_composite_loss(g_model, h_model, test_batch):
    from adasmooth import data

    xt, yt = data.load("fashion-mnist", "train")
    idx = data.balanced_subset(yt, 8, seed=1)
    x, y = xt[idx], yt[idx]
    torch.manual_seed(0)
    net = for_models(g_model, h_model, width=8)
    model = AdaptiveMixedClassifier(g_model, h_model, net)
    xe, ye = test_batch[0][:64], test_batch[1][:64]
    # ε = 0.3: attacks that α_θ can learn to spot within 10 steps
    before = _objective(model, xe, ye, 0.3)
    model, hist = train_mixing_network(g_model, h_model, x, y, net=net, epochs=2, **{**FAST, "eps": 0.3})
    after = _objective(model, xe, ye, 0.3)
    assert hist["steps"] == 2 * (len(x) // 16) and len(hist["loss"]) == hist["steps"]
    # the ratio rides on floating-point paths: 0.80 was reported on another CPU of this kind (issue 28), so
    # the bound leaves a margin over it; an untrained network (ratio 1) still fails it
    assert after < 0.9 * before
    assert float(net.bn.running_mean) != 0.0  # the head's running statistics were updated


def test_training_resumes_to_the_same_weights(g_model, h_model, test_batch, tmp_path):
    x, y = test_batch[0][:64], test_batch[1][:64]
    cfg = MixingConfig(**FAST, epochs=1)  # 4 steps
    full, _ = train_mixing_network(g_model, h_model, x, y, cfg)
    state = tmp_path / "mixnet.train-state"
    train_mixing_network(g_model, h_model, x, y, cfg, state_path=state, save_every=2, max_steps=2)
    assert checkpoint.read_metadata(state)["history"]["steps"] == 2
    resumed, hist = train_mixing_network(g_model, h_model, x, y, cfg, state_path=state)
    assert hist["steps"] == 4
    for a, b in zip(full.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)


def test_calibrate_shift_hits_target(model, test_batch):
    x, y = test_batch
    n = len(y)
    amin, amax = 0.0, 1.0
    with torch.no_grad():
        lg, lh = F.log_softmax(model.g(x), 1), F.log_softmax(model.h(x), 1)
        acc_g = (mix_log_probs(lg, lh, amin).argmax(1) == y).float().mean().item()
        acc_h = (mix_log_probs(lg, lh, amax).argmax(1) == y).float().mean().item()
    assert acc_g != acc_h
    target = round(0.5 * (acc_g + acc_h) * n) / n  # an achievable value: a multiple of 1/n
    res = calibrate_shift(model, x, y, target, tol=0.5 / n)
    assert res.within_tol and abs(res.accuracy - target) <= 0.5 / n
    assert float(model.net.shift) == pytest.approx(res.value)
    with torch.no_grad():  # the full forward with the new shift gives the reported accuracy
        assert (model(x).argmax(1) == y).float().mean().item() == pytest.approx(res.accuracy)
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_shift(model, x, y, max(acc_g, acc_h) + 0.05)
    with pytest.raises(ValueError, match="target_clean_acc"):
        calibrate_shift(model, x, y, 1.5)
    # a target between two achievable values: the closest one is used, flagged
    res = calibrate_shift(model, x, y, target + 0.25 / n + 1e-4, tol=1e-5)
    assert not res.within_tol and res.accuracy == pytest.approx(target)


def test_calibrate_constant_alpha_hits_target(g_model, h_model, test_batch):
    x, y = test_batch
    n = len(y)
    with torch.no_grad():
        lg, lh = F.log_softmax(g_model(x), 1), F.log_softmax(h_model(x), 1)

    def acc(a):
        return (mix_log_probs(lg, lh, a).argmax(1) == y).float().mean().item()
    target = round(0.5 * (acc(0.0) + acc(1.0)) * n) / n
    res = calibrate_constant_alpha(g_model, h_model, x, y, target, tol=0.5 / n)
    assert 0 <= res.value <= 1 and res.within_tol
    assert acc(res.value) == pytest.approx(res.accuracy) and abs(res.accuracy - target) <= 0.5 / n


def test_robust_accuracy_reports_both_threats(model, test_batch):
    x, y = test_batch[0][:24], test_batch[1][:24]
    r = robust_accuracy_adaptive(model, x, y, eps=0.1, steps=3, alpha_weights=(0.0, 0.3), apgd_iter=0,
                                 device="cpu")
    pa = r["per_attack"]
    assert set(pa) == {"full/ce/w=0", "full/ce/w=0.3", "full/margin/w=0", "full/margin/w=0.3",
                       "detached/ce", "detached/margin", "transfer/g", "transfer/h"}
    assert r["worst"] <= min(r["full"], r["detached"]) <= r["clean"]
    assert r["full"] <= min(v for k, v in pa.items() if not k.startswith("detached"))
    assert r["detached"] <= min(v for k, v in pa.items() if not k.startswith("full"))
    assert r["worst"] < r["clean"]  # PGD finds some adversarial examples on this tiny model
    # transfer examples from g alone and h alone are the ones attacks.pgd crafts on them, judged on the mix
    for name, source in (("g", model.g), ("h", model.h)):
        adv = pgd(source, x, y, eps=0.1, steps=3, loss="ce", random_start=True, seed=0)
        with torch.no_grad():
            ok = (model(adv).argmax(1) == y) & (model(x).argmax(1) == y)
        assert pa[f"transfer/{name}"] == pytest.approx(ok.float().mean().item())
    n = robust_accuracy_adaptive(model, x, y, eps=0.1, steps=3, alpha_weights=(0.0, 0.3), apgd_iter=0,
                                 transfer=False, device="cpu")
    assert "transfer/g" not in n["per_attack"] and n["full"] >= r["full"] and n["detached"] >= r["detached"]
    # APGD-T through α_θ runs on what PGD left correct: never above the PGD-only numbers
    a = robust_accuracy_adaptive(model, x, y, eps=0.1, steps=3, alpha_weights=(0.0, 0.3), apgd_iter=10,
                                 device="cpu")
    assert a["per_attack"]["full/apgd-t"] == a["full"] <= r["full"]
    assert a["detached"] == r["detached"] and a["worst"] <= r["worst"]
    with pytest.raises(ValueError, match="apgd_iter"):
        robust_accuracy_adaptive(model, x, y, eps=0.1, steps=1, apgd_iter=-1)


def test_get_mixing_network_trains_caches_and_reloads(tiny_zoo, zoo_cache, test_batch):
    tiny_zoo("fmnist-standard"), tiny_zoo("fmnist-linf-at")
    cfg = MixingConfig(**FAST, epochs=1, train_subset=40)
    kw = dict(root=zoo_cache, base_overrides=TINY, device="cpu")
    with pytest.raises(checkpoint.CheckpointError, match="not cached"):
        get_mixing_network("fmnist-standard", "fmnist-linf-at", cfg, train_if_missing=False, **kw)
    m1 = get_mixing_network("fmnist-standard", "fmnist-linf-at", cfg, **kw)
    # the session's zoo cache may hold other tests' networks: look at this config's own files
    s = mixing_stem("fmnist-standard", "fmnist-linf-at", cfg, base_overrides=TINY, root=zoo_cache)
    stems = sorted(p.name for p in zoo_cache.glob(f"{s.name}*"))
    assert stems == [f"{s.name}.json", f"{s.name}.pt"] and s.name.startswith("mixnet-fmnist-standard-fmnist-linf-at-")
    assert not list(zoo_cache.glob("*.train-state*"))
    m2 = get_mixing_network("fmnist-standard", "fmnist-linf-at", cfg, train_if_missing=False, **kw)
    x = test_batch[0][:16]
    with torch.no_grad():
        assert torch.equal(m1(x, return_alpha=True)[1], m2(x, return_alpha=True)[1])
    assert m2.metadata["config"]["g"]["name"] == "fmnist-standard"
    # a corrupted checkpoint is refused, never used
    pt = zoo_cache / f"{s.name}.pt"
    pt.write_bytes(pt.read_bytes()[:-10])
    with pytest.raises(checkpoint.CheckpointError, match="sha256"):
        get_mixing_network("fmnist-standard", "fmnist-linf-at", cfg, train_if_missing=False, **kw)
    with pytest.raises(ValueError, match="eps"):
        MixingConfig(eps=0.0)


def test_surrogate_attack_softens_a_saturated_sigmoid_and_restores_the_head(model, test_batch):
    x, y = test_batch[0][:24], test_batch[1][:24]
    old = float(model.net.scale), float(model.net.shift)
    model.net.set_head(scale=8.0, shift=0.8)
    try:
        r = robust_accuracy_adaptive(model, x, y, eps=0.1, steps=3, alpha_weights=(0.0, 0.3), apgd_iter=0,
                                     transfer=False, surrogate_scale=2.0, device="cpu")
        assert (float(model.net.scale), float(model.net.shift)) == pytest.approx((8.0, 0.8))  # head restored
        pa = r["per_attack"]
        assert {"full/surrogate/ce", "full/surrogate/margin"} <= set(pa)
        assert r["full"] <= min(pa["full/surrogate/ce"], pa["full/surrogate/margin"])
        # the surrogate's examples: PGD on the same network with γ / 4 (scale 2, shift 0.2), judged on scale 8
        model.net.set_head(scale=2.0, shift=0.2)
        adv = attack_adaptive(model, x, y, threat="full", eps=0.1, steps=3, loss="ce", alpha_weight=0.3, seed=0)
        model.net.set_head(scale=8.0, shift=0.8)
        with torch.no_grad():
            ok = (model(adv).argmax(1) == y) & (model(x).argmax(1) == y)
        assert pa["full/surrogate/ce"] == pytest.approx(ok.float().mean().item())
        # at or below the surrogate's scale nothing extra runs
        q = robust_accuracy_adaptive(model, x, y, eps=0.1, steps=1, apgd_iter=0, transfer=False,
                                     surrogate_scale=8.0, device="cpu")
        assert not any(k.startswith("full/surrogate") for k in q["per_attack"])
        with pytest.raises(ValueError, match="surrogate_scale"):
            robust_accuracy_adaptive(model, x, y, eps=0.1, steps=1, surrogate_scale=0.0)
    finally:
        model.net.set_head(*old)


def test_a_checkpoint_being_trained_is_locked_for_other_processes(tmp_path):
    """Two notebooks side by side about to train the same mixing network take turns (checkpoint.exclusive)."""
    import subprocess
    import sys

    from adasmooth import checkpoint

    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'a')\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "    print('free')\nexcept BlockingIOError:\n    print('held')\n")
    lock = str(tmp_path / "net.lock")
    with checkpoint.exclusive(tmp_path / "net"):
        held = subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True).stdout.strip()
    free = subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True).stdout.strip()
    assert (held, free) == ("held", "free")
