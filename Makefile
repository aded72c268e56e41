# tailpost -- one GNU Makefile; each folder adds its sources in module.mk.
#
#   make [MODE=debug|release|asan|fuzz]   build everything into build/MODE,
#                                         link the binaries into bin/
#   make test        install deps, build with ASan+UBSan, run unit tests,
#                    fuzz smoke and integration tests
#   make unit        unit tests only (in MODE, debug by default)
#   make fuzz-smoke  every fuzzer replays its corpus, then fuzzes briefly
#   make run         start the local stack (deploy/local/up)
#   make format-check / make format / make clean

MODE ?= debug
VERSION := 0.1.0
# Debian's python3 (pytest, botocore come from Debian packages), not a pyenv shim.
PYTHON ?= /usr/bin/python3
BUILD ?= build/$(MODE)
.DEFAULT_GOAL := all

ifeq ($(MODE),fuzz)
CC := clang
else ifeq ($(origin CC),default)
CC := gcc
endif

WARN := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wvla -Wpointer-arith -Wcast-qual -Wundef \
	-Wno-unused-parameter -Wno-missing-field-initializers
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -g -I. -fno-strict-aliasing $(WARN) \
	-DTAILPOST_VERSION='"$(VERSION)"'

ifeq ($(MODE),debug)
MODE_CFLAGS := -O0
MODE_LDFLAGS :=
else ifeq ($(MODE),release)
MODE_CFLAGS := -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE \
	-fstack-clash-protection
MODE_LDFLAGS := -pie -Wl,-z,relro,-z,now
else ifeq ($(MODE),asan)
MODE_CFLAGS := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),fuzz)
MODE_CFLAGS := -O1 -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer -DFUZZING
MODE_LDFLAGS := -fsanitize=address,undefined
else
$(error unknown MODE '$(MODE)': use debug, release, asan or fuzz)
endif

CFLAGS_ALL := $(BASE_CFLAGS) $(MODE_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := $(MODE_LDFLAGS) $(LDFLAGS)

LIBS_SSL := -lssl -lcrypto
LIBS_EV := -lev
LIBS_YAML := -lyaml
LIBS_PQ := -lpq
LIBS_REDIS := -lhiredis
LIBS_CURL := -lcurl
LIBS_JSON := -ljansson
LIBS_HASH := -largon2 -lcrypt
LIBS_DNS := -lcares

# Rebuild everything when the flags change.
FLAGS_FILE := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL)
$(shell mkdir -p $(BUILD) && \
	(echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_FILE) || echo '$(FLAGS_NOW)' > $(FLAGS_FILE)))

# Quiet by default; V=1 shows the commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BUILD)/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# obj(list of .c) -> list of build objects
obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

# bin/ links point at the default build dir of the last mode built.
LINK_BINS := $(filter build/$(MODE),$(BUILD))
BINS :=
# Keep intermediate objects (fuzzer and tool mains) so reruns do not rebuild.
.SECONDARY:
include shared/module.mk
include edge/module.mk
include acl/module.mk
include mailbox/module.mk
include tests/module.mk

.PHONY: all test unit fuzz-smoke integration run format format-check clean deps
all: $(BINS)

deps:
	@deploy/deps.sh --test

test:
	@deploy/deps.sh --test
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory MODE=asan all unit-bins tools
	@$(MAKE) --no-print-directory MODE=asan unit
	@$(MAKE) --no-print-directory MODE=fuzz fuzz-smoke
	@$(MAKE) --no-print-directory MODE=asan integration

run:
	@deploy/local/up

format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format-check: ok"

clean:
	rm -rf build bin

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
