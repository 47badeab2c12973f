# facwatch — two commands: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Real peers the tests talk to (Debian packages): net-snmp tools + agent, mbpoll, Chromium + driver,
# Prometheus Alertmanager (the alert notifier's receiver), poppler's pdftoppm (renders the evidence PDF),
# InfluxDB 1.6 and VictoriaMetrics (the scale-out store's read and write paths).
PEER_PACKAGES := snmp snmpd mbpoll chromium chromium-driver prometheus-alertmanager poppler-utils influxdb \
	victoria-metrics
PEER_COMMANDS := snmpget snmpwalk snmptrap mbpoll chromium chromedriver prometheus-alertmanager pdftoppm influxd \
	victoria-metrics

.PHONY: demo test lint check bench peers audit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/facwatch demo

test: $(STAMP) peers lint check
	$(BIN)/pytest -q --headless

lint: $(STAMP)
	$(BIN)/ruff check .

check: $(STAMP)
	$(BIN)/facwatch check -c config/sites/demo.yaml
	$(BIN)/facwatch alerts test tests/rules/*.yaml

bench: $(STAMP) peers
	$(BIN)/python bench/run.py --out bench/results/latest.json --markdown bench/results/latest.md
	$(BIN)/python bench/bench_influx.py --out bench/results/influx.json
	$(BIN)/python bench/bench_notify.py --out bench/results/notify.json
	$(BIN)/python bench/bench_dashboard.py --out bench/results/dashboard.json
	$(BIN)/python bench/bench_scale.py --out bench/results/scale.json

# Installs the Debian peers when root and something is missing; otherwise says what to install.
peers:
	@missing=""; for c in $(PEER_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	[ -x /usr/sbin/snmpd ] || missing="$$missing snmpd"; \
	if [ -z "$$missing" ]; then echo "peers: all present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "peers: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PEER_PACKAGES) >/dev/null; \
	else echo "peers: missing$$missing — run: sudo apt-get install $(PEER_PACKAGES)"; fi

# Known vulnerabilities in the pinned dependencies (pip-audit in its own venv, so it never mixes with
# ours). --strict: a package the service cannot check is a failure, not a silent pass. Needs PyPI's
# per-version JSON API (or OSV); behind a proxy that blocks it this fails, which is why CI does not run it yet.
AUDIT_VENV ?= .venv-audit
audit: $(STAMP)
	[ -x $(AUDIT_VENV)/bin/pip-audit ] || { $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install -q "pip-audit>=2.10,<3"; }
	$(BIN)/python -m pip freeze --exclude-editable > $(VENV)/audit-requirements.txt
	$(AUDIT_VENV)/bin/pip-audit --strict --progress-spinner off --no-deps --disable-pip -r $(VENV)/audit-requirements.txt

clean:
	rm -rf $(VENV) $(AUDIT_VENV) var .pytest_cache .ruff_cache
