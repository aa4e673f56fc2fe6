# govcloud — the two commands a newcomer needs: `make up` (platform on this machine) and `make test`.
STACK ?= local
VENV  := .venv
BIN   := $(VENV)/bin
PYTEST_FLAGS ?= -q -p no:cacheprovider

.PHONY: up down status bootstrap test lint test-unit test-integration test-e2e test-testcloud testcloud testcloud-down bench clean-ci

bootstrap:
	bash scripts/bootstrap-host.sh

up: bootstrap
	$(BIN)/govcloud up -s $(STACK)

down:
	$(BIN)/govcloud down -s $(STACK)

status:
	$(BIN)/govcloud status -s $(STACK)

## make test: everything CI runs — lint, unit, integration (podman), the OpenStack test cloud tests, the whole-platform e2e
test: bootstrap lint test-unit test-integration test-testcloud test-e2e

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

test-unit:
	$(BIN)/pytest $(PYTEST_FLAGS) -m "not podman and not e2e and not testcloud" -n 2

test-integration:
	$(BIN)/pytest $(PYTEST_FLAGS) -m "podman and not testcloud"

test-e2e:
	$(BIN)/pytest $(PYTEST_FLAGS) -m "e2e"

## the loopback OpenStack test cloud (scripts/testcloud/README.md): installs its Debian packages on first use
testcloud:
	bash scripts/testcloud/up.sh

testcloud-down:
	bash scripts/testcloud/down.sh

test-testcloud: testcloud
	$(BIN)/pytest $(PYTEST_FLAGS) -m "testcloud"

bench:
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
