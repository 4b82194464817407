"""What every claim's rule shares: the verdicts, the notes under the table, the notebooks judged, the
paper's side (:func:`paper_reference`) and the row format."""
from __future__ import annotations

import json
from importlib import resources

from ..mixing import MIXERS

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
SETTING_NOTE = ("Our setting differs from the paper's (Fashion-MNIST instead of CIFAR-10, small CNNs, CPU budgets, "
                "200-1000 test images): shapes and signs are compared, not raw numbers.")
RULE_NOTE = ("Intervals: 95 % Clopper-Pearson. \"A beats B\": McNemar's exact test where per-image results exist "
             "(claim b), else only when the two intervals do not overlap; overlapping intervals are reported as a tie "
             "(inconclusive).")
COLUMNS = ["claim", "paper", "ours (95 % CI)", "verdict", "source"]

# the notebooks whose results the claims are judged on (results JSON stems)
THEORY, RI, SM1, HEADLINE, LOSS, SCALE = ("01_theory_checks", "02_ri_ablation", "03_certified_radii",
                                          "04_adaptive_vs_constant", "05_loss_ablation", "06_sigmoid_scale")
RI_LABELS = {name: m.short for name, m in MIXERS.items()}  # the registry's short labels
PANELS = {"fig1": "Fig. 1", "sm2a": "Fig. SM2a", "sm2b": "Fig. SM2b"}


def paper_reference() -> dict:
    """The supplement's numbers and statements (``adasmooth/paper_reference.json``), a fresh copy per call."""
    return json.loads(resources.files("adasmooth").joinpath("paper_reference.json").read_text(encoding="utf-8"))


def _row(cid: str, claim: str, paper: str, ours: str, verdict: str, source: str) -> dict:
    assert verdict in VERDICTS, verdict
    return {"id": cid, "claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "source": source}


def _pct(v: float) -> str:
    return f"{v:g} %"


def _n_eval(doc: dict, default=None):
    return (doc.get("metrics") or {}).get("n_eval") or (doc.get("params") or {}).get("n_eval") or default
