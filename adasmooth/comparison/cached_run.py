"""Running the attack set AutoAttack-style with the content-addressed cache: per-image masks, α_θ
diagnostics, the class-balanced test images."""
from __future__ import annotations

import logging

import torch

from .. import data
from ..adaptive import attack_adaptive
from ..attack_cache import cached_values, images_hash, key
from ..runner import Attack, run
from ..runtime import batches
from ..statistics import auc, summary
from .attack_suite import Budget, attack_set

log = logging.getLogger(__name__)


def suite(model, budget: Budget, square_idx=None) -> list[Attack]:
    """:func:`attack_set` as a runner suite: every attack on what the earlier ones left (AutoAttack's cascade),
    Square on the positions ``square_idx`` only (left out when None)."""
    out = []
    for name, fn in attack_set(model, budget).items():
        if name.startswith("square"):
            if square_idx is None:
                continue
            out.append(Attack(name, fn, subset=square_idx))
        else:
            out.append(Attack(name, fn))
    return out


def evaluate(model, x: torch.Tensor, y: torch.Tensor, budget: Budget, *, identity: str, square_idx=None,
             use_cache: bool = True, progress: bool = False, survivors: torch.Tensor | None = None, shards: int = 1,
             only_shard: int | None = None, jobs: int = 1) -> dict:
    """Run :func:`attack_set` on (x, y) with :func:`runner.run` and return per-image masks.

    ``identity`` is the mixer's content address (:func:`fingerprint`).  Square runs only on
    ``square_idx`` (positions in x).  Returns ``{"clean", "worst": bool masks, "steps": [{"attack",
    "acc" (cumulative), "seconds", "cached"}], "square": {...} or None}`` where ``worst`` is the mask
    after every attack but Square, and ``square`` holds the masks before and after it on its subset.
    ``survivors`` (a bool mask): attack only the images it marks (those earlier attacks left correct), so
    ``worst`` is the per-image worst case over those attacks and these.  ``shards``, ``only_shard``, ``jobs``: as
    :func:`runner.run` (contiguous parts, each its own cache entries; worker processes side by side).
    """
    model.eval()
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    res = run(model, x, y, suite(model, budget, square_idx), question={"identity": identity, "budget": budget.key()},
              label=identity[:12], use_cache=use_cache, survivors=survivors, batch_size=budget.batch_size,
              shards=shards, only_shard=only_shard, jobs=jobs, progress=progress)
    steps = [{k: s[k] for k in ("attack", "acc", "seconds", "cached")} for s in res.steps
             if s["attack"] not in res.subsets]
    sq = None
    for name, sub in res.subsets.items():
        s = next(st for st in res.steps if st["attack"] == name)
        sq = {"attack": name, "n": len(sub["positions"]), "before": sub["before"], "after": sub["after"],
              "seconds": s["seconds"], "cached": s["cached"]}
    return {"clean": res.clean, "worst": res.correct, "steps": steps, "square": sq}


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
