# acl/: tailpost-acl, the tailnet policy tool. Depends on shared/ only.
ACL_SRCS := $(filter-out acl/main.c,$(wildcard acl/*.c))
ACL_LIB := $(BUILD)/libacl.a
ACL_BIN := $(BUILD)/bin/tailpost-acl
ACL_LIBS :=

$(ACL_LIB): $(call obj,$(ACL_SRCS))
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^

ifneq ($(wildcard acl/main.c),)
$(ACL_BIN): $(call obj,acl/main.c) $(ACL_LIB) $(SHARED_LIB)
	@mkdir -p $(dir $@) bin
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(ACL_LIBS)
	@[ -z "$(LINK_BINS)" ] || ln -sf ../$@ bin/tailpost-acl
BINS += $(ACL_BIN)
endif
