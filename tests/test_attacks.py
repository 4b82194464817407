"""Attacks: PGD soundness (ε, steps, undefended model, ART agreement), targeted DLR, AutoAttack,
transfer attacks and the per-input worst case."""
import math
from functools import partial

import numpy as np
import pytest
import torch

from adasmooth import MixedClassifier
from adasmooth.attacks import (apgd_targeted, attack_loss, autoattack, dlr_targeted_loss, logit_margin, loss_name, pgd, pgd_targeted, predict,
                               transfer, worst_case)


def acc(model, x, y):
    return (predict(model, x) == y).float().mean().item()


@pytest.fixture(scope="module")
def batch(test_batch):
    x, y = test_batch
    return x[::2], y[::2]  # 100 images, 10 per class


def art_pgd(model, x, y, *, eps, step_size, steps, norm):
    """ART's ProjectedGradientDescentPyTorch, no random start."""
    art_pt = pytest.importorskip("art.estimators.classification")
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    clf = art_pt.PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    att = ProjectedGradientDescentPyTorch(clf, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=step_size,
                                          max_iter=steps, num_random_init=0, batch_size=len(x), verbose=False)
    return torch.from_numpy(att.generate(x.numpy(), y=y.numpy()))


def test_pgd_drives_an_undefended_model_to_zero_at_large_eps(g_model, batch):
    x, y = batch
    assert acc(g_model, x, y) > 0.6
    adv = pgd(g_model, x, y, eps=0.3, steps=10, random_start=False)
    assert acc(g_model, adv, y) <= 0.02


def test_accuracy_falls_with_eps_and_with_steps(h_model, batch):
    x, y = batch
    by_eps = [acc(h_model, pgd(h_model, x, y, eps=e, steps=5, random_start=False), y)
              for e in (0.0, 0.05, 0.1, 0.2)]
    assert by_eps[0] == acc(h_model, x, y)
    assert all(b <= a + 0.01 for a, b in zip(by_eps, by_eps[1:])), by_eps
    assert by_eps[-1] < by_eps[0] - 0.2
    by_steps = [acc(h_model, pgd(h_model, x, y, eps=0.1, steps=s, step_size=0.01, random_start=False), y)
                for s in (1, 3, 8)]
    assert all(b <= a + 0.01 for a, b in zip(by_steps, by_steps[1:])), by_steps
    assert by_steps[-1] < by_steps[0]


@pytest.mark.parametrize("which,norm,eps,step", [("h", "linf", 0.1, 0.025), ("g", "l2", 2.0, 0.5)])
def test_pgd_agrees_with_art(g_model, h_model, batch, which, norm, eps, step):
    x, y = batch
    model = h_model if which == "h" else g_model
    ours = pgd(model, x, y, eps=eps, steps=6, step_size=step, norm=norm, random_start=False)
    theirs = art_pgd(model, x, y, eps=eps, step_size=step, steps=6, norm=norm)
    a, b = acc(model, ours, y), acc(model, theirs, y)
    assert a < acc(model, x, y) - 0.1  # the attack does something
    assert abs(a - b) <= 0.01, (a, b)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_box_and_is_seeded(g_model, batch, norm):
    x, y = batch[0][:20], batch[1][:20]
    eps = torch.linspace(0.02, 0.3, 20) * (1 if norm == "linf" else 5)
    a1 = pgd(g_model, x, y, eps=eps, steps=3, norm=norm, seed=1)
    d = (a1 - x).flatten(1)
    size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all() and a1.min() >= 0 and a1.max() <= 1
    assert torch.equal(a1, pgd(g_model, x, y, eps=eps, steps=3, norm=norm, seed=1))
    assert not torch.equal(a1, pgd(g_model, x, y, eps=eps, steps=3, norm=norm, seed=2))


