# mailbox/: tailpost-mailbox, the mail daemon, in subfolders by concern.
MAILBOX_SRCS := $(filter-out mailbox/main.c,$(shell find mailbox -name '*.c' | sort))
MAILBOX_LIB := $(BUILD)/libmailbox.a
MAILBOX_BIN := $(BUILD)/bin/tailpost-mailbox
MAILBOX_LIBS := $(LIBS_PQ) $(LIBS_REDIS) $(LIBS_CURL) $(LIBS_JSON) $(LIBS_HASH) \
	$(LIBS_DNS) $(LIBS_EV) $(LIBS_YAML) $(LIBS_SSL) -lpthread

$(MAILBOX_LIB): $(call obj,$(MAILBOX_SRCS))
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^

ifneq ($(wildcard mailbox/main.c),)
$(MAILBOX_BIN): $(call obj,mailbox/main.c) $(MAILBOX_LIB) $(SHARED_LIB)
	@mkdir -p $(dir $@) bin
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(MAILBOX_LIBS)
	@[ -z "$(LINK_BINS)" ] || ln -sf ../$@ bin/tailpost-mailbox
BINS += $(MAILBOX_BIN)
endif
