"""pyproject.toml is the one dependency source; environment.yml (conda-forge) must name the same packages
with the same version constraints, and pin the torch pair the project is tested with."""
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name
SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(req: str) -> tuple[str, str]:
    m = SPEC.match(req.split(";")[0])
    assert m, f"cannot parse requirement {req!r}"
    return _norm(CONDA_NAMES.get(m.group(1), m.group(1))), m.group(2).replace(" ", "")


def pyproject_deps() -> dict:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(proj["dependencies"]) + [r for extra in proj["optional-dependencies"].values() for r in extra]
    out = {}
    for r in reqs:
        name, spec = _parse(r)
        assert out.get(name, spec) == spec, f"{name} has two different constraints in pyproject.toml"
        out[name] = spec
    return out


def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_deps() -> dict:
    out = {}
    for d in environment()["dependencies"]:
        reqs = d["pip"] if isinstance(d, dict) else [d]
        for r in reqs:
            if r.startswith("-e") or r in ("pip",) or r.startswith("python="):
                continue
            name, spec = _parse(r)
            out[name] = spec
    return out


def test_environment_names_the_same_dependencies_as_pyproject():
    assert environment_deps() == pyproject_deps()


def test_environment_is_conda_forge_python_311_and_installs_the_package_through_pip():
    env = environment()
    assert [c for c in env["channels"] if c != "nodefaults"] == ["conda-forge"]
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(r.startswith("-e .[") and {"notebooks", "dev", "crosscheck"} <= set(r[5:-1].split(",")) for r in pip)


def test_torch_pair_is_pinned():
    deps = pyproject_deps()
    assert deps["torch"] == "==2.14.1" and deps["torchvision"] == "==0.29.1"


@pytest.mark.parametrize("extra", ["notebooks", "dev", "crosscheck"])
def test_extras_exist(extra):
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert proj["optional-dependencies"][extra]