def test_dlr_losses():
    z = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 5.0, 2.0, 3.0]])
    y, t = torch.tensor([0, 2]), torch.tensor([1, 0])
    # -(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2)
    ref = torch.tensor([-(4 - 3) / (4 - (2 + 1) / 2), -(5 - 0) / (5 - (2 + 1) / 2)])
    torch.testing.assert_close(dlr_targeted_loss(z, y, t), ref)
    # shift and scale invariant: logits and log-probabilities give the same loss
    torch.testing.assert_close(dlr_targeted_loss(3 * z - 7, y, t), ref)
    torch.testing.assert_close(dlr_targeted_loss(torch.log_softmax(z, 1), y, t), ref)
    torch.testing.assert_close(attack_loss("dlr", z, y), -logit_margin(z, y) / (z.sort(1, True).values[:, 0]
                                                                         - z.sort(1, True).values[:, 2]))
    with pytest.raises(ValueError, match="pgd_targeted"):
        attack_loss("dlr", z, t, targeted=True)
    with pytest.raises(ValueError, match="4 classes"):
        dlr_targeted_loss(z[:, :3], y.clamp(max=2), t)


def test_one_name_per_loss_with_cw_read_as_margin():
    z = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 5.0, 2.0, 3.0]])
    y = torch.tensor([0, 3])
    assert loss_name("cw") == loss_name("margin") == "margin" and loss_name("ce") == "ce"
    torch.testing.assert_close(attack_loss("margin", z, y), torch.tensor([-1.0, 3.0]))  # max_{i≠y} z_i - z_y
    torch.testing.assert_close(attack_loss("cw", z, y), attack_loss("margin", z, y))
    torch.testing.assert_close(attack_loss("cw", z, y, targeted=True), logit_margin(z, y))
    with pytest.raises(ValueError, match=r"loss must be one of \('ce', 'dlr', 'margin'\) \(or \('cw',\)\), got 'hinge'"):
        attack_loss("hinge", z, y)


def test_targeted_pgd(g_model, h_model, batch):
    x, y = batch[0][:40], batch[1][:40]
    adv = pgd_targeted(h_model, x, y, eps=0.1, steps=5, n_targets=3)
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    # the first target alone, with the same loss
    ranked = h_model(x).detach().scatter(1, y[:, None], float("-inf")).argmax(1)
    one = pgd(h_model, x, ranked, eps=0.1, steps=5, random_start=False, targeted=True,
              loss=lambda z, t: dlr_targeted_loss(z, y, t))
    assert ((predict(h_model, adv) == y) <= (predict(h_model, one) == y)).all()
    assert acc(h_model, adv, y) < acc(h_model, x, y) - 0.1
    assert acc(g_model, pgd_targeted(g_model, x, y, eps=0.3, steps=5, n_targets=2), y) <= 0.05
    with pytest.raises(ValueError, match="n_targets"):
        pgd_targeted(h_model, x, y, eps=0.1, steps=1, n_targets=10)


def test_autoattack_wrapper(h_model, batch):
    pytest.importorskip("pyautoattack")
    x, y = batch[0][:40], batch[1][:40]
    kw = dict(eps=0.1, n_iter=10, n_target_classes=2, seed=0)
    adv = autoattack(h_model, x, y, **kw)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert acc(h_model, adv, y) < acc(h_model, x, y) - 0.1
    assert torch.equal(adv, autoattack(h_model, x, y, **kw))
    with pytest.raises(ValueError, match="attacks"):
        autoattack(h_model, x, y, eps=0.1, attacks=("apgd-xx",))
    with pytest.raises(ValueError, match="norm"):
        autoattack(h_model, x, y, eps=0.1, norm="l1")
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    autoattack(h_model, x[:8], y[:8], **kw)
    assert torch.equal(torch.rand(3), before)  # pyautoattack's reseeding does not leak to the caller


