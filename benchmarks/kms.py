"""KMS open-system benchmark (issue 8, acceptance 3), in one run:

1. Bloch–Redfield evolution of the reference model (mixed-field Ising chain, X and Z of
   site 1, Ohmic bath beta = 1, eta = 0.02, omega_c = 8) from all spins up, t = 0 ... 50,
   51 saves, against QuTiP `brmesolve` (`sec_cutoff=-1`, the same gamma, QuTiP's default
   tolerances atol = 1e-8, rtol = 1e-6, which thermojax uses too), N = 3, 4, 5, 6. Each
   QuTiP solve runs in a subprocess with a time cap (QuTiP's N = 6 did not finish in
   300 s when measured before); the largest N each reached is printed.
2. Exact-KMS evolution (tau = 1, same protocol) at growing N, each in a subprocess
   capped at `--kms-cap` seconds (default 600: "until a call takes 10 minutes"), in the
   interaction picture of H_S (`kms.InteractionPicture`, ~10x fewer steps) and, up to
   `--kms-schrodinger-max-n`, as the plain generator, with the difference between the two.
   At the first N whose solve is capped, one right-hand side is timed there and the solve
   is bounded from the step count of the last size solved (`_floor`).

thermojax times are given cold (first call: tracing, XLA compilation and the solve) and
warm (the same call again); the ratio uses the warm time and, in brackets, the cold one.
Quote `uptime`'s load average with the numbers (printed at the start and the end).

    python benchmarks/kms.py                      # full run (long: up to 2 x 10 min caps)
    python benchmarks/kms.py --quick              # N <= 4, short caps
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap

SETUP = """
import json, sys, time
import numpy as np
import jax.numpy as jnp
import diffrax
import thermojax as tj
from thermojax.models import kms
N = {n}
tsave = np.linspace(0.0, 50.0, 51)
psi0 = np.zeros(2**N); psi0[0] = 1.0
def time_rhs(gen, rho, reps):
    import equinox as eqx
    rhs = eqx.filter_jit(lambda g, r: g.rhs_hermitian(0.0, r))
    rhs(gen, rho).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        rhs(gen, rho).block_until_ready()
    return (time.perf_counter() - t0) / reps
"""

QUTIP = """
import qutip
def spectrum(w):
    w = np.asarray(w, float)
    safe = np.where(w == 0, 1.0, w)
    out = np.where(np.abs(w) < 1e-12, 2 * np.pi * 0.02, 2 * np.pi * 0.02 * safe * np.exp(-(safe / 8.0) ** 2)
                   / -np.expm1(-safe))
    return float(out) if out.ndim == 0 else out
def solve(n, psi, ts):
    h = qutip.Qobj(np.asarray(kms.mixed_field_ising(n)))
    a_ops = [(qutip.Qobj(np.asarray(a)), spectrum) for a in kms.default_couplings(n)]
    return qutip.brmesolve(h, qutip.Qobj(psi), ts, a_ops=a_ops, sec_cutoff=-1)
small = np.zeros(4); small[0] = 1.0
solve(2, small, np.linspace(0, 1, 3))                      # warm-up: one-time QuTiP costs
t0 = time.perf_counter()
res = solve(N, psi0, tsave)
wall = time.perf_counter() - t0
states = np.stack([s.full() for s in res.states])
np.save(sys.argv[1], states)
print(json.dumps({{"wall": wall}}))
"""

OURS = """
method = tj.ODE(stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8))
system = kms.OpenSystem.ising(N)
t0 = time.perf_counter()
gen = {ctor}
solver = kms.InteractionPicture(gen) if {interaction} else gen
rho0 = solver.from_schrodinger(0.0, np.outer(psi0, psi0)) if {interaction} else jnp.asarray(psi0)
build = time.perf_counter() - t0
def call():
    res = tj.mesolve(solver, [], rho0, jnp.asarray(tsave), method=method)
    res.states.block_until_ready()
    return res
t0 = time.perf_counter(); res = call(); cold = time.perf_counter() - t0
warm = float("nan")
if {warm}:
    t0 = time.perf_counter(); res = call(); warm = time.perf_counter() - t0
