# Thin wrapper over Meson. `make` builds, `make check` runs every test twice (plain and
# ASan+UBSan), `make bench` runs the benchmarks.
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps check check-intro bench demo demo-intro clean format

all: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) >/dev/null

$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true \
		-Dbuildtype=debug >/dev/null

check-intro:
	@echo "make check: installs what it needs, builds twice (gcc, and clang with ASan+UBSan), runs the"
	@echo "unit and integration tests on each build and every fuzz target for a bounded time. It takes"
	@echo "20 to 30 minutes on a 2-core machine and ends with one line: N passed, N failed."

check: check-intro deps $(BUILD)/build.ninja $(ASAN_BUILD)/build.ninja
	scripts/check.sh $(BUILD) $(ASAN_BUILD)

demo-intro:
	@echo "make demo: installs what it needs and builds enclaver; the first run also builds a Debian"
	@echo "root file system with the AWS CLI (a few minutes, once). The demo itself then takes about 30 s."

demo: demo-intro all
	scripts/install-deps.sh --demo
	scripts/demo.sh

bench: all
	scripts/install-deps.sh --bench
	bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
