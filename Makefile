# socketnautd: plain Makefile.  `make run` and `make check` first install
# missing Debian build and test dependencies (tools/install-deps).

VERSION		= 0.1.0
PREFIX		?= /usr/local
SBINDIR		?= $(PREFIX)/sbin
BINDIR		?= $(PREFIX)/bin
# FHS: a system install (PREFIX=/usr) reads its configuration from /etc.
ifeq ($(PREFIX),/usr)
SYSCONFDIR	?= /etc
else
SYSCONFDIR	?= $(PREFIX)/etc
endif
MANDIR		?= $(PREFIX)/share/man
UNITDIR		?= $(PREFIX)/lib/systemd/system
DESTDIR		?=

CC		?= cc
PKG_CONFIG	?= pkg-config
CFLAGS		?= -O2 -g
WARN		= -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
		  -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS	= -std=gnu11 -D_GNU_SOURCE $(WARN) $(CPPFLAGS) $(CFLAGS) -Isrc \
		  -Iinclude -DSN_CONFIG_PATH='"$(SN_CONFIG_PATH)"'
SN_CONFIG_PATH	= $(SYSCONFDIR)/socketnaut.conf
LIBS		= $(shell $(PKG_CONFIG) --libs libevent libconfuse openssl 2>/dev/null || echo -levent -lconfuse -lssl -lcrypto) -pthread
CHECK_LIBS	= $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

ifeq ($(SANITIZE),1)
BUILD		?= build-san
ALL_CFLAGS	+= -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=undefined
LDFLAGS		+= -fsanitize=address,undefined
else
BUILD		?= build
endif

DAEMON_SRCS	= src/accesslog.c src/cgroup.c src/config.c src/control.c \
		  src/counters.c src/handoff.c src/health.c src/keeper.c src/stats.c \
		  src/listener.c src/log.c src/proto.c src/proxy.c src/relay.c \
		  src/sdnotify.c src/service.c src/sockdir.c src/status.c \
		  src/spawner.c src/upgrade.c src/util.c src/worker.c src/output.c \
		  src/pidfile.c src/tcpowner.c
