# gptflow: `make demo` runs the quickstart end to end, `make test` runs the test suite.
# Both create .venv on first use (torch pinned through constraints.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A folder holding copies of the public files (tinyshakespeare/input.txt, tiktoken/...), searched before the internet.
GPTFLOW_MIRROR ?= $(wildcard ../shared/data)
SHAKESPEARE_URL := https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
SHAKESPEARE_SHA256 := 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed

export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
ifneq ($(wildcard $(GPTFLOW_MIRROR)/tiktoken),)
export TIKTOKEN_CACHE_DIR ?= $(abspath $(GPTFLOW_MIRROR)/tiktoken)
endif

.PHONY: install demo test lint clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

data/tinyshakespeare.txt:
	mkdir -p data
	if [ -f "$(GPTFLOW_MIRROR)/tinyshakespeare/input.txt" ]; then \
		cp "$(GPTFLOW_MIRROR)/tinyshakespeare/input.txt" $@.part; \
	else \
		curl -fsSL -o $@.part $(SHAKESPEARE_URL); \
	fi
	echo "$(SHAKESPEARE_SHA256)  $@.part" | sha256sum --check --quiet
	mv $@.part $@

# Prepare the characters of Tiny Shakespeare, train the CPU recipe (a few minutes on 2 cores), then sample.
demo: install data/tinyshakespeare.txt
	$(PY) -m gpt.prepare_text data/tinyshakespeare.txt --tokenizer char --out data/shakespeare_char
	if ls runs/shakespeare-char-cpu/step-*/COMPLETE >/dev/null 2>&1; then init=resume; else init=scratch; fi; \
		$(PY) -m gpt.train shakespeare-char-cpu --init_from=$$init --log_interval=100
	$(PY) -m gpt.sample --ckpt runs/shakespeare-char-cpu --start "ROMEO:" --num-samples 2 --max-new-tokens 300

test: lint
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf runs data/shakespeare_char
