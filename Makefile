# StarPay. Two commands: `make run` and `make test`; the rest are their steps.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP_LOG := var/pip-install.log

.PHONY: help run test system venv asterisk prompts db lint bench clean

help:
	@echo "make run    set everything up, then run Asterisk + the StarPay service"
	@echo "make test   set everything up, then run the whole test suite (real Asterisk, PostgreSQL)"
	@echo "make bench  run the benchmarks in benchmarks/"
	@echo "make lint   ruff, then mypy (types)"

system:
	@bash scripts/system-deps.sh

# pip and setuptools talk a lot; their output goes to PIP_LOG, shown only when pip fails.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(dir $(PIP_LOG))
	@echo "python packages: installing (log: $(PIP_LOG))"
	@{ $(BIN)/python -m pip install --disable-pip-version-check --upgrade pip && \
	   $(BIN)/python -m pip install --disable-pip-version-check -e '.[test]'; } \
	   >$(PIP_LOG) 2>&1 || { \
	  echo "python packages: pip failed; the last lines of $(PIP_LOG):"; \
	  tail -n 25 $(PIP_LOG); \
	  echo "hint: the first ERROR line in the log says what failed (a package pip could not"; \
	  echo "      find or build, or no network). Fix that, then run 'make venv' again."; \
	  exit 1; }
	@touch $@
	@echo "python packages: done"

venv: $(STAMP)

asterisk: system
	@bash scripts/asterisk-root.sh

prompts: venv system
	@$(BIN)/ivr prompts build

db: venv
	@$(BIN)/ivr db upgrade
	@$(BIN)/ivr db seed --demo

run: system venv asterisk prompts db
	@bash scripts/run.sh

test: system venv asterisk prompts
	@STARPAY_REQUIRE_REAL=1 $(BIN)/python -m pytest -q -p no:cacheprovider

lint: venv
	@$(BIN)/ruff check ivr tests benchmarks
	@$(BIN)/mypy

bench: venv asterisk
	@$(BIN)/python benchmarks/agi_sessions.py
	@$(BIN)/python benchmarks/payments.py
	@$(BIN)/python benchmarks/call_storage.py
	@$(BIN)/python benchmarks/jobs.py
	@$(BIN)/python benchmarks/bulk.py

clean:
	rm -rf $(VENV) var prompts/build