DAEMON_SRCS	+= src/tls.c src/tlskeys.c src/ocsp.c
DAEMON_OBJS	= $(DAEMON_SRCS:src/%.c=$(BUILD)/%.o)
UNIT_SRCS	= $(wildcard tests/unit/*.c)
UNIT_OBJS	= $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%.o)

all: $(BUILD)/socketnautd $(BUILD)/socketnautctl $(BUILD)/socketnaut-hello lib

$(BUILD)/%.o: src/%.c $(wildcard src/*.h include/socketnaut/*.h) Makefile \
    $(BUILD)/paths.stamp
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The paths compiled in (SN_CONFIG_PATH), rewritten only when they change:
# `make install PREFIX=/usr` after a plain `make` rebuilds what names them.
$(BUILD)/paths.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo 'SN_CONFIG_PATH=$(SN_CONFIG_PATH)' | cmp -s - $@ || \
	    echo 'SN_CONFIG_PATH=$(SN_CONFIG_PATH)' > $@

FORCE:

$(BUILD)/socketnautd: $(DAEMON_OBJS) $(BUILD)/admin.o $(BUILD)/socketnautd.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The admin client: the admin socket's framing (src/admin.h) and libc only.
$(BUILD)/socketnautctl: src/socketnautctl.c src/admin.h Makefile
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ src/socketnautctl.c

$(BUILD)/socketnaut-hello: examples/hello/socketnaut-hello.c Makefile
	@mkdir -p $(BUILD)
	$(CC) -std=gnu11 $(WARN) $(CPPFLAGS) $(CFLAGS) \
	    $(filter -fsanitize%,$(ALL_CFLAGS)) \
	    $(LDFLAGS) -o $@ examples/hello/socketnaut-hello.c

$(BUILD)/unit/%.o: tests/unit/%.c $(wildcard src/*.h) Makefile
	@mkdir -p $(BUILD)/unit
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/unit-tests: $(UNIT_OBJS) $(DAEMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

# libFuzzer on the control-message parser: briefly in `make test`, longer here.
FUZZ_CC		?= clang
FUZZ_SECONDS	?= 60
$(BUILD)/fuzz-proto: tests/fuzz/fuzz_proto.c src/proto.c include/socketnaut/proto.h
	@mkdir -p $(BUILD)
	$(FUZZ_CC) -g -O1 -std=gnu11 -Iinclude -fsanitize=fuzzer,address,undefined \
	    -o $@ tests/fuzz/fuzz_proto.c src/proto.c

$(BUILD)/fuzz-proxy: tests/fuzz/fuzz_proxy.c src/proxy.c src/proxy.h
	@mkdir -p $(BUILD)
	$(FUZZ_CC) -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc \
	    -fsanitize=fuzzer,address,undefined -o $@ tests/fuzz/fuzz_proxy.c src/proxy.c

fuzz: $(BUILD)/fuzz-proto $(BUILD)/fuzz-proxy
	@mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz-corpus-proxy
	$(BUILD)/fuzz-proto -max_total_time=$(FUZZ_SECONDS) -max_len=9000 \
	    $(BUILD)/fuzz-corpus tests/fuzz/corpus
	$(BUILD)/fuzz-proxy -max_total_time=$(FUZZ_SECONDS) -max_len=600 \
	    $(BUILD)/fuzz-corpus-proxy tests/fuzz/corpus-proxy

fuzz-brief: $(BUILD)/fuzz-proto $(BUILD)/fuzz-proxy
	@mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz-corpus-proxy
	@$(BUILD)/fuzz-proto -runs=2000000 -max_total_time=10 -max_len=9000 \
	    $(BUILD)/fuzz-corpus tests/fuzz/corpus > $(BUILD)/fuzz.log 2>&1 || \
	    { tail -n 40 $(BUILD)/fuzz.log; exit 1; }
	@echo "fuzz: $$(tail -n 1 $(BUILD)/fuzz.log)"
	@$(BUILD)/fuzz-proxy -runs=1000000 -max_total_time=5 -max_len=600 \
	    $(BUILD)/fuzz-corpus-proxy tests/fuzz/corpus-proxy \
	    > $(BUILD)/fuzz-proxy.log 2>&1 || \
	    { tail -n 40 $(BUILD)/fuzz-proxy.log; exit 1; }
	@echo "fuzz proxy: $$(tail -n 1 $(BUILD)/fuzz-proxy.log)"

deps:
	@sh tools/install-deps

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(BUILD)/run
	RUNTIME_DIRECTORY=$(CURDIR)/$(BUILD)/run PATH="$(CURDIR)/$(BUILD):$$PATH" \
	    $(BUILD)/socketnautd -c etc/socketnaut.conf

check: deps
	@$(MAKE) --no-print-directory all $(BUILD)/unit-tests
	@$(MAKE) --no-print-directory test

# The suite alone, without the dependency step.
test: all $(BUILD)/unit-tests
	cd tests/unit && CK_FORK=yes ../../$(BUILD)/unit-tests
	SOCKETNAUTD=$(CURDIR)/$(BUILD)/socketnautd SN_BUILD=$(CURDIR)/$(BUILD) \
	    python3 tests/integration/run.py
	@$(MAKE) --no-print-directory lib-check
	BUILD=$(BUILD) sh tests/install/install.sh
	sh tests/install/deb.sh
	sh tests/install/unit.sh $(BUILD)
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory fuzz-brief

# One style across the tree, kept by .clang-format.
format:
	clang-format -i $$(git ls-files '*.c' '*.h')

lint:
	@if command -v clang-format >/dev/null && [ -e .git ]; then \
	    clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h') && \
	    echo "C sources: clang-format clean"; fi
	@if command -v mypy >/dev/null; then \
	    mypy --strict --python-version 3.8 agents/python/socketnaut_agent.py; \
	else echo "mypy not installed: the Python agent's types not checked"; fi
	@if command -v mandoc >/dev/null; then \
	    mandoc -T lint -W warning man/*.[0-9] && echo "man pages: lint clean"; \
	else echo "mandoc not installed: man pages not linted"; fi
	PATH="$(CURDIR)/$(BUILD):$$PATH" $(BUILD)/socketnautd -t -c etc/socketnaut.conf
	@if command -v systemd-analyze >/dev/null; then \
	    mkdir -p $(BUILD)/man/man5 $(BUILD)/man/man8 && \
	    cp man/socketnaut.conf.5 $(BUILD)/man/man5/ && \
	    cp man/socketnautd.8 man/socketnautctl.8 $(BUILD)/man/man8/ && \
	    sed -e 's|@SBINDIR@|$(CURDIR)/$(BUILD)|g' \
	        -e 's|@SYSCONFDIR@|$(CURDIR)/etc|g' \
	        systemd/socketnautd.service.in > $(BUILD)/socketnautd.service && \
	    MANPATH=$(CURDIR)/$(BUILD)/man systemd-analyze verify \
	        $(BUILD)/socketnautd.service && \
	    echo "systemd unit: systemd-analyze verify clean"; \
	else echo "systemd-analyze not installed: unit not verified"; fi

install: all install-lib install-agents
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/socketnautd $(DESTDIR)$(SBINDIR)/socketnautd
	install -m 755 $(BUILD)/socketnautctl $(DESTDIR)$(SBINDIR)/socketnautctl
	install -m 755 $(BUILD)/socketnaut-hello \
	    $(DESTDIR)$(BINDIR)/socketnaut-hello
	install -m 644 man/socketnaut-hello.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/socketnautd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/socketnautctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/socketnaut.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/socketnaut-agent.7 $(DESTDIR)$(MANDIR)/man7/
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    systemd/socketnautd.service.in > $(DESTDIR)$(UNITDIR)/socketnautd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/socketnautd.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/socketnaut.conf ]; then \
	    echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/socketnaut.conf"; \
	else install -m 644 etc/socketnaut.conf \
	    $(DESTDIR)$(SYSCONFDIR)/socketnaut.conf; fi
	install -d $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/logrotate.d/socketnautd ]; then \
	    echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/logrotate.d/socketnautd"; \
	else install -m 644 etc/logrotate.d/socketnautd \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d/socketnautd; fi

uninstall: uninstall-lib uninstall-agents
	rm -f $(DESTDIR)$(SBINDIR)/socketnautd \
	    $(DESTDIR)$(SBINDIR)/socketnautctl \
	    $(DESTDIR)$(MANDIR)/man8/socketnautctl.8 \
	    $(DESTDIR)$(BINDIR)/socketnaut-hello \
	    $(DESTDIR)$(MANDIR)/man1/socketnaut-hello.1 \
	    $(DESTDIR)$(MANDIR)/man8/socketnautd.8 \
	    $(DESTDIR)$(MANDIR)/man5/socketnaut.conf.5 \
	    $(DESTDIR)$(MANDIR)/man7/socketnaut-agent.7 \
	    $(DESTDIR)$(UNITDIR)/socketnautd.service \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d/socketnautd
	@echo "$(DESTDIR)$(SYSCONFDIR)/socketnaut.conf left in place"

clean:
	rm -rf build build-san

.PHONY: all deps run check test lint format fuzz fuzz-brief install uninstall clean bench \
    install-agents uninstall-agents

# Side-by-side benchmark against HAProxy and nginx (bench/README); writes
# bench/RESULTS.md.  BENCH_ARGS passes options to bench/run.py.
bench: all
	python3 bench/run.py $(BENCH_ARGS)

# libsocketnaut ##############################################################
# The C agent library (lib/, include/socketnaut.h, socketnaut(3)), linked
# with the shared wire format code of src/proto.c; its tests (tests/lib/);
# the C example worker (examples/c-logger/).

# Debian's multiarch directory (lib/x86_64-linux-gnu) where there is one.
ifeq ($(origin LIBDIR),undefined)
MULTIARCH	:= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || \
		     $(CC) -print-multiarch 2>/dev/null)
LIBDIR		= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
endif
INCLUDEDIR	?= $(PREFIX)/include
PKGCONFIGDIR	?= $(LIBDIR)/pkgconfig
AR		?= ar
LIB_SONAME	= libsocketnaut.so.0
LIB_OBJS	= $(BUILD)/lib/agent.o $(BUILD)/lib/proto.o
LIB_HDRS	= include/socketnaut.h include/socketnaut/proto.h

$(BUILD)/lib/agent.o: lib/agent.c $(LIB_HDRS) Makefile
	@mkdir -p $(BUILD)/lib
	$(CC) $(ALL_CFLAGS) -fPIC -c -o $@ lib/agent.c

$(BUILD)/lib/proto.o: src/proto.c $(LIB_HDRS) Makefile
	@mkdir -p $(BUILD)/lib
	$(CC) $(ALL_CFLAGS) -fPIC -c -o $@ src/proto.c

$(BUILD)/libsocketnaut.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJS)

# Only sn_agent_* and sn_proto_* are exported (lib/socketnaut.map).
$(BUILD)/libsocketnaut.so.0: $(LIB_OBJS) lib/socketnaut.map
	$(CC) -shared -Wl,-soname,$(LIB_SONAME) \
	    -Wl,--version-script=lib/socketnaut.map -Wl,-z,defs \
	    $(LDFLAGS) -o $@ $(LIB_OBJS)
	ln -sf $(LIB_SONAME) $(BUILD)/libsocketnaut.so

LIB_PC_SED	= sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g'

# For use from the build tree; install-lib writes its own with the PREFIX
# it is given.
$(BUILD)/socketnaut.pc: lib/socketnaut.pc.in Makefile
	@mkdir -p $(BUILD)
	$(LIB_PC_SED) lib/socketnaut.pc.in > $@

lib: $(BUILD)/libsocketnaut.a $(BUILD)/libsocketnaut.so.0 \
    $(BUILD)/socketnaut.pc $(BUILD)/socketnaut-c-logger \
    $(BUILD)/socketnaut-handoff-worker

$(BUILD)/socketnaut-handoff-worker: examples/handoff/handoff-worker.c \
    $(BUILD)/libsocketnaut.a include/socketnaut.h Makefile
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ examples/handoff/handoff-worker.c \
	    $(BUILD)/libsocketnaut.a

$(BUILD)/socketnaut-c-logger: examples/c-logger/logger.c \
    $(BUILD)/libsocketnaut.a include/socketnaut.h Makefile
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ examples/c-logger/logger.c \
	    $(BUILD)/libsocketnaut.a

$(BUILD)/lib/test_agent.o: tests/lib/test_agent.c $(LIB_HDRS) Makefile
	@mkdir -p $(BUILD)/lib
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c -o $@ \
	    tests/lib/test_agent.c

# The same tests against the static and the shared library.
$(BUILD)/lib-tests: $(BUILD)/lib/test_agent.o $(BUILD)/libsocketnaut.a
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/lib/test_agent.o \
	    $(BUILD)/libsocketnaut.a $(CHECK_LIBS)

$(BUILD)/lib-tests-shared: $(BUILD)/lib/test_agent.o \
    $(BUILD)/libsocketnaut.so.0
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/lib/test_agent.o -L$(BUILD) \
	    -Wl,-rpath,'$$ORIGIN' -lsocketnaut $(CHECK_LIBS)

lib-check: lib $(BUILD)/lib-tests $(BUILD)/lib-tests-shared \
    $(BUILD)/socketnautd
	CK_FORK=yes $(BUILD)/lib-tests
	CK_FORK=yes $(BUILD)/lib-tests-shared
	@bad=$$(nm -D --defined-only $(BUILD)/$(LIB_SONAME) | \
	    awk '$$2 != "A" { print $$3 }' | grep -v '^sn_agent_\|^sn_proto_'); \
	if [ -n "$$bad" ]; then echo "unexpected exports: $$bad"; exit 1; \
	else echo "libsocketnaut.so.0: only sn_agent_* and sn_proto_* exported"; fi
	PKG_CONFIG_PATH=$(BUILD) $(PKG_CONFIG) --exists socketnaut
	@if command -v mandoc >/dev/null; then \
	    mandoc -T lint -W warning man/socketnaut.3 && \
	    echo "socketnaut.3: lint clean"; fi
	sh tests/lib/e2e.sh $(BUILD)

install-lib: lib
	install -d $(DESTDIR)$(INCLUDEDIR)/socketnaut $(DESTDIR)$(LIBDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man3
	install -m 644 include/socketnaut.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 include/socketnaut/proto.h \
	    $(DESTDIR)$(INCLUDEDIR)/socketnaut/
	install -m 644 $(BUILD)/libsocketnaut.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/$(LIB_SONAME) $(DESTDIR)$(LIBDIR)/
	ln -sf $(LIB_SONAME) $(DESTDIR)$(LIBDIR)/libsocketnaut.so
	$(LIB_PC_SED) lib/socketnaut.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/socketnaut.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/socketnaut.pc
	install -m 644 man/socketnaut.3 $(DESTDIR)$(MANDIR)/man3/

uninstall-lib:
	rm -f $(DESTDIR)$(INCLUDEDIR)/socketnaut.h \
	    $(DESTDIR)$(INCLUDEDIR)/socketnaut/proto.h \
	    $(DESTDIR)$(LIBDIR)/libsocketnaut.a \
	    $(DESTDIR)$(LIBDIR)/$(LIB_SONAME) \
	    $(DESTDIR)$(LIBDIR)/libsocketnaut.so \
	    $(DESTDIR)$(PKGCONFIGDIR)/socketnaut.pc \
	    $(DESTDIR)$(MANDIR)/man3/socketnaut.3
	-rmdir $(DESTDIR)$(INCLUDEDIR)/socketnaut 2>/dev/null

.PHONY: lib lib-check install-lib uninstall-lib
# end of libsocketnaut #######################################################

# Agents #####################################################################
# The Node package socketnaut-agent (agents/node) where `npm install DIR`,
# NODE_PATH and `npm ls -g` find it (npm's global layout), or with
# PREFIX=/usr where Debian's nodejs looks without NODE_PATH
# (/usr/share/nodejs); the Python module where Debian's python3 imports it
# from (/usr/local/lib/python3.X/dist-packages for PREFIX=/usr/local,
# /usr/lib/python3/dist-packages for PREFIX=/usr).

NODEDIR		?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/share/nodejs,$(PREFIX)/lib/node_modules)
PYTHON		?= $(firstword $(wildcard /usr/bin/python3) python3)
PYTHON_VERSION	:= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHONDIR	?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3/dist-packages,$(PREFIX)/lib/python$(PYTHON_VERSION)/dist-packages)
NODE_AGENT	= package.json README socketnaut-agent.js socketnaut-agent.mjs \
		  socketnaut-agent.d.ts socketnaut-agent.d.mts

install-agents:
	install -d $(DESTDIR)$(NODEDIR)/socketnaut-agent $(DESTDIR)$(PYTHONDIR)
	install -m 644 $(addprefix agents/node/,$(NODE_AGENT)) \
	    $(DESTDIR)$(NODEDIR)/socketnaut-agent/
	install -m 644 agents/python/socketnaut_agent.py $(DESTDIR)$(PYTHONDIR)/

uninstall-agents:
	rm -f $(addprefix $(DESTDIR)$(NODEDIR)/socketnaut-agent/,$(NODE_AGENT)) \
	    $(DESTDIR)$(PYTHONDIR)/socketnaut_agent.py
	-rmdir $(DESTDIR)$(NODEDIR)/socketnaut-agent 2>/dev/null

.PHONY: install-agents uninstall-agents
# end of agents ##############################################################
