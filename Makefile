# runbook.recovery developer entry points. `make demo` and `make test` work on a fresh machine:
# they install what is missing (Debian packages, a virtualenv from requirements-dev.lock) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements-dev.lock | cut -d' ' -f1)
COLLECTION_LINK := .ansible/collections/ansible_collections/runbook/recovery
PYTEST_WORKERS ?= 3
DAG_WORKERS ?= 3
TEST_PHASES := lint+sanity unit integration dags ui+molecule+cluster
MOLECULE_JOBS ?= 2
UV_VERSION := 0.13.8
export PATH := $(BIN):$(PATH)
export ANSIBLE_HOME := $(CURDIR)/.ansible
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.ansible/collections
export ANSIBLE_NOCOLOR := 1

.PHONY: help deps-system deps-browser venv demo airflow airflow-cluster airflow-cluster-down airflow-cluster-status ui ui-check \
	test lint unit integration dags cluster molecule sanity bench sandbox-up sandbox-down sandbox-status sandbox-env lock clean

help:
	@echo "make demo           install, start the sandbox, back up, break, and recover the demo database"
	@echo "make test           lint, sanity, unit, integration, DAG, cluster, browser and molecule tests; phase times"
	@echo "make cluster        the DAGs on the CeleryExecutor over a fleet of 30 databases (tests/cluster)"
	@echo "make ui             headless Chromium: recover_db triggered, approved and rejected in the Airflow UI"
	@echo "make airflow        Airflow standalone on 127.0.0.1:8080 with dags/, pointed at the sandbox"
	@echo "make airflow-cluster | airflow-cluster-down | airflow-cluster-status"
	@echo "                    Airflow on the CeleryExecutor (127.0.0.1:8090): api-server, scheduler, dag-processor,"
	@echo "                    triggerer, two Celery workers; metadata on the sandbox's PostgreSQL, broker its Redis"
	@echo "make ui-check       headless Chromium logs in to that UI, reads recover_db's form, runs health_sweep"
	@echo "make sandbox-up | sandbox-down | sandbox-status   (sandbox-up FLEET=3x40: also 3 servers, 40 databases each,"
	@echo "                    and their inventory, inventories/fleet)"
	@echo "make bench          backup/recovery/verification and maintenance/health sweep against the raw tools"

