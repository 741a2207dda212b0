# Build, chain and deployment entry points. `make run` brings up everything;
# `make test` is what CI runs (.ci/run).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

export ETH_HASH_BACKEND := pysha3
export HARDHAT_DISABLE_TELEMETRY_PROMPT := true

.PHONY: setup fonts test-tools bench-tools bench compile chain stop status deploy run test test-long clean clean-chain web geth network network-stop network-status clean-network
.NOTPARALLEL:

# Installs Debian's packages named in the shell variable `missing` (as root, or through sudo); nothing when
# it is empty. The last step of a recipe that sets `missing`.
apt_install_missing = [ -z "$$missing" ] && exit 0; \
	command -v apt-get >/dev/null || { echo "missing:$$missing, and no apt-get to install them" >&2; exit 1; }; \
	sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	echo "installing Debian's$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
		&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

# Install and build steps keep their output to themselves unless they fail: `$(call quietly,cmd)`.
quietly = out=$$(mktemp); if ! { $(1); } >$$out 2>&1; then cat $$out >&2; rm -f $$out; exit 1; fi; rm -f $$out

setup: $(VENV)/.installed node_modules/.installed

# Reinstall only when pyproject.toml / package-lock.json is newer than the stamp.
$(VENV)/.installed: pyproject.toml
	@echo "installing Python packages into $(VENV)"
	@$(call quietly,test -x $(PY) || $(PYTHON) -m venv $(VENV))
	@$(call quietly,$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]')
	@$(PY) -c "from eth_hash.auto import keccak; assert keccak(b'').hex().startswith('c5d2460186f7')"
	@touch $@

# `npm ci`: exactly the locked versions, and package-lock.json is never rewritten. The lock holds every
# platform's optional Anvil package (as npm writes it), so it is in sync wherever it is installed; only
# this platform's binary is downloaded.
node_modules/.installed: package.json package-lock.json
	@echo "installing npm packages into node_modules"
	@$(call quietly,npm ci --no-audit --no-fund --loglevel=error)
	@touch $@

# The pages (web/): npm ci from web/'s own lock (quiet), then a Vite build into web/dist, which the service
# serves; rebuilt only when a source is newer than the build. No Node process at run time.
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json
web/node_modules/.installed: web/package.json web/package-lock.json
	@echo "installing npm packages into web/node_modules"
	@$(call quietly,cd web && npm ci --no-audit --no-fund --loglevel=error)
	@touch $@

web/dist/index.html: web/node_modules/.installed $(WEB_SOURCES)
	@echo "building the pages into web/dist"
	@$(call quietly,cd web && npm run --silent build -- --logLevel warn)
	@touch $@

web: web/dist/index.html

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
# zbar-tools (the certificate test renders the PDF and decodes its QR code), Chromium and a CJK font (the
# browser tests, tests/test_web.py, drive /usr/bin/chromium with Playwright).
test-tools: fonts
	@missing=; \
	pg=; for bindir in "$$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do \
		if command -v "$$bindir/initdb" >/dev/null && command -v "$$bindir/pg_ctl" >/dev/null \
			&& command -v "$$bindir/postgres" >/dev/null; then pg=1; fi; \
	done; \
	[ -n "$$pg" ] || missing="$$missing postgresql"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	command -v zbarimg >/dev/null || missing="$$missing zbar-tools"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-wqy-microhei"; \
	$(apt_install_missing)

# What the benchmark's comparison needs (`python -m scripts.bench --compare --wrk`): Debian's wrk (the C load
# generator) and PostgreSQL's server, installed here when missing (as root, or through sudo).
bench-tools:
	@missing=; command -v wrk >/dev/null || missing="$$missing wrk"; \
	pg=; for bindir in "$$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do \
		if command -v "$$bindir/initdb" >/dev/null && command -v "$$bindir/pg_ctl" >/dev/null; then pg=1; fi; \
	done; \
	[ -n "$$pg" ] || missing="$$missing postgresql"; \
	$(apt_install_missing)

