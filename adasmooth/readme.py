"""The README's results, rendered from ``results/<profile>/`` so the two cannot disagree.

README.md and the pages of ``docs/`` (:data:`PAGES`) hold generated blocks between markers::

    <!-- results:NAME:begin -->
    ...
    <!-- results:NAME:end -->

:func:`render` writes every block's text from the results JSON (``NN_*.json``) and ``summary.md`` of a
results folder (by default ``results/default``); :func:`update` replaces the blocks in those pages (``python -m
adasmooth summary --profile default`` does it, and so does ``reproduce --profile default``), and
``tests/test_readme.py`` checks that their blocks equal :func:`render`'s.  Nothing in a block is
written by hand; every accuracy carries its 95 % Clopper-Pearson interval (:func:`adasmooth.verdicts.accuracy`).
"""
from __future__ import annotations

import re
from pathlib import Path

from . import results, verdicts, zoo
from .comparison import training_budget
from .checkpoint import atomic_write_bytes

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
# where each generated block lives: the verdicts and highlights in the README, the rest in docs/
PAGES = {"README.md": ("run",), "docs/results.md": ("headline", "methods", "tradeoff", "certified"),
         "docs/models.md": ("zoo",), "docs/reproducing.md": ("retrain",)}
BLOCKS = tuple(b for page in PAGES.values() for b in page)
GENERATED = ("<!-- generated from results/{profile} by `python -m adasmooth summary --profile {profile}` "
             "(adasmooth.readme); do not edit by hand -->")
TARGET_MAIN_S, TARGET_NOTEBOOKS_S = 30 * 60, 20 * 60  # the targets for `make reproduce` on 2 CPU cores


def begin(name: str) -> str:
    return f"<!-- results:{name}:begin -->"


def end(name: str) -> str:
    return f"<!-- results:{name}:end -->"


def _docs(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.glob("[0-9][0-9]_*.json")):
        try:
            out[p.stem] = results.read(p)
        except Exception:  # noqa: BLE001 - an unreadable file is reported as missing
            continue
    return out


def _pct(v) -> str:
    return f"{100 * v:.1f} %"


def _acc(v, n) -> str:
    return str(verdicts.accuracy(v, n))


def _names(keys) -> str:
    return ", ".join(map(str, keys))


def _last_run(text: str) -> dict:
    """What a previous ``summary.md`` says of its run: the environment line, each notebook's status, the zoo rows
    and the wall time of the last whole run (for :func:`adasmooth.pipeline.rewrite_summary` and the README)."""

    lines = text.splitlines()
    env = next((ln for ln in lines if ln.startswith("torch ")), None)
    wall = re.search(r"Wall time of (?:this|the last whole) run: ([0-9.]+) s", env or "")

    def rows_after(marker: str) -> list[list[str]]:
        i = next((j for j, ln in enumerate(lines) if ln.startswith(marker)), None)
        if i is None:
            return []
        i = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("|")), len(lines))
        out = []
        for ln in lines[i + 2:]:  # skip the header and the |---| line
            if not ln.startswith("|"):
                break
            out.append([c.strip() for c in ln.strip().strip("|").split("|")])
        return out

    status = {r[0]: r[1] for r in rows_after("## Timing") if len(r) >= 2}
    zoo_rows = [{"model": r[0], "status": r[1], "seconds": float(r[2])} for r in rows_after("Zoo models used")
                if len(r) == 3]
    return {"env": env, "wall": float(wall.group(1)) if wall else None, "status": status, "zoo_rows": zoo_rows,
            "shipped": "Shipped checkpoints verified" in text}


