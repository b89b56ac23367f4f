# Berth's entry points. The two a newcomer needs:
#   make run   set up this machine (Docker, CNI, test images) and serve CRI
#   make test  set up, vet, and run every test against real Docker
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
GO ?= go
BIN := bin/berth
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X github.com/berth-cri/berth/internal/version.Version=$(VERSION) -X github.com/berth-cri/berth/internal/version.GitCommit=$(COMMIT)
E2E_TIMEOUT ?= 40m
NFPM_VERSION ?= v2.45.2
# Debian versions start with a digit: untagged builds become 0.0.0~git<hash>.
ifndef DEB_VERSION
DEB_VERSION := $(shell v=$(VERSION); v=$${v#v}; case $$v in ([0-9]*) ;; (*) v=0.0.0~git$$v;; esac; echo $$v | tr '-' '~')
endif
DEB_ARCH ?= $(shell $(GO) env GOARCH)
RUN_ARGS ?=

.PHONY: all build setup run test vet unit e2e doctor-test test-migrate deb deb-test fmt clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/berth

setup:
	hack/setup.sh

run: setup build
	@echo "berth: serving CRI on unix:///run/berth/berth.sock"
	@echo "berth: point kubelet at it with --container-runtime-endpoint=unix:///run/berth/berth.sock,"
	@echo "berth: or try: crictl --runtime-endpoint unix:///run/berth/berth.sock info"
	$(BIN) serve $(RUN_ARGS)

test: setup vet unit deb-test e2e doctor-test

vet:
	@out=$$(gofmt -l cmd internal test); if [[ -n $$out ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

e2e:
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/ 2>&1 | hack/test-summary.sh

# berth doctor against real set-ups: kubelet files, CNI configurations,
# private Docker daemons, socket holders (about a minute).
doctor-test:
	$(GO) test -count=1 -timeout 10m -v ./test/doctor/ 2>&1 | hack/test-summary.sh

# berth migrate end to end against a real kube-apiserver and etcd. Not part
# of `make test`: the first run builds kube-apiserver (10-15 minutes on two
# cores, then cached in ~/.cache/berth/); later runs take about a minute.
test-migrate: setup
	hack/setup-migrate.sh
	$(GO) test -count=1 -timeout 30m -v ./test/migrate/ 2>&1 | hack/test-summary.sh

# The Debian package (binary, systemd units, default config, docs), built
# with nfpm from the Go module proxy: dist/berth_<version>_<arch>.deb.
deb:
	rm -rf dist/pkg dist/berth_*.deb && mkdir -p dist/pkg
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/pkg/berth ./cmd/berth
	dist/pkg/berth config default > dist/pkg/config.toml
	BERTH_DEB_VERSION=$(DEB_VERSION) BERTH_DEB_ARCH=$(DEB_ARCH) \
		$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package \
		--config packaging/nfpm.yaml --packager deb --target dist/berth_$(DEB_VERSION)_$(DEB_ARCH).deb

# Builds the package and inspects it: contents, control fields, maintainer
# scripts, and the unit files through systemd-analyze verify.
deb-test: deb
	hack/check-deb.sh dist/berth_$(DEB_VERSION)_$(DEB_ARCH).deb

fmt:
	gofmt -w cmd internal test

clean:
	rm -rf bin dist
