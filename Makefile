# `make`: mcastfs built for installing: release, with the Swift runtime
# linked in (--static-swift-stdlib), so that a machine without Swift runs it;
# it needs libfuse3, libstdc++ and glibc only.
# `make install` (PREFIX=/usr/local, DESTDIR honoured): the binary, its man
# pages, the systemd template service and an example mount unit.
# `make uninstall` removes exactly those. `make deb`: dist/mcastfs_VERSION_ARCH.deb.
#
# `make bench`: the benchmark suite (Benchmarks/README.md). Installs what it
# needs, builds mcastfs in release, mounts it and its anchors, prints one table
# and writes results/bench.json. About 7.5 minutes on 2 cores, and ~1.5 more
# for the cluster scenario when nats-server is installed.
.PHONY: all build install install-strip uninstall deb bench bench-profile

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/mcastfs
# systemd reads /usr/local/lib/systemd/system as well as /lib/systemd/system.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install
INSTALL_PROGRAM ?= $(INSTALL) -m 0755
INSTALL_DATA ?= $(INSTALL) -m 0644

# Swift from PATH, else from /opt/swift (as scripts/env.sh does).
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
# No $ORIGIN run path: the binary is installed alone, beside no library of ours.
SWIFT_FLAGS = -c release --static-swift-stdlib --disable-local-rpath
BIN = .build/release/mcastfs

# What install puts, relative to DESTDIR; uninstall removes these and
# nothing else (the directories that only mcastfs uses, when empty).
INSTALLED = $(BINDIR)/mcastfs \
	$(MANDIR)/man8/mcastfs.8 \
	$(MANDIR)/man5/mcastfs.5 \
	$(SYSTEMDUNITDIR)/mcastfs@.service \
	$(DOCDIR)/examples/mnt-mcastfs.mount

all: build

build:
	$(SWIFT) build $(SWIFT_FLAGS) --product mcastfs

install: build
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL_PROGRAM) $(BIN) $(DESTDIR)$(BINDIR)/mcastfs
	$(INSTALL_DATA) man/mcastfs.8 $(DESTDIR)$(MANDIR)/man8/mcastfs.8
	$(INSTALL_DATA) man/mcastfs.5 $(DESTDIR)$(MANDIR)/man5/mcastfs.5
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/mcastfs@.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/mcastfs@.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/mcastfs@.service
	$(INSTALL_DATA) packaging/mnt-mcastfs.mount $(DESTDIR)$(DOCDIR)/examples/mnt-mcastfs.mount

# The same with the binary stripped (16 MB instead of 30).
install-strip:
	$(MAKE) install INSTALL_PROGRAM='$(INSTALL_PROGRAM) -s'

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

deb: build
	packaging/build-deb

# The suite, then its cluster scenario (Benchmarks/suite/cluster.py: bare
# libnats and the mount's cluster mode on a nats-server it starts), whose rows
# it adds to results/bench.json; skipped, with one line, without nats-server.
bench:
	Benchmarks/suite/run
	@if command -v nats-server >/dev/null 2>&1; then \
		Benchmarks/suite/cluster.py --merge results/bench.json $(BIN); \
	else \
		echo "bench: cluster scenario skipped: nats-server is not on PATH (apt-get install nats-server)"; \
	fi

# The same, plus perf profiles (cpu-clock) of mcastfs in the 1->16 stream and paced runs
# (record view) and the 1->16 framed stream.
bench-profile:
	BENCH_PROFILE=1 Benchmarks/suite/run