def _run_block(folder: Path, docs: dict, profile: str) -> list[str]:
    summary = folder / "summary.md"
    last = _last_run(summary.read_text(encoding="utf-8") if summary.exists() else "")
    times = sorted(((d.get("pipeline") or {}).get("seconds"), stem[:2]) for stem, d in docs.items()
                   if (d.get("pipeline") or {}).get("seconds") is not None)
    times.reverse()
    own = sum(t for t, _ in times)
    lines = [GENERATED.format(profile=profile), ""]
    if last["wall"] is not None:
        w = last["wall"]
        stats = [d["attack_cache"] for d in docs.values() if d.get("attack_cache")]
        fractions = sorted({s["verify_fraction"] for s in stats if s.get("verify_fraction") is not None})
        check = (f" It recomputed {sum(s['verified'] for s in stats)} of the {sum(s['read'] for s in stats)} cached "
                 f"attack answers it read to check them (`VERIFY={', '.join(map(str, fractions))}`)."
                 if fractions else "")
        lines.append(f"Last run (`results/{profile}/summary.md`): **{w:.0f} s of wall time ({w / 60:.1f} min)**, "
                     f"{'within' if w <= TARGET_MAIN_S else 'over'} the {TARGET_MAIN_S // 60}-minute target for the "
                     f"main job." + check)
    if times:
        lines.append(f"The notebooks' own times add up to {own:.0f} s "
                     f"({'within' if own <= TARGET_NOTEBOOKS_S else 'over'} the {TARGET_NOTEBOOKS_S // 60}-minute "
                     f"target for the notebooks alone): " + ", ".join(f"{s} {t:.0f} s" for t, s in times) + ".")
    rows = verdicts.rows(docs)
    c = verdicts.counts(rows)
    lines += ["", f"Verdicts (the table that opens `summary.md`, where each row gives the paper's number and ours): "
              f"{c['reproduced']} reproduced, {c['not reproduced']} not reproduced, {c['inconclusive']} inconclusive.",
              ""]
    lines += ["| claim | verdict |", "|---|---|"] + [f"| {r['claim']} | {r['verdict']} |" for r in rows] + [""]
    lines += ["Highlights (95 % Clopper-Pearson intervals):", ""]
    lines += _highlights(docs)
    return lines


def _highlights(docs: dict) -> list[str]:
    lines = [f(docs) for f in (_converged_line, _methods_converged_line, _headline_line, _budget_line, _tradeoff_line,
                               _ri_line, _sm1_line, _sm2_line, _sm3_line, _theory_line)]
    return [line for line in lines if line] or ["- no results recorded"]


def _converged_line(docs: dict) -> str | None:
    """Notebook 04's attack-budget ladder: the headline's comparison at the converged budget, first."""
    d = docs.get("04_adaptive_vs_constant") or {}
    conv = (d.get("data") or {}).get("converged") or {}
    methods = conv.get("methods") or {}
    if "constant" not in methods:
        return None

    def read(m):
        r = m["reading"]
        own = m.get("steps", conv["steps"])
        part = "" if own == conv["steps"] else f"; climbed to {own[-1]} steps only"
        return (f"{_acc(m['attacked']['acc'], m['attacked']['n'])} attacked (base 20-step set: "
                f"{_acc(m['base']['acc'], m['base']['n'])}; {'converged' if r['converged'] else 'NOT converged'}, "
                f"last rung moved it {r['moves_points'][-1]:g} points{part})")
    parts = []
    for name, m in methods.items():
        if name == "constant":
            continue
        pair = conv["paired"][f"{name} vs constant"]["attacked"]
        v = conv["verdicts"][name]["verdict"]
        parts.append(f"`{name}` {read(m)}; McNemar {pair['only_a']} vs {pair['only_b']} images right only by one, "
                     f"p = {pair['p_value']:.2g}: verdict **{v}**")
    return (f"- **At the converged attack budget** (04, n = {conv['n']} images; the strong attack family at "
            f"{', '.join(map(str, conv['steps']))} PGD steps per attack, cumulative per image): the constant α "
            f"{read(methods['constant'])}; " + "; ".join(parts) + ".")


