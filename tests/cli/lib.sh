# Shared by the CLI contract scripts (run.sh: vectors and the program;
# images.sh: image models): sourced with the ebm binary as its argument.
# Each bad input gets its documented exit code and exactly one line on
# stderr that names the problem; no crash, no hang.
set -u
EBM=${1:?usage: run.sh path/to/ebm}
EBM=$(cd "$(dirname "$EBM")" && pwd)/$(basename "$EBM")  # (absolute: some tests run from other directories)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

# expect CODE PATTERN -- command...
expect() {
  local code=$1 pattern=$2
  shift 3
  timeout 120 "$@" >"$T/out" 2>"$T/err"
  local got=$?
  local lines
  lines=$(wc -l <"$T/err")
  if [ "$got" -ne "$code" ] || [ "$lines" -ne 1 ] || ! grep -q -- "$pattern" "$T/err"; then
    echo "FAIL: $* -> exit $got (want $code), $lines stderr lines (want 1), want /$pattern/:"
    sed 's/^/    /' "$T/err"
    fails=$((fails + 1))
  else
    echo "ok:   exit $code  $(cat "$T/err")"
  fi
}

# A tiny trained model to point the other commands at.
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/run" \
  --set train.steps=5 --set data.n=500 --set eval.sample_steps=5 --set eval.sample_chains=50 \
  >"$T/train.out" 2>"$T/train.err" || { echo "FAIL: tiny training run"; cat "$T/train.err"; exit 1; }
M="$T/run/model.pt"

printf '0.1,0.2\n0.3,0.4\n' >"$T/good.csv"
printf 'x,y\n0.1,0.2\n0.3,abc\n' >"$T/bad_cell.csv"
printf '0.1,0.2\n0.3,0.4,0.5\n' >"$T/ragged.csv"
printf '0.1,0.2\nnan,0.4\n' >"$T/nan.csv"
printf '0.1,0.2,0.3\n' >"$T/three.csv"
printf '\x93NUMPY\x01\x00\x46\x00{'"'"'descr'"'"': '"'"'<i4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (2, 2), }          \n' >"$T/int.npy"
head -c 64 /dev/zero >>"$T/int.npy"
printf 'not a numpy file at all' >"$T/garbage.npy"
printf '[train]\nstepz = 3\n' >"$T/unknown.toml"
printf '[train\nsteps = 3\n' >"$T/broken.toml"
printf 'data,x\n1,2\nnan,3\n' >"$T/nan_train.csv"


# Prints the count and fails the script when any check failed.
finish() {
  echo "$fails failure(s)"
  [ "$fails" -eq 0 ]
}
