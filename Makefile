# gptflow: `make demo` runs the whole pipeline on a local stack, `make test` runs the test suite.
# Both create .venv on first use (torch pinned through constraints.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GPTFLOW := $(VENV)/bin/gptflow
# A folder holding copies of the public files (tinyshakespeare/input.txt, tiktoken/...), searched before the internet.
export GPTFLOW_MIRROR ?= $(abspath $(wildcard ../shared/data))
# The demo: which pipelines.yaml, where the local stack keeps its state, extra `gptflow run` options for the
# training run (e.g. DEMO_RUN="-p overrides='[\"--max_iters=200\"]'") and for the chat fine-tuning (DEMO_CHAT_RUN).
CONFIG ?= pipelines.yaml
STACK_HOME := $(abspath $(or $(GPTFLOW_HOME),$(dir $(abspath $(CONFIG))).gptflow))
DEMO_RUN ?=
DEMO_CHAT_RUN ?=

export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
ifneq ($(wildcard $(GPTFLOW_MIRROR)/tiktoken),)
export TIKTOKEN_CACHE_DIR ?= $(abspath $(GPTFLOW_MIRROR)/tiktoken)
endif

.PHONY: install demo down test lint browser
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Start the local Prefect and MLflow servers and serve the deployments (gptflow up), build the demo dataset (the
# Tang poems and the bundled documents) and train on it through the deployments, printing the flows' log lines
# (gptflow run), then sample three poems from the registered model; fine-tune it on poems asked for by their titles
# (finetune-chat/demo-chat) and ask the chat model for one. The stack keeps running for the UIs; `make down` stops it.
demo: install
	$(GPTFLOW) up --config $(CONFIG) --home $(STACK_HOME)
	. $(STACK_HOME)/env && $(GPTFLOW) run build-corpus/demo
	. $(STACK_HOME)/env && $(GPTFLOW) run pretrain-gpt2/demo $(DEMO_RUN)
	. $(STACK_HOME)/env && $(GPTFLOW) sample --config $(CONFIG) --model models:/gptflow-demo@latest \
		--start "$$(printf '春望\n杜甫')" --max-new-tokens 120 --num-samples 3
	. $(STACK_HOME)/env && $(GPTFLOW) run finetune-chat/demo-chat $(DEMO_CHAT_RUN)
	. $(STACK_HOME)/env && printf '\n> 春望\n' && printf '春望\n' | $(GPTFLOW) chat --config $(CONFIG) \
		models:/gptflow-demo-chat@champion --temperature 0 --max-new-tokens 64
	. $(STACK_HOME)/env && printf '\nPrefect UI  %s\nMLflow UI   %s\nStop with   make down\n' \
		"$${PREFECT_API_URL%/api}" "$$GPTFLOW_MLFLOW_UI"

test: lint browser
	$(PY) -m pytest -q

# The UI tests drive Debian's Chromium (tests/browser.py): installed here when missing and apt-get can.
browser:
	@command -v chromium >/dev/null || [ -n "$$GPTFLOW_CHROMIUM" ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		{ echo "the UI tests need Chromium: apt-get install chromium, or GPTFLOW_CHROMIUM=<its binary>"; exit 1; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

down: install
	$(GPTFLOW) down --config $(CONFIG) --home $(STACK_HOME)
