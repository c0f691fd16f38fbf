# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed here.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PYTEST_FLAGS ?=

.PHONY: install data run lint test test-all clean

install: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package where apt is usable; elsewhere
# genssl finds it under data.root or downloads it through torchvision.
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
			|| echo "warning: could not install dataset-fashion-mnist; genssl will try data.root or a download"; \
	fi

# The showcase: SimVAE, VAE and SimCLR trained briefly on styled Fashion-MNIST (random colour, position
# and scale per image, recorded as style factors), each evaluated beside its untrained network, and one
# report comparing what they keep of content and of style.
SHOWCASE := outputs/showcase
run: install
	rm -rf $(SHOWCASE)
	$(VENV)/bin/genssl-train -m method=simvae,vae,simclr data=fashion_mnist data.styled=true \
		data.train_subset=10000 data.test_subset=5000 trainer.max_epochs=2 logger=none \
		hydra.sweep.dir=$(SHOWCASE)/runs
	$(PY) -m genssl.eval.summary $(SHOWCASE)/runs/*
	$(VENV)/bin/genssl-report runs=$(SHOWCASE)/runs out=$(SHOWCASE)/report
	@echo "Report: $(CURDIR)/$(SHOWCASE)/report/report.html"

# ruff first (lint, import order, formatting), then the suite.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_FLAGS)

# The browser test opens the HTML report in headless Chromium; install it where apt is usable, else
# that test skips itself.
test-all: install lint
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
		&& command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "Installing Chromium (Debian package chromium) for the report's browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "warning: could not install chromium; the browser test will be skipped"; \
	fi
	$(VENV)/bin/pytest -q $(PYTEST_FLAGS)

clean:
	rm -rf outputs multirun .pytest_cache
