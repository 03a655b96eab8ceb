# vdrive - build with `make`, test with `make check`, install with
# `make install` (PREFIX=/usr/local). `make SAN=1` builds with ASan/UBSan
# into build-san/.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
# mount(8) looks for its helpers (mount.vdrive, mount.fuse.vdrive) here only.
SBINDIR ?= /sbin
MANDIR ?= $(PREFIX)/share/man
# bash-completion loads completions/CMD from each of $XDG_DATA_DIRS
# (default /usr/local/share:/usr/share) on first use of CMD.
COMPLDIR ?= $(PREFIX)/share/bash-completion/completions
CC ?= cc
PKG_CONFIG ?= pkg-config

BUILD ?= build
ifeq ($(SAN),1)
B := $(BUILD)-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
B := $(BUILD)
SANFLAGS :=
endif

SQLITE_LIBS := $(shell $(PKG_CONFIG) --libs sqlite3 2>/dev/null || echo -lsqlite3)
# libpq for postgres: (Debian's libpq-dev); its header lives in a folder
# of its own.
PQ_CFLAGS := $(shell $(PKG_CONFIG) --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
PQ_LIBS := $(shell $(PKG_CONFIG) --libs libpq 2>/dev/null || echo -lpq)
SQLITE_LIBS += $(PQ_LIBS)
CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)

# ---- Which libfuse --------------------------------------------------------
# lib/ compiles and links against the libfuse 3.17 that `make deps` builds
# into /opt/vdrive-libfuse (scripts/libfuse.sh: FUSE passthrough,
# O_TMPFILE) when it is there, else against the system's 3.14.
# `make LIBFUSE=` forces the system's, `make LIBFUSE=DIR` another private
# one. Its SONAME is libfuse3.so.4, so the two coexist; the rpath lets
# libvdrive find it at run time. These are expanded when a recipe runs,
# not when make starts, so `make deps install` builds on what deps made.
.DEFAULT_GOAL := all
LIBFUSE_DEFAULT := /opt/vdrive-libfuse
LIBFUSE ?= $(shell test -f $(LIBFUSE_DEFAULT)/lib/pkgconfig/fuse3.pc && echo $(LIBFUSE_DEFAULT))
FUSE_PC = $(if $(LIBFUSE),PKG_CONFIG_PATH=$(LIBFUSE)/lib/pkgconfig) $(PKG_CONFIG)
FUSE_CFLAGS = $(shell $(FUSE_PC) --cflags fuse3)
FUSE_LIBS = $(shell $(FUSE_PC) --libs fuse3) $(if $(LIBFUSE),-Wl$(comma)-rpath$(comma)$(LIBFUSE)/lib)
comma := ,
# Objects remember which libfuse they were built for: a change rebuilds lib/.
LIBFUSE_STAMP := $(B)/.libfuse
$(LIBFUSE_STAMP): FORCE
	@mkdir -p $(B); new="libfuse:$(LIBFUSE)"; \
	[ "$$(cat $@ 2>/dev/null)" = "$$new" ] || echo "$$new" > $@
FORCE:
# ---- End of private libfuse ------------------------------------------------

WERROR ?= -Werror
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Wno-format-truncation $(WERROR) -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE \
	-fPIC -Iinclude -Icommon $(SANFLAGS)