def _methods_converged_line(docs: dict) -> str | None:
    """Notebook 08 at the converged budget: constant α, α_θ and MixedNUTS at the same clean accuracy."""
    d = docs.get("08_mixing_methods") or {}
    pts = [pt for pt in ((d.get("data") or {}).get("comparison") or {}).get("points", []) if "converged" in pt]
    if not pts:
        return None
    parts = []
    for pt in pts:
        conv = pt["converged"]
        accs = "; ".join(f"`{name}` {_acc(m['attacked']['acc'], m['attacked']['n'])}"
                         f"{'' if m['reading']['converged'] else ' (NOT converged)'}"
                         for name, m in conv["methods"].items())
        parts.append(f"at {100 * pt['target_val']:.1f} % validation clean accuracy: {accs}; "
                     f"verdict (McNemar on the final masks): **{conv['verdict']['verdict']}**")
    return (f"- **Mixing methods at the converged budget** (08, n = {pts[0]['converged']['n']} images, the same "
            f"ladder): " + "; ".join(parts) + ".")


def _headline_line(docs: dict) -> str | None:
    """Notebook 04's headline: each learned mixer against the constant α, with its verdict."""
    d = docs.get("04_adaptive_vs_constant") or {}
    head = (d.get("data") or {}).get("headline") or {}
    methods = head.get("methods") or {}
    if "constant" in methods:
        const = methods["constant"]
        parts = []
        for name, m in methods.items():
            if name == "constant":
                continue
            v = ((d.get("data") or {}).get("verdicts") or {}).get(name, {}).get("verdict", "–")
            parts.append(f"`{name}` {_acc(m['attacked']['acc'], m['attacked']['n'])} attacked at "
                         f"{_acc(m['clean']['acc'], m['clean']['n'])} clean (verdict: {v})")
        return (f"- Headline at the base 20-step budget (04, n = {head.get('n')} images; an upper bound where the ladder "
                f"above lowers it): the constant α "
                f"{_acc(const['attacked']['acc'], const['attacked']['n'])} attacked at "
                f"{_acc(const['clean']['acc'], const['clean']['n'])} clean; " + "; ".join(parts) + ".")
    return None


def _budget_line(docs: dict) -> str | None:
    """Notebook 04's training-budget curve: from how many training steps α_θ is ahead of the constant α."""
    doc = ((docs.get("04_adaptive_vs_constant") or {}).get("data") or {}).get("training_budget")
    if not doc:
        return None
    return (f"- α_θ's training budget (04, the headline recipe trained for "
            f"{', '.join(str(p['steps']) for p in doc['points'])} steps, the base 20-step set): "
            + training_budget.line(doc))


def _tradeoff_line(docs: dict) -> str | None:
    """Notebook 00's trade-off curve: clean / attacked accuracy per α."""
    d = docs.get("00_quickstart") or {}
    curve = (d.get("data") or {}).get("curve") or []
    if curve:
        n = curve[0].get("n") or (d.get("metrics") or {}).get("n_eval")
        p = d.get("params") or {}
        pts = "; ".join(f"α = {r['alpha']:g}: {_acc(r['clean'], n)} / {_acc(r['attacked'], n)}" for r in curve)
        return (f"- Trade-off (00, {p.get('space', 'prob')} mixing, n = {n}, {results.NORMS.get(p.get('norm'), '')} "
                f"ε = {p.get('eps')}, attacks {_names(p.get('attacks') or [])}; clean / attacked): {pts}.")
    return None


