# 西湖码平台: `make demo` sets up and serves on SQLite with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export XIHU_HOST ?= 127.0.0.1
export XIHU_PORT ?= 8000

.PHONY: demo test install lint e2e-deps serve worker clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	XIHU_DEMO=1 $(BIN)/xihu demo

serve: $(STAMP)
	$(BIN)/xihu serve

worker: $(STAMP)
	$(BIN)/xihu worker

# Debian packages: Chromium for the browser tests, CJK fonts (screenshots and PDFs), Pango for the PDF briefs
# (weasyprint), poppler-utils (pdftotext) to read the PDFs back in tests.
SYSTEM_PACKAGES := chromium fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 poppler-utils
e2e-deps:
	@test -x /usr/bin/chromium && command -v pdftotext >/dev/null && fc-list | grep -qi "noto.*cjk" \
	  && ldconfig -p | grep -q libpangoft2 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)) \
	    || echo "system packages could not be installed: browser and PDF tests will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite runs on SQLite, and again on PostgreSQL when XIHU_TEST_DATABASE_URL is set.
test: $(STAMP) e2e-deps lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile
	@if [ -n "$$XIHU_TEST_DATABASE_URL" ]; then \
	  echo "== again on PostgreSQL ($$XIHU_TEST_DATABASE_URL)"; \
	  XIHU_TEST_BACKEND=postgresql $(BIN)/python -m pytest -q -n 2 --dist loadfile; \
	fi

bench: $(STAMP)
	$(BIN)/python bench/intake.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
