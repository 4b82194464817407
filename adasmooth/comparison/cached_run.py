"""Running the attack set AutoAttack-style with the content-addressed cache: per-image masks, α_θ
diagnostics, the class-balanced test images."""
from __future__ import annotations

import logging

import torch

from .. import data
from ..adaptive import attack_adaptive
from ..attack_cache import cached_values, images_hash, key
from ..attacks import predict
from ..runtime import batches, progress_bar
from ..statistics import auc, summary
from .attack_suite import Budget, attack_set

log = logging.getLogger(__name__)


def _correct(model, x, y, bs):
    return (predict(model, x, bs) == y).cpu()


def evaluate(model, x: torch.Tensor, y: torch.Tensor, budget: Budget, *, identity: str, square_idx=None,
             use_cache: bool = True, progress: bool = False, survivors: torch.Tensor | None = None) -> dict:
    """Run :func:`attack_set` on (x, y) AutoAttack-style and return per-image masks.

    ``identity`` is the mixer's content address (:func:`fingerprint`).  Square runs only on
    ``square_idx`` (positions in x).  Returns ``{"clean", "worst": bool masks, "steps": [{"attack",
    "acc" (cumulative), "seconds", "cached"}], "square": {...} or None}`` where ``worst`` is the mask
    after every attack but Square, and ``square`` holds the masks before and after it on its subset.
    ``survivors`` (a bool mask): attack only the images it marks (those earlier attacks left correct), so
    ``worst`` is the per-image worst case over those attacks and these.
    """
    model.eval()
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    bs = budget.batch_size
    base_key = {"identity": identity, "budget": budget.key()}
    clean = _correct(model, x, y, bs)
    correct = clean.clone() if survivors is None else clean & survivors.cpu()
    steps, sq = [], None
    attacks = attack_set(model, budget)
    for name, attack in progress_bar(list(attacks.items()), progress=progress, desc="attacks", leave=False):
        is_square = name.startswith("square")
        pool = correct.clone()
        if is_square:
            if square_idx is None:
                continue
            sub = torch.zeros_like(pool)
            sub[torch.as_tensor(square_idx)] = True
            pool &= sub
        idx = pool.nonzero().flatten()
        if len(idx) == 0:
            ok, secs, hit = torch.zeros(0, dtype=torch.bool), 0.0, False
        else:
            xs, ys = x[idx.to(dev)], y[idx.to(dev)]
            entry = key({**base_key, "attack": name, "images": images_hash(xs, ys)})

            def compute(attack=attack, xs=xs, ys=ys):
                return _correct(model, attack(xs, ys), ys, bs)
            ok, secs, hit = cached_values(entry, compute, use_cache, what=f"{identity[:12]}: {name} on {len(idx)} images")
        after = pool.clone()
        after[idx] = ok
        if is_square:
            sub_idx = torch.as_tensor(square_idx)
            sq = {"attack": name, "n": len(sub_idx), "before": correct[sub_idx].clone(),
                  "after": (correct & ~pool | after)[sub_idx], "seconds": round(secs, 1), "cached": hit}
        else:
            correct = after
            steps.append({"attack": name, "acc": correct.float().mean().item(), "seconds": round(secs, 1),
                          "cached": hit})
        log.info("%s: %s%s", identity[:8], name, " (cached)" if hit else f" {secs:.0f} s")
    return {"clean": clean, "worst": correct, "steps": steps, "square": sq}


@torch.no_grad()
def alpha_values(model, x, bs=500) -> torch.Tensor:
    """α_θ(x) of an adaptive model, per image."""
    dev = next(model.parameters()).device
    return torch.cat([model(x[sl].to(dev), return_alpha=True)[1] for sl in batches(len(x), bs)]).cpu()

def _masks_doc(res: dict) -> dict:
    doc = {"clean": summary(res["clean"]), "attacked": summary(res["worst"]), "steps": res["steps"]}
    if res["square"] is not None:
        s = res["square"]
        doc["square"] = {"attack": s["attack"], "n": s["n"], "before": summary(s["before"]),
                         "after": summary(s["after"]), "seconds": s["seconds"], "cached": s["cached"],
                         "gap_points": 100 * (s["before"].float().mean() - s["after"].float().mean()).item()}
    return doc


def diagnostics(model, x, y, budget: Budget, *, identity: str, use_cache: bool = True) -> dict:
    """α_θ on clean test images and on two attacks' examples (all images): quantiles and the AUC with
    which α_θ separates attacked from clean inputs (α_θ values cached by content like the attacks)."""
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    qs = torch.tensor(levels, dtype=torch.float64)
    a_clean = alpha_values(model, x)
    out = {"clean": {"quantiles": torch.quantile(a_clean.double(), qs).tolist()}, "quantile_levels": levels}
    for name, w in (("pgd-ce/full/w=0.2", 0.2), ("evasion/w=0.9", 0.9)):
        entry = key({"identity": identity, "budget": budget.key(), "alpha_on": name, "images": images_hash(x, y)})

        def compute(w=w):
            adv = attack_adaptive(model, x, y, threat="full", eps=budget.eps, steps=budget.steps, norm=budget.norm,
                                  loss="ce", alpha_weight=w, seed=budget.seed, batch_size=budget.batch_size)
            return alpha_values(model, adv)
        a_adv, _, _ = cached_values(entry, compute, use_cache, dtype=torch.float32,
                                    what=f"{identity[:12]}: α_θ on {name} examples")
        out[name] = {"quantiles": torch.quantile(a_adv.double(), qs).tolist(), "auc": auc(a_clean, a_adv)}
    return out


def test_images(dataset: str, n_test: int, budget: Budget, device):
    """``(x, y, square_positions)``: ``n_test`` class-balanced test images (seed ``budget.seed``) and the
    class-balanced positions of Square's ``budget.square_n``-image subset among them (None if 0)."""
    k = data.info(dataset)["num_classes"]
    if n_test < k:
        raise ValueError(f"n_test must be at least the class count {k}, got {n_test}")
    xt, yt = data.load(dataset, "test")
    idx = data.balanced_subset(yt, n_test // k, seed=budget.seed)
    x, y = xt[idx].to(device), yt[idx].to(device)
    sq_pos = data.balanced_subset(y.cpu(), budget.square_n // k, seed=budget.seed + 1) if budget.square_n else None
    return x, y, sq_pos