def _ri_line(docs: dict) -> str | None:
    """Notebook 02: the area under each mixing option's attacked-vs-clean curve, per panel."""
    d = docs.get("02_ri_ablation") or {}
    areas = (d.get("data") or {}).get("areas") or {}
    if areas:
        n = (d.get("params") or {}).get("n_eval")
        parts = []
        for panel, a in areas.items():
            opts = {o: v for o, v in a.items() if o != "range"}
            best = verdicts.best_options(opts, n)
            parts.append(f"{verdicts.PANELS.get(panel, panel)}: "
                         + ", ".join(f"{verdicts.RI_LABELS.get(o, o)} {_acc(v, n)}"
                                     for o, v in sorted(opts.items(), key=lambda kv: -kv[1]))
                         + f" (best{' (tie)' if len(best) > 1 else ''}: "
                         + ", ".join(verdicts.RI_LABELS.get(o, o) for o in best) + ")")
        return (f"- Fig. 1 / SM2a / SM2b (02, n = {n}): area under the attacked-vs-clean curve; " + "; ".join(parts)
                + ".")
    return None


def _sm1_line(docs: dict) -> str | None:
    """Notebook 03 (Fig. SM1): the crossing and largest certified radii of both bounds."""
    d = docs.get("03_certified_radii") or {}
    info = verdicts.sm1_curves(d) if d else None
    if info:
        m = d.get("metrics") or {}
        lip, rs = info["lip"], info["rs"]

        def cross(b):
            return f"r ≈ {b['crossing']:g}" if b["crossing"] is not None else "none"

        return (f"- Fig. SM1 (03, n = {info['n']}, {m.get('n_samples')} noise draws): "
                f"h^α at α = {m.get('alpha'):g} "
                f"({_acc(m.get('clean_mix'), info['n'])} clean) against the baseline "
                f"({_acc(m.get('clean_baseline'), info['n'])}); Lipschitz bound: crossing {cross(lip)}, largest "
                f"certified radius h^α {lip['largest']['mix']:g} vs baseline {lip['largest']['base']:g}; RS bound: "
                f"crossing {cross(rs)}, largest h^α {rs['largest']['mix']:g} vs baseline {rs['largest']['base']:g} "
                f"(grid step {info['step']:g}).")
    return None


def _full_threat(docs: dict, stem: str, key: str) -> tuple[list, int | None, dict]:
    """Notebook ``stem``'s ``data[key]`` entries with a full-threat accuracy, their number of images and the
    notebook's metrics."""
    d = docs.get(stem) or {}
    entries = [e for e in (d.get("data") or {}).get(key) or [] if e.get("full") is not None]
    n = (entries[0].get("n") or (d.get("metrics") or {}).get("n_eval")) if entries else None
    return entries, n, d.get("metrics") or {}


def _sm2_line(docs: dict) -> str | None:
    """Notebook 05 (Table SM2): the range of the cells, the constant α and the best cells."""
    cells, n, m = _full_threat(docs, "05_loss_ablation", "cells")
    if cells:
        best = verdicts.best_options({(c["c_prod"], c["c_ce"]): c["full"] for c in cells}, n)
        lo, hi = min(cells, key=lambda c: c["full"]), max(cells, key=lambda c: c["full"])
        return (f"- Table SM2 (05, n = {n}, every cell shifted to {_pct(m.get('target_clean', 0))} clean): "
                f"{_acc(lo['full'], n)} to {_acc(hi['full'], n)} (full threat); the constant α "
                f"{_acc(m.get('constant_pgd', 0), n)}; best cells (c_prod, c_CE): "
                + ", ".join(f"({p:g}, {ce:g})" for p, ce in best) + "."
                + _with_range([c.get("range") for c in cells], n, m))
    return None


def _sm3_line(docs: dict) -> str | None:
    """Notebook 06 (Table SM3): each Sigmoid scale, the constant α and the best scale."""
    per, n, m = _full_threat(docs, "06_sigmoid_scale", "per_scale")
    if per:
        best = verdicts.best_options({s["scale"]: s["full"] for s in per}, n)
        return (f"- Table SM3 (06, n = {n}): "
                + "; ".join(f"scale {s['scale']:g}: {_acc(s['full'], n)}" for s in per)
                + f"; the constant α {_acc(m.get('constant_pgd', 0), n)}; best scale"
                + (f"s (tie): {_names(f'{b:g}' for b in best)}" if len(best) > 1 else f": {best[0]:g}") + "."
                + _with_range([s.get("range") for s in per], n, m))
    return None


