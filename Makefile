# Marquee build.  Two builds share one source tree:
#   build/release  -O2, assertions on (NDEBUG is never defined)
#   build/asan     -O1, AddressSanitizer + UndefinedBehaviorSanitizer
# `make run` and `make test` first install missing Debian packages.

CC      ?= cc
, := ,
MODE    ?= release
BUILD   ?= build/$(MODE)
# A subset of source folders can be built alone: SRC_DIRS="src/base src/store"
SRC_DIRS ?= src

PKGS    := libh2o-evloop jansson sqlite3 openssl librabbitmq libqrencode \
           libsodium
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wundef -Wvla \
           -Wimplicit-fallthrough -Wcast-align -Wwrite-strings -Werror
CPPFLAGS := -Isrc -D_GNU_SOURCE -DH2O_USE_LIBUV=0 -DH2O_USE_EPOLL=1 \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS_release := -O2 -g
CFLAGS_asan    := -O1 -g -fno-omit-frame-pointer \
                  -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS  := -std=c17 $(WARN) $(CFLAGS_$(MODE)) -MMD -MP
LDFLAGS := $(if $(filter asan,$(MODE)),-fsanitize=address$(,)undefined)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

LIB_SRC  := $(filter-out src/main.c,$(shell find $(SRC_DIRS) -name '*.c' | sort))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_OBJ := $(BUILD)/obj/tests/unit/harness.o

.PHONY: all release asan build test run bench format deps clean
.SECONDARY:
.DEFAULT_GOAL := all

all: build
build: $(BUILD)/marquee $(TEST_BIN)

release:
	@$(MAKE) --no-print-directory MODE=release build
asan:
	@$(MAKE) --no-print-directory MODE=asan build

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libmarquee.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/marquee: $(BUILD)/obj/src/main.o $(BUILD)/libmarquee.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TEST_OBJ) $(BUILD)/libmarquee.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test: deps
	@$(MAKE) --no-print-directory MODE=release build
	@$(MAKE) --no-print-directory MODE=asan build
	@/usr/bin/python3 tests/run.py

run: deps release
	@scripts/run-demo.sh

bench: deps release
	@bench/run.sh

format:
	clang-format -i $$(find src tests -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find build/release build/asan $(BUILD) -name '*.d' 2>/dev/null)