def test_apgd_targeted(h_model, batch):
    pytest.importorskip("pyautoattack")
    x, y = batch[0][:40], batch[1][:40]
    adv = apgd_targeted(h_model, x, y, eps=0.1, n_iter=10, n_targets=2)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert acc(h_model, adv, y) < acc(h_model, x, y) - 0.1
    assert torch.equal(adv, apgd_targeted(h_model, x, y, eps=0.1, n_iter=10, n_targets=2))
    three = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 3))
    with pytest.raises(ValueError, match="at least 4 classes"):
        apgd_targeted(three, x[:4], y[:4] % 3, eps=0.1, n_iter=2)


def test_worst_case_is_below_every_attack_and_transfer_uses_the_source(g_model, h_model, batch):
    x, y = batch[0][:60], batch[1][:60]
    mix = MixedClassifier(g_model, h_model, 0.7)
    base = dict(eps=0.1, steps=5, random_start=False)
    attacks = {"ce": partial(pgd, loss="ce", **base), "dlr": partial(pgd, loss="dlr", **base),
               "from_g": transfer(g_model, partial(pgd, **base)), "from_h": transfer(h_model, partial(pgd, **base))}
    assert torch.equal(attacks["from_g"](mix, x, y), pgd(g_model, x, y, **base))
    wc = worst_case(mix, x, y, attacks)
    clean = predict(mix, x) == y
    assert (wc.correct <= clean).all()
    for name, ok in wc.per_attack.items():
        assert (wc.correct <= ok).all(), name
    assert torch.equal(wc.per_attack["from_g"], predict(mix, pgd(g_model, x, y, **base)) == y)
    # an input is robust iff clean-correct and every attack failed; else x_adv fools the model
    every = torch.stack(list(wc.per_attack.values())).all(0)
    assert torch.equal(wc.correct, clean & every)
    assert (predict(mix, wc.x_adv)[~wc.correct] != y[~wc.correct]).all()
    assert wc.correct.float().mean() <= min(ok.float().mean() for ok in wc.per_attack.values())
    with pytest.raises(ValueError, match="attacks"):
        worst_case(mix, x, y, {})


def test_worst_case_runs_only_robust_attacks_on_the_survivors(g_model, h_model, batch):
    x, y = batch[0][:60], batch[1][:60]
    mix = MixedClassifier(g_model, h_model, 0.7)
    seen = []

    def costly(model, xx, yy):  # records which inputs it was given
        seen.append(xx.clone())
        return pgd(model, xx, yy, eps=0.1, steps=5, loss="dlr", random_start=False)

    ce = partial(pgd, eps=0.1, steps=5, random_start=False)
    wc = worst_case(mix, x, y, {"costly": costly, "ce": ce}, only_robust=["costly"])
    survivors = (predict(mix, x) == y) & wc.per_attack["ce"]
    assert 0 < survivors.sum() < len(x)
    (given,) = seen
    assert torch.equal(given, x[survivors])          # run after "ce", on what it left correct only
    assert torch.equal(wc.per_attack["costly"], wc.correct)  # its column is the cumulative worst case
    alone = predict(mix, pgd(mix, x, y, eps=0.1, steps=5, loss="dlr", random_start=False)) == y
    # the same verdict as running it on every input (up to a float-rounding flip from the batch size)
    assert (wc.correct != (survivors & alone)).sum() <= 1
    with pytest.raises(ValueError, match="only_robust"):
        worst_case(mix, x, y, {"ce": ce}, only_robust=["nope"])


def test_cosine_schedule_decays_the_step_and_stays_in_the_ball(g_model, test_batch):
    from adasmooth.attacks import _step_sizes

    s = _step_sizes(0.1, 4, "cosine")
    assert s[0] == pytest.approx(0.1) and s == sorted(s, reverse=True) and s[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(0.75 * math.pi)))
    assert _step_sizes(0.1, 3, "constant") == [0.1, 0.1, 0.1]
    x, y = test_batch[0][:20], test_batch[1][:20]
    adv = pgd(g_model, x, y, eps=0.1, steps=5, schedule="cosine", seed=0)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with pytest.raises(ValueError, match="schedule"):
        pgd(g_model, x, y, eps=0.1, steps=5, schedule="linear")
