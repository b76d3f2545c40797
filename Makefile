# Thin wrapper over Meson. `make` builds, `make check` runs every test twice (plain and
# ASan+UBSan), `make bench` runs the benchmarks.
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps check bench demo clean format

all: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) >/dev/null

$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true \
		-Dbuildtype=debug >/dev/null

check: deps $(BUILD)/build.ninja $(ASAN_BUILD)/build.ninja
	scripts/check.sh $(BUILD) $(ASAN_BUILD)

demo: all
	scripts/install-deps.sh --demo
	scripts/demo.sh

bench: all
	scripts/install-deps.sh --bench
	bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
