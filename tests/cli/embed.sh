#!/usr/bin/env bash
# The installed package: `cmake --install` into a scratch prefix, then
# examples/embed configured with find_package(ebm) against it, built, and run
# on a freshly trained model (it must print finite energies).
set -u
BUILD=${1:?usage: embed.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: embed.sh BUILD_DIR SOURCE_DIR}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log" 2>&1 || { echo "FAIL: install"; cat "$T/install.log"; exit 1; }
for f in lib/libebm.a lib/libebm.so include/ebm/model/model.h lib/cmake/ebm/ebmConfig.cmake bin/ebm; do
  [ -e "$T/prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
cmake -S "$SRC/examples/embed" -B "$T/embed" -DCMAKE_PREFIX_PATH="$T/prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$T/cfg.log" 2>&1 || { echo "FAIL: configure examples/embed"; cat "$T/cfg.log"; exit 1; }
cmake --build "$T/embed" >"$T/build.log" 2>&1 || { echo "FAIL: build examples/embed"; cat "$T/build.log"; exit 1; }
"$T/prefix/bin/ebm" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/run" --set train.steps=20 \
  --set data.n=500 --set eval.sample_chains=50 >/dev/null 2>&1 || { echo "FAIL: train with the installed ebm"; exit 1; }
"$T/embed/embed" "$T/run/model.pt" 5 50 >"$T/out" 2>&1 || { echo "FAIL: embed run"; cat "$T/out"; exit 1; }
cat "$T/out"
[ "$(grep -c '^sample [0-9]* energy -\?[0-9]' "$T/out")" -eq 5 ] || { echo "FAIL: embed printed no 5 energies"; exit 1; }
ldd "$T/embed/embed" | grep -q "$T/prefix/lib/libebm.so" || { echo "FAIL: embed is not linked to the installed libebm.so"; exit 1; }
echo "ok: examples/embed built against the installed package and ran"
