# The course's two commands (see README.md):
#   make book   set up .venv if needed, execute every chapter, build the site into _build/html
#   make test   set up .venv if needed, run the unit tests, doctests and every chapter under nbval
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Quiet progress bars in builds and tests; readers running a notebook still see them.
# (Do not set MPLBACKEND here: the kernels must keep the inline backend to show figures.)
export TQDM_DISABLE := 1

.PHONY: book test unit slides clean install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

MATHJAX := vendor/node_modules/mathjax/es5

$(MATHJAX): vendor/package.json vendor/package-lock.json
	npm ci --prefix vendor --no-audit --no-fund --loglevel=error
	touch $(MATHJAX)

book: $(STAMP) $(MATHJAX)
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	$(BIN)/jupyter-book build . --all -W --keep-going
	mkdir -p _build/html/_vendor/mathjax
	cd $(MATHJAX) && cp -r tex-chtml.js input output ui a11y sre $(CURDIR)/_build/html/_vendor/mathjax/
	$(BIN)/python tests/check_site.py _build/html
	@echo "The site is in _build/html (open _build/html/index.html)."

test: $(STAMP)
	$(BIN)/python -m pytest tests companion book --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=300 --durations=0 -p no:cacheprovider
	@echo "All tests passed (unit tests, doctests, and every chapter in _toc.yml under nbval)."

unit: $(STAMP)
	$(BIN)/python -m pytest tests companion -m "not notebooks" -p no:cacheprovider

clean:
	rm -rf _build
