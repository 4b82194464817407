"""The attack runner: which images each attack sees, the per-image worst case, the cache, shards, the suites."""
import pytest
import torch

from adasmooth import attack_cache, runner, suites
from adasmooth.mixing import MixedClassifier
from adasmooth.runner import Attack


class Sign(torch.nn.Module):
    """Two classes: class 1 where the first feature is positive (a parameter, so it has a device)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x):
        s = x @ self.w
        return torch.stack([-s, s], 1)


def flipper(fooled: set, seen: list):
    """An attack that flips the images whose value in feature 1 is in ``fooled`` (their ids) and records the ids
    it was called with."""
    def fn(x, y):
        ids = x[:, 1].round().long().tolist()
        seen.append(ids)
        out = x.clone()
        for i, k in enumerate(ids):
            if k in fooled:
                out[i, 0] = -out[i, 0]
        return out
    return fn


def toy(n=10, wrong=(0,)):
    x = torch.stack([torch.ones(n), torch.arange(n, dtype=torch.float)], 1)
    y = torch.ones(n, dtype=torch.long)
    y[list(wrong)] = 0  # clean-wrong images
    return x, y


def test_each_attack_sees_the_images_its_policy_names():
    x, y = toy()
    seen = {k: [] for k in "abcd"}
    attacks = [Attack("a", flipper({1, 2}, seen["a"])),                    # survivors: clean-right ones
               Attack("b", flipper({3}, seen["b"]), on="all"),              # every image
               Attack("c", flipper({4}, seen["c"]), on=("b",)),             # clean-right and right under b
               Attack("d", flipper({5, 6}, seen["d"]), subset=[0, 5, 7])]   # Square-like: reported apart
    res = runner.run(Sign(), x, y, attacks, batch_size=3)
    assert seen["a"] == [list(range(1, 10))]
    assert seen["b"] == [list(range(10))]
    assert seen["c"] == [[1, 2, 4, 5, 6, 7, 8, 9]]
    assert seen["d"] == [[5, 7]]
    assert res.clean.tolist() == [i != 0 for i in range(10)]
    assert res.correct.tolist() == [i in (5, 6, 7, 8, 9) for i in range(10)]
    assert res.accuracy == pytest.approx(0.5)
    assert res.masks["b"].tolist() == [i not in (0, 3) for i in range(10)]  # b alone: right on its examples
    assert res.masks["c"].tolist() == [i in (1, 2, 5, 6, 7, 8, 9) for i in range(10)]
    assert [s["n"] for s in res.steps] == [9, 10, 8, 2]
    assert [s["acc"] for s in res.steps] == pytest.approx([0.7, 0.6, 0.5, 0.5])
    sub = res.subsets["d"]
    assert sub["positions"].tolist() == [0, 5, 7]
    assert sub["before"].tolist() == [False, True, True] and sub["after"].tolist() == [False, False, True]


def test_survivors_restrict_the_first_pool():
    x, y = toy(wrong=())
    seen = []
    res = runner.run(Sign(), x, y, [Attack("a", flipper({9}, seen))], survivors=torch.arange(10) < 5)
    assert seen == [[0, 1, 2, 3, 4]] and res.correct.sum() == 5


def test_cached_outcomes_are_read_back_and_keyed_by_the_question(empty_attack_cache):
    x, y = toy()
    seen = []
    attacks = [Attack("a", flipper({1, 2}, seen)), Attack("b", flipper({3}, seen), on="all")]
    first = runner.run(Sign(), x, y, attacks, question={"identity": "m"})
    assert len(seen) == 2 and not first.cached and len(list(empty_attack_cache.glob("*.json"))) == 2
    again = runner.run(Sign(), x, y, attacks, question={"identity": "m"})
    assert len(seen) == 2 and again.cached                    # nothing attacked: both read
    assert torch.equal(again.correct, first.correct) and all(torch.equal(again.masks[k], first.masks[k]) for k in "ab")
    runner.run(Sign(), x, y, attacks, question={"identity": "other"})
    assert len(seen) == 4                                     # another model: another question


def test_shards_give_the_unsharded_answer_for_per_image_attacks():
    x, y = toy(n=11, wrong=(0, 6))
    attacks = [Attack("a", flipper({1, 8}, [])), Attack("b", flipper({2, 9}, []), on="all"),
               Attack("sq", flipper({4, 10}, []), subset=[3, 4, 10])]
    whole = runner.run(Sign(), x, y, attacks)
    parts = runner.run(Sign(), x, y, attacks, shards=3)
    assert torch.equal(whole.correct, parts.correct) and torch.equal(whole.masks["b"], parts.masks["b"])
    assert [s["acc"] for s in whole.steps] == pytest.approx([s["acc"] for s in parts.steps])
    as_lists = [{k: v.tolist() for k, v in r.subsets["sq"].items()} for r in (whole, parts)]
    assert as_lists[0] == as_lists[1]
    one = runner.run(Sign(), x, y, attacks, shards=3, only_shard=1)
    part = runner.shard_slices(11, 3)[1]
    assert one.correct[part].tolist() == whole.correct[part].tolist() and not one.correct[:part.start].any()


def test_worker_processes_fill_the_shards_and_the_parent_reads_them_back(empty_attack_cache):
    x, y = toy(n=12, wrong=(0, 7))
    seen = []
    attacks = [Attack("a", flipper({1, 8}, seen)), Attack("b", flipper({2, 9, 11}, seen), on="all"),
               Attack("sq", flipper({4, 10}, seen), subset=[3, 4, 10])]
    q = {"identity": "m"}
    with attack_cache.verifying(1.0):  # what the workers computed in this run is not recomputed to verify it
        forked = runner.run(Sign(), x, y, attacks, question=q, shards=3, jobs=2)
    assert seen == []  # the workers attacked; this process only read their answers
    assert len(attack_cache.stats["computed_keys"]) == 9  # 3 attacks x 3 shards, computed by the workers, merged
    assert forked.cached and attack_cache.stats["verified"] == 0  # read back here, not verified again
    plain = runner.run(Sign(), x, y, attacks, question={"identity": "other"}, shards=3)
    assert torch.equal(forked.correct, plain.correct) and torch.equal(forked.masks["b"], plain.masks["b"])
    assert [s["acc"] for s in forked.steps] == [s["acc"] for s in plain.steps]
    with pytest.raises(ValueError, match="needs a question"):
        runner.run(Sign(), x, y, attacks, shards=2, jobs=2)


def test_bad_suites_are_refused_by_name():
    x, y = toy()
    ok = flipper(set(), [])
    with pytest.raises(ValueError, match="unique"):
        runner.run(Sign(), x, y, [Attack("a", ok), Attack("a", ok)])
    with pytest.raises(ValueError, match="not earlier attacks"):
        runner.run(Sign(), x, y, [Attack("a", ok, on=("b",)), Attack("b", ok)])
    with pytest.raises(ValueError, match="on must be one of"):
        Attack("a", ok, on="some")
    with pytest.raises(ValueError, match="returned shape"):
        runner.run(Sign(), x, y, [Attack("a", lambda xs, ys: xs[:1])])
    with pytest.raises(ValueError, match="non-finite"):
        runner.run(Sign(), x.masked_fill(x > 8, float("nan")), y, [Attack("a", ok)])
    with pytest.raises(ValueError, match="shards must lie"):
        runner.run(Sign(), x, y, [Attack("a", ok)], shards=11)


def test_named_suites_on_a_mixer(g_model, h_model, test_batch, one_thread):
    x, y = test_batch[0][:20], test_batch[1][:20]
    mixed = MixedClassifier(g_model, h_model, 0.5).eval()
    names = {}
    for name in ("tradeoff", "headline"):
        res = suites.evaluate(mixed, x, y, name, eps=0.1, steps=2, apgd_iter=2, square_queries=10, batch_size=20)
        names[name] = [s["attack"] for s in res.steps]
        accs = [s["acc"] for s in res.steps]
        assert accs == sorted(accs, reverse=True) and res.accuracy == accs[-1] <= res.clean.float().mean().item()
    assert names["tradeoff"] == ["pgd_ce", "pgd_dlr", "transfer_g", "transfer_h", "apgd_t"]
    assert names["headline"][-1] == "square-10" and "transfer/g" in names["headline"]
    with pytest.raises(ValueError, match="AdaptiveMixedClassifier"):
        suites.evaluate(mixed, x, y, "tables", eps=0.1)
    with pytest.raises(ValueError, match="suite must be one of"):
        suites.evaluate(mixed, x, y, "autoattack", eps=0.1)
