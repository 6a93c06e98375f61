# Thin wrapper over CMake. `make demo` and `make test` are the README's two
# commands; both install dependencies first (scripts/setup is idempotent).
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

PREFIX ?= /usr/local

.PHONY: setup configure build test demo bench clean install python

setup:
	bash scripts/setup

configure:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	cmake --build $(BUILD) -j$(JOBS)

test: setup build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

demo: setup build
	$(BUILD)/ebm train --config configs/toy2d-pcd.toml --out runs/toy2d-pcd --force

# Headers, libebm.a, libebm.so, the ebm CLI and a CMake package (find_package(ebm)).
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The Python module, installed for Debian's /usr/bin/python3 (its user site,
# or PYTHON_SITE=DIR): afterwards `/usr/bin/python3 -c "import ebm"` works.
PYTHON ?= /usr/bin/python3
python: setup configure
	cmake --build $(BUILD) -j$(JOBS) --target ebm_python
	@site="$${PYTHON_SITE:-$$($(PYTHON) -m site --user-site)}"; mkdir -p "$$site/ebm" && \
	  cp $(BUILD)/python/ebm/__init__.py $(BUILD)/python/ebm/_ebm*.so "$$site/ebm/" && \
	  echo "python: ebm installed in $$site/ebm"

bench: build
	$(BUILD)/ebm bench --all

clean:
	rm -rf $(BUILD)
