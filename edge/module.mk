# edge/: tailpost-edge, the layer-4 forwarder. Depends on shared/ only.
EDGE_SRCS := $(filter-out edge/main.c,$(wildcard edge/*.c))
EDGE_LIB := $(BUILD)/libedge.a
EDGE_BIN := $(BUILD)/bin/tailpost-edge
EDGE_LIBS := $(LIBS_EV) $(LIBS_YAML) $(LIBS_SSL)

$(EDGE_LIB): $(call obj,$(EDGE_SRCS))
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^

ifneq ($(wildcard edge/main.c),)
$(EDGE_BIN): $(call obj,edge/main.c) $(EDGE_LIB) $(SHARED_LIB)
	@mkdir -p $(dir $@) bin
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(EDGE_LIBS)
	@[ -z "$(LINK_BINS)" ] || ln -sf ../$@ bin/tailpost-edge
BINS += $(EDGE_BIN)
endif
