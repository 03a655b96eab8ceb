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

FUSE_CFLAGS := $(shell $(PKG_CONFIG) --cflags fuse3)
FUSE_LIBS := $(shell $(PKG_CONFIG) --libs fuse3)
SQLITE_LIBS := $(shell $(PKG_CONFIG) --libs sqlite3 2>/dev/null || echo -lsqlite3)

# ---- Private libfuse (built by scripts/libfuse.sh) -------------------------
# `make LIBFUSE=/opt/vdrive-libfuse BUILD=build-317` compiles and links lib/
# against that libfuse (3.17: FUSE passthrough API) instead of the system's
# 3.14. Its SONAME is libfuse3.so.4, so the two coexist; the rpath lets
# libvdrive find it at run time. Use a BUILD folder of its own: objects
# built against one libfuse are not rebuilt when LIBFUSE changes.
ifneq ($(LIBFUSE),)
ifeq ($(wildcard $(LIBFUSE)/lib/pkgconfig/fuse3.pc),)
$(error LIBFUSE=$(LIBFUSE) holds no lib/pkgconfig/fuse3.pc: run scripts/libfuse.sh $(LIBFUSE))
endif
FUSE_CFLAGS := $(shell PKG_CONFIG_PATH=$(LIBFUSE)/lib/pkgconfig $(PKG_CONFIG) --cflags fuse3)
FUSE_LIBS := $(shell PKG_CONFIG_PATH=$(LIBFUSE)/lib/pkgconfig $(PKG_CONFIG) --libs fuse3) \
	-Wl,-rpath,$(LIBFUSE)/lib
endif
# ---- End of private libfuse ------------------------------------------------

WERROR ?= -Werror
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Wno-format-truncation $(WERROR) -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE \
	-fPIC -Iinclude $(SANFLAGS)
LDFLAGS += $(SANFLAGS)

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
SRC_SRC := $(wildcard sources/*.c sources/*/*.c)
SRC_OBJ := $(SRC_SRC:%.c=$(B)/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o)
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

$(B)/lib/%.o: lib/%.c lib/vdrive_i.h include/vdrive.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUSE_CFLAGS) -c $< -o $@

$(B)/%.o: %.c include/vdrive.h $(wildcard sources/*.h cli/*.h daemon/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isources -c $< -o $@

$(LIBSO): $(LIB_OBJ) lib/libvdrive.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libvdrive.map \
		$(LDFLAGS) -o $@ $(LIB_OBJ) $(FUSE_LIBS) -lpthread

$(B)/libvdrive.so: $(LIBSO)
	ln -sf $(SONAME) $@

$(B)/libvdsources.a: $(SRC_OBJ)
	rm -f $@
	ar rcs $@ $^

$(B)/vdrive: $(CLI_OBJ) $(B)/libvdsources.a $(B)/libvdrive.so
	$(CC) $(LDFLAGS) $(RPATH) -o $@ $(CLI_OBJ) $(B)/libvdsources.a \
		-L$(B) -lvdrive $(SQLITE_LIBS) -lpthread

$(B)/vdrived: $(DAEMON_OBJ) $(B)/libvdsources.a $(B)/libvdrive.so
	$(CC) $(LDFLAGS) $(RPATH) -o $@ $(DAEMON_OBJ) $(B)/libvdsources.a \
		-L$(B) -lvdrive $(SQLITE_LIBS) -lpthread

$(B)/examples/%: examples/%.c include/vdrive.h $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(RPATH) -o $@ $< -L$(B) -lvdrive

$(B)/tests/%: tests/unit/%.c tests/unit/tap.h $(B)/libvdsources.a $(B)/libvdrive.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isources -Itests $(LDFLAGS) $(RPATH) -o $@ $< \
		$(B)/libvdsources.a -L$(B) -lvdrive $(SQLITE_LIBS) -lpthread

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
	if [ -z "$(DESTDIR)" ]; then ldconfig; fi

# The README's two commands: `make deps install demo` and `make deps check`.
deps:
	sh scripts/deps.sh

demo: install
	sh scripts/demo.sh

# The whole suite, then the same unit and mount tests under ASan/UBSan.
check: all
	VDRIVE_BUILD=$(CURDIR)/$(B) prove -f tests/*.t

check-san:
	$(MAKE) SAN=1 all
	VDRIVE_BUILD=$(CURDIR)/$(B)-san prove -f tests/unit.t tests/posix.t

format:
	clang-format -i include/*.h lib/*.c lib/*.h $(SRC_SRC) $(CLI_SRC) $(DAEMON_SRC) \
		$(wildcard examples/*.c tests/unit/*.c tests/helpers/*.c sources/*.h cli/*.h)

clean:
	rm -rf build build-san

.PHONY: all deps demo install check check-san format clean