per_rhs = time_rhs(gen, jnp.asarray(res.states[-1]), 5)
states = solver.to_schrodinger(res.tsave, res.states) if {interaction} else res.states
np.save(sys.argv[1], np.asarray(states))
print(json.dumps({{"build": build, "cold": cold, "warm": warm, "rhs": per_rhs, "steps": int(res.stats["num_steps"]),
                  "ok": bool(res.success), "n_jump": int(getattr(gen, "n_jump", 0))}}))
"""

FLOOR = """
system = kms.OpenSystem.ising(N)
t0 = time.perf_counter()
gen = kms.ExactKMS(system, 1.0, basis="eigen")
build = time.perf_counter() - t0
per_rhs = time_rhs(gen, jnp.asarray(np.outer(psi0, psi0), complex), 1)
print(json.dumps({"build": build, "rhs": per_rhs, "n_jump": int(gen.n_jump)}))
"""  # appended to SETUP after its formatting: plain braces


def _child(code: str, cap: float, out: str):
    """Run `code` in a fresh interpreter; return its JSON line or None on timeout/failure."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        proc = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, timeout=cap, env=env)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        print(textwrap.indent(proc.stderr[-2000:], "    | "))
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load():
    return os.getloadavg()


def redfield(ns, qutip_cap, ours_cap, tmp):
    import numpy as np

    print("\n== Bloch-Redfield: thermojax BlochRedfield vs QuTiP brmesolve (sec_cutoff=-1), t = 0..50, 51 saves ==")
    print(f"{'N':>3} {'d':>4} {'QuTiP (s)':>10} {'ours warm':>10} {'ours cold':>10} {'ratio warm':>10} "
          f"{'ratio cold':>10} {'max |diff|':>10}")
    reached = {"qutip": None, "thermojax": None}
    rows = []
    for n in ns:
        q_out, o_out = f"{tmp}/qutip_{n}.npy", f"{tmp}/ours_{n}.npy"
        q = _child(SETUP.format(n=n) + QUTIP.format(), qutip_cap, q_out)
        o = _child(SETUP.format(n=n) + OURS.format(ctor="kms.BlochRedfield(system)", warm=True, interaction=False),
                   ours_cap, o_out)
        diff = float("nan")
        if q and o:
            diff = float(np.max(np.abs(np.load(q_out) - np.load(o_out))))
        qt = q["wall"] if q else float("nan")
        ow, oc = (o["warm"], o["cold"] + o["build"]) if o else (float("nan"), float("nan"))
        if q:
            reached["qutip"] = n
        if o:
            reached["thermojax"] = n
        qs = f"{qt:10.3f}" if q else f"{'>' + format(qutip_cap, 'g'):>10}"
        print(f"{n:>3} {2**n:>4} {qs} {ow:10.3f} {oc:10.3f} {qt / ow:10.1f} {qt / oc:10.1f} {diff:10.1e}", flush=True)
        rows.append({"n": n, "qutip": qt, "warm": ow, "cold": oc, "diff": diff, "qutip_capped": q is None})
    print(f"largest N reached: QuTiP {reached['qutip']} (cap {qutip_cap:g} s), thermojax {reached['thermojax']}")
    return rows


