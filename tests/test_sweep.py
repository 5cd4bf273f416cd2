"""Sweeps: grid parsing and validation (bad values name key and value), config hashes,
the store (atomic records, corrupt and truncated records detected), memory refusal
naming the point, grouping by shape, and batched points equal to single ones."""

import json

import numpy as np
import pytest

from thermojax import cli
from thermojax.config import ConfigError, ExperimentConfig
from thermojax.sweep import (
    CorruptRecord,
    Point,
    PointResult,
    SweepStore,
    _group_config,
    _group_key,
    config_hash,
    expand_grid,
    parse_grid,
    point_kernel,
    run_point,
)

# tiny OQT points (64 trajectories x 8 steps at d = 4, milliseconds once compiled); `sweep={}`
# drops the shipped [sweep] table, so the tests' --grid axes are the only ones
ALPHA_TINY = ["sweep={}", "model.dim=4", "fit.n_traj=64", "fit.n_batches=4", "trajectories.t_max=0.4",
              "trajectories.n_times=5", "trajectories.dt=0.05", "trajectories.chunk_size=32", "progress=false"]


def _sets(items):
    return sum([["--set", s] for s in items], [])


class Toy(ExperimentConfig):
    rate: float = 1.0
    size: int = 2


@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("model.coupling=1e-4,2e-4", "model.coupling", [1e-4, 2e-4]),
        ("model.dim=16, 32,64", "model.dim", [16, 32, 64]),
        ("model.noise=reduced,literal", "model.noise", ["reduced", "literal"]),
        ("fit.M_values=[100, 200],[400]", "fit.M_values", [[100, 200], [400]]),
        ('name="a,b",c', "name", ["a,b", "c"]),
    ],
)
def test_parse_grid(text, key, values):
    assert parse_grid(text) == (key, values)


@pytest.mark.parametrize("text", ["model.dim", "=1,2", "model.dim=1,,2"])
def test_parse_grid_refuses_malformed(text):
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid(text)


