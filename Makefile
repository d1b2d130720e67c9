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

# make install PREFIX=/usr/local (the default); DESTDIR for packaging.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share

# What snap version prints. A plain go build (no ldflags) reads the module's
# build info instead.
VERSION := $(shell git describe --always --dirty 2>/dev/null)
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)$(if $(filter %-dirty,$(VERSION)),-dirty)
LDFLAGS := -X snap/cli.version=$(VERSION) -X snap/cli.gitCommit=$(COMMIT)

.PHONY: build test vet fuzz demo bench clean install uninstall FORCE

build: $(BIN)

# The binary is rebuilt when a source or the version changes, not on every
# make: sudo make install after make installs what make built, even where
# root has no go on its PATH. Go's own cache makes a needless rebuild cheap.
$(BIN): $(wildcard $(shell git ls-files --cached --others --exclude-standard -- '*.go' 2>/dev/null || find . -name '*.go')) go.mod go.sum $(BIN).version
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/snap

# Rewritten only when the version changes (git's GIT-VERSION-FILE); left as
# it is where git cannot tell (no repository, or root in another's tree).
$(BIN).version: FORCE
	@mkdir -p $(dir $@)
	@if [ -n '$(VERSION)' ] || [ ! -e $@ ]; then \
		echo '$(VERSION) $(COMMIT)' | cmp -s - $@ || echo '$(VERSION) $(COMMIT)' > $@; fi

# Completion scripts and the man page come from the binary itself: they
# follow its commands and flags.
install: $(BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions \
		$(DESTDIR)$(DATADIR)/zsh/site-functions \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/snap
	$(BIN) __man > $(DESTDIR)$(MANDIR)/man1/snap.1
	$(BIN) completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/snap
	$(BIN) completion zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_snap
	$(BIN) completion fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/snap.fish
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/snap.1 $(DESTDIR)$(DATADIR)/bash-completion/completions/snap \
		$(DESTDIR)$(DATADIR)/zsh/site-functions/_snap $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/snap.fish

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/snap $(DESTDIR)$(MANDIR)/man1/snap.1 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/snap \
		$(DESTDIR)$(DATADIR)/zsh/site-functions/_snap \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/snap.fish

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
LIBPKGS := ./diff ./store ./sourcing ./commit ./history ./registry ./progress ./drift
.PHONY: cross
cross:
	for arch in arm64 arm; do \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) build $(LIBPKGS) && \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) vet ./diff ./sourcing ./commit ./history ./drift || exit 1; \
	done

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSparseRoundTrip$$' -fuzztime $(FUZZTIME) ./diff
	$(GO) test -run '^$$' -fuzz '^FuzzNamesRoundTrip$$' -fuzztime $(FUZZTIME) ./diff
	$(GO) test -run '^$$' -fuzz '^FuzzLayerDirStaysInside$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzLoadArchive$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzParseReference$$' -fuzztime $(FUZZTIME) ./registry
	$(GO) test -run '^$$' -fuzz '^FuzzApplyLayer$$' -fuzztime $(FUZZTIME) ./drift
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./capture

demo: build
	./internal/fixtures/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench

clean:
	rm -rf bin
