# vdrive - build with `make`, test with `make check`, install with
# `make install` (PREFIX=/usr/local). `make SAN=1` builds with ASan/UBSan
# into build-san/.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
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
LDFLAGS += $(SANFLAGS)

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
SRC_SRC := $(wildcard sources/*.c sources/*/*.c)
SRC_OBJ := $(SRC_SRC:%.c=$(B)/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o)
# Helpers the library and the daemon both use, linked into each.
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(B)/%.o)
EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))
UNIT := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/*.c))
HELPERS := $(patsubst tests/helpers/%.c,$(B)/tests/%,$(wildcard tests/helpers/*.c))

SONAME := libvdrive.so.0
LIBSO := $(B)/$(SONAME)
RPATH := -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/..'

ALL := $(LIBSO) $(B)/libvdrive.so $(B)/libvdsources.a $(B)/vdrive \
	$(EXAMPLES) $(UNIT) $(HELPERS) $(B)/vdrive.pc
ifneq ($(DAEMON_SRC),)
ALL += $(B)/vdrived
endif

all: $(ALL)

$(B)/lib/%.o: lib/%.c lib/vdrive_i.h include/vdrive.h $(wildcard common/*.h) $(LIBFUSE_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUSE_CFLAGS) -c $< -o $@

$(B)/%.o: %.c include/vdrive.h $(wildcard sources/*.h cli/*.h daemon/*.h common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isources -c $< -o $@

$(LIBSO): $(LIB_OBJ) $(COMMON_OBJ) lib/libvdrive.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libvdrive.map \
		$(LDFLAGS) -o $@ $(LIB_OBJ) $(COMMON_OBJ) $(FUSE_LIBS) -lpthread

$(B)/libvdrive.so: $(LIBSO)
	ln -sf $(SONAME) $@

$(B)/libvdsources.a: $(SRC_OBJ)
	rm -f $@
	ar rcs $@ $^

$(B)/vdrive: $(CLI_OBJ) $(B)/libvdsources.a $(B)/libvdrive.so
	$(CC) $(LDFLAGS) $(RPATH) -o $@ $(CLI_OBJ) $(B)/libvdsources.a \
		-L$(B) -lvdrive $(SQLITE_LIBS) -lpthread

$(B)/vdrived: $(DAEMON_OBJ) $(COMMON_OBJ) $(B)/libvdsources.a $(B)/libvdrive.so
	$(CC) $(LDFLAGS) $(RPATH) -o $@ $(DAEMON_OBJ) $(COMMON_OBJ) $(B)/libvdsources.a \
		-L$(B) -lvdrive $(SQLITE_LIBS) -lpthread

$(B)/examples/%: examples/%.c include/vdrive.h $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(RPATH) -o $@ $< -L$(B) -lvdrive

$(B)/tests/%: tests/unit/%.c tests/unit/tap.h $(B)/libvdsources.a $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isources -Itests $(LDFLAGS) $(RPATH) -o $@ $< \
		$(B)/libvdsources.a -L$(B) -lvdrive $(SQLITE_LIBS) -lpthread

# The one helper that is a drive itself.
$(B)/tests/cache_drive: tests/helpers/cache_drive.c include/vdrive.h $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(RPATH) -o $@ $< -L$(B) -lvdrive -lpthread

$(B)/tests/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lpthread

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
	VDRIVE_BUILD=$(CURDIR)/$(B) prove -f tests/*.t

check-san:
	$(MAKE) SAN=1 all
	VDRIVE_BUILD=$(CURDIR)/$(B)-san prove -f tests/unit.t tests/posix.t

format:
	clang-format -i include/*.h lib/*.c lib/*.h $(SRC_SRC) $(CLI_SRC) $(DAEMON_SRC) common/*.[ch] \
		$(wildcard examples/*.c tests/unit/*.c tests/helpers/*.c sources/*.h cli/*.h)

clean:
	rm -rf build build-san build-private-san

.PHONY: all deps demo install check check-san format clean uring-on
