"""What was reproduced: each claim of the supplement beside our number, with a verdict decided by a fixed rule.

The rules below were written before looking at the numbers they judge.  They read only the results
JSON a notebook records (``results/<profile>/NN_*.json``: its ``metrics``, ``tables`` and ``data``) and
return one row per claim::

    {"id", "claim", "paper", "ours", "verdict", "source"}

``verdict`` is one of :data:`VERDICTS`:

- ``reproduced``: our numbers show the paper's statement, beyond the noise of our sample;
- ``not reproduced``: our numbers show the opposite, beyond the noise of our sample;
- ``inconclusive``: anything else: the intervals are too wide to tell, or the compared numbers tie
  (the ``ours`` text then says "tie" and names the options that tie), or the notebook recorded too little.

Uncertainty (decision rules shared by every claim):

- every accuracy gets a 95 % Clopper-Pearson interval, :func:`adasmooth.comparison.interval` with
  ``k = round(acc * n)`` on the ``n`` images it was measured on (:func:`accuracy`);
- "A beats B" where per-image results exist is McNemar's exact test on the same images (notebook 04's
  headline records it, with its own rule, in ``data.verdicts``: claim (b) reuses that verdict);
- where only accuracies are recorded, "A beats B" is decided only when the two intervals do not overlap
  (:func:`compare`); overlapping intervals are a tie.  This is conservative (two disjoint 95 % intervals
  mean a difference well beyond the 5 % level), and it ignores that the accuracies share their images;
- a mean of accuracies measured on the same ``n`` images (an area under an accuracy curve, the mean over
  Table SM2's cells) gets the interval of a single accuracy on ``n`` images: its standard deviation is at
  most the largest of its terms', so this is not narrower than the truth;
- Fig. SM1 compares two curves radius by radius (each point an accuracy on ``n`` images) on the dense grid
  notebook 03 records; with only a few radii recorded the rule cannot place the crossing and says so.

Our setting differs from the paper's (:data:`SETTING_NOTE`), so shapes and signs are compared, not raw
numbers.  The paper's side comes from :func:`paper_reference` (``paper_reference.json``, quoting the
supplement with the table or figure each number comes from).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

from .mixing import MIXERS

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
SETTING_NOTE = ("Our setting differs from the paper's (Fashion-MNIST instead of CIFAR-10, small CNNs, CPU budgets, "
                "200-1000 test images): shapes and signs are compared, not raw numbers.")
RULE_NOTE = ("Intervals: 95 % Clopper-Pearson. \"A beats B\": McNemar's exact test where per-image results exist "
             "(claim b), else only when the two intervals do not overlap; overlapping intervals are reported as a tie "
             "(inconclusive).")
COLUMNS = ["claim", "paper", "ours (95 % CI)", "verdict", "source"]

# the notebooks whose results the claims are judged on (results JSON stems)
THEORY, RI, SM1, LOSS, SCALE = ("01_theory_checks", "02_ri_ablation", "03_certified_radii", "04_loss_ablation",
                                "05_sigmoid_scale")
RI_LABELS = {name: m.short for name, m in MIXERS.items()}  # the registry's short labels
PANELS = {"fig1": "Fig. 1", "sm2a": "Fig. SM2a", "sm2b": "Fig. SM2b"}


def paper_reference() -> dict:
    """The supplement's numbers and statements (``adasmooth/paper_reference.json``), a fresh copy per call."""
    return json.loads(resources.files("adasmooth").joinpath("paper_reference.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- accuracies and their comparison

@dataclass(frozen=True)
class Accuracy:
    """An accuracy measured on ``n`` images with its 95 % Clopper-Pearson interval [``low``, ``high``]."""

    acc: float
    n: int
    low: float
    high: float

    def __str__(self) -> str:
        return f"{100 * self.acc:.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def accuracy(acc: float, n: int) -> Accuracy:
    """``acc`` on ``n`` images with its Clopper-Pearson interval (``k = round(acc * n)``)."""
    n = int(n)
    lo, hi = _interval(int(round(float(acc) * n)), n)
    return Accuracy(float(acc), n, lo, hi)


@lru_cache(maxsize=None)
def _interval(k: int, n: int) -> tuple[float, float]:
    from .comparison import interval

    return interval(k, n)


def compare(a: Accuracy, b: Accuracy) -> int:
    """1 when ``a`` beats ``b`` (a's interval wholly above b's), -1 when ``b`` beats ``a``, 0 for a tie
    (the intervals overlap or touch)."""
    if a.low > b.high:
        return 1
    if a.high < b.low:
        return -1
    return 0


def best_options(values: Mapping, n: int) -> list:
    """The options tied for best among ``values`` (option -> accuracy on the same ``n`` images): the leader
    (the largest point estimate) and every option whose 95 % Clopper-Pearson interval overlaps the leader's
    (:func:`compare` gives 0, so equal point estimates tie too), by point estimate, largest first (equal
    estimates keep the order of ``values``).  One option means a clear winner; notebooks record the whole
    list (``best_*`` metrics) instead of naming the first of a tie."""
    vals = {k: v for k, v in values.items() if v is not None}
    if not vals:
        return []
    acc = {k: accuracy(v, n) for k, v in vals.items()}
    order = sorted(vals, key=lambda k: -vals[k])
    return [k for k in order if k == order[0] or compare(acc[order[0]], acc[k]) == 0]


def _row(cid: str, claim: str, paper: str, ours: str, verdict: str, source: str) -> dict:
    assert verdict in VERDICTS, verdict
    return {"id": cid, "claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "source": source}


def _pct(v: float) -> str:
    return f"{v:g} %"


def _n_eval(doc: dict, default=None):
    return (doc.get("metrics") or {}).get("n_eval") or (doc.get("params") or {}).get("n_eval") or default


# ---------------------------------------------------------------- (a) R = 1 on probabilities (notebook 02)

def ri_choice(doc: dict | None) -> list[dict]:
    """Claim (a), one row per panel (Fig. 1, SM2a, SM2b): ``R = 1`` on the probabilities ("prob") gives the
    best attacked-vs-clean curve.

    Measure: the area under each option's curve (``data.areas[panel][option]``, the mean attacked accuracy
    over the clean-accuracy range all options share), on the ``n`` images of the panel's curve points.
    Rule: ``reproduced`` when prob's interval lies above every other option's; ``not reproduced`` when some
    other option's interval lies above prob's; else ``inconclusive`` (a tie with the options named)."""
    ref = paper_reference()["fig1_sm2"]
    rows = []
    data = (doc or {}).get("data") or {}
    for panel, name in PANELS.items():
        cid, claim = f"a-{panel}", f"(a) R = 1 on probabilities gives the best attacked-vs-clean curve ({name})"
        paper = ("R = 1 on probabilities gives the best curve; post-SoftMax probabilities beat pre-SoftMax logits "
                 f"({ref['panels'][panel]['where']})")
        source = f"{name}, notebook {RI}"
        areas = (data.get("areas") or {}).get(panel)
        n = next((p.get("n") for p in (data.get("curves") or {}).get(panel, []) if p.get("n")), None) or _n_eval(doc or {})
        if not areas or not n:
            rows.append(_row(cid, claim, paper, "no curve areas recorded", "inconclusive", source))
            continue
        acc = {o: accuracy(v, n) for o, v in areas.items() if o != "range" and v is not None}
        if "prob" not in acc:
            rows.append(_row(cid, claim, paper, "no area recorded for R = 1 probs", "inconclusive", source))
            continue
        others = {o: compare(acc["prob"], a) for o, a in acc.items() if o != "prob"}
        if others and all(c == 1 for c in others.values()):
            verdict = "reproduced"
        elif any(c == -1 for c in others.values()):
            verdict = "not reproduced"
        else:
            verdict = "inconclusive"
        lo, hi = areas.get("range", [None, None])
        where = f" over clean {100 * lo:.1f}–{100 * hi:.1f} %" if lo is not None else ""
        parts = [f"{RI_LABELS.get(o, o)} {a}" for o, a in sorted(acc.items(), key=lambda kv: -kv[1].acc)]
        ties = [RI_LABELS.get(o, o) for o, c in others.items() if c == 0]
        beaten_by = [RI_LABELS.get(o, o) for o, c in others.items() if c == -1]
        ours = f"area (mean attacked acc.{where}, n = {n}): " + "; ".join(parts)
        if beaten_by:
            ours += f"; R = 1 probs beaten by {', '.join(beaten_by)}"
        if ties:
            ours += f"; tie: R = 1 probs vs {', '.join(ties)}"
        rows.append(_row(cid, claim, paper, ours, verdict, source))
    return rows


# ---------------------------------------------------------------- (b) learned vs constant α (notebook 04)

def learned_vs_constant(doc: dict | None) -> list[dict]:
    """Claim (b), one row per learned mixer: the learned α_θ beats the constant α at equal clean accuracy.

    The verdict is the one notebook 04's headline already recorded (``data.verdicts[name]["verdict"]``, else
    the metric ``headline_<name>_verdict``): McNemar's exact test on the same images, Square must not
    reverse it (:func:`adasmooth.comparison.verdict`); it is not recomputed here."""
    ref = paper_reference()["table_sm2"]
    base = ref["constant_baseline"]
    cells = [c["pgd20"] for c in ref["cells"]]
    paper = (f"constant α: {_pct(base['pgd20'])} PGD20 at {_pct(base['clean'])} clean; learned α_θ: "
             f"{_pct(min(cells))}–{_pct(max(cells))} (Table SM2, all 12 cells)")
    claim = "(b) the learned α_θ beats the constant α at equal clean accuracy"
    source = f"Table SM2 baseline, notebook {LOSS} (headline)"
    doc = doc or {}
    data, metrics = doc.get("data") or {}, doc.get("metrics") or {}
    recorded = dict(data.get("verdicts") or {})
    for k, v in metrics.items():
        if k.startswith("headline_") and k.endswith("_verdict"):
            recorded.setdefault(k[len("headline_"):-len("_verdict")], {"verdict": v})
    if not recorded:
        return [_row("b", claim, paper, "no headline verdict recorded", "inconclusive", source)]
    head = data.get("headline") or {}
    methods, paired = head.get("methods") or {}, head.get("paired") or {}
    rows = []
    for name, rec in recorded.items():
        verdict = rec.get("verdict") if rec.get("verdict") in VERDICTS else "inconclusive"

        def acc(method, key):
            m = (methods.get(method) or {}).get(key)
            return accuracy(m["k"] / m["n"], m["n"]) if m and m.get("n") else None

        la, ca, lc, cc = acc(name, "attacked"), acc("constant", "attacked"), acc(name, "clean"), acc("constant", "clean")
        if la and ca:
            ours = f"attacked: α_θ {la} vs constant {ca}"
            if lc and cc:
                ours += f" (clean {lc} vs {cc})"
            pair = (paired.get(f"{name} vs constant") or {}).get("attacked")
            if pair:
                ours += (f"; McNemar: {pair['only_a']} vs {pair['only_b']} images right only by one, "
                         f"p = {pair['p_value']:.2g}")
            ours += f"; n = {la.n}"
        else:
            ours = f"verdict recorded by the headline: {verdict}"
        rows.append(_row(f"b-{name}", f"{claim} ({name})", paper, ours, verdict, source))
    return rows


# ---------------------------------------------------------------- (c) c_prod > 0 helps (notebook 04, Table SM2)

def c_prod_helps(doc: dict | None) -> list[dict]:
    """Claim (c): a small positive c_prod helps (Table SM2).

    Measure: the mean full-threat accuracy (``data.cells[*]["full"]``) of the cells with c_prod > 0 against
    that of the cells with c_prod = 0, each a mean over the same ``n`` images (interval of one accuracy
    on ``n``).  Rule: ``reproduced`` when the c_prod > 0 interval lies above the c_prod = 0 one,
    ``not reproduced`` when below, else ``inconclusive`` (tie)."""
    ref = paper_reference()["table_sm2"]
    pos = [c["pgd20"] for c in ref["cells"] if c["c_prod"] > 0]
    zero = [c["pgd20"] for c in ref["cells"] if c["c_prod"] == 0]
    best = max(ref["cells"], key=lambda c: c["pgd20"])
    paper = (f"\"a small positive c_prod is generally beneficial\": mean {sum(pos) / len(pos):.2f} % (c_prod > 0, "
             f"{len(pos)} cells) vs {sum(zero) / len(zero):.2f} % (c_prod = 0); best cell c_prod = {best['c_prod']:g}, "
             f"c_CE = {best['c_ce']:g} ({_pct(best['pgd20'])}) (Table SM2)")
    claim, source = "(c) c_prod > 0 helps", f"Table SM2, notebook {LOSS}"
    cells = [c for c in ((doc or {}).get("data") or {}).get("cells") or [] if c.get("full") is not None]
    pos_c = [c for c in cells if c["c_prod"] > 0]
    zero_c = [c for c in cells if c["c_prod"] == 0]
    if not pos_c or not zero_c:
        return [_row("c", claim, paper, "no Table SM2 cells with and without c_prod recorded", "inconclusive", source)]
    n = min(int(c.get("n") or _n_eval(doc or {}, 0)) for c in cells)
    if n <= 0:
        return [_row("c", claim, paper, "the number of images is not recorded", "inconclusive", source)]
    a_pos = accuracy(sum(c["full"] for c in pos_c) / len(pos_c), n)
    a_zero = accuracy(sum(c["full"] for c in zero_c) / len(zero_c), n)
    c = compare(a_pos, a_zero)
    verdict = {1: "reproduced", -1: "not reproduced", 0: "inconclusive"}[c]
    at_zero = {c0["c_ce"]: c0["full"] for c0 in zero_c}
    above = sum(1 for c1 in pos_c if c1["c_ce"] in at_zero and c1["full"] > at_zero[c1["c_ce"]])
    top = max(cells, key=lambda c1: c1["full"])
    ours = (f"mean full-threat acc. c_prod > 0: {a_pos} vs c_prod = 0: {a_zero} (n = {n}); c_prod > 0 above its "
            f"column's c_prod = 0 cell in {above} of {len(pos_c)} cells; best cell c_prod = {top['c_prod']:g}, "
            f"c_CE = {top['c_ce']:g} ({accuracy(top['full'], n)})")
    if c == 0:
        ours += "; tie"
    return [_row("c", claim, paper, ours, verdict, source)]


# ---------------------------------------------------------------- (d) the Sigmoid scale (notebook 05, Table SM3)

def sigmoid_scale(doc: dict | None) -> list[dict]:
    """Claim (d), two rows (Table SM3): (d1) the Sigmoid scale matters, (d2) scale 2 is best.

    Measure: each scale's full-threat accuracy (``data.per_scale[*]["full"]``) on ``n`` images.
    (d1) ``reproduced`` when the best scale's interval lies above the worst's, else ``inconclusive``
    (non-overlap cannot show that the scale does not matter, so (d1) is never ``not reproduced``).
    (d2) ``reproduced`` when scale 2's interval lies above every other scale's; ``not reproduced`` when
    some other scale's lies above scale 2's; else ``inconclusive`` (tie, the tied scales named)."""
    ref = paper_reference()["table_sm3"]
    want = float(ref["best_scale"])
    vals = ", ".join(f"{s['scale']:g}: {_pct(s['pgd20'])}" for s in ref["scales"])
    paper1 = f"PGD20 by scale {vals} (Table SM3)"
    paper2 = f"scale {want:g} best: \"{ref['quote']}\""
    source = f"Table SM3, notebook {SCALE}"
    c1, c2 = "(d1) the Sigmoid scale matters", f"(d2) Sigmoid scale {want:g} is best"
    n_doc = _n_eval(doc or {}, 0)
    per = [s for s in ((doc or {}).get("data") or {}).get("per_scale") or []
           if s.get("full") is not None and (s.get("n") or n_doc)]
    if len(per) < 2:
        return [_row("d1", c1, paper1, "fewer than two scales recorded", "inconclusive", source),
                _row("d2", c2, paper2, "fewer than two scales recorded", "inconclusive", source)]
    acc = {float(s["scale"]): accuracy(s["full"], s.get("n") or n_doc) for s in per}
    listing = "; ".join(f"scale {s:g}: {a}" for s, a in acc.items()) + f" (n = {next(iter(acc.values())).n})"
    best = max(acc, key=lambda s: acc[s].acc)
    worst = min(acc, key=lambda s: acc[s].acc)
    matters = compare(acc[best], acc[worst]) == 1
    ours1 = listing + (f"; best {best:g} above worst {worst:g}" if matters
                       else f"; tie: best {best:g} vs worst {worst:g}")
    rows = [_row("d1", c1, paper1, ours1, "reproduced" if matters else "inconclusive", source)]
    if want not in acc:
        return rows + [_row("d2", c2, paper2, f"scale {want:g} not recorded; " + listing, "inconclusive", source)]
    others = {s: compare(acc[want], a) for s, a in acc.items() if s != want}
    if all(c == 1 for c in others.values()):
        verdict, note = "reproduced", f"scale {want:g} above every other"
    elif any(c == -1 for c in others.values()):
        verdict = "not reproduced"
        note = "scale " + ", ".join(f"{s:g}" for s, c in others.items() if c == -1) + f" above scale {want:g}"
    else:
        verdict, note = "inconclusive", ""
    ties = [f"{s:g}" for s, c in others.items() if c == 0]
    if ties:
        note += ("; " if note else "") + f"tie: scale {want:g} vs {', '.join(ties)}"
    return rows + [_row("d2", c2, paper2, f"{listing}; best {best:g}; {note}", verdict, source)]


# ---------------------------------------------------------------- (e) Fig. SM1 (notebook 03)

def _dense(grid) -> bool:
    """Whether the recorded radii resolve a curve: at least 50 radii, no gap wider than 1/25 of their range."""
    if len(grid) < 50:
        return False
    span = grid[-1] - grid[0]
    return span > 0 and max(b - a for a, b in zip(grid, grid[1:])) <= span / 25


def _split(curves: Mapping[str, list]) -> tuple[str, str] | None:
    """(h^α label, baseline label) among a bound's curves."""
    base = [k for k in curves if "baseline" in k.lower()]
    mix = [k for k in curves if "baseline" not in k.lower()]
    return (mix[0], base[0]) if len(base) == 1 and len(mix) == 1 else None


def sm1_curves(doc: dict | None) -> dict | None:
    """Fig. SM1's numbers read off the recorded curves (``data.r_grid``, ``data.lip``, ``data.rs``), per bound
    (``"lip"``, ``"rs"``): ``{"mix", "base"}`` labels, ``crossing`` (:func:`adasmooth.certify.crossing_radius`:
    the first grid radius at which h^α's point estimate is above the baseline's after the baseline was above
    at a smaller radius; None if never), ``largest`` (each curve's largest certified radius on the grid,
    :func:`adasmooth.certify.largest_certified_radius`), ``beyond`` (still positive at the grid's end),
    ``base_above`` / ``mix_above`` (the radii where one curve's interval lies above the other's), ``n`` and
    ``step``.  None when the notebook recorded no curves or too few radii (:func:`_dense`)."""
    from .certify import crossing_radius, largest_certified_radius

    doc = doc or {}
    data = doc.get("data") or {}
    grid, n = data.get("r_grid"), _n_eval(doc)
    if not grid or not n or not _dense(grid):
        return None
    out = {"n": int(n), "step": round(max(b - a for a, b in zip(grid, grid[1:])), 6), "r_max": grid[-1]}
    for bound in ("lip", "rs"):
        curves = data.get(bound) or {}
        labels = _split(curves)
        if labels is None or any(len(curves[k]) != len(grid) for k in labels):
            return None
        mix, base = (curves[k] for k in labels)
        cmp = [compare(accuracy(m, n), accuracy(b, n)) for m, b in zip(mix, base)]
        crossing = crossing_radius(grid, mix, base)
        (lm, bm), (lb, bb) = largest_certified_radius(grid, mix), largest_certified_radius(grid, base)
        out[bound] = {"mix": labels[0], "base": labels[1], "crossing": crossing,
                      "largest": {"mix": lm, "base": lb}, "beyond": {"mix": bm, "base": bb},
                      "base_above": [r for r, c in zip(grid, cmp) if c == -1],
                      "mix_above": [r for r, c in zip(grid, cmp) if c == 1],
                      "at": {r: (accuracy(m, n), accuracy(b, n)) for r, m, b in zip(grid, mix, base)}}
    return out


def _radius(info: dict, who: str) -> str:
    return f"{'≥ ' if info['beyond'][who] else ''}{info['largest'][who]:g}"


def _gap_example(info: dict, radii: list, sign: int) -> str:
    """The radius among ``radii`` with the largest gap in the given direction, as 'r = ...: h^α ... vs baseline ...'."""
    r = max(radii, key=lambda r: sign * (info["at"][r][0].acc - info["at"][r][1].acc))
    m, b = info["at"][r]
    return f"r = {r:g}: h^α {m} vs baseline {b}"


def certified_radii(doc: dict | None) -> list[dict]:
    """Claim (e), Fig. SM1's two observations, judged radius by radius on the recorded curves (each point an
    accuracy on ``n`` images; "above" means disjoint intervals):

    (e1) Lipschitz bound: the curves cross, the baseline above at smaller radii and h^α above at larger ones.
    ``reproduced`` when the baseline is above at some radius and h^α above at a larger one, and never the
    other way round; ``not reproduced`` when h^α is above at some radius and the baseline above at a larger
    one (and never the claimed way), or when the baseline is above somewhere and h^α's point estimate
    never exceeds the baseline's at any radius (no crossing); else ``inconclusive``.
    (e2) RS bound: the baseline certifies more.  ``reproduced`` when the baseline is above at some radius and
    h^α at none; ``not reproduced`` when h^α is above at some radius; else ``inconclusive``.

    With only a few radii recorded (no dense ``data.r_grid``) both rows are ``inconclusive``."""
    ref = paper_reference()["fig_sm1"]
    src = f"Fig. SM1, notebook {SM1}"
    c1 = "(e1) Fig. SM1, Lipschitz bound: the curves cross, h^α certifies more at larger radii, the baseline at smaller"
    c2 = "(e2) Fig. SM1, RS bound: the baseline certifies more points than h^α"
    p1, p2 = f"\"{ref['lipschitz']['quote']}\"", f"\"{ref['rs']['quote']}\""
    info = sm1_curves(doc)
    if info is None:
        tables = (doc or {}).get("tables") or []
        cols = [c for t in tables for c in t.get("columns", []) if str(c).startswith("r = ")]
        why = (f"only sparse radii recorded ({', '.join(cols)}): the crossing cannot be placed" if cols
               else "no certified-accuracy curves recorded")
        return [_row("e1", c1, p1, why, "inconclusive", src), _row("e2", c2, p2, why, "inconclusive", src)]
    n, step = info["n"], info["step"]
    lip, rs = info["lip"], info["rs"]
    a, b = lip["base_above"], lip["mix_above"]
    claimed = bool(a and b and min(a) < max(b))
    reversed_ = bool(a and b and min(b) < max(a))
    mix_ever_above = any(m.acc > bb.acc for m, bb in lip["at"].values())
    if claimed and not reversed_:
        v1 = "reproduced"
    elif (reversed_ and not claimed) or (a and not mix_ever_above):
        v1 = "not reproduced"
    else:
        v1 = "inconclusive"
    ours1 = (f"crossing at r ≈ {lip['crossing']:g}" if lip["crossing"] is not None else "no crossing") + \
        f" (grid step {step:g}, n = {n}); largest certified radius on the grid: h^α {_radius(lip, 'mix')}, " \
        f"baseline {_radius(lip, 'base')}"
    if a:
        ours1 += f"; baseline above at {len(a)} radii in [{min(a):g}, {max(a):g}] ({_gap_example(lip, a, -1)})"
    if b:
        ours1 += f"; h^α above at {len(b)} radii in [{min(b):g}, {max(b):g}] ({_gap_example(lip, b, 1)})"
    if not a and not b:
        ours1 += "; tie at every radius"
    a2, b2 = rs["base_above"], rs["mix_above"]
    v2 = "not reproduced" if b2 else "reproduced" if a2 else "inconclusive"
    ours2 = f"largest certified radius on the grid: h^α {_radius(rs, 'mix')}, baseline {_radius(rs, 'base')} (n = {n})"
    if a2:
        ours2 += f"; baseline above at {len(a2)} radii in [{min(a2):g}, {max(a2):g}] ({_gap_example(rs, a2, -1)})"
    ours2 += f"; h^α above at {len(b2)} radii" + (f" in [{min(b2):g}, {max(b2):g}]" if b2 else "")
    if rs["crossing"] is not None:
        ours2 += f"; point estimates cross at r ≈ {rs['crossing']:g}"
    rs_wider = all(rs["largest"][w] >= lip["largest"][w] for w in ("mix", "base"))
    ours2 += f"; RS radii ≥ Lipschitz radii for both: {'yes' if rs_wider else 'no'}"
    if not a2 and not b2:
        ours2 += "; tie at every radius"
    return [_row("e1", c1, p1, ours1, v1, src), _row("e2", c2, p2, ours2, v2, src)]


def sm1_table(doc: dict | None) -> dict | None:
    """Fig. SM1 read off the recorded curves, one row per bound: the crossing radius, each curve's largest
    certified radius and both accuracies (95 % CI) at the crossing.  None when the curves are not recorded
    densely (:func:`sm1_curves`).  A :func:`adasmooth.results.table` result."""
    from .results import table

    info = sm1_curves(doc)
    if info is None:
        return None
    rows = []
    for bound, name in (("lip", "Lipschitz (Theorem 1)"), ("rs", "RS (Theorem 2)")):
        b = info[bound]
        r = b["crossing"]
        m, bb = b["at"][r] if r is not None else (None, None)
        rows.append([name, "–" if r is None else f"{r:g}", _radius(b, "mix"), _radius(b, "base"),
                     "–" if m is None else str(m), "–" if bb is None else str(bb)])
    return table(["bound", f"crossing r (grid step {info['step']:g})", "largest certified r: h^α",
                  "largest certified r: baseline", "h^α % at crossing [95 % CI]",
                  "baseline % at crossing [95 % CI]"], rows)


SM1_TABLE_TITLE = "Fig. SM1 from the recorded curves: crossing radius and largest certified radii"


# ---------------------------------------------------------------- Lemma 1 / Theorems 1-3 (notebook 01)

def theory(doc: dict | None) -> list[dict]:
    """Lemma 1 and Theorems 1-3, one row each: the numerical checks of notebook 01 find no violation.

    Rule: ``reproduced`` when ``<check>_violations == 0`` and the check certified something (for Theorem 3:
    it ran on at least one image); ``not reproduced`` when violations > 0; else ``inconclusive`` (nothing
    certified: a vacuous check, or nothing recorded).  ``ours`` gives the Clopper-Pearson upper bound of the
    violation rate."""
    from .comparison import interval

    ref = paper_reference()["theory"]
    doc = doc or {}
    m, data = doc.get("metrics") or {}, doc.get("data") or {}
    rows = []
    for key, name in (("lemma1", "Lemma 1"), ("theorem1", "Theorem 1"), ("theorem2", "Theorem 2"),
                      ("theorem3", "Theorem 3")):
        claim = f"{name}: {ref[key]['claim']}"
        paper = f"proved, so 0 violations ({ref[key]['where']})"
        src = f"{name}, notebook {THEORY}"
        viol = m.get(f"{key}_violations")
        if key == "theorem3":
            sets = data.get("theorem3") or {}
            n = _n_eval(doc)
            checked = n * len(sets) if n and sets else None
            what = f"{len(sets)} input sets × {n} images" if checked else "?"
            extra = ""
            if sets:
                ok = all(s["oracle"] >= max(s["g"], s["h"]) for s in sets.values())
                extra = f"; oracle α ≥ max(g, h) accuracy on {', '.join(sets)}: {'yes' if ok else 'no'}"
        else:
            checked = m.get(f"{key}_certified")
            what = f"{checked} certified cases" if checked is not None else "?"
            extra = ""
        if viol is None:
            rows.append(_row(key, claim, paper, "no violation count recorded", "inconclusive", src))
            continue
        if viol > 0:
            verdict = "not reproduced"
        elif checked:
            verdict = "reproduced"
        else:
            verdict = "inconclusive"
        ours = f"{viol} violations in {what}"
        if checked:
            ours += f" (violation rate ≤ {interval(int(viol), int(checked))[1]:.2g}, 95 % CI upper end)"
        rows.append(_row(key, claim, paper, ours + extra, verdict, src))
    return rows


# ---------------------------------------------------------------- all claims

RULES = ((RI, ri_choice), (LOSS, learned_vs_constant), (LOSS, c_prod_helps), (SCALE, sigmoid_scale),
         (SM1, certified_radii), (THEORY, theory))


def rows(docs: Mapping[str, dict | None]) -> list[dict]:
    """Every claim's row, in the order (a)-(e), Lemma 1, Theorems 1-3, from ``docs`` (results JSON by notebook
    stem, e.g. ``{"02_ri_ablation": {...}}``); a notebook missing from ``docs`` gives ``inconclusive`` rows."""
    out = []
    for stem, rule in RULES:
        out += rule(docs.get(stem))
    return out


def has_claims(names) -> bool:
    """Whether any of the notebooks ``names`` (stems) carries a claim judged here."""
    return bool({stem for stem, _ in RULES} & set(names))


def table(verdict_rows: list[dict]) -> dict:
    """The verdict rows as a :func:`adasmooth.results.table` (columns :data:`COLUMNS`)."""
    from .results import table as make

    return make(COLUMNS, [[r["claim"], r["paper"], r["ours"], r["verdict"], r["source"]] for r in verdict_rows])


def from_folder(folder) -> list[dict]:
    """The verdict rows computed from the results JSON in ``folder`` (e.g. ``results/default``)."""
    from pathlib import Path

    from . import results

    docs = {}
    for stem, _ in RULES:
        p = results.path(folder, stem)
        if Path(p).exists():
            docs[stem] = results.read(p)
    return rows(docs)


def counts(verdict_rows: list[dict]) -> dict:
    """How many rows got each verdict."""
    return {v: sum(1 for r in verdict_rows if r["verdict"] == v) for v in VERDICTS}
