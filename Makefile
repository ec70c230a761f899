# The course's commands (see README.md):
#   make book       set up .venv if needed, execute every chapter (two at a time), build the site into
#                   _build/html (with a slide deck per chapter in _build/html/slides/ and the whole
#                   book as one PDF, _build/html/course.pdf, printed by Chromium), then check it
#                   and check every chapter's CPU seconds against the budget
#   make draft      for authors: rebuild the site after an edit, executing only the chapters whose
#                   code changed since the last build (prose-only edits execute nothing)
#   make test       set up .venv if needed, run the unit tests, doctests and every chapter under nbval
#                   (two processes: chapters and unit tests run side by side)
#   make site-test  open the built site in headless Chromium (Playwright) and check every chapter
#   make slides     rebuild the slide decks and their handouts (PDF, slides and speaker notes) from
#                   the built site (builds the site first if missing)
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

# Chapters executed at a time by make book/draft/test (each chapter runs on one thread).
JOBS       ?= 2
# CPU seconds (user + system of its kernel) each chapter may take (tools/cpu_report.py).
CPU_BUDGET ?= 75
# jupyter-book, with Sphinx reading and writing pages $(JOBS) at a time.
JUPYTER_BOOK := $(BIN)/python tools/jupyter_book_jobs.py --jobs $(JOBS)

.PHONY: book draft test unit slides site-test student clean install reader-check

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The JavaScript the site serves itself (MathJax, reveal.js, the ipywidgets manager,
# require.js, and axe-core for the accessibility audit of make site-test), installed from
# the npm registry at the versions in vendor/package-lock.json.
NODE_MODULES := vendor/node_modules
NPM_STAMP    := $(NODE_MODULES)/.installed

$(NPM_STAMP): vendor/package.json vendor/package-lock.json
	npm ci --prefix vendor --no-audit --no-fund --loglevel=error --ignore-scripts
	touch $(NPM_STAMP)

# Copy it into a built site ($(1)), outside _static/ (Jupyter Book adds every file
# under _static/ to every page).
define copy_vendor
	rm -rf $(1)/_vendor && mkdir -p $(1)/_vendor/mathjax $(1)/_vendor/reveal.js $(1)/_vendor/requirejs $(1)/_vendor/html-manager $(1)/_vendor/axe-core
	cd $(NODE_MODULES)/mathjax/es5 && cp -r tex-chtml.js input output ui a11y sre $(CURDIR)/$(1)/_vendor/mathjax/
	cp -r $(NODE_MODULES)/reveal.js/dist $(NODE_MODULES)/reveal.js/LICENSE $(1)/_vendor/reveal.js/
	cp $(NODE_MODULES)/requirejs/require.js $(1)/_vendor/requirejs/
	cp $(NODE_MODULES)/axe-core/axe.min.js $(NODE_MODULES)/axe-core/LICENSE $(1)/_vendor/axe-core/
	cd $(NODE_MODULES)/@jupyter-widgets/html-manager/dist && cp embed-amd.js *.woff *.woff2 *.ttf *.eot *.svg $(CURDIR)/$(1)/_vendor/html-manager/
endef

# tools/execute.py executes the chapters $(JOBS) at a time into myst-nb's jupyter-cache and
# measures each; the site build then takes every output from the cache (_config.yml).
book: $(STAMP) $(NPM_STAMP)
	rm -rf $(SITE) _build/.doctrees _build/jupyter_execute _build/.jupyter_cache
	$(BIN)/python tools/execute.py --jobs $(JOBS)
	$(JUPYTER_BOOK) build . --all -W --keep-going
	$(call copy_vendor,$(SITE))
	$(BIN)/python tools/notebooks.py $(SITE)
	$(BIN)/python tools/slides.py $(SITE) --handouts
	$(BIN)/python tools/book_pdf.py $(SITE)
	$(BIN)/python tests/check_site.py $(SITE)
	$(BIN)/python tools/cpu_report.py --limit $(CPU_BUDGET)
	@echo "The site is in $(SITE) (open $(SITE)/index.html; slides in $(SITE)/slides/; the book as a PDF: $(SITE)/course.pdf)."

# For authors, after an edit: executes only the chapters whose code cells changed since
# they were last executed into the cache (not a change in companion/: use make book), then
# rebuilds only the pages that changed. CI and make book always execute everything.
draft: $(STAMP) $(NPM_STAMP)
	$(BIN)/python tools/execute.py --jobs $(JOBS) --changed-only
	$(JUPYTER_BOOK) build . -W --keep-going
	$(call copy_vendor,$(SITE))
	$(BIN)/python tools/notebooks.py $(SITE)
	$(BIN)/python tools/slides.py $(SITE) --handouts
	$(BIN)/python tools/cpu_report.py --limit $(CPU_BUDGET) --warn-only
	@echo "The site is in $(SITE) (open $(SITE)/index.html)."

slides: $(STAMP) $(NPM_STAMP)
	test -f $(SITE)/index.html || $(MAKE) book
	$(call copy_vendor,$(SITE))
	$(BIN)/python tools/slides.py $(SITE) --handouts

# Chromium: Debian's /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it),
# or the browser named by CHROMIUM=/path/to/chrome.
site-test: $(STAMP)
	test -f $(SITE)/index.html || $(MAKE) book
	$(BIN)/python -m pytest tests/test_slides.py tests/test_site_links.py tests/test_site_browser.py \
		tests/test_notebooks_site.py tests/test_book_pdf.py -m site \
		--durations=5 -p no:cacheprovider

# pytest-xdist: $(JOBS) processes, each taking a whole file at a time (a chapter's cells share
# one kernel); the chapters first, longest first (conftest.py), the unit tests fill in.
test: $(STAMP)
	$(BIN)/python -m pytest tests companion book -m "not site" --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=300 --durations=0 -p no:cacheprovider \
		-n $(JOBS) --dist loadfile --no-loadscope-reorder
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
	$(BIN)/python tools/execute.py --jobs $(JOBS) --cache $(STUDENT)/_build/.jupyter_cache
	$(JUPYTER_BOOK) build . --all -W --keep-going --config $(STUDENT)/_config.yml --path-output $(STUDENT)
	$(call copy_vendor,$(STUDENT)/_build/html)
	$(BIN)/python tools/notebooks.py $(STUDENT)/_build/html --student
	$(BIN)/python tools/slides.py $(STUDENT)/_build/html --handouts
	$(BIN)/python tools/book_pdf.py $(STUDENT)/_build/html
	$(BIN)/python tests/check_site.py $(STUDENT)/_build/html --student
	@echo "The student edition is in $(STUDENT)/_build/html."

clean:
	rm -rf _build