def _theory_line(docs: dict) -> str | None:
    """Notebook 01: the violation counts of Lemma 1 and Theorems 1-3."""
    d = docs.get("01_theory_checks") or {}
    m = d.get("metrics") or {}
    if "lemma1_violations" in m:
        return (f"- Theory checks (01): Lemma 1 {m['lemma1_violations']} violations in {m.get('lemma1_certified')} "
                f"certified trials; Theorems 1 / 2: {m.get('theorem1_violations')} / {m.get('theorem2_violations')} "
                f"violations in {m.get('theorem1_certified')} / {m.get('theorem2_certified')} certified cases; "
                f"Theorem 3: {m.get('theorem3_violations')} violations.")
    return None


def _with_range(ranged: list, n, metrics: dict) -> str:
    """" With the evaluation range ...": the same cells clamped to their range (empty when not recorded)."""
    if not ranged or any(r is None for r in ranged):
        return ""
    lo, hi = min(r["full"] for r in ranged), max(r["full"] for r in ranged)
    above = sum(r["full"] > metrics.get("constant_pgd", 1) for r in ranged)
    return (f" With the evaluation range (width {ranged[0]['width']:g}, α_min chosen for the same clean accuracy): "
            f"{_acc(lo, n)} to {_acc(hi, n)}, {above} of {len(ranged)} above the constant α's point estimate.")


def _tables_block(docs: dict, profile: str, stem: str, prefixes: tuple, missing: str) -> list[str]:
    """Every table of notebook ``stem``'s results whose title starts with one of ``prefixes``, in order."""
    d = docs.get(stem) or {}
    lines = [GENERATED.format(profile=profile), ""]
    for t in d.get("tables") or []:
        if str(t.get("title", "")).startswith(prefixes):
            lines += [f"**{t['title']}**", "", results.markdown_table(t), ""]
    if len(lines) == 2:
        lines.append(missing)
    return lines


def _headline_block(docs: dict, profile: str) -> list[str]:
    return _tables_block(docs, profile, "04_adaptive_vs_constant",
                         ("Attack-budget ladder", "Headline", "Training budget", "Curves"), "No headline recorded.")


def _methods_block(docs: dict, profile: str) -> list[str]:
    return _tables_block(docs, profile, "08_mixing_methods", ("Mixing methods",), "No mixing-method comparison recorded.")


def _zoo_block(profile: str) -> list[str]:
    """The shipped base models with their recorded metrics (data/zoo metadata; the default profile's zoo)."""
    lines = [GENERATED.format(profile=profile).replace(f"results/{profile}", "data/zoo"), "",
             "| name | recipe | clean % [95 % CI] | robust % [95 % CI] | noisy % [95 % CI] | train + eval (s, one thread) |",
             "|---|---|---|---|---|---|"]
    for r in zoo.table():
        if r.get("cached") is not True:
            lines.append(f"| {r['name']} | {r['description']} | not cached | | | |")
            continue
        n = r["n_eval"]
        rob = f"{_acc(r['robust'], n)} ({r['robust_attack']})" if "robust" in r else ""
        noisy = _acc(r["noisy"], n) if "noisy" in r else ""
        lines.append(f"| {r['name']} | {r['description']} | {_acc(r['clean'], n)} | {rob} | {noisy} | "
                     f"{r['train_seconds']:.0f} + {r['eval_seconds']:.0f} |")
    return lines


def _retrain_block(folder: Path, profile: str) -> list[str]:
    """``results/<profile>-retrain/retrain_comparison.md`` (written by ``reproduce --retrain``), when present."""
    path = folder.parent / f"{profile}-retrain" / "retrain_comparison.md"
    lines = [GENERATED.format(profile=profile).replace(f"results/{profile}", f"results/{profile}-retrain"), ""]
    if not path.exists():
        return lines + ["No retrained models recorded."]
    body = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("# ")]
    while body and not body[0].strip():
        body.pop(0)
    return lines + body


