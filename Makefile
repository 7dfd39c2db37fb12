# Thin wrapper over CMake. `make` builds, `make demo` runs the main job on the embedded
# default, `make test` sets up and runs every test, `make test-san` runs them under ASan+UBSan.
BUILD ?= build
SAN_BUILD ?= build-san
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all setup build demo test test-san clean npm

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

npm:
	@bash scripts/npm-install.sh

demo: setup npm build
	@bash scripts/demo.sh $(BUILD)/x402r

test: setup npm build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

$(SAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DX4_SANITIZE=ON >/dev/null

test-san: setup npm $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j$(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
