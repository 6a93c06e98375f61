#!/usr/bin/env bash
# Data-parallel training from the command line (c10d/Gloo on loopback, two
# processes): exact resume on 2 ranks, a warning said once, a world-size
# mismatch refused, a killed rank ending the run with a message naming it,
# torchrun's variables checked, sampling and AIS independent of the number of
# ranks, and PCD on 2 ranks reaching the 1-rank NLL on 8gaussians.
set -u
EBM=${1:?usage: distributed.sh path/to/ebm}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT

# A constant learning rate: a run cut at step 30 then resumed follows the
# schedule of the run that went through.
sed -e 's/schedule = "cosine"/schedule = "constant"/' -e '/lr_min/d' "$SRC/configs/toy2d-pcd.toml" >"$T/pcd.toml"
S=(--config "$T/pcd.toml" --set train.steps=60 --set train.checkpoint_every=30 --set data.n=2000
   --set eval.sample_chains=50)
printf '0.1,0.2\n1.3,-0.4\n2,2\n-1,0.5\n' >"$T/pts.csv"
timeout 120 "$EBM" train "${S[@]}" --nproc 2 --out "$T/a" >/dev/null 2>"$T/err" || { fail "2-rank run"; cat "$T/err"; }
timeout 120 "$EBM" train "${S[@]}" --nproc 2 --out "$T/b" --set train.steps=30 >/dev/null 2>"$T/err" || { fail "2-rank run to 30"; cat "$T/err"; }
timeout 120 "$EBM" train "${S[@]}" --nproc 2 --out "$T/b" --resume >/dev/null 2>"$T/err" || { fail "2-rank resume"; cat "$T/err"; }
"$EBM" energy --model "$T/a/model.pt" --input "$T/pts.csv" --out "$T/ea.csv"
"$EBM" energy --model "$T/b/model.pt" --input "$T/pts.csv" --out "$T/eb.csv"
if cmp -s "$T/ea.csv" "$T/eb.csv"; then echo "ok:   2-rank resume is exact"; else fail "2-rank resume differs"; paste "$T/ea.csv" "$T/eb.csv"; fi
grep -q '"ranks":2' "$T/a/metrics.jsonl" || fail "metrics.jsonl does not say 2 ranks"
[ -z "$(ls "$T/a" | grep -v -E '^(checkpoint.pt|config.toml|eval.json|metrics.jsonl|model.pt|test.csv|samples|.*\.png)$')" ] \
  || fail "unexpected files in the run directory: $(ls "$T/a")"

# A warning comes once from a data-parallel run (rank 0 says the notes): a
# validation fraction too small for one row, on 2 ranks.
timeout 120 "$EBM" train "${S[@]}" --nproc 2 --out "$T/w" --set train.steps=2 --set data.val_fraction=0.0001 \
  >/dev/null 2>"$T/err" || { fail "2-rank run with a tiny validation fraction"; cat "$T/err"; }
n=$(grep -c "val_fraction" "$T/err")
[ "$n" -eq 1 ] && echo "ok:   one warning from 2 ranks" || { fail "the warning came $n times"; cat "$T/err"; }

