"""The README's code runs as printed: the solver snippet, the library snippet and the
"Adding a model" example (model file, experiment module, config) end to end."""

import pathlib
import re
import sys
import types

import numpy as np
import pytest

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _block(marker):
    hits = [b for b in BLOCKS if marker in b]
    assert len(hits) == 1, f"expected one README block containing {marker!r}"
    return hits[0]


def test_solver_snippet_runs(capsys):
    pytest.importorskip("qutip")
    exec(compile(_block("tj.mesolve(H, [0.7 * a]"), "README:solvers", "exec"), {})
    out = capsys.readouterr().out
    assert "(1, 11) [[10], [10]]" in out


@pytest.mark.slow
def test_library_snippet_runs(capsys):
    exec(compile(_block("ham_populations"), "README:library", "exec"), {})
    assert "golden rule" in capsys.readouterr().out


def test_adding_a_model_example_runs_end_to_end(tmp_path, monkeypatch):
    from thermojax import cli

    model_src = _block("class DecayingAtom")
    exp_src = _block('register("atom_decay"')
    model = types.ModuleType("thermojax.models.atom")
    exec(compile(model_src, "README:atom", "exec"), model.__dict__)
    monkeypatch.setitem(sys.modules, "thermojax.models.atom", model)
    exp = types.ModuleType("thermojax.experiments.atom.decay")
    exec(compile(exp_src, "README:decay", "exec"), exp.__dict__)
    cfg = tmp_path / "atom_decay.toml"
    cfg.write_text('experiment = "atom_decay"\ngamma = 0.2\nprogress = false\n')
    path, result = cli.run(str(cfg), str(tmp_path / "run"))
    assert result.summary["max_error_vs_closed_form"] < 1e-6
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "config.json", "decay.png", "summary.json"]
    assert np.load(path / "arrays.npz")["p_e"].shape == (101,)