def test_expand_grid_order_hashes_and_duplicates():
    pts = expand_grid(Toy, {"experiment": "toy", "seed": 3}, {"rate": [1.0, 2.0], "seed": [3, 4]})
    assert [p.values for p in pts] == [{"rate": 1.0, "seed": 3}, {"rate": 1.0, "seed": 4},
                                       {"rate": 2.0, "seed": 3}, {"rate": 2.0, "seed": 4}]
    assert len({p.config_hash for p in pts}) == 4 and all(p.id == p.config_hash[:16] for p in pts)
    # the hash ignores `progress` and key order, but not values
    assert config_hash(pts[0].config) == config_hash({**pts[0].config.model_dump(mode="json"), "progress": False})
    with pytest.raises(ConfigError, match="lists the value 1.0 twice"):
        expand_grid(Toy, {"experiment": "toy"}, {"rate": [1.0, 1.0]})
    with pytest.raises(ConfigError, match="at least one value"):
        expand_grid(Toy, {"experiment": "toy"}, {"rate": []})
    with pytest.raises(ConfigError, match="`experiment` cannot be a grid axis"):
        expand_grid(Toy, {"experiment": "toy"}, {"experiment": ["x"]})


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("model.alpha_N=0.5,-1.0", "grid axis `model.alpha_N`: value -1.0 is invalid"),
        ("model.alpha_N=0.5,-1.0", "key `model.alpha_N`: Input should be greater than 0 (got -1.0)"),
        ("model.dim=4,4.5", "grid axis `model.dim`: value 4.5 is invalid"),
        ("model.dimm=4,8", "key `model.dimm`: unknown key (got 4)"),
        ("model.noise=reduced,loud", "value 'loud' is invalid"),
        # a cross-check between keys names the point
        ("trajectories.dt=0.05,0.03", "grid point 1 (trajectories.dt=0.03) is invalid"),
    ],
)
def test_bad_grid_values_name_key_and_value(grid, message, tmp_path, capsys):
    out = tmp_path / "s"
    assert cli.main(["sweep", "sweep_alpha_n", "--grid", grid, "--out", str(out), *_sets(ALPHA_TINY)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_sweep_table_and_seeds_are_validated(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert cli.main(["sweep", "sweep_alpha_n", "--out", out, *_sets([*ALPHA_TINY, "sweep.seeds=0"])]) == 2
    assert "key `sweep.seeds`: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert cli.main(["sweep", "sweep_alpha_n", "--out", out, "--seeds", "2", "--grid", "seed=1,2",
                     *_sets(ALPHA_TINY)]) == 2
    assert "either as --seeds or as a grid axis" in capsys.readouterr().err
    # a bad base value is reported exactly as `run` reports it
    assert cli.main(["sweep", "sweep_alpha_n", "--out", out, *_sets(["model.radius=-2"])]) == 2
    assert "key `model.radius`: Input should be greater than 0" in capsys.readouterr().err


def test_largest_point_that_cannot_fit_is_refused_before_the_sweep_starts(tmp_path, capsys):
    out = tmp_path / "s"
    code = cli.main(["sweep", "sweep_alpha_n", "--grid", "model.dim=4,8,300000", "--out", str(out),
                     *_sets(ALPHA_TINY)])
    assert code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert "refused" in lines[-1] and "grid point 2 (model.dim=300000)" in lines[-1]
    assert "key `model.dim`" in lines[-1] and "available" in lines[-1] and "not started" in lines[-1]
    assert not out.exists()  # nothing written, nothing computed


def test_out_that_is_not_a_sweep_is_refused(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(["sweep", "sweep_alpha_n", "--out", str(out), *_sets(ALPHA_TINY)]) == 2
    assert "not a thermojax sweep directory" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------


def _toy_point(rate=1.0, index=0):
    cfg = Toy(experiment="toy", rate=rate)
    return Point(index, {"rate": rate}, cfg, config_hash(cfg))


def _toy_result(x):
    return PointResult({"x": np.arange(5.0) * x, "z": np.array([1 + 2j])}, {"r": {"value": x, "stderr": 0.1}},
                       {"note": "ok"})


def test_store_round_trip_and_atomic_names(tmp_path):
    store = SweepStore(tmp_path)
    p = _toy_point()
    assert store.status(p) == "missing"
    store.write(p, _toy_result(2.0), "toy", {"seconds": 1.0})
    arrays, meta = store.read(p)
    np.testing.assert_array_equal(arrays["x"], np.arange(5.0) * 2)
    assert arrays["z"].dtype == np.complex128
    assert meta["headline"] == {"r": {"value": 2.0, "stderr": 0.1}} and meta["config"]["rate"] == 1.0
    assert meta["config_hash"] == p.config_hash and meta["point"] == {"rate": 1.0}
    assert [f.name for f in store.points_dir.iterdir()] == [f"{p.id}.npz"]  # no temporary left
    # a record is loadable without pickle by plain NumPy
    with np.load(store.path(p), allow_pickle=False) as f:
        assert json.loads(str(f["__record__"]))["id"] == p.id


def test_truncated_damaged_and_foreign_records_are_detected(tmp_path):
    store = SweepStore(tmp_path)
    p, q = _toy_point(1.0, 0), _toy_point(2.0, 1)
    store.write(p, _toy_result(1.0), "toy", {})
    store.write(q, _toy_result(2.0), "toy", {})
    good = store.path(p).read_bytes()
    # truncated (a writer killed without the atomic rename would leave this)
    store.path(p).write_bytes(good[: len(good) // 2])
    assert store.status(p).startswith("corrupt: cannot read")
    with pytest.raises(CorruptRecord):
        store.read(p)
    # one flipped byte inside an array: the zip CRC or the digest catches it
    i = good.index(np.arange(5.0).tobytes()[8:16])
    damaged = bytearray(good)
    damaged[i] ^= 0xFF
    store.path(p).write_bytes(bytes(damaged))
    assert store.status(p).startswith("corrupt")
    # another point's record under this point's name
    store.path(p).write_bytes(store.path(q).read_bytes())
    assert "does not match the point" in store.status(p)
    # a left-over temporary is not a record, and is cleaned
    store.path(p).unlink()
    (store.points_dir / f".{p.id}.npz.host-1.tmp").write_bytes(good[:100])
    assert store.status(p) == "missing"
    assert store.clean_temporaries() == 1
    assert store.status(q) == "ok"


# ----------------------------------------------------------------------------------
# groups and batching
# ----------------------------------------------------------------------------------


def _alpha_points(grid, extra=()):
    exp, _ = cli.load_config("sweep_alpha_n", [*ALPHA_TINY, *extra])
    from thermojax.config import read_config_file, set_override

    raw = read_config_file(cli.resolve_config_path("sweep_alpha_n"))
    for o in [*ALPHA_TINY, *extra]:
        set_override(raw, o)
    return exp, expand_grid(exp.config, raw, grid)


def test_points_group_by_shape_and_batched_keys_are_hidden():
    exp, pts = _alpha_points({"model.alpha_N": [0.5, 1.0], "model.dim": [4, 6], "seed": [0, 1]})
    kernel = point_kernel(exp.name)
    keys = {_group_key(p, kernel) for p in pts}
    assert len(keys) == 2  # one compiled group per dimension
    assert len({_group_key(p, kernel) for p in pts if p.config.model.dim == 4}) == 1
    g = _group_config(pts[0].config, kernel.batched)
    assert g.model.alpha_N is None and g.seed is None and g.model.dim == 4  # batched values come as arrays


def test_a_batched_sharded_group_gives_the_single_point_numbers(tmp_path):
    """Three points in one vmapped chunk (with padding) against each point alone."""
    from thermojax.sweep import run_sweep

    exp, pts = _alpha_points({"model.alpha_N": [0.5, 1.0, 2.0]})
    report = run_sweep(exp, pts, tmp_path / "s", chunk_size=4, progress=False)
    assert sorted(report.computed) == [0, 1, 2] and report.summary["n_points"] == 3
    store = SweepStore(tmp_path / "s")
    kernel = point_kernel(exp.name)
    for p in pts:
        arrays, meta = store.read(p)
        single = run_point(kernel, p.config)
        for k, v in single.arrays.items():
            np.testing.assert_allclose(arrays[k], v, rtol=1e-12, atol=1e-14, err_msg=k)
        h = meta["headline"]["alpha_N"]
        assert h["value"] == pytest.approx(single.headline["alpha_N"]["value"], rel=1e-12)
        assert h["true"] == p.config.model.alpha_N
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert [r["model.alpha_N"] for r in s["table"]] == [0.5, 1.0, 2.0]
    assert (tmp_path / "s" / "alpha_N_vs_model_alpha_N.png").is_file()
    assert (tmp_path / "s" / "table.csv").read_text().splitlines()[0].startswith("index,id,model.alpha_N,alpha_N,")


def test_an_experiment_without_a_kernel_is_swept_through_its_run(tmp_path):
    """heat_chain_conductivity has no point kernel: each point is its `run`, the headline
    numbers are its summary's, and a rerun reuses them."""
    args = ["sweep", "heat_chain_fig8", "--grid", "model.n_levels=400,500", "--set", "n_temperatures=100",
            "--set", "progress=false", "--out", str(tmp_path / "g")]
    assert cli.main(args) == 0
    s = json.loads((tmp_path / "g" / "summary.json").read_text())
    kappa = [r["kappa"] for r in s["table"]]
    assert kappa[1] / kappa[0] == pytest.approx(500 / 400, rel=1e-12)  # golden rule: kappa ~ n
    assert s["headline"] == "kappa" and (tmp_path / "g" / "kappa_vs_model_n_levels.png").is_file()
    report = cli.sweep("heat_chain_fig8", str(tmp_path / "g"), ["model.n_levels=400,500"],
                       overrides=["n_temperatures=100", "progress=false"])
    assert report.computed == [] and report.reused == [0, 1]