# Each object and program records the headers it read (X.d beside it), so
# editing any header rebuilds exactly what uses it.
DEPFLAGS := -MMD -MP
LDFLAGS += $(SANFLAGS)

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
SRC_SRC := $(wildcard sources/*.c sources/*/*.c)
SRC_OBJ := $(SRC_SRC:%.c=$(B)/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o)
# vdrive-docker, the Docker volume plugin.
DOCKER_SRC := $(wildcard docker/*.c)
DOCKER_OBJ := $(DOCKER_SRC:%.c=$(B)/%.o)
# Private helpers (child processes, unix sockets, the vdrived protocol)
# that the library, the daemon and the tool share, linked into each.
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(B)/%.o)
EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))
UNIT := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/*.c)) \
	$(B)/tests/lib_test
HELPERS := $(patsubst tests/helpers/%.c,$(B)/tests/%,$(wildcard tests/helpers/*.c))

SONAME := libvdrive.so.0
LIBSO := $(B)/$(SONAME)
RPATH := -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/..'

ALL := $(LIBSO) $(B)/libvdrive.so $(B)/libvdsources.a $(B)/vdrive \
	$(EXAMPLES) $(UNIT) $(HELPERS) $(B)/vdrive.pc
ifneq ($(DAEMON_SRC),)
ALL += $(B)/vdrived
endif
ifneq ($(DOCKER_SRC),)
ALL += $(B)/vdrive-docker
MAN_DOCKER := $(B)/man/vdrive-docker.8
endif

# Manual pages, made from the tools' own help and the header's comments.
MAN := $(B)/man/vdrive.1 $(B)/man/vdrive.h.3
ifneq ($(DAEMON_SRC),)
MAN += $(B)/man/vdrived.8
endif
MAN += $(MAN_DOCKER)
ALL += $(MAN)

all: $(ALL)

$(B)/man/vdrive.1: $(B)/vdrive scripts/mkman.pl
	@mkdir -p $(dir $@)
	perl scripts/mkman.pl vdrive $(B)/vdrive > $@.tmp && mv $@.tmp $@

$(B)/man/vdrived.8: $(B)/vdrived scripts/mkman.pl
	@mkdir -p $(dir $@)
	perl scripts/mkman.pl vdrived $(B)/vdrived > $@.tmp && mv $@.tmp $@

$(B)/man/vdrive-docker.8: $(B)/vdrive-docker scripts/mkman.pl
	@mkdir -p $(dir $@)
	perl scripts/mkman.pl vdrive-docker $(B)/vdrive-docker > $@.tmp && mv $@.tmp $@

$(B)/man/vdrive.h.3: include/vdrive.h scripts/mkman.pl
	@mkdir -p $(dir $@)
	perl scripts/mkman.pl header include/vdrive.h > $@.tmp && mv $@.tmp $@

$(B)/lib/%.o: lib/%.c lib/vdrive_i.h include/vdrive.h $(LIBFUSE_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) $(FUSE_CFLAGS) -c $< -o $@

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -Isources $(PQ_CFLAGS) -c $< -o $@

$(LIBSO): $(LIB_OBJ) $(COMMON_OBJ) lib/libvdrive.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libvdrive.map \
		$(LDFLAGS) -o $@ $(LIB_OBJ) $(COMMON_OBJ) $(FUSE_LIBS) -lpthread

$(B)/libvdrive.so: $(LIBSO)
	ln -sf $(SONAME) $@

$(B)/libvdsources.a: $(SRC_OBJ)
	rm -f $@
	ar rcs $@ $^

$(B)/libvdcommon.a: $(COMMON_OBJ)
	rm -f $@
	ar rcs $@ $^

$(B)/vdrive: $(CLI_OBJ) $(B)/libvdsources.a $(B)/libvdcommon.a $(B)/libvdrive.so
	$(CC) $(LDFLAGS) $(RPATH) -o $@ $(CLI_OBJ) $(B)/libvdsources.a \
		$(B)/libvdcommon.a -L$(B) -lvdrive $(SQLITE_LIBS) $(CURL_LIBS) -lpthread

# The daemon needs no library and no source: only common/.
$(B)/vdrived: $(DAEMON_OBJ) $(B)/libvdcommon.a
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJ) $(B)/libvdcommon.a

$(B)/vdrive-docker: $(DOCKER_OBJ) $(B)/libvdsources.a $(B)/libvdcommon.a $(B)/libvdrive.so
	$(CC) $(LDFLAGS) $(RPATH) -o $@ $(DOCKER_OBJ) $(B)/libvdsources.a \
		$(B)/libvdcommon.a -L$(B) -lvdrive $(SQLITE_LIBS) $(CURL_LIBS) -lpthread

$(B)/examples/%: examples/%.c $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) $(LDFLAGS) $(RPATH) -o $@ $< -L$(B) -lvdrive

# lib/'s own unit test links lib/'s objects (the shared library hides its
# internals) and wraps fuse_req_ctx() so it can make requests up.
$(B)/tests/lib_test: tests/lib/lib_test.c $(LIB_OBJ) $(COMMON_OBJ) $(LIBFUSE_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) $(FUSE_CFLAGS) -Ilib -Isources -Itests/unit $(LDFLAGS) \
		-Wl,--wrap=fuse_req_ctx -o $@ $< $(LIB_OBJ) $(COMMON_OBJ) \
		$(FUSE_LIBS) -lpthread

$(B)/tests/%: tests/unit/%.c $(B)/libvdsources.a $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -Isources -Itests $(LDFLAGS) $(RPATH) -o $@ $< \
		$(B)/libvdsources.a -L$(B) -lvdrive $(SQLITE_LIBS) $(CURL_LIBS) -lpthread

# The one helper that is a drive itself.
$(B)/tests/cache_drive: tests/helpers/cache_drive.c $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) $(LDFLAGS) $(RPATH) -o $@ $< -L$(B) -lvdrive -lpthread

# The helpers learn which libfuse the drives they test are served with
# (posix_cases: a skip that only an old libfuse excuses fails on 3.17+).
FUSE_VERSION = $(shell $(FUSE_PC) --modversion fuse3 | awk -F. '{ print $$1 * 100 + $$2 }')
$(B)/tests/%: tests/helpers/%.c $(LIBFUSE_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -DVD_FUSE_VERSION=$(FUSE_VERSION) $(LDFLAGS) -o $@ $< -lpthread

$(B)/vdrive.pc: vdrive.pc.in
	@mkdir -p $(B)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' $< > $@

install: all
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/bin
	install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvdrive.so
	install -m 644 include/vdrive.h $(DESTDIR)$(PREFIX)/include/vdrive.h
	install -m 644 $(B)/vdrive.pc $(DESTDIR)$(LIBDIR)/pkgconfig/vdrive.pc
	install -m 755 $(B)/vdrive $(DESTDIR)$(PREFIX)/bin/vdrive
	if [ -f $(B)/vdrived ]; then install -m 755 $(B)/vdrived $(DESTDIR)$(PREFIX)/bin/vdrived; fi
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|' daemon/vdrived.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/vdrived.service
	install -d $(DESTDIR)/etc/tmpfiles.d
	echo 'w $(URING_PARAM) - - - - Y' > $(DESTDIR)/etc/tmpfiles.d/vdrive.conf
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man8
	install -m 644 $(B)/man/vdrive.1 $(DESTDIR)$(MANDIR)/man1/vdrive.1
	install -m 644 $(B)/man/vdrive.h.3 $(DESTDIR)$(MANDIR)/man3/vdrive.h.3
	if [ -f $(B)/man/vdrived.8 ]; then install -m 644 $(B)/man/vdrived.8 $(DESTDIR)$(MANDIR)/man8/vdrived.8; fi
	if [ -f $(B)/vdrive-docker ]; then \
		install -m 755 $(B)/vdrive-docker $(DESTDIR)$(PREFIX)/bin/vdrive-docker; \
		install -m 644 $(B)/man/vdrive-docker.8 $(DESTDIR)$(MANDIR)/man8/vdrive-docker.8; \
		sed 's|/usr/local/bin/|$(PREFIX)/bin/|' docker/vdrive-docker.service \
			> $(DESTDIR)$(PREFIX)/lib/systemd/system/vdrive-docker.service; fi
	install -d $(DESTDIR)$(COMPLDIR)
	install -m 644 cli/completion.bash $(DESTDIR)$(COMPLDIR)/vdrive
	install -d $(DESTDIR)$(SBINDIR)
	ln -sf $(PREFIX)/bin/vdrive $(DESTDIR)$(SBINDIR)/mount.vdrive
	ln -sf $(PREFIX)/bin/vdrive $(DESTDIR)$(SBINDIR)/mount.fuse.vdrive
	if [ -z "$(DESTDIR)" ]; then ldconfig; $(MAKE) --no-print-directory uring-on; fi

# FUSE over io_uring (option io_uring) is off in the kernel until the
# administrator turns it on: install does, now and at every boot
# (tmpfiles.d), and the suite tests what an installed machine has.
URING_PARAM := /sys/module/fuse/parameters/enable_uring
uring-on:
	@if [ -w $(URING_PARAM) ]; then echo Y > $(URING_PARAM); fi

# The README's two commands: `make deps install demo` and `make deps check`.
deps:
	sh scripts/deps.sh

demo: install
	sh scripts/demo.sh

# The whole suite, then the same unit and mount tests under ASan/UBSan.
check: all uring-on
	VDRIVE_STRICT=1 VDRIVE_BUILD=$(CURDIR)/$(B) prove -f tests/*.t

check-san:
	$(MAKE) SAN=1 all
	VDRIVE_STRICT=1 VDRIVE_BUILD=$(CURDIR)/$(B)-san prove -f tests/unit.t tests/posix.t

format:
	clang-format -i include/*.h lib/*.c lib/*.h $(SRC_SRC) $(CLI_SRC) $(DAEMON_SRC) common/*.[ch] \
		$(DOCKER_SRC) $(wildcard docker/*.h) \
		$(wildcard examples/*.c tests/unit/*.c tests/lib/*.c tests/helpers/*.c sources/*.h sources/*/*.h cli/*.h)

clean:
	rm -rf build build-san build-private-san

.PHONY: all deps demo install check check-san format clean uring-on

-include $(wildcard $(B)/*/*.d $(B)/*/*/*.d)