def exact_kms(n_min, n_max, cap, schrodinger_max_n, tmp):
    import numpy as np

    print(f"\n== exact-KMS (tau = 1): thermojax mesolve, t = 0..50, 51 saves, cap {cap:g} s per call ==")
    print("   IP: InteractionPicture(ExactKMS(system, 1, basis='eigen')); S: ExactKMS(system, 1) as is")
    print(f"{'N':>3} {'d':>5} {'R':>4} {'build (s)':>9} {'IP solve (s)':>12} {'IP steps':>8} {'S solve (s)':>11} "
          f"{'S steps':>7} {'rhs (ms)':>9} {'max|IP-S|':>9}")
    largest = {"interaction": None, "schrodinger": None}
    rows = []
    for n in range(n_min, n_max + 1):
        ip_out, s_out = f"{tmp}/kms_ip_{n}.npy", f"{tmp}/kms_s_{n}.npy"
        ctor = "kms.ExactKMS(system, 1.0, basis='eigen')"
        ip = _child(SETUP.format(n=n) + OURS.format(ctor=ctor, warm=False, interaction=True), cap, ip_out)
        sp = None
        if n <= schrodinger_max_n:
            sp = _child(SETUP.format(n=n) + OURS.format(ctor="kms.ExactKMS(system, 1.0)", warm=False,
                                                        interaction=False), cap, s_out)
        if ip:
            largest["interaction"] = n
        if sp:
            largest["schrodinger"] = n
        diff = float(np.max(np.abs(np.load(ip_out) - np.load(s_out)))) if ip and sp else float("nan")
        fmt = lambda r, k, f: format(r[k], f) if r else "-"  # noqa: E731
        ref = ip or sp
        rhs_ms = 1e3 * ref["rhs"] if ref else float("nan")
        print(f"{n:>3} {2**n:>5} {fmt(ref, 'n_jump', 'd'):>4} {fmt(ref, 'build', '.2f'):>9} "
              f"{fmt(ip, 'cold', '.2f') if ip else '>' + format(cap, 'g'):>12} {fmt(ip, 'steps', 'd'):>8} "
              f"{fmt(sp, 'cold', '.2f'):>11} {fmt(sp, 'steps', 'd'):>7} {rhs_ms:9.3g} {diff:9.1e}",
              flush=True)
        rows.append({"n": n, "interaction": ip, "schrodinger": sp, "diff": diff})
        if ip is None:
            _floor(n, rows, cap, tmp)
            break
    print(f"largest N reached within {cap:g} s: interaction picture {largest['interaction']}, "
          f"Schrödinger picture {largest['schrodinger']} (run up to N = {schrodinger_max_n})")
    return rows


def _floor(n, rows, cap, tmp):
    """Where the solve at `n` was capped: time one right-hand side there and bound the solve
    from below by the steps the last solved size took (the count falls slowly with N)."""
    last = next((r["interaction"] for r in reversed(rows) if r["interaction"]), None)
    probe = _child(SETUP.format(n=n) + FLOOR, cap, f"{tmp}/floor_{n}.npy")
    if probe is None or last is None:
        print(f"  N = {n}: no right-hand side within {cap:g} s")
        return
    d, r = 2**n, probe["n_jump"]
    flop = r * 4 * 2 * d**3  # R jump operators, real in the eigenbasis: 4 real d x d products each
    evals = 6 * last["steps"]  # Tsit5 (FSAL): 6 new evaluations per step
    print(f"  N = {n}: one right-hand side {probe['rhs']:.2f} s (R = {r}, {flop / 1e12:.2f} TFLOP, "
          f"{flop / probe['rhs'] / 1e9:.0f} GFLOP/s; build {probe['build']:.1f} s). At the {last['steps']} steps of "
          f"the last size solved (~{evals} evaluations) the solve needs ~{evals * probe['rhs']:.0f} s; "
          f"even half as many steps would take ~{0.5 * evals * probe['rhs']:.0f} s.", flush=True)
    rows[-1]["floor"] = probe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N <= 4 and short caps")
    ap.add_argument("--redfield-n", type=int, nargs="+", default=[3, 4, 5, 6])
    ap.add_argument("--qutip-cap", type=float, default=300.0, help="seconds allowed to one QuTiP solve")
    ap.add_argument("--kms-cap", type=float, default=600.0, help="seconds allowed to one exact-KMS solve")
    ap.add_argument("--kms-max-n", type=int, default=10)
    ap.add_argument("--kms-schrodinger-max-n", type=int, default=6, help="also run the Schrödinger picture up to N")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if args.quick:
        args.redfield_n, args.qutip_cap, args.kms_cap, args.kms_max_n = [3, 4], 60.0, 120.0, 4
        args.kms_schrodinger_max_n = 4
    import tempfile

    print(f"load average at start: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        rf = redfield(args.redfield_n, args.qutip_cap, max(args.qutip_cap, 300.0), tmp)
        ek = exact_kms(3, args.kms_max_n, args.kms_cap, args.kms_schrodinger_max_n, tmp)
    print(f"\nload average at end: {_load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"redfield": rf, "exact_kms": ek, "load": _load()}, f, indent=1)


if __name__ == "__main__":
    main()
