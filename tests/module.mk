# tests/: unit tests (one binary), fuzzers (one per parser), tools used by
# the integration tests, and the integration suite (pytest).
ALL_LIBS_LINK := $(MAILBOX_LIB) $(EDGE_LIB) $(ACL_LIB) $(SHARED_LIB)
ALL_SYSLIBS := $(MAILBOX_LIBS) $(EDGE_LIBS) $(ACL_LIBS)

UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_BIN := $(BUILD)/tests/unit_tests
$(UNIT_BIN): $(call obj,$(UNIT_SRCS)) $(ALL_LIBS_LINK)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(call obj,$(UNIT_SRCS)) $(ALL_LIBS_LINK) $(ALL_SYSLIBS)

TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
$(BUILD)/tools/%: $(BUILD)/tests/tools/%.o $(ALL_LIBS_LINK)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $< $(ALL_LIBS_LINK) $(ALL_SYSLIBS)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(ALL_LIBS_LINK)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(ALL_LIBS_LINK) $(ALL_SYSLIBS)

FUZZ_SECONDS ?= 10
# A fixed seed keeps CI repeatable; fuzz longer or with FUZZ_SEED=0 (random) by hand.
FUZZ_SEED ?= 1

.PHONY: unit-bins tools unit fuzz-bins integration
unit-bins: $(UNIT_BIN)
tools: $(TOOL_BINS)
fuzz-bins: $(FUZZ_BINS)

unit: $(UNIT_BIN)
	@$(UNIT_BIN)

# Replay each fuzzer's seed corpus, then fuzz for FUZZ_SECONDS into a
# scratch corpus (so the checked-in seeds stay small and reviewed).
fuzz-smoke:
	@if [ "$(MODE)" != fuzz ]; then $(MAKE) --no-print-directory MODE=fuzz fuzz-smoke; exit $$?; fi
	@$(MAKE) --no-print-directory MODE=fuzz fuzz-bins
	@set -e; for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); n=$${n#fuzz_}; \
		seeds=tests/fuzz/corpus/$$n; mkdir -p $$seeds; \
		scratch=$(BUILD)/fuzz/work/$$n; mkdir -p $$scratch; \
		echo "fuzz-smoke: $$n: replay $$(ls $$seeds | wc -l) seeds, fuzz $(FUZZ_SECONDS)s"; \
		$$f -runs=0 $$seeds >$(BUILD)/fuzz/$$n.replay.log 2>&1 || \
			{ tail -40 $(BUILD)/fuzz/$$n.replay.log; exit 1; }; \
		$$f -seed=$(FUZZ_SEED) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=$(BUILD)/fuzz/$$n- $$scratch $$seeds \
			>$(BUILD)/fuzz/$$n.log 2>&1 || \
			{ tail -60 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	done; echo "fuzz-smoke: ok"

integration: all tools
	@TAILPOST_BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration
