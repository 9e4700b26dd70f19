# Every target installs what it needs first, so a fresh clone needs no separate setup step.
# Variables: PYTHON (the interpreter that makes .venv), DGM_DATA (the shared MNIST directory).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LABS   := $(wildcard labs/*.md)
COURSE := build/course
# pip prints a warning per package for the machine's extra local indexes; keep logs readable.
PIPQ   := 2>&1 | grep -v "^WARNING: Location" || true

.PHONY: install data build release autograde demo test test-fast golden lint widgets dist clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml student/pyproject.toml
	@# The grading sandbox (bubblewrap) is a Debian package: install it when root, else say so.
	command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q bubblewrap; } || echo "install bubblewrap to grade: apt install bubblewrap"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIPQ)
	@# Two distributions: the student package (student/) first, then this one, which needs it.
	$(PY) -m pip install -q -e ./student -e ".[lab,dev]" $(PIPQ)
	$(PY) -c "import torch, torchvision, nbgrader, jupytext, ipywidgets, torchinfo"
	touch $@

data: install
	$(PY) -m dgmlab.data

build: install
	$(PY) -m autograder.cli build --strict --out build $(LABS)
	mkdir -p solutions
	cp build/solution/*.ipynb solutions/

release: build
	$(PY) -m autograder.cli release --course $(COURSE) $(patsubst labs/%.md,build/nbgrader/%.ipynb,$(LABS))

autograde: install data
	$(PY) -m autograder.cli autograde --course $(COURSE)

demo: install data
	$(PY) -m autograder.cli demo --out build/demo

# pytest-xdist: one test process per core, each test file on one of them (its module fixtures,
# e.g. a graded class, are made once); TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: install data
	$(PY) -m pytest -q $(XDIST)

test-fast: install
	$(PY) -m pytest -q $(XDIST) -m "not slow and not data"

golden: install
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_views.py -k golden

lint: install
	$(VENV)/bin/ruff check .
	$(PY) -m autograder.cli check --strict $(LABS) tests/templates/*.md

# Not part of `make test`: it needs Chromium (apt install chromium) and takes minutes.
widgets: build data
	$(PY) -m pip install -q -e ".[browser]" $(PIPQ)
	$(PY) scripts/widgets_in_jupyterlab.py build/solution/04-elbo-estimators.ipynb

# The two wheels: dist/dgm_labs_student-*.whl (what students install) and dist/dgm_labs-*.whl.
dist: install
	rm -rf dist
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist ./student . $(PIPQ)
	ls dist

clean:
	rm -rf build notebooks
