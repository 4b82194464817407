"""``results/<profile>/summary.md``: the verdicts, the timings, each notebook's tables and figures; rewriting it
from the recorded results (``python -m adasmooth summary``), and the README's generated results blocks."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .. import checkpoint, profiles, readme, results, shipped, verdicts
from ..readme import _last_run  # noqa: F401  (re-exported by adasmooth.pipeline)
from ..results import _cell, markdown_table
from . import params as _params
from .execute import Outcome, _failure_line, _kept_result

log = logging.getLogger(__name__)


def write_summary(path: str | os.PathLike, prof: profiles.Profile, outcomes: list[Outcome], zoo_rows: list[dict],
                  total_seconds: float, shipped_files: dict | None = None, partial: str = "") -> Path:
    """``summary.md``: timings, then each notebook's tables and figures (links relative to ``path``).

    ``partial`` (e.g. "only 02_ri_ablation", "03_certified failed") says why this run is not a whole run: its
    ``total_seconds`` is then quoted as this run's, and the main job's wall time is kept from ``path``'s
    previous version (the README quotes it, :func:`_last_run`)."""
    path = Path(path)
    here = path.parent.resolve()
    if partial:
        last = _last_run(path.read_text(encoding="utf-8") if path.exists() else "")["wall"]
        wall_text = (f"Wall time of the last whole run: {last:.0f} s" if last is not None else "No whole run recorded") \
            + f" (this run, {partial}: {total_seconds:.0f} s, not a whole run)"
    else:
        wall_text = f"Wall time of this run: {total_seconds:.0f} s"
    # a failed notebook shows its last good result (a worker that died never reached run_notebook's bookkeeping)
    shown = {id(o): (o.doc, o.kept) if o.status != "failed" or o.doc else _kept_result(Path(o.results))
             for o in outcomes}
    lines = _head_lines(prof, outcomes, shown, wall_text)
    lines += _timing_lines(outcomes, shown, here)
    lines += _zoo_lines(zoo_rows, shipped_files)
    for o in outcomes:
        lines += _notebook_lines(o, *shown[id(o)], here)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(path, ("\n".join(lines).rstrip() + "\n").encode())
    return path


def _head_lines(prof: profiles.Profile, outcomes: list[Outcome], shown: dict, wall_text: str) -> list[str]:
    """The summary's title, the profile's description, the verdict table and the environment line (with
    ``wall_text``)."""
    import platform

    import torch

    return [f"# Reproduction summary: profile `{prof.name}`", "",
            f"{prof.description}", "",
            *_verdict_lines({o.name: shown[id(o)][0] for o in outcomes}),
            f"torch {torch.__version__}, Python {platform.python_version()}, "
            f"{torch.get_num_threads()} CPU threads, CUDA {'available' if torch.cuda.is_available() else 'not available'}."
            f" {wall_text}; the notebooks' own times (as last run) add up to "
            f"{sum(o.seconds for o in outcomes):.0f} s.", "",
            *cache_lines({o.name: shown[id(o)][0] for o in outcomes})]


def cache_lines(docs: dict) -> list[str]:
    """What the notebooks read from the attack cache, recomputed to verify it, and computed afresh."""
    stats = {n: d.get("attack_cache") for n, d in docs.items() if d and d.get("attack_cache")}
    if not stats:
        return []
    read = sum(s["read"] for s in stats.values())
    verified = sum(s["verified"] for s in stats.values())
    identical = sum(s["identical"] for s in stats.values())
    differing = sum(s["differing_images"] for s in stats.values())
    seeds = sorted({s.get("verify_seed") for s in stats.values() if s.get("verify_fraction") is not None})
    fractions = sorted({s.get("verify_fraction") for s in stats.values() if s.get("verify_fraction") is not None})
    sampled = sum(s.get("sampled", 0) for s in stats.values())
    on_sample = f", {sampled} of them on a seeded sample of their images" if sampled else ""
    elsewhere = sum(s.get("verified_elsewhere", 0) for s in stats.values())
    on_sample += f"; {elsewhere} more sampled reads were checked by another notebook of the run" if elsewhere else ""
    line = (f"Attack cache (code version {max(s['code_version'] for s in stats.values())}): {read} cached attack results "
            f"read, {verified} recomputed to verify them ({identical} identical{on_sample}, {differing} differing images "
            "in all; "
            f"fraction {', '.join(map(str, fractions)) or 'none'}, seed {', '.join(map(str, seeds)) or '–'}).")
    computed = [(n, k) for n, s in stats.items() for k in s.get("computed_keys", [])]
    out = [line]
    if computed:
        out.append(f"Computed in this run (not in the cache before): {len(computed)} entries: " +
                   ", ".join(f"{n}: {k}" for n, k in computed[:20]) + (" ..." if len(computed) > 20 else ""))
    return out + [""]


def _timing_lines(outcomes: list[Outcome], shown: dict, here: Path) -> list[str]:
    """The timing table: each notebook's status, seconds and executed copy."""
    lines = ["## Timing", "", "| notebook | status | seconds | executed copy |", "|---|---|---|---|"]
    for o in outcomes:
        status = f"{o.status}, showing the result of {shown[id(o)][1]}" if o.status == "failed" and shown[id(o)][0] \
            else o.status
        lines.append(f"| {o.name} | {status} | {o.seconds:.1f} | "
                     f"[{o.executed.name}]({os.path.relpath(o.executed.resolve(), here)}) |")
    return lines


