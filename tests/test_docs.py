"""The Python examples of README.md and docs/extending.md run as written (on the shipped models)."""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_example_mixes_attacks_and_certifies(capsys, one_thread):
    (code,) = python_blocks("README.md")
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    m = re.fullmatch(r"clean (\d\.\d\d), PGD-20 (\d\.\d\d), median Theorem-1 radius (\d+\.\d{3})\n", out)
    assert m, out
    clean, robust = float(m.group(1)), float(m.group(2))
    assert 0.7 <= clean <= 1.0 and 0.0 < robust < clean  # the attack lowers accuracy; h keeps some
    assert scope["x_adv"].shape == scope["x"].shape and (scope["x_adv"] - scope["x"]).abs().max() <= 0.1 + 1e-6
    assert torch.isfinite(scope["cert"]["lip"]).all() and (scope["cert"]["lip"] >= 0).all()


def test_the_extending_examples_register_a_constant_and_a_learned_mixer(capsys, monkeypatch):
    from adasmooth import learned, mixing, zoo

    monkeypatch.setattr(mixing, "MIXERS", dict(mixing.MIXERS))
    monkeypatch.setattr(mixing, "OPTIONS", dict(mixing.OPTIONS))
    monkeypatch.setattr(mixing, "LABELS", dict(mixing.LABELS))
    monkeypatch.setattr(learned, "RECIPES", dict(learned.RECIPES))
    monkeypatch.setattr(zoo, "PROVIDERS", dict(zoo.PROVIDERS))
    constant, _, learned_block = python_blocks("docs/extending.md")
    exec(compile(constant, "docs/extending.md", "exec"), {})  # noqa: S102
    assert mixing.get("my_mixer").space == "logit" and "my_mixer" in mixing.OPTIONS
    exec(compile(learned_block, "docs/extending.md", "exec"), {})  # noqa: S102
    r = learned.recipe("fmnist-adaptive-mine")
    assert r.mixing["c_prod"] == 0.5 and r.mixing["c_bce"] == learned.HEADLINE_MIX["c_bce"]
    with pytest.raises(ValueError, match="already registered"):
        learned.register(r)


def test_the_extending_runner_example_attacks_a_mixer_with_a_named_suite(capsys, one_thread):
    code = python_blocks("docs/extending.md")[1]
    scope = {}
    exec(compile(code, "docs/extending.md", "exec"), scope)  # noqa: S102 - the page's own example
    out = capsys.readouterr().out
    m = re.fullmatch(r"attacked (\d\.\d\d), clean (\d\.\d\d), (\d+) attacks\n", out)
    assert m, out
    attacked, clean, n = float(m.group(1)), float(m.group(2)), int(m.group(3))
    assert 0 < attacked < clean and n == len(scope["res"].steps) == 7  # PGD ×2, transfers ×2, APGD ×2, Square
    assert scope["res"].correct.sum() <= scope["res"].clean.sum()