# Besides the servers: a C compiler, libpq headers and Python headers and venv, for the archive tools (psycopg2 is
# built from source into their own virtualenv, see roles/pg_archive/files/barman-cloud.lock); Docker (the tests start
# a daemon of their own) and a static busybox (the tests' images are built FROM scratch: no registry is reachable).
deps-system:
	@missing=""; \
	[ -x "$$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n1)" ] || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v $(PYTHON) >/dev/null || missing="$$missing python3 python3-venv"; \
	/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	command -v pg_config >/dev/null || missing="$$missing libpq-dev"; \
	[ -e "$$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || \
		missing="$$missing python3-dev"; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing="$$missing busybox-static"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# uv installs the lock (byte-compiled, as pip does: the first Airflow import of each DAG test worker otherwise
# compiles its whole import graph) in about 25 s where pip took about 100 s; pip is the fallback. Every file is
# checked against the lock's hashes (requirements-dev.lock: what runs the collection, requirements-runtime.lock,
# and what develops it).
$(STAMP): requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	{ $(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && \
	  $(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode --require-hashes \
	    -r requirements-dev.lock; } || \
	  $(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	rm -f $(VENV)/.installed-* && touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn ../../../.. $(COLLECTION_LINK)

venv: deps-system $(STAMP) $(COLLECTION_LINK)

sandbox-up: venv
	$(BIN)/python sandbox/sandbox.py up $(if $(FLEET),--fleet $(FLEET))

sandbox-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python sandbox/sandbox.py down; fi

sandbox-status: venv
	$(BIN)/python sandbox/sandbox.py status

sandbox-env: venv
	@$(BIN)/python sandbox/sandbox.py env

demo: sandbox-up
	bash sandbox/demo.sh

airflow: sandbox-up
	bash sandbox/airflow.sh

# Airflow as a fleet runs it (sandbox/airflow_cluster.py): each component a process of its own, started in the
# background and waited on until its health check passes; a second `make airflow-cluster` starts nothing new.
airflow-cluster: sandbox-up
	$(BIN)/python sandbox/airflow_cluster.py up

airflow-cluster-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python sandbox/airflow_cluster.py down; fi

airflow-cluster-status: venv
	$(BIN)/python sandbox/airflow_cluster.py status

deps-browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# The Airflow UI in a real browser, in make test: recover_db triggered from its form, its plan approved (and, in a
# second run, rejected) in Browse -> Required Actions. On failure a screenshot and the HTML land in .cache/ui-failures/.
ui: venv deps-browser
	$(BIN)/pytest tests/ui -q

# The same browser against the sandbox's `make airflow` (a look at the real thing; not part of make test).
ui-check: sandbox-up deps-browser
	$(BIN)/python tests/ui/check_airflow_ui.py

lint: venv
	$(BIN)/ruff check plugins sandbox tests bench dags
	$(BIN)/ansible-lint --offline --profile production
	$(BIN)/antsibull-changelog lint

sanity: venv
	bash tests/sanity.sh

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv
	$(BIN)/pytest tests/integration -q -n $(PYTEST_WORKERS) --dist loadfile --durations=20

dags: venv
	$(BIN)/pytest tests/dags -q -n $(DAG_WORKERS) --durations=20

# The DAGs on make airflow-cluster's CeleryExecutor over a fleet (tests/cluster): one pytest process, since the
# cluster and its servers are started once for every test of it.
cluster: venv
	$(BIN)/pytest tests/cluster -q --durations=10

# One PostgreSQL cluster, Redis and AWS emulator for every role's scenario: started once, cleaned up once (also
# when a scenario fails); logs in .ansible/molecule/. The AWS scenarios run beside the others (MOLECULE_JOBS=1: one
# at a time).
molecule: venv
	MOLECULE_JOBS=$(MOLECULE_JOBS) bash tests/molecule/run.sh

# The cluster tests mostly wait on Airflow's scheduler and Celery (270 s wall, about half a core): beside the
# browser test and molecule, which leave a core partly idle too.
# The phases in order, then a table of their wall times and busy cores (tests/phases.sh); it is printed also when a
# phase fails (the phases after it do not run). One after another where they keep both cores busy (lint took 48 s
# alone, 335 s beside the integration tests); lint beside sanity, each of which leaves part of a core idle (1.6
# and 1.5 of 2 cores alone); the browser test, which mostly waits on Airflow's scheduler (1.1 of 2 cores), beside
# molecule. Three pytest workers on 2 cores: the integration and DAG tests wait on servers, and with
# two workers a core stayed idle (integration 745 s with 2, 654 s with 3 and more tests, both cores then busy).
test: venv
	@bash tests/phases.sh $(TEST_PHASES)

bench: venv
	$(BIN)/python bench/backup_restore.py --mb $${BENCH_MB:-300}
	$(BIN)/python bench/maintenance.py
	$(BIN)/python bench/emergency.py
	$(BIN)/python bench/sealed_plan.py
	$(BIN)/python bench/log_retention.py
	$(BIN)/python bench/dag_parse.py
	$(BIN)/python bench/app_services.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/recover_rows.py

# The locks, with hashes, from the .in files: the runtime set, the whole development set (what make venv installs),
# and the archive tools of the database hosts (for their Python, Debian's 3.11). A version already pinned is kept
# unless `make lock UPGRADE=--upgrade`; review the diff.
LOCK_COMPILE = $(BIN)/uv pip compile --generate-hashes --no-header --no-annotate --quiet $(UPGRADE) \
	--python-platform x86_64-manylinux_2_28
lock: venv
	$(LOCK_COMPILE) --python-version 3.11.7 requirements-runtime.in -o requirements-runtime.lock
	$(LOCK_COMPILE) --python-version 3.11.7 requirements-dev.in -o requirements-dev.lock
	mkdir -p .cache && cp roles/pg_archive/files/barman-cloud.lock .cache/barman-cloud.lock
	echo 'barman[cloud]==3.19.1' > .cache/barman-cloud.in
	$(LOCK_COMPILE) --python-version 3.11 .cache/barman-cloud.in -o .cache/barman-cloud.lock
	{ sed -n '/^#/p' roles/pg_archive/files/barman-cloud.lock; cat .cache/barman-cloud.lock; } > .cache/barman.new
	mv .cache/barman.new roles/pg_archive/files/barman-cloud.lock

clean: sandbox-down
	rm -rf .sandbox .ansible/tmp .pytest_cache .ruff_cache
