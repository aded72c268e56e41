# shared/: the C library both daemons use. Depends on nothing of ours.
SHARED_SRCS := $(wildcard shared/*.c)
SHARED_LIB := $(BUILD)/libshared.a

$(SHARED_LIB): $(call obj,$(SHARED_SRCS))
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^
