# ra for Python. Every target sets itself up: a fresh machine needs only python3.
# The interpreter: CPython 3.12, else 3.13, where the machine has one (on PATH or under pyenv),
# because from 3.12 on the fork server makes its preloads immortal and an idle server holds
# about half the memory (issue 17); else python3 (3.11 works, at 4.8 MB per idle server).
# `make PY=python3.11 test` picks another; `make clean` first when .venv has another one.
PY      ?= $(or $(shell for v in 3.12 3.13; do \
             for p in python$$v $$(pyenv root 2>/dev/null)/versions/$$v*/bin/python$$v; do \
               $$p -c '' 2>/dev/null && echo $$p && exit; done; done),python3)
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SEED    ?= 1
SEEDS   ?=

.PHONY: test demo demo-sim sim bench bench-run bench-opt python-opt soak check mutants lint typecheck clean setup

# the install's output goes to .venv/install.log (shown only if it fails)
$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	@echo "setting up $(VENV) with $$($(VPY) --version) (log: $(VENV)/install.log)"
	@$(VPY) -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; false)
	@$(VPY) -m pip install -e '.[test,dev]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; false)
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest tests

# ruff with the rules of pyproject.toml (ruff and mypy are pinned in the dev extra)
LINT_PATHS := ra transport supervisor wal bench examples tests raerror.py
lint: $(STAMP)
	$(VPY) -m ruff check $(LINT_PATHS)

# mypy --strict on the pure and storage layers; default settings on the rest of the library
# (--follow-imports=silent: the strict run reports only the modules it was given)
typecheck: $(STAMP)
	$(VPY) -m mypy --strict --follow-imports=silent ra/core wal supervisor raerror.py
	$(VPY) -m mypy ra transport

sim: $(STAMP)
	$(VPY) -m ra.testing.sim --seed $(SEED) --trace

# the real demo: 3 node daemons, a KV cluster, the leader's node SIGKILLed (examples/demo.py)
demo: $(STAMP)
	$(VPY) -m examples.demo

# the simulated 5-member timeline (ra/testing/demo.py)
demo-sim: $(STAMP)
	$(VPY) -m ra.testing.demo

# make bench runs on PY linked as one static executable when PY is a shared build (pyenv's are):
# the same CPython, without libpython's PLT/GOT/TLS indirection (bench/static_python.py; W1
# 7 % faster, 12 % less CPU per command), in a venv of its own; else on PY as it is
BENCH_VENV ?= .venv-bench
bench:
	@py=$$($(PY) bench/static_python.py) || { echo "make bench: on $(PY) as it is"; py=$(PY); }; \
	$(MAKE) --no-print-directory bench-run VENV=$(BENCH_VENV) PY=$$py

bench-run: $(STAMP)
	@$(VPY) -c 'from pysyncobj.version import VERSION; assert VERSION == "0.3.17"' 2>/dev/null || $(VPY) -m pip install -e '.[test,bench]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; false)
	$(VPY) -m bench $(if $(QUICK),--quick,) $(if $(REPEAT),--repeat $(REPEAT),)

# An optimized CPython (PGO + LTO, as distributions build theirs; pyenv's builds have neither, which
# costs our processes 25-40 % more CPU per command): built once, from Debian's copy of the upstream
# source with its signatures checked (bench/build_python.sh, 14 min on 2 cores)
PYOPT   ?= $(HOME)/.cache/ra-bench/python3.13-opt
python-opt:
	sh bench/build_python.sh $(PYOPT)

# make bench on that interpreter, in a venv of its own
bench-opt: python-opt
	$(MAKE) bench-run VENV=.venv-opt PY=$(PYOPT)/bin/python3.13

soak: $(STAMP)
	RA_SOAK=1 RA_MUTANT_JOBS=$(MUTANT_JOBS) $(VPY) -m pytest tests -m "slow or not slow" $(if $(SEEDS),--seeds $(SEEDS),)

# the mutation run alone (also part of soak): each mutant of ra/testing/mutants.py over the
# seeds make test runs (SEEDS=n for another count); score table in build/mutants.json
MUTANT_JOBS ?= 1
mutants: $(STAMP)
	$(VPY) -m ra.testing.mutants --json build/mutants.json --jobs $(MUTANT_JOBS) $(if $(SEEDS),--seeds $(SEEDS),)

# Jepsen-style end-to-end check (ra/check): set, counter and register, 30 s each under faults;
# partition runs only as root with namespaces and nftables (otherwise it is skipped, and said so)
CHECK_NEMESIS ?= kill-node,kill-leader,kill-wal,pause,partition
check: $(STAMP)
	$(VPY) -m ra.client.cli check --workload all --time $(or $(TIME),30) --nemesis $(CHECK_NEMESIS) $(if $(filter command line,$(origin SEED)),--seed $(SEED),) $(if $(OUT),--out $(OUT),)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache build *.egg-info