# The intake comparison of docs/BENCHMARKS.md: the `make run` configuration beside one process, on SQLite and
# PostgreSQL, the single-intake load from wrk.
bench: setup compile bench-tools
	$(PY) -m scripts.bench --compare --wrk --out docs/BENCHMARKS.md

# go-ethereum's geth v1.13.15, the last release that seals Clique blocks, built from source with the Go
# toolchain on the machine (no newer one downloaded: GOTOOLCHAIN=local) into node/bin/ (not in git); the
# module cache is Go's default. Go 1.23 and later refuse the go:linkname its old dependencies use unless
# the linker's check is off (-checklinkname=0). Skipped when node/bin/geth is already that version.
GETH_VERSION := 1.13.15
GETH := node/bin/geth

geth:
	@if [ -x $(GETH) ] && $(GETH) version 2>/dev/null | grep -q '^Version: $(GETH_VERSION)-'; then exit 0; fi; \
	command -v go >/dev/null || { echo "geth needs Go (https://go.dev/dl/) to be built" >&2; exit 1; }; \
	echo "building geth v$(GETH_VERSION) into node/bin/ (a few minutes the first time)"; \
	start=$$(date +%s); \
	GOBIN=$(CURDIR)/node/bin GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=1 \
		go install -ldflags=-checklinkname=0 github.com/ethereum/go-ethereum/cmd/geth@v$(GETH_VERSION) \
	&& echo "built $$($(GETH) version | grep '^Version:') in $$(( $$(date +%s) - start )) s"

compile: setup
	@$(PY) -m scripts.compile

chain: setup
	@$(PY) -m scripts.chain start

stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.chain stop; fi

status: setup
	@$(PY) -m scripts.chain status || [ $$? -eq 3 ]

deploy: setup compile
	@$(PY) -m scripts.deploy

# The API in the foreground (Ctrl-C stops it); it prints "serving on http://..." once it answers. The
# chain keeps running until `make stop`.
# TIMEBANK_CHAIN=network: on the four-node Clique network instead of Anvil (`make network` first, or here).
TIMEBANK_CHAIN ?= anvil
ifeq ($(TIMEBANK_CHAIN),network)
NETWORK_RPC_URL = $(shell $(PY) -c 'from scripts import network as n; print(n.load().rpc_url)' 2>/dev/null)
run: setup compile web fonts network
	@echo "on the Clique network (it stays up until make network-stop); starting the API"
	@TIMEBANK_RPC_URL=$${TIMEBANK_RPC_URL:-$(NETWORK_RPC_URL)} TIMEBANK_CONFIRMATIONS=$${TIMEBANK_CONFIRMATIONS:-3} \
		TIMEBANK_ID_HASH_KEY=$${TIMEBANK_ID_HASH_KEY:-$$($(PY) -c 'from scripts.network import id_hash_key; print(id_hash_key())')} \
		TIMEBANK_RELAYER_KEY=$${TIMEBANK_RELAYER_KEY:-$$($(PY) -c 'from scripts.network import RELAYER_KEY; print(RELAYER_KEY)')} \
		$(PY) -m api
else
run: setup compile web fonts chain deploy
	@echo "the chain stays up until make stop; starting the API"
	@$(PY) -m api
endif

# Four Clique signers on loopback (scripts/network.py, data in node/network-data/), TimeBank deployed.
network: setup compile geth
	$(PY) -m scripts.network start

network-stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.network stop; fi

network-status: setup
	@$(PY) -m scripts.network status

# Stop the network and forget it: its nodes' data and keys, and the deployment record on it.
clean-network: network-stop
	rm -rf node/network-data node/deployments/31338.json

test: setup compile web test-tools geth
	$(PY) -m pytest -m "not long"

# The long fault-suite runs (pytest's `long` marker), left out of `make test` and CI.
test-long: setup compile test-tools geth
	$(PY) -m pytest -m long

# Build outputs only: the chain (node/data/) and its deployment record stay.
clean:
	rm -rf build artifacts cache .pytest_cache .hypothesis web/dist web/test-results
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

# Stop the chain and forget it: its state and the deployment record on it.
clean-chain: stop
	rm -rf node/data node/deployments/31337.json
