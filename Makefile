# The course's commands (see README.md):
#   make book       set up .venv if needed, execute every chapter, build the site into _build/html
#                   (with a slide deck per chapter in _build/html/slides/), then check it
#   make test       set up .venv if needed, run the unit tests, doctests and every chapter under nbval
#   make site-test  open the built site in headless Chromium (Playwright) and check every chapter
#   make slides     rebuild the slide decks from the built site (builds the site first if missing)
#   make student    the student edition (no solutions) into _build/student/_build/html
#   make reader-check  run the shortest chapter's notebook in a fresh venv that has only the
#                   companion wheel and a kernel, as a reader's download would (make test runs it too)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SITE   := _build/html
# Quiet progress bars in builds and tests; readers running a notebook still see them.
# (Do not set MPLBACKEND here: the kernels must keep the inline backend to show figures.)
export TQDM_DISABLE := 1
# Opt-in, for Linux: the CPU-only build of PyTorch (on Linux pip's default is the CUDA build,
# several GB). `make install TORCH=cpu` on a fresh clone (or after `rm -rf .venv`); any target
# that installs takes it too. Empty by default: CI and machines with a local CPU wheel use pip's
# configured indexes as they are.
TORCH ?=
TORCH_INDEX := $(if $(filter cpu,$(TORCH)),--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: book test unit slides site-test student clean install reader-check

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The JavaScript the site serves itself (MathJax, reveal.js, the ipywidgets manager and
# require.js), installed from the npm registry at the versions in vendor/package-lock.json.
NODE_MODULES := vendor/node_modules
NPM_STAMP    := $(NODE_MODULES)/.installed

$(NPM_STAMP): vendor/package.json vendor/package-lock.json
	npm ci --prefix vendor --no-audit --no-fund --loglevel=error --ignore-scripts
	touch $(NPM_STAMP)

# Copy it into a built site ($(1)), outside _static/ (Jupyter Book adds every file
# under _static/ to every page).
define copy_vendor
	rm -rf $(1)/_vendor && mkdir -p $(1)/_vendor/mathjax $(1)/_vendor/reveal.js $(1)/_vendor/requirejs $(1)/_vendor/html-manager
	cd $(NODE_MODULES)/mathjax/es5 && cp -r tex-chtml.js input output ui a11y sre $(CURDIR)/$(1)/_vendor/mathjax/
	cp -r $(NODE_MODULES)/reveal.js/dist $(NODE_MODULES)/reveal.js/LICENSE $(1)/_vendor/reveal.js/
	cp $(NODE_MODULES)/requirejs/require.js $(1)/_vendor/requirejs/
	cd $(NODE_MODULES)/@jupyter-widgets/html-manager/dist && cp embed-amd.js *.woff *.woff2 *.ttf *.eot *.svg $(CURDIR)/$(1)/_vendor/html-manager/
endef

book: $(STAMP) $(NPM_STAMP)
	rm -rf $(SITE) _build/.doctrees _build/jupyter_execute
	$(BIN)/jupyter-book build . --all -W --keep-going
	$(call copy_vendor,$(SITE))
	$(BIN)/python tools/notebooks.py $(SITE)
	$(BIN)/python tools/slides.py $(SITE)
	$(BIN)/python tests/check_site.py $(SITE)
	@echo "The site is in $(SITE) (open $(SITE)/index.html; slides in $(SITE)/slides/)."

slides: $(STAMP) $(NPM_STAMP)
	test -f $(SITE)/index.html || $(MAKE) book
	$(call copy_vendor,$(SITE))
	$(BIN)/python tools/slides.py $(SITE)

# Chromium: Debian's /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it),
# or the browser named by CHROMIUM=/path/to/chrome.
site-test: $(STAMP)
	test -f $(SITE)/index.html || $(MAKE) book
	$(BIN)/python -m pytest tests/test_slides.py tests/test_site_links.py tests/test_site_browser.py \
		tests/test_notebooks_site.py -m site \
		--durations=5 -p no:cacheprovider

test: $(STAMP)
	$(BIN)/python -m pytest tests companion book -m "not site" --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=300 --durations=0 -p no:cacheprovider
	@echo "All tests passed (unit tests, doctests, and every chapter in _toc.yml under nbval)."

# The download path (tests/test_notebooks_venv.py; `make test` runs it with the rest).
reader-check: $(STAMP)
	$(BIN)/python -m pytest tests/test_notebooks_venv.py --durations=0 -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest tests companion -m "not notebooks and not site" -p no:cacheprovider

# The student edition: the same site without the exercises' solutions (pages, downloads,
# notebooks and slides). It executes every chapter, like `make book`.
STUDENT := _build/student
student: $(STAMP) $(NPM_STAMP)
	rm -rf $(STUDENT) && mkdir -p $(STUDENT)
	$(BIN)/python -c "import yaml; c = yaml.safe_load(open('_config.yml')); \
		c['title'] += ' (student edition)'; c['sphinx']['config']['course_student_edition'] = True; \
		c['sphinx']['local_extensions'] = {'course_site': '$(CURDIR)/tools'}; \
		yaml.safe_dump(c, open('$(STUDENT)/_config.yml', 'w'), sort_keys=False)"
	$(BIN)/jupyter-book build . --all -W --keep-going --config $(STUDENT)/_config.yml --path-output $(STUDENT)
	$(call copy_vendor,$(STUDENT)/_build/html)
	$(BIN)/python tools/notebooks.py $(STUDENT)/_build/html --student
	$(BIN)/python tools/slides.py $(STUDENT)/_build/html
	$(BIN)/python tests/check_site.py $(STUDENT)/_build/html --student
	@echo "The student edition is in $(STUDENT)/_build/html."

clean:
	rm -rf _build