def _zoo_lines(zoo_rows: list[dict], shipped_files: dict | None) -> list[str]:
    """The zoo models' timing table and the line on the shipped checkpoints verified before the run."""
    lines = []
    if zoo_rows:
        lines += ["", "Zoo models used (trained by this run when missing):", "",
                  "| model | status | seconds |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['status']} | {r['seconds']:.1f} |" for r in zoo_rows]
    if shipped_files:
        nets = sorted(e["stem"] for e in shipped_files.values() if e["kind"] == "mixing-network")
        heads = sorted(f for f, e in shipped_files.items() if e["kind"] == "learned-mixer-head")
        lines += ["", f"Shipped checkpoints verified (sha256) before the run: {len(shipped_files)} files in data/zoo, "
                  f"among them {len(nets)} mixing networks and the learned mixers' heads "
                  f"{', '.join(h.removesuffix('.json') for h in heads) or '–'}; a mixing network a notebook needs is "
                  "read from there and trained only when missing (the notebook's executed copy logs it)."]
    return lines


def _notebook_lines(o: Outcome, doc: dict, kept: str, here: Path) -> list[str]:
    """One notebook's section: its failure if it failed, then the metrics, tables and figures of ``doc`` (the
    result shown, ``kept`` its date when the run failed)."""
    lines = ["", f"## {o.name}", ""]
    if o.status == "failed":
        error = o.error[:1000].replace("`", "'")
        if not doc:
            return lines + [f"**Failed** (executed copy kept for inspection): `{error}`"]
        lines += [f"**Failed, showing the result of {kept}** (its last successful run; the failed run's "
                  f"executed copy is kept for inspection): `{error}`", ""]
    if doc.get("metrics"):
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in doc["metrics"].items() if not isinstance(v, dict)]
        lines.append("")
    for tab in doc.get("tables", []) + _derived_tables(o.name, doc):
        lines += [f"**{tab['title']}**", "", markdown_table(tab), ""]
    for f in results.figure_paths(doc, o.results):
        lines += [f"![{f.stem}]({os.path.relpath(f, here)})", ""]
    return lines


