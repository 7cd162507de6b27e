#!/usr/bin/env python3
"""The project's test command (run by `make test` and `.ci/run`).

Gates, in the order nbdev projects use them:
1. README.md is the rendering of nbs/index.ipynb (tools/make_readme.py),
2. `nbdev-clean` leaves the tree unchanged (notebooks are clean),
3. `nbdev-export` leaves the tree unchanged (library in sync with notebooks),
   then ruff: lint clean, hand-written files formatted (config in pyproject.toml),
4. every notebook executes (`nbdev-test`, one notebook per process, flags from $IPSM_TEST_FLAGS),
5. pytest over tests/ (CLI entry points, imports outside notebooks, bad input).
Prints one closing line `N passed, N failed` counting notebooks, gates and pytest tests.
"""

import os, re, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)
N_WORKERS = int(os.environ.get("IPSM_TEST_WORKERS", "2"))
# Notebooks run N_WORKERS at a time on a 2-core machine: one BLAS/OpenMP thread each avoids
# oversubscription (measured: a warp went from 0.27 s to 0.01 s on a loaded machine).
ENV = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
ENV.setdefault("OMP_WAIT_POLICY", "passive")
if N_WORKERS > 1:
    ENV.setdefault("OMP_NUM_THREADS", "1")
passed, failed, skipped = 0, 0, 0
failures = []


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, env=ENV, **kw)


def tree_state():
    "A fingerprint of every tracked and untracked-not-ignored file's content."
    r = sh("git status --porcelain --untracked-files=all && git diff && git ls-files -o --exclude-standard -z | xargs -0 -r sha1sum")
    return r.stdout


def record(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        failures.append((name, detail))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}", flush=True)
    if not ok and detail:
        print(detail[-6000:], flush=True)


def gate(name, cmd):
    before = tree_state()
    r = sh(cmd)
    after = tree_state()
    if r.returncode != 0:
        return record(name, False, r.stdout + r.stderr)
    if before != after:
        diff = sh("git status --porcelain").stdout
        return record(name, False, f"`{cmd}` changed the tree; run it and commit the result:\n{diff}")
    record(name, True)


t0 = time.time()
gate("README.md is rendered from nbs/index.ipynb", f"{sys.executable} tools/make_readme.py")
gate("nbdev-clean leaves notebooks unchanged", "nbdev-clean")
gate("nbdev-export leaves ipsm/ unchanged", "nbdev-export")
gate("ruff check (lint, notebooks included) is clean", "ruff check --no-cache .")
gate("ruff format --check (hand-written .py files) is clean", "ruff format --check --no-cache .")

flags = os.environ.get("IPSM_TEST_FLAGS", "")
nbs = sorted(p for p in Path("nbs").glob("*.ipynb") if not p.name.startswith(("_", ".")))


def run_nb(p):
    s = time.time()
    r = sh(f"nbdev-test {p} --flags '{flags}' --n-workers 0 --verbose")
    return p, r, time.time() - s


with ThreadPoolExecutor(N_WORKERS) as ex:
    for p, r, dt in ex.map(run_nb, nbs):
        record(f"notebook {p.name} ({dt:.0f}s)", r.returncode == 0, r.stdout + r.stderr)

r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], capture_output=True, text=True, env=ENV)
print(r.stdout[-8000:], r.stderr[-3000:], flush=True)
last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
cnt = lambda word: sum(int(n) for n in re.findall(rf"(\d+) {word}", last))
pp, pf, pe, ps = cnt("passed"), cnt("failed"), cnt("error"), cnt("skipped")
passed += pp
failed += pf + pe
skipped += ps
if r.returncode not in (0, 5) and pf + pe == 0:
    failed += 1
    failures.append(("pytest", r.stdout[-3000:] + r.stderr[-3000:]))
if pf + pe:
    failures.append(("pytest", last))

print(f"\nchecks took {time.time() - t0:.0f}s")
for n, _ in failures:
    print(f"FAILED: {n}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
