GO      ?= go
BIN     := bin/snap
PKGS    := ./...
# Fuzz targets run a fixed number of inputs in `make test` (a time limit can end
# mid-input and fail the run); longer by hand: make fuzz FUZZTIME=5m
FUZZTIME ?= 3000x
# libcontainer applies seccomp filters only when built with cgo and the
# seccomp tag (libseccomp-dev): every go command here gets the tag, and a
# missing C compiler fails the build instead of leaving seccomp out.
GOFLAGS := $(strip $(shell $(GO) env GOFLAGS) -tags=seccomp)
CGO_ENABLED := 1
export GOFLAGS CGO_ENABLED

.PHONY: build test vet fuzz demo bench clean

build:
	$(GO) build -o $(BIN) ./cmd/snap

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || (gofmt -l . && exit 1)

test: build vet cross
	$(GO) test -count=1 -timeout 60m $(PKGS)
	$(MAKE) fuzz

# The library packages have no cgo and build for other architectures (their
# syscall numbers come from x/sys per GOARCH); vet also compiles the tests
# of those whose tests do not reach the runtime. The runtime itself
# (container/, cli/, cmd/snap) needs cgo: libcontainer's nsenter and userns
# helpers are C.
LIBPKGS := ./diff ./store ./commit ./history
.PHONY: cross
cross:
	for arch in arm64 arm; do \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) build $(LIBPKGS) && \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) vet ./diff ./commit ./history || exit 1; \
	done

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSparseRoundTrip$$' -fuzztime $(FUZZTIME) ./diff
	$(GO) test -run '^$$' -fuzz '^FuzzNamesRoundTrip$$' -fuzztime $(FUZZTIME) ./diff
	$(GO) test -run '^$$' -fuzz '^FuzzLayerDirStaysInside$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzLoadArchive$$' -fuzztime $(FUZZTIME) ./store

demo: build
	./internal/fixtures/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench

clean:
	rm -rf bin