def _verdict_lines(docs: dict) -> list[str]:
    """The verdict table that opens ``summary.md`` (:mod:`adasmooth.verdicts`: the paper's claims beside ours),
    when a listed notebook carries one of the claims; [] otherwise.  An error here leaves a note, never
    a summary unwritten."""
    if not verdicts.has_claims(docs):
        return []
    head = ["## Verdicts: the paper's claims beside ours", ""]
    try:
        rows = verdicts.rows({k: v for k, v in docs.items() if v})
    except Exception as e:  # noqa: BLE001 - the rest of the summary matters more
        log.exception("verdict table")
        return head + [f"Verdict table not written: `{_failure_line(e)}`", ""]
    c = verdicts.counts(rows)
    return head + [verdicts.SETTING_NOTE + " " + verdicts.RULE_NOTE, "",
                   f"{c['reproduced']} reproduced, {c['not reproduced']} not reproduced, "
                   f"{c['inconclusive']} inconclusive.", "", markdown_table(verdicts.table(rows)), ""]


def _derived_tables(name: str, doc: dict) -> list[dict]:
    """Tables the summary derives from a notebook's recorded data (today: Fig. SM1's crossing radius and
    largest certified radii, from notebook 03's curves), unless the notebook already lists them."""
    if name != verdicts.SM1 or not doc or verdicts.SM1_TABLE_TITLE in {t.get("title") for t in doc.get("tables", [])}:
        return []
    try:
        tab = verdicts.sm1_table(doc)
    except Exception:  # noqa: BLE001
        log.exception("Fig. SM1 table")
        return []
    return [{"title": verdicts.SM1_TABLE_TITLE, **tab}] if tab else []


def rewrite_summary(profile: str | profiles.Profile, *, out_root=None, nb_dir=None, zoo_root=None) -> Path:
    """Rewrite ``results/<profile>/summary.md`` from the results JSON already there, running no notebook and
    training nothing (seconds: it only reads JSON).  The notebooks listed are those with a recorded result;
    the timing and zoo tables, the wall time and the environment line are kept from the previous summary
    (they describe the last run), and a line says when and how the summary was rewritten."""
    prof = profiles.get(profile) if isinstance(profile, str) else profile
    out_root = Path(out_root) if out_root else _params.PROJECT / "results" / prof.name
    path = out_root / "summary.md"
    last = _last_run(path.read_text(encoding="utf-8") if path.exists() else "")
    outcomes = []
    for src in _params.discover(nb_dir):
        res = results.path(out_root, src.stem)
        doc, _ = _kept_result(res)
        if doc:
            outcomes.append(Outcome(src.stem, last["status"].get(src.stem, "recorded"),
                                    float(doc["pipeline"].get("seconds") or 0.0), out_root / src.name, res, doc=doc))
    if zoo_root is None and prof.private_zoo:
        zoo_root = out_root / "zoo"
    ship = shipped.manifest(zoo_root) if last["shipped"] else None
    write_summary(path, prof, outcomes, last["zoo_rows"], last["wall"] or 0.0, shipped_files=ship)
    note = (f"Rewritten from the recorded results JSON on {time.strftime('%Y-%m-%d %H:%M')} "
            "(`adasmooth.pipeline.rewrite_summary`): no notebook ran; the timing and zoo tables describe the last run.")
    text = path.read_text(encoding="utf-8").splitlines()
    i = next(j for j, ln in enumerate(text) if ln.startswith("torch "))
    text[i:i + 1] = [last["env"] or text[i], "", note]
    checkpoint.atomic_write_bytes(path, ("\n".join(text).rstrip() + "\n").encode())
    return path


def update_readme(profile: str, out_root) -> bool:
    """Rewrite README.md's generated results blocks (:mod:`adasmooth.readme`) when ``out_root`` is the project's
    ``results/default`` (the results the README quotes); True when README.md changed.  An error here leaves the
    README as it was (``tests/test_readme.py`` then says it disagrees), never a run unfinished."""
    if profile != "default" or Path(out_root).resolve() != (_params.PROJECT / "results" / "default").resolve():
        return False
    try:
        return readme.update(folder=out_root, profile=profile)
    except Exception:  # noqa: BLE001
        log.exception("README results blocks")
        return False
