# Build, chain and deployment entry points. `make run` brings up everything;
# `make test` is what CI runs (.ci/run).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

export ETH_HASH_BACKEND := pysha3
export HARDHAT_DISABLE_TELEMETRY_PROMPT := true

.PHONY: setup fonts test-tools compile chain stop status deploy run test test-long clean clean-chain
.NOTPARALLEL:

setup: $(VENV)/.installed node_modules/.installed

# Reinstall only when pyproject.toml / package-lock.json is newer than the stamp.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "from eth_hash.auto import keccak; assert keccak(b'').hex().startswith('c5d2460186f7')"
	touch $@

# `npm install`, not `npm ci`: the lock holds only the Linux x64 Anvil binary
# (the registry reachable here serves no other platform's), which `npm ci`
# rejects as out of sync. With this lock `npm install` installs exactly the
# locked versions and leaves package-lock.json unchanged.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund
	touch $@

# Debian's Chinese TrueType font, embedded (a subset) in the certificate PDFs (api/certificates.py), when
# missing: the service needs it to run, the tests to test.
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
fonts:
	@[ -f "$(CJK_FONT)" ] || [ -n "$$TIMEBANK_CJK_FONT" ] && exit 0; \
	command -v apt-get >/dev/null || { echo "missing: fonts-wqy-microhei, and no apt-get to install it (or set TIMEBANK_CJK_FONT)" >&2; exit 1; }; \
	sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	echo "installing Debian's fonts-wqy-microhei"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
		&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fonts-wqy-microhei

# Debian packages the tests use, installed here when missing (as root, or through sudo), else nothing:
# PostgreSQL's server (the store's tests start their own cluster, scripts/postgres.py), poppler-utils and
# zbar-tools (the certificate test renders the PDF and decodes its QR code).
test-tools: fonts
	@missing=; \
	pg=; for bindir in "$$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do \
		if command -v "$$bindir/initdb" >/dev/null && command -v "$$bindir/pg_ctl" >/dev/null \
			&& command -v "$$bindir/postgres" >/dev/null; then pg=1; fi; \
	done; \
	[ -n "$$pg" ] || missing="$$missing postgresql"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	command -v zbarimg >/dev/null || missing="$$missing zbar-tools"; \
	[ -z "$$missing" ] && exit 0; \
	command -v apt-get >/dev/null || { echo "missing:$$missing, and no apt-get to install them" >&2; exit 1; }; \
	sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	echo "installing Debian's$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
		&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

compile: setup
	$(PY) -m scripts.compile

chain: setup
	$(PY) -m scripts.chain start

stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.chain stop; fi

status: setup
	@$(PY) -m scripts.chain status || [ $$? -eq 3 ]

deploy: setup compile
	$(PY) -m scripts.deploy

# The API in the foreground (Ctrl-C stops it); the chain keeps running until `make stop`.
run: setup compile fonts chain deploy
	@echo "TimeBank at $$($(PY) -c 'import json; print(json.load(open("node/deployments/31337.json"))["address"])'); API on http://$${TIMEBANK_HOST:-127.0.0.1}:$${TIMEBANK_PORT:-8000} (docs at /docs); the chain stays up until make stop"
	$(PY) -m api

test: setup compile test-tools
	$(PY) -m pytest -m "not long"

# The long fault-suite runs (pytest's `long` marker), left out of `make test` and CI.
test-long: setup compile test-tools
	$(PY) -m pytest -m long

# Build outputs only: the chain (node/data/) and its deployment record stay.
clean:
	rm -rf build artifacts cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

# Stop the chain and forget it: its state and the deployment record on it.
clean-chain: stop
	rm -rf node/data node/deployments/31337.json