# An error every rank meets (a bad data file, a bad key) is one line, not one
# per rank, and never two ranks' lines run together ("ebm: ebm: ...").
printf 'x,y\n1,2\n3,nan\n' >"$T/nan.csv"
for set in "data.path=$T/nan.csv" "train.lr=-1"; do
  timeout 120 "$EBM" train "${S[@]}" --nproc 2 --out "$T/e" --set "$set" >/dev/null 2>"$T/err"
  code=$?
  if [ $code -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && [ "$(grep -o 'ebm:' "$T/err" | wc -l)" -eq 1 ]; then
    echo "ok:   exit $code, one error line from 2 ranks  $(cat "$T/err")"
  else
    fail "--set $set on 2 ranks: exit $code"; cat "$T/err"
  fi
done

# Resuming with another world size is refused.
timeout 60 "$EBM" train "${S[@]}" --out "$T/b" --resume >/dev/null 2>"$T/err"
code=$?
{ [ $code -eq 78 ] && grep -q "written by 2 ranks" "$T/err" && [ "$(wc -l <"$T/err")" -eq 1 ]; } \
  && echo "ok:   exit 78  $(cat "$T/err")" || { fail "world-size mismatch -> $code"; cat "$T/err"; }

# torchrun's variables: RANK without WORLD_SIZE is a usage error.
RANK=0 timeout 30 "$EBM" train "${S[@]}" --out "$T/c" >/dev/null 2>"$T/err"
code=$?
{ [ $code -eq 64 ] && grep -q "WORLD_SIZE" "$T/err"; } && echo "ok:   exit 64  $(cat "$T/err")" \
  || { fail "RANK without WORLD_SIZE -> $code"; cat "$T/err"; }

# A rank killed mid-run: the launcher and the surviving rank stop with
# messages naming it, well within the timeout (never a hang).
"$EBM" train --config "$T/pcd.toml" --nproc 2 --out "$T/k" --set train.steps=100000 >/dev/null 2>"$T/kerr" &
launcher=$!
rank1=""
for _ in $(seq 1 300); do
  sleep 0.2
  [ -s "$T/k/metrics.jsonl" ] || continue
  for p in $(pgrep -P $launcher); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "RANK=1" && rank1=$p
  done
  break
done
if [ -z "$rank1" ]; then
  fail "the 2-rank run to kill did not start"; pkill -9 -P $launcher; kill -9 $launcher; cat "$T/kerr"
else
  kill -9 "$rank1"
  start=$(date +%s)
  wait $launcher
  code=$?
  took=$(($(date +%s) - start))
  if [ $code -eq 70 ] && [ $took -le 30 ] && grep -q "rank 1 was killed by signal 9" "$T/kerr" \
     && grep -q "rank 0: lost rank 1" "$T/kerr"; then
    echo "ok:   killed rank 1: exit 70 after $took s"; sed 's/^/      /' "$T/kerr"
  else
    fail "killed rank 1 -> exit $code after $took s"; cat "$T/kerr"
  fi
fi

# The launcher, told to stop (SIGTERM to it alone), stops its ranks.
"$EBM" train --config "$T/pcd.toml" --nproc 2 --out "$T/t" --set train.steps=100000 >/dev/null 2>"$T/terr" &
launcher=$!
for _ in $(seq 1 300); do sleep 0.2; [ -s "$T/t/metrics.jsonl" ] && break; done
ranks=$(pgrep -P $launcher | tr '\n' ' ')
kill -TERM $launcher
sleep 3
alive=""
for p in $ranks; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
if [ -n "$ranks" ] && [ -z "$alive" ]; then echo "ok:   SIGTERM to the launcher stopped ranks $ranks"
else fail "ranks still alive after SIGTERM to the launcher:$alive (ranks: $ranks)"; kill -9 $alive 2>/dev/null; fi
wait $launcher
code=$?
# (every rank stops at one step, rank 0 writes the checkpoint there, exit
# 128 + 15; --resume goes on: before, the ranks died with exit 70 and the
# steps since the last checkpoint)
if [ $code -eq 143 ] && grep -q "interrupted at step" "$T/terr" && [ -s "$T/t/checkpoint.pt" ] \
   && timeout 120 "$EBM" train --config "$T/pcd.toml" --nproc 2 --out "$T/t" --resume --set train.steps=1 \
        >/dev/null 2>"$T/terr2"; [ $? -eq 78 ] && grep -q "below the step" "$T/terr2"; then
  echo "ok:   SIGTERM: exit 143 with a checkpoint ($(grep -o 'interrupted at step [0-9]*' "$T/terr"))"
else
  fail "SIGTERM to the launcher -> exit $code"; cat "$T/terr"
fi

# Sampling and AIS split their chains into blocks over the ranks: the output
# is the same for 1 and 2 ranks.
for np in 1 2; do
  timeout 120 "$EBM" sample --target gaussian:dim=3,rho=0.5 --sampler nuts --n 150 --warmup 100 --steps 60 --thin 3 \
    --nproc $np --block 40 --out "$T/s$np.csv" >"$T/s$np.out" 2>"$T/err" || { fail "sample --nproc $np"; cat "$T/err"; }
  timeout 120 "$EBM" eval --task ais --target gaussian:dim=5 --temps 100 --chains 150 --reverse --nproc $np \
    --block 40 --out "$T/a$np.json" >/dev/null 2>"$T/err" || { fail "ais --nproc $np"; cat "$T/err"; }
done
if cmp -s "$T/s1.csv" "$T/s2.csv" && [ "$(wc -l <"$T/s1.csv")" -eq 3001 ]; then
  echo "ok:   sample --nproc 1 and 2 write the same draws"
else
  fail "sample --nproc 1 and 2 differ"; head -3 "$T/s1.csv" "$T/s2.csv"
fi
grep -q "over 2 ranks" "$T/s2.out" || fail "sample --nproc 2 does not say it ran on 2 ranks"
if python3 -c "
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for r in (a, b): r.pop('seconds')
sys.exit(0 if a == b and a['block'] == 40 else 1)" "$T/a1.json" "$T/a2.json"; then
  echo "ok:   eval --task ais --nproc 1 and 2 give the same estimates"
else
  fail "ais --nproc 1 and 2 differ"; cat "$T/a1.json" "$T/a2.json"
fi
timeout 30 "$EBM" eval --task nll2d --target gaussian --nproc 2 >/dev/null 2>"$T/err"
code=$?
{ [ $code -eq 64 ] && grep -q "task ais only" "$T/err"; } && echo "ok:   exit 64  $(cat "$T/err")" \
  || { fail "eval --nproc on another task -> $code"; cat "$T/err"; }

# PCD on 8gaussians: 2 ranks (batch 256 each) against 1 rank, same steps.
P=(--config "$SRC/configs/toy2d-pcd.toml" --set train.steps=2000)
nll() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['mean_nll'])" "$1"; }
timeout 300 "$EBM" train "${P[@]}" --out "$T/p1" >/dev/null 2>"$T/err" || { fail "1-rank PCD"; cat "$T/err"; }
timeout 300 "$EBM" train "${P[@]}" --nproc 2 --out "$T/p2" >/dev/null 2>"$T/err" || { fail "2-rank PCD"; cat "$T/err"; }
if [ -f "$T/p1/eval.json" ] && [ -f "$T/p2/eval.json" ]; then
  n1=$(nll "$T/p1/eval.json"); n2=$(nll "$T/p2/eval.json")
  if python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) <= float(sys.argv[1]) + 0.05 else 1)" "$n1" "$n2"; then
    echo "ok:   PCD test NLL: 1 rank $n1, 2 ranks $n2"
  else
    fail "PCD on 2 ranks: NLL $n2 vs 1 rank $n1 (allowed +0.05)"
  fi
fi

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
