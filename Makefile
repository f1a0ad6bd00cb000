# socketnautd: plain Makefile.  `make run` and `make check` first install
# missing Debian build and test dependencies (tools/install-deps).

VERSION		= 0.1.0
PREFIX		?= /usr/local
SBINDIR		?= $(PREFIX)/sbin
BINDIR		?= $(PREFIX)/bin
SYSCONFDIR	?= $(PREFIX)/etc
MANDIR		?= $(PREFIX)/share/man
UNITDIR		?= $(PREFIX)/lib/systemd/system
DESTDIR		?=

CC		?= cc
PKG_CONFIG	?= pkg-config
CFLAGS		?= -O2 -g
WARN		= -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
		  -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS	= -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Isrc -Iinclude \
		  -DSN_CONFIG_PATH='"$(SYSCONFDIR)/socketnaut.conf"'
LIBS		= $(shell $(PKG_CONFIG) --libs libevent libconfuse 2>/dev/null || echo -levent -lconfuse)
CHECK_LIBS	= $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

ifeq ($(SANITIZE),1)
BUILD		?= build-san
ALL_CFLAGS	+= -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=undefined
LDFLAGS		+= -fsanitize=address,undefined
else
BUILD		?= build
endif

DAEMON_SRCS	= src/config.c src/control.c src/log.c src/proto.c src/relay.c \
		  src/sdnotify.c src/service.c src/util.c src/worker.c
DAEMON_OBJS	= $(DAEMON_SRCS:src/%.c=$(BUILD)/%.o)
UNIT_SRCS	= $(wildcard tests/unit/*.c)
UNIT_OBJS	= $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%.o)

all: $(BUILD)/socketnautd $(BUILD)/socketnaut-hello

$(BUILD)/%.o: src/%.c $(wildcard src/*.h include/socketnaut/*.h) Makefile
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/socketnautd: $(DAEMON_OBJS) $(BUILD)/socketnautd.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/socketnaut-hello: examples/hello/socketnaut-hello.c Makefile
	@mkdir -p $(BUILD)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) $(filter -fsanitize%,$(ALL_CFLAGS)) \
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

fuzz: $(BUILD)/fuzz-proto
	@mkdir -p $(BUILD)/fuzz-corpus
	$(BUILD)/fuzz-proto -max_total_time=$(FUZZ_SECONDS) -max_len=9000 \
	    $(BUILD)/fuzz-corpus tests/fuzz/corpus

fuzz-brief: $(BUILD)/fuzz-proto
	@mkdir -p $(BUILD)/fuzz-corpus
	@$(BUILD)/fuzz-proto -runs=2000000 -max_total_time=10 -max_len=9000 \
	    $(BUILD)/fuzz-corpus tests/fuzz/corpus > $(BUILD)/fuzz.log 2>&1 || \
	    { tail -n 40 $(BUILD)/fuzz.log; exit 1; }
	@echo "fuzz: $$(tail -n 1 $(BUILD)/fuzz.log)"

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
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory fuzz-brief

lint:
	@if command -v mandoc >/dev/null; then \
	    mandoc -T lint -W warning man/*.[0-9] && echo "man pages: lint clean"; \
	else echo "mandoc not installed: man pages not linted"; fi
	$(BUILD)/socketnautd -t -c etc/socketnaut.conf >/dev/null

$(BUILD)/socketnautd.service: systemd/socketnautd.service.in Makefile
	@mkdir -p $(BUILD)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    systemd/socketnautd.service.in > $@

install: all $(BUILD)/socketnautd.service
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/socketnautd $(DESTDIR)$(SBINDIR)/socketnautd
	install -m 755 $(BUILD)/socketnaut-hello \
	    $(DESTDIR)$(BINDIR)/socketnaut-hello
	install -m 644 man/socketnautd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/socketnaut.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 $(BUILD)/socketnautd.service $(DESTDIR)$(UNITDIR)/
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/socketnaut.conf ]; then \
	    echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/socketnaut.conf"; \
	else install -m 644 etc/socketnaut.conf \
	    $(DESTDIR)$(SYSCONFDIR)/socketnaut.conf; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/socketnautd \
	    $(DESTDIR)$(BINDIR)/socketnaut-hello \
	    $(DESTDIR)$(MANDIR)/man8/socketnautd.8 \
	    $(DESTDIR)$(MANDIR)/man5/socketnaut.conf.5 \
	    $(DESTDIR)$(UNITDIR)/socketnautd.service
	@echo "$(DESTDIR)$(SYSCONFDIR)/socketnaut.conf left in place"

clean:
	rm -rf build build-san

.PHONY: all deps run check test lint fuzz fuzz-brief install uninstall clean bench

# Side-by-side benchmark against HAProxy and nginx (bench/README); writes
# bench/RESULTS.md.  BENCH_ARGS passes options to bench/run.py.
bench: all
	python3 bench/run.py $(BENCH_ARGS)
