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


def _package_imports(path: Path) -> set[str]:
    """The adasmooth modules a source file imports at module level (top-level statements only)."""
    import ast

    pkg = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
            mod = f"{base}.{node.module}" if node.module else base
            out |= {mod} if node.module else {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adasmooth"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("adasmooth")}
    return out


@pytest.mark.parametrize("low", ["runtime", "checkpoint", "data", "attacks", "mixing", "distributed/__init__",
                                 "train", "evaluate", "results"])
def test_imports_point_one_way_nothing_below_the_zoo_imports_it(low):
    imported = _package_imports(ROOT / "adasmooth" / f"{low}.py")
    upward = {"adasmooth.zoo", "adasmooth.pipeline", "adasmooth.learned", "adasmooth.shipped", "adasmooth.adaptive"}
    up = {m for m in imported if any(m == u or m.startswith(u + ".") for u in upward)}  # adasmooth.pipeline.*
    assert not up, f"adasmooth/{low}.py imports {sorted(up)}"


def test_zoo_imports_distributed_and_train_but_pipeline_uses_no_private_zoo_name():
    assert {"adasmooth.distributed", "adasmooth.train"} <= _package_imports(ROOT / "adasmooth" / "zoo.py")
    src = "\n".join(p.read_text() for p in sorted((ROOT / "adasmooth" / "pipeline").glob("*.py")))
    assert "def run_notebook" in src and "def schedule" in src  # the package's modules, not an empty glob
    assert not re.search(r"\bzoo\._\w", src)