def _tradeoff_block(docs: dict, profile: str) -> list[str]:
    """Notebook 00's trade-off of h^α (probability mixing) and notebook 02's areas under the curves."""
    lines = [GENERATED.format(profile=profile), ""]
    d = docs.get("00_quickstart") or {}
    rows = (d.get("data") or {}).get("curve") or []
    if rows:
        p = d.get("params") or {}
        attacks = [k for k in rows[0] if k not in ("R", "alpha", "attacked", "cached", "clean", "n", "option",
                                                   "seconds", "space")]
        lines += [f"**Trade-off of h^α (notebook 00, n = {rows[0]['n']}, {p.get('norm')} ε = {p.get('eps')}, "
                  f"{p.get('steps')} steps; attacked = per-image worst case over {', '.join(attacks)})**", "",
                  "| α | clean % [95 % CI] | attacked % [95 % CI] |", "|---|---|---|"]
        lines += [f"| {r['alpha']:g} | {_acc(r['clean'], r['n'])} | {_acc(r['attacked'], r['n'])} |" for r in rows]
        lines.append("")
    for t in (docs.get("02_ri_ablation") or {}).get("tables") or []:
        if str(t.get("title", "")).startswith("Area under"):
            lines += [f"**Notebook 02: a{t['title'][1:]}**", "", results.markdown_table(t), ""]
    if len(lines) == 2:
        lines.append("No trade-off recorded.")
    return lines


def _certified_block(docs: dict, profile: str) -> list[str]:
    return _tables_block(docs, profile, "03_certified_radii", ("Certified accuracy",), "No certified radii recorded.")


def render(folder=None, profile: str = "default") -> dict[str, str]:
    """Every README block's text (name -> markdown, without the markers) from the results in ``folder``
    (default ``results/<profile>``)."""
    folder = Path(folder) if folder else PROJECT / "results" / profile
    docs = _docs(folder)
    blocks = {"run": _run_block(folder, docs, profile), "headline": _headline_block(docs, profile),
              "methods": _methods_block(docs, profile), "tradeoff": _tradeoff_block(docs, profile),
              "certified": _certified_block(docs, profile)}
    if profile == "default":
        blocks["zoo"] = _zoo_block(profile)
        blocks["retrain"] = _retrain_block(folder, profile)
    return {k: "\n".join(v).strip() for k, v in blocks.items()}


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of a README text (name -> text between the markers, stripped)."""
    out = {}
    for m in re.finditer(r"<!-- results:([\w-]+):begin -->\n(.*?)\n?<!-- results:\1:end -->", text, flags=re.S):
        out[m.group(1)] = m.group(2).strip()
    return out


def replace(text: str, rendered: dict[str, str]) -> str:
    """``text`` with each block present in it replaced by ``rendered``'s."""
    for name, body in rendered.items():
        pat = re.compile(rf"({re.escape(begin(name))}\n).*?(\n?{re.escape(end(name))})", flags=re.S)
        text = pat.sub(lambda m: f"{m.group(1)}{body}\n{end(name)}", text)
    return text


def update(readme=None, folder=None, profile: str = "default") -> bool:
    """Rewrite the generated blocks of ``readme`` (default: README.md and every page of :data:`PAGES`) from the
    results in ``folder``; True when a file changed."""
    pages = [Path(readme)] if readme else [PROJECT / p for p in PAGES]
    rendered, changed = None, False
    for page in pages:
        if not page.exists():
            continue
        rendered = rendered or render(folder, profile)
        old = page.read_text(encoding="utf-8")
        new = replace(old, rendered)
        if new != old:
            atomic_write_bytes(page, new.encode("utf-8"))
            changed = True
    return changed
