"""Each notebook parameter is declared once (adasmooth/parameters.py): the committed parameters cells, the domains,
the profiles and the procedures' lookups all agree with the declarations."""
import shutil

import nbformat
import pytest

from adasmooth import parameters, pipeline, profiles
from adasmooth.__main__ import main
from adasmooth.parameters import NOTEBOOKS, Param
from adasmooth.pipeline import params as pipeline_params

SOURCES = pipeline.discover()


def _cell(src):
    nb = nbformat.read(str(src), as_version=4)
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def test_every_notebook_is_declared_and_nothing_else():
    assert [src.stem for src in SOURCES] == list(NOTEBOOKS)


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_the_committed_parameters_cell_is_the_rendered_one(src):
    assert _cell(src).source == parameters.cell(src.stem), (
        f"{src.name}: its parameters cell differs from adasmooth/parameters.py; run python -m adasmooth notebooks sync")


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_papermill_reads_back_each_declared_type_default_and_help(src):
    parsed = pipeline.declared_parameters(src)
    decl = NOTEBOOKS[src.stem]
    assert list(parsed) == list(decl)
    for name, p in decl.items():
        assert parsed[name] == {"types": p.type.split("|"), "default": p.default, "help": p.help}, name


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_defaults_and_profile_values_have_their_type_and_lie_in_their_domain(stem):
    decl = NOTEBOOKS[stem]
    for prof in parameters.PROFILE_NAMES:
        values = parameters.defaults(stem) | parameters.profile_values(prof)[stem]
        for name, p in decl.items():
            v = values[name]
            assert any(pipeline_params._CHECKS[t](v) for t in p.type.split("|")), (stem, prof, name, v)
        assert parameters.problems(stem, values) == [], (stem, prof)


def test_the_profiles_are_the_declared_values():
    for name in parameters.PROFILE_NAMES:
        prof = profiles.get(name)
        assert prof.common == {} and prof.notebooks == parameters.profile_values(name)
    # spot checks against the values the profiles had before they were declared with the parameters
    assert profiles.SMOKE.notebooks["05_loss_ablation"]["n_eval"] == 30
    assert profiles.DEFAULT.notebooks["08_mixing_methods"]["curve_positions"] == [0.5]
    assert profiles.PAPER.notebooks["02_ri_ablation"]["eps_linf"] == 8 / 255
    assert "mix_momentum" not in profiles.PAPER.notebooks["06_sigmoid_scale"]  # unset: the notebook's default
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        parameters.profile_values("fast")


def test_the_domains_are_the_declared_ones():
    for stem, decl in NOTEBOOKS.items():
        for name, p in decl.items():
            d = parameters.domain(stem, name)
            assert d is not None and d.text == p.allowed().text, (stem, name)
    assert "at most headline_n" in parameters.domain("04_adaptive_vs_constant", "square_n").text
    assert "at most n_eval" in parameters.domain("08_mixing_methods", "square_n").text
    with pytest.raises(ValueError, match=r"05_loss_ablation: parameter 'c_ce' = \[2.0\] is not allowed"):
        parameters.check("05_loss_ablation", {"c_ce": [2.0], "c_sum": 1.5})
    # a notebook with no declarations (a test's, your own): the shared parameters' domains
    assert parameters.domain("99_mine", "seed").text == "an int >= 0" and parameters.domain("99_mine", "x") is None


def test_a_declaration_twice_or_an_unknown_profile_is_refused():
    seed = NOTEBOOKS["00_quickstart"]["seed"]
    with pytest.raises(ValueError, match="'seed' is declared twice"):
        parameters._table({"00_x": (seed, seed)})
    with pytest.raises(ValueError, match=r"unknown profile\(s\) \['fast'\]"):
        parameters._table({"00_x": (seed.but(profiles={"fast": 1}),)})
    with pytest.raises(ValueError, match="no parameters are declared for notebook '99_mine'"):
        parameters.declared("99_mine")


def test_the_procedures_read_declared_names_only():
    p = parameters.bind("00_quickstart", {"seed": 3, "In": [], "not_a_parameter": 1})
    assert p.seed == 3 and p["seed"] == 3 and dict(p) == {"seed": 3} and p.get("alphas", "unset") == "unset"
    with pytest.raises(AttributeError, match="00_quickstart declares no parameter 'not_a_parameter'"):
        p.not_a_parameter
    with pytest.raises(KeyError, match="00_quickstart: parameter 'alphas' was not given"):
        p["alphas"]


def test_the_literals_are_those_of_the_cells():
    assert parameters.literal({"s": [0.2, 1.0], "k": None}) == '{"s": [0.2, 1.0], "k": None}'
    assert parameters.literal('say "hi"') == '"say \\"hi\\""'
    assert Param("c_bce", "float", 1.5).line() == "c_bce = 1.5  # type: float"
    with pytest.raises(TypeError, match="must be None, a bool, number, str, list or dict"):
        parameters.literal((1, 2))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's notebooks, seen by the pipeline as the project's."""
    shutil.copytree(pipeline.notebook_dir(), tmp_path / "notebooks")
    monkeypatch.setattr(pipeline_params, "PROJECT", tmp_path)
    return tmp_path


def test_a_hand_edited_cell_is_caught_and_sync_restores_it_byte_for_byte(project, capsys):
    src = project / "notebooks" / "00_quickstart.ipynb"
    before = src.read_bytes()
    nb = nbformat.read(str(src), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = cell.source.replace("steps = 20  #", "steps = 30  #")
    nbformat.write(nb, str(src))
    assert parameters.out_of_sync(project / "notebooks") == [src]
    assert main(["notebooks", "sync", "--check"]) == 1
    assert "00_quickstart.ipynb: its parameters cell differs" in capsys.readouterr().err
    assert main(["notebooks", "sync"]) == 0
    assert "rewrote the parameters cell of 00_quickstart.ipynb" in capsys.readouterr().out
    assert src.read_bytes() == before  # the other cells, ids and metadata untouched
    assert parameters.sync(project / "notebooks") == [] and main(["notebooks", "sync", "--check"]) == 0


def test_adding_a_parameter_is_one_declaration_and_a_sync(project, monkeypatch):
    new = Param("pause", "float", 0.0, "seconds to wait", parameters.NON_NEGATIVE, {"smoke": 0.5})
    table = dict(NOTEBOOKS["00_quickstart"], pause=new)
    monkeypatch.setitem(NOTEBOOKS, "00_quickstart", table)
    src = project / "notebooks" / "00_quickstart.ipynb"
    assert parameters.sync(project / "notebooks") == [src]
    assert _cell(src).source.endswith("\npause = 0.0  # type: float  seconds to wait")
    assert pipeline.declared_parameters(src)["pause"] == {"types": ["float"], "default": 0.0, "help": "seconds to wait"}
    assert parameters.profile_values("smoke")["00_quickstart"]["pause"] == 0.5
    assert parameters.problems("00_quickstart", {"pause": -1.0}) and parameters.bind("00_quickstart",
                                                                                      {"pause": 1.0}).pause == 1.0
