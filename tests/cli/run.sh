#!/usr/bin/env bash
# CLI contract (DESIGN.md), vectors and the program as a whole (image
# models: images.sh): each bad input gets its documented exit code and
# exactly one line on stderr that names the problem; no crash, no hang.
source "$(dirname "$0")/lib.sh" "$@"

expect 0 ""          -- bash -c "'$EBM' energy --model '$M' --input '$T/good.csv' --out '$T/e.csv' && echo 'energy ok' >&2"
# The sampler's box is in the model's units: [-5, 5] after standardising
# columns in the thousands is fine, [0, 0.1] is not.
awk 'BEGIN { for (i = 0; i < 200; i++) printf "%.3f,%.3f\n", 5000 + 1000 * sin(i), 3000 + 500 * cos(3 * i) }' >"$T/thousands.csv"
BOX=(--config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/thousands.csv" --set sampler.name=ula --set train.steps=2
     --set eval.sample_steps=2 --set eval.sample_chains=20 --set objective.jumps=0 --set sampler.clamp_max=5)
expect 0 ""          -- bash -c "'$EBM' train ${BOX[*]} --set sampler.clamp_min=-5 --out '$T/box_ok' >/dev/null && echo 'box ok' >&2"
expect 65 "standardised; against sampler.clamp_min" -- "$EBM" train "${BOX[@]}" --set sampler.clamp_min=4.9 --out "$T/box_bad"
# Composing models of other units (a smoke test; Compose.ModelsOfOtherUnits
# checks the energy): sampled in the first model's units, without divergences.
awk 'BEGIN { for (i = 0; i < 200; i++) printf "%.3f,%.5f\n", 5000 + 1000 * sin(i), 0.04 + 0.01 * cos(3 * i) }' >"$T/mixed_units.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/mixed_units.csv" --set train.steps=2 \
  --set eval.sample_steps=2 --set eval.sample_chains=20 --out "$T/thousands_run" >/dev/null 2>&1 \
  && "$EBM" sample --model "$T/thousands_run/model.pt" --model "$M" --compose or --n 50 --steps 20 --out "$T/or_units.csv" \
  >"$T/or_units.txt" 2>&1 && grep -q "divergent 0 " "$T/or_units.txt" \
  || { echo "FAIL: composing models of other units"; sed 's/^/    /' "$T/or_units.txt"; fails=$((fails + 1)); }
# Sampling a standardised model of more than 100 dimensions (the summary
# tracks the first 100 after the change of units).
awk 'BEGIN { srand(3); for (i = 0; i < 300; i++) { for (j = 0; j < 101; j++) printf "%s%.3f", (j ? "," : ""), 50 * j + rand(); printf "\n" } }' >"$T/d101.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/d101.csv" --set train.steps=2 \
  --set eval.sample_steps=2 --set eval.sample_chains=20 --out "$T/d101" >/dev/null 2>&1 \
  && "$EBM" sample --model "$T/d101/model.pt" --n 8 --steps 6 --out "$T/d101_s.csv" >/dev/null 2>&1 \
  && [ "$(wc -l <"$T/d101_s.csv")" -ge 8 ] || { echo "FAIL: sampling a 101-d model"; fails=$((fails + 1)); }
# Rows in other units than the training data's: a warning, not an error.
printf '1000,2000\n-3000,1500\n' >"$T/far.csv"
expect 0 "far outside the model's training data" -- "$EBM" energy --model "$M" --input "$T/far.csv" --out "$T/e_far.csv"
expect 65 "bad_cell.csv:3" -- "$EBM" energy --model "$M" --input "$T/bad_cell.csv" --out "$T/e.csv"
expect 65 "ragged.csv:2"   -- "$EBM" energy --model "$M" --input "$T/ragged.csv" --out "$T/e.csv"
expect 65 "nan.csv:2"      -- "$EBM" energy --model "$M" --input "$T/nan.csv" --out "$T/e.csv"
expect 65 "three.csv"      -- "$EBM" energy --model "$M" --input "$T/three.csv" --out "$T/e.csv"
expect 65 "int.npy: byte offset 96: 48 trailing bytes" -- "$EBM" energy --model "$M" --input "$T/int.npy" --out "$T/e.csv"
# An integer NPY given to a model of vectors holds numbers (counts), not
# pixels: its energies are those of the same values as CSV.
head -c 96 "$T/int.npy" >"$T/int_ok.npy"
printf '0,0\n0,0\n' >"$T/zeros.csv"
"$EBM" energy --model "$M" --input "$T/int_ok.npy" --out "$T/e_int.csv" >/dev/null 2>&1 \
  && "$EBM" energy --model "$M" --input "$T/zeros.csv" --out "$T/e_zeros.csv" >/dev/null 2>&1 \
  && cmp -s "$T/e_int.csv" "$T/e_zeros.csv" || { echo "FAIL: integer NPY rows as numbers"; fails=$((fails + 1)); }
expect 65 "garbage.npy"    -- "$EBM" energy --model "$M" --input "$T/garbage.npy" --out "$T/e.csv"
expect 66 "missing.csv"    -- "$EBM" energy --model "$M" --input "$T/missing.csv" --out "$T/e.csv"
expect 66 "nope.pt"        -- "$EBM" energy --model "$T/nope.pt" --input "$T/good.csv" --out "$T/e.csv"
expect 65 "good.csv"       -- "$EBM" energy --model "$T/good.csv" --input "$T/good.csv" --out "$T/e.csv"
expect 78 "train.stepz"    -- "$EBM" train --config "$T/unknown.toml" --out "$T/r1"
expect 78 "broken.toml:1"  -- "$EBM" train --config "$T/broken.toml" --out "$T/r2"
expect 66 "absent.toml"    -- "$EBM" train --config "$T/absent.toml" --out "$T/r3"
expect 66 "cannot create the run directory" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set train.steps=2 --out "$T/good.csv/run"
# ebm sample's jumps between modes: two modes (0.7 / 0.3, 8 apart), every
# chain started in the left one. Without jumps none crosses; with them the
# right mode's share is 0.3 (2000 draws: SE 0.01; the 2000-step model's
# own mass is within 0.02 of it; the band is 0.3 +- 0.06).
awk 'BEGIN { srand(7); for (i = 0; i < 3000; i++) { u = rand(); v = rand(); r = sqrt(-2 * log(1 - u));
  c = (rand() < 0.3) ? 4 : -4; printf "%.5f,%.5f\n", c + 0.3 * r * cos(6.2831853 * v), 0.3 * r * sin(6.2831853 * v) } }' >"$T/two.csv"
awk 'BEGIN { for (i = 0; i < 2000; i++) print "-4,0" }' >"$T/left.csv"
if "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/two.csv" --set train.steps=2000 \
    --out "$T/two_run" >/dev/null 2>&1; then
  "$EBM" sample --model "$T/two_run/model.pt" --n 2000 --steps 50 --init "$T/left.csv" --jumps 0 --out "$T/j0.csv" >/dev/null 2>&1 \
    && "$EBM" sample --model "$T/two_run/model.pt" --n 2000 --steps 50 --init "$T/left.csv" --out "$T/j2.csv" >/dev/null 2>&1 \
    && awk -F, 'NR > 1 && $1 > 0 { r++ } END { exit !(r + 0 < 40) }' "$T/j0.csv" \
    && awk -F, 'NR > 1 { n++; if ($1 > 0) r++ } END { exit !(r / n > 0.24 && r / n < 0.36) }' "$T/j2.csv" \
    || { echo "FAIL: ebm sample's jumps do not carry the modes' masses"; fails=$((fails + 1)); }
  expect 64 "jumps 3: not with --nproc" -- "$EBM" sample --model "$T/two_run/model.pt" --n 20 --jumps 3 --nproc 2 --out "$T/j.csv"
else
  echo "FAIL: training on two modes"; fails=$((fails + 1))
fi
# A mixture of two models (--compose or) holds its weights: the same blob
# 6 apart trains the same standardised model twice (equal log Z), so the
# left share is the first weight; the jumps propose from both models' rows
# in the weights' shares. Without them every chain stays where it started
# (the first model's box). 2000 draws: SE 0.01, band +- 0.06.
awk 'BEGIN { srand(3); for (i = 0; i < 1000; i++) { u = rand(); v = rand(); r = sqrt(-2 * log(1 - u));
  printf "%.5f,%.5f\n", -3 + 0.5 * r * cos(6.2831853 * v), 0.5 * r * sin(6.2831853 * v) } }' >"$T/blob_a.csv"
awk -F, -v OFS=, '{ print $1 + 6, $2 }' "$T/blob_a.csv" >"$T/blob_b.csv"
for b in a b; do
  "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/blob_$b.csv" --set train.steps=300 \
    --out "$T/blob_${b}_run" >/dev/null 2>&1 || { echo "FAIL: training blob $b"; fails=$((fails + 1)); }
done
OR=(sample --model "$T/blob_a_run/model.pt" --model "$T/blob_b_run/model.pt" --compose or --n 2000 --steps 50)
"$EBM" "${OR[@]}" --weights 0.7,0.3 --out "$T/or73.csv" >/dev/null 2>&1 \
  && "$EBM" "${OR[@]}" --weights 0.2,0.8 --out "$T/or28.csv" >/dev/null 2>&1 \
  && "$EBM" "${OR[@]}" --weights 0.2,0.8 --jumps 0 --out "$T/or28_0.csv" >/dev/null 2>&1 \
  && awk -F, 'NR > 1 { n++; if ($1 < 0) r++ } END { exit !(r / n > 0.64 && r / n < 0.76) }' "$T/or73.csv" \
  && awk -F, 'NR > 1 { n++; if ($1 < 0) r++ } END { exit !(r / n > 0.14 && r / n < 0.26) }' "$T/or28.csv" \
  && awk -F, 'NR > 1 { n++; if ($1 < 0) r++ } END { exit !(r / n > 0.9) }' "$T/or28_0.csv" \
  || { echo "FAIL: --compose or does not hold its weights"; fails=$((fails + 1)); }
# --compose not is E_a - w E_b, which need not be normalisable: two blobs 6
# apart at w = 1 fall outward (a warning); one blob against half of itself
# is (E_a / 2): none.
"$EBM" sample --model "$T/blob_a_run/model.pt" --model "$T/blob_b_run/model.pt" --compose not --n 20 --steps 5 \
  --out "$T/not1.csv" 2>"$T/not1.err" >/dev/null && grep -q "falls outward along" "$T/not1.err" \
  && "$EBM" sample --model "$T/blob_a_run/model.pt" --model "$T/blob_a_run/model.pt" --compose not --weights 0.5 \
    --n 20 --steps 5 --out "$T/not2.csv" 2>"$T/not2.err" >/dev/null && ! grep -q "falls outward" "$T/not2.err" \
  || { echo "FAIL: --compose not warns of a composition that falls outward"; fails=$((fails + 1)); }
expect 78 "step_size"      -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/r4" --set sampler.step_size=-0.5
expect 78 "objective.alpha" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/r5" --set objective.alpha=-1
expect 78 "sampler.bogus"  -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/r6" --set sampler.bogus=1
expect 65 "nan_train.csv:3" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/r7" --set data.path="$T/nan_train.csv"
expect 66 "checkpoint"     -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/r8" --resume
expect 64 "already holds a run" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/run"
# A resumed run goes on with its own data (another file: refused); other
# settings are taken with a note.
expect 78 "a checkpoint continues on its own data" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/run" \
  --resume --set train.steps=6 --set data.n=500 --set data.path="$T/thousands.csv"
expect 64 ""               -- "$EBM"
expect 64 "unknown command 'frobnicate'" -- "$EBM" frobnicate
expect 64 "threads"        -- "$EBM" bench --workload langevin-mlp --threads 0
expect 64 "unknown"        -- "$EBM" bench --workload nope
# A request that does not fit in memory says so (not "internal error").
expect 70 "out of memory: one allocation of [0-9.]* GiB failed" -- "$EBM" sample --target gaussian --n 1000000000000 --steps 1 --out "$T/s.csv"
expect 78 "hmmc"           -- "$EBM" sample --target gaussian --sampler hmmc --n 4 --steps 1 --out "$T/s.csv"
expect 78 "step"           -- "$EBM" sample --target gaussian --sampler "langevin:step=-1" --n 4 --steps 1 --out "$T/s.csv"
# --init without --n: a chain from every row; --n below its rows: the first n
"$EBM" sample --model "$M" --init "$T/good.csv" --steps 1 --out "$T/init_all.csv" >/dev/null 2>&1 \
  && "$EBM" sample --model "$M" --init "$T/good.csv" --n 1 --steps 1 --out "$T/init_one.csv" >/dev/null 2>"$T/init_one.err" \
  && grep -q "the chains start from the first 1" "$T/init_one.err" \
  && [ "$(wc -l <"$T/init_all.csv")" -eq $(($(wc -l <"$T/init_one.csv") + 1)) ] \
  || { echo "FAIL: sample --init with and without --n"; fails=$((fails + 1)); }
# data.test_fraction = 0 on vectors of a file: no test split, no internal error
awk 'BEGIN { srand(3); for (i = 0; i < 60; i++) printf "%f,%f,%f,%f,%f\n", rand(), rand(), rand(), rand(), rand() }' >"$T/five.csv"
"$EBM" train --config "$SRC/configs/toy2d-dsm.toml" --set data.path="$T/five.csv" --set data.test_fraction=0 \
  --set train.steps=3 --out "$T/tf0" >/dev/null 2>"$T/tf0.err" \
  || { echo "FAIL: data.test_fraction = 0 on a file"; cat "$T/tf0.err"; fails=$((fails + 1)); }
# (chains that diverged to infinity are no draws: nothing is written)
rm -f "$T/inf.csv"
expect 70 "chains went to non-finite values (the sampler diverged" -- "$EBM" sample --target gaussian:dim=2 --sampler "langevin:step=1e9" --n 5 --steps 50 --out "$T/inf.csv"
[ ! -e "$T/inf.csv" ] || { echo "FAIL: diverged draws were written"; fails=$((fails + 1)); }
expect 78 "nosuch"         -- "$EBM" sample --target nosuch --n 4 --steps 1 --out "$T/s.csv"
expect 64 "extension"      -- "$EBM" sample --target gaussian --n 4 --steps 1 --out "$T/s.txt"
expect 64 "--target"       -- "$EBM" sample --n 4 --steps 1 --out "$T/s.csv"
expect 64 "nll3d"          -- "$EBM" eval --model "$M" --task nll3d --dataset moons
# VERA: a generator beside the energy, kept in model.pt and sampled in one pass.
printf '[data]\nname = "8gaussians"\nn = 500\n[energy]\nhidden = [16]\n[generator]\nname = "mlp"\nhidden = [16]\n[objective]\nname = "vera"\nposterior_samples = 4\nalpha = 0.03\n[train]\nsteps = 5\nbatch_size = 32\n[eval]\nsample_steps = 5\nsample_chains = 50\n' >"$T/vera.toml"
"$EBM" train --config "$T/vera.toml" --out "$T/vera" >"$T/vera.out" 2>&1 \
  && "$EBM" sample --model "$T/vera/model.pt" --from generator --n 7 --out "$T/gen.csv" >/dev/null 2>&1 \
  && [ "$(wc -l <"$T/gen.csv")" -eq 8 ] || { echo "FAIL: vera train + sample --from generator"; fails=$((fails + 1)); }
# Five steps leave the generator far from the data's eight modes: the run's
# report and sample --from generator say its draws miss the data's cells.
grep -q "the generator's draws differ from the training data's shares in" "$T/vera.out" \
  && grep -q '"generator_cells"' "$T/vera/eval.json" || { echo "FAIL: the run's generator check"; fails=$((fails + 1)); }
"$EBM" sample --model "$T/vera/model.pt" --from generator --n 2000 --out "$T/gen2k.csv" >/dev/null 2>"$T/gen2k.err" \
  && grep -q "the generator's draws differ from its training rows' shares in" "$T/gen2k.err" \
  || { echo "FAIL: sample --from generator: dropped-mode warning"; fails=$((fails + 1)); }
"$EBM" eval --model "$T/vera/model.pt" --task generator --n 500 --out "$T/gen.json" >/dev/null 2>&1 \
  && grep -q '"modes_covered"' "$T/gen.json" || { echo "FAIL: eval --task generator"; fails=$((fails + 1)); }
"$EBM" sample --model "$T/vera/model.pt" --from generator --latent --warmup 3 --steps 3 --n 6 --out "$T/lat.csv" \
  2>"$T/lat.err" >/dev/null && [ "$(wc -l <"$T/lat.csv")" -eq 7 ] && grep -q "latent MALA" "$T/lat.err" \
  || { echo "FAIL: sample --from generator --latent"; fails=$((fails + 1)); }
expect 64 "add --from generator" -- "$EBM" sample --model "$T/vera/model.pt" --latent --n 2 --out "$T/s.csv"
# A run of the user's file has no closed-form density to score draws under
# (its config's data.name is the unused default).
"$EBM" train --config "$T/vera.toml" --set data.path="$T/thousands.csv" --set train.steps=2 --out "$T/vera_file" >/dev/null 2>&1 \
  || { echo "FAIL: vera on a file"; fails=$((fails + 1)); }
expect 65 "thousands.csv, which has no closed-form density" -- "$EBM" eval --model "$T/vera_file/model.pt" --task generator --n 50
# train.init starts a learned sampler's network from the model's too: with
# no steps the generator draws what the model's does.
"$EBM" train --config "$T/vera.toml" --set train.steps=0 --set train.init="$T/vera/model.pt" --out "$T/vera0" >/dev/null 2>&1 \
  && "$EBM" sample --model "$T/vera/model.pt" --from generator --n 7 --seed 4 --out "$T/gen_a.csv" >/dev/null 2>&1 \
  && "$EBM" sample --model "$T/vera0/model.pt" --from generator --n 7 --seed 4 --out "$T/gen_b.csv" >/dev/null 2>&1 \
  && cmp -s "$T/gen_a.csv" "$T/gen_b.csv" || { echo "FAIL: train.init copies the generator"; fails=$((fails + 1)); }
"$EBM" train --config "$SRC/configs/moons-jem-vera.toml" --out "$T/jv" --set train.steps=5 --set data.n=500 \
  --set objective.posterior_samples=2 --set eval.sample_steps=5 --set eval.sample_chains=50 >/dev/null 2>&1 \
  && grep -q '"accuracy"' "$T/jv/metrics.jsonl" && [ -s "$T/jv/samples/decision.png" ] \
  || { echo "FAIL: moons-jem-vera (VERA's JEM variant)"; fails=$((fails + 1)); }
expect 65 "closed-form density" -- "$EBM" eval --model "$T/vera/model.pt" --task generator --dataset moons
# AIS: log Z of a target and of a model, its bad options.
"$EBM" eval --task ais --target gaussian:dim=3 --temps 20 --chains 20 --moves 2 --reverse --out "$T/ais.json" >/dev/null 2>&1 \
  && grep -q '"truth"' "$T/ais.json" && grep -q '"reverse"' "$T/ais.json" \
  || { echo "FAIL: eval --task ais --target"; fails=$((fails + 1)); }
"$EBM" eval --task ais --model "$M" --dataset moons --n 200 --temps 10 --chains 10 --out "$T/ais2.json" >/dev/null 2>&1 \
  && grep -q '"nll"' "$T/ais2.json" || { echo "FAIL: eval --task ais --model"; fails=$((fails + 1)); }
"$EBM" sample --target double_well --n 300 --steps 50 --out "$T/dw.npy" >/dev/null 2>&1 \
  && "$EBM" eval --task ais --energy-script "$SRC/tests/data/double_well.pt" --data "$T/dw.npy" --temps 10 --chains 10 \
    --out "$T/ais3.json" >/dev/null 2>&1 && grep -q '"log_z"' "$T/ais3.json" \
  || { echo "FAIL: eval --task ais --energy-script"; fails=$((fails + 1)); }
expect 64 "to fit the base to" -- "$EBM" eval --task ais --energy-script "$SRC/tests/data/double_well.pt"
expect 64 "temps must be >= 1" -- "$EBM" eval --task ais --target gaussian --temps 0
expect 64 "chains must be >= 2" -- "$EBM" eval --task ais --target gaussian --chains 0
expect 64 "chains must be >= 2" -- "$EBM" eval --task ais --target gaussian --chains 1
head -1 "$T/good.csv" >"$T/one_row.csv"
expect 0 "over 1 points" -- bash -c "'$EBM' eval --task nll2d --model '$M' --data '$T/one_row.csv' | head -1 >&2"
expect 0 "each batch holds every row about 4 times over" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" \
  --set data.n=100 --set train.batch_size=360 --set train.steps=2 --out "$T/big_batch"
expect 64 "schedule must be" -- "$EBM" eval --task ais --target gaussian --schedule cubic
expect 64 "only with --task ais" -- "$EBM" eval --task nll2d --target gaussian
printf '1,2,3\n4,5,6\n' >"$T/three.csv"
expect 65 "rows of 3 values" -- "$EBM" eval --task ais --model "$M" --data "$T/three.csv" --temps 2 --chains 2
expect 65 "has no generator" -- "$EBM" sample --model "$M" --from generator --n 2 --out "$T/s.csv"
# (a classifier trained by cross entropy alone: its energy falls without
# bound, log Z is infinite, AIS refuses it)
printf 'seed = 0\n[data]\nname = "moons"\nn = 2000\n[energy]\nname = "mlp"\nconditional = true\nhidden = [32, 32]\n[objective]\nname = "ce"\n[train]\nsteps = 200\nbatch_size = 128\n' >"$T/ce_moons.toml"
"$EBM" train --config "$T/ce_moons.toml" --out "$T/ce_moons" >/dev/null 2>&1 || { echo "FAIL: ce moons"; fails=$((fails + 1)); }
expect 65 "no normaliser, log Z is infinite" -- "$EBM" eval --task ais --model "$T/ce_moons/model.pt" --temps 2 --chains 2

expect 64 "from must be noise or generator" -- "$EBM" sample --model "$M" --from prior --n 2 --out "$T/s.csv"
printf '[data]\nname = "8gaussians"\n[objective]\nname = "vera"\n[train]\nsteps = 5\n' >"$T/vera_nogen.toml"
expect 78 "needs a generator" -- "$EBM" train --config "$T/vera_nogen.toml" --out "$T/r29"
# A 2D JEM (labelled moons): the decision-region picture, classify on fresh moons.
"$EBM" train --config "$SRC/configs/moons-jem.toml" --out "$T/moons_jem" --set train.steps=5 --set data.n=500 \
  --set eval.sample_steps=5 --set eval.sample_chains=50 >/dev/null 2>&1 && [ -s "$T/moons_jem/samples/decision.png" ] \
  && "$EBM" eval --task classify --model "$T/moons_jem/model.pt" --out "$T/mj.json" >/dev/null 2>&1 \
  && grep -q '"accuracy"' "$T/mj.json" && grep -q '"per_class"' "$T/mj.json" && grep -q '"balanced_accuracy"' "$T/mj.json" && grep -q '"gaussian_lda"' "$T/mj.json" \
  && grep -q '"val_nll"' "$T/moons_jem/metrics.jsonl" && grep -q '"event":"keep_best"' "$T/moons_jem/metrics.jsonl" \
  || { echo "FAIL: moons-jem train + classify (and its Gaussian-classifier baseline, early stopping)"; fails=$((fails + 1)); }
# Ctrl-C ends training at the step with a checkpoint there (exit 130), which
# --resume continues; --resume with another seed (another data split) is 78.
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/intr" --set train.steps=1000000 \
  --set train.checkpoint_every=1000000 --set train.log_every=20 >/dev/null 2>"$T/intr.err" &
intr_pid=$!
for _ in $(seq 1 600); do [ -s "$T/intr/metrics.jsonl" ] && break; sleep 0.1; done
kill -INT "$intr_pid"
wait "$intr_pid"
intr_rc=$?
[ "$intr_rc" = 130 ] && [ -s "$T/intr/checkpoint.pt" ] && grep -q "interrupted at step" "$T/intr.err" \
  || { echo "FAIL: Ctrl-C leaves a checkpoint (rc $intr_rc)"; fails=$((fails + 1)); }
expect 78 "which made its data split" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/intr" \
  --resume --seed 5 --set train.steps=1000000 --set train.checkpoint_every=1000000 --set train.log_every=20
# train.calibrate: 150 validation rows fit p(y | x)'s temperature, which
# classify applies (--temperature 1: the softmax as trained) and eval reports.
awk 'BEGIN { srand(3); for (i = 0; i < 50; i++) printf "%.4f,%.4f\n", 3 * rand() - 1, 2 * rand() - 1 }' >"$T/mj_in.csv"
"$EBM" train --config "$SRC/configs/moons-jem.toml" --out "$T/mj_cal" --set train.steps=5 --set data.n=2000 \
  --set eval.sample_steps=2 --set eval.sample_chains=10 >"$T/mj_cal.out" 2>/dev/null \
  && grep -q '"event":"calibrate"' "$T/mj_cal/metrics.jsonl" && grep -q "p(y | x) temperature" "$T/mj_cal.out" \
  && "$EBM" classify --model "$T/mj_cal/model.pt" --input "$T/mj_in.csv" --out "$T/mj_t.csv" >/dev/null 2>&1 \
  && "$EBM" classify --model "$T/mj_cal/model.pt" --input "$T/mj_in.csv" --out "$T/mj_t1.csv" --temperature 1 >/dev/null 2>&1 \
  && ! cmp -s "$T/mj_t.csv" "$T/mj_t1.csv" \
  && "$EBM" eval --task calibration --model "$T/mj_cal/model.pt" --out "$T/mj_cal.json" >/dev/null 2>&1 \
  && grep -q '"untempered"' "$T/mj_cal.json" \
  || { echo "FAIL: train.calibrate fits a temperature that classify and eval apply"; fails=$((fails + 1)); }
expect 64 "--temperature must be 'model' or a number > 0" -- "$EBM" classify --model "$T/mj_cal/model.pt" \
  --input "$T/mj_in.csv" --out "$T/mj_t0.csv" --temperature 0
# A 2D run's validation NLL (keep_best's score) on a grid over the training
# rows less the farthest 0.2%: one row at 500 sd swung it 2.3 nats under the
# data's entropy (here log(2 pi e) = 2.84 for N(0, I))
awk 'BEGIN { srand(5); for (i = 0; i < 3000; i++) { r = sqrt(-2 * log(1 - rand())); t = 6.2832 * rand();
  printf "%.4f,%.4f\n", r * cos(t), r * sin(t) } print "500,0" }' >"$T/far_row.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/far_row" --set data.path="$T/far_row.csv" \
  --set data.val_fraction=0.1 --set train.keep_best=true --set train.steps=300 --set train.log_every=50 \
  --set eval.sample_steps=2 --set eval.sample_chains=10 >/dev/null 2>&1 \
  && grep -o '"val_nll":[-0-9.e]*' "$T/far_row/metrics.jsonl" | cut -d: -f2 | awk '$1 < 2.6 { bad = 1 } END { exit bad || NR < 6 }' \
  || { echo "FAIL: 2D validation NLL with a far training row"; grep -o '"val_nll":[-0-9.e]*' "$T/far_row/metrics.jsonl"; fails=$((fails + 1)); }
# A value near float32's largest in the data: trained and reported (the
# density picture indexed its colours with NaN: a segfault)
awk 'BEGIN { srand(9); print "3e38,0.5"; for (i = 0; i < 400; i++) printf "%.4f,%.4f\n", rand(), rand() }' >"$T/f32max.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/f32max" --set data.path="$T/f32max.csv" \
  --set train.steps=10 --set eval.sample_steps=2 --set eval.sample_chains=10 >/dev/null 2>"$T/f32max.err" \
  && grep -q "is 5.*e+37x that of its central 98%" "$T/f32max.err" && [ -s "$T/f32max/eval.json" ] \
  || { echo "FAIL: training on a value near float32's largest"; cat "$T/f32max.err"; fails=$((fails + 1)); }
expect 78 "train.lr_min = 0.1 must be in" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" \
  --out "$T/lrmin" --set train.lr_min=0.1 --set train.steps=10
# data.balance = on for a classifier: p(y | x) for equal class shares, kept
# by keep_best and the temperature (its validation weighed the data's
# shares: a 95/5 JEM run kept step 0, its base carrying the shares): midway
# between two unit Gaussians 3 apart p(1 | x) is 1/2 (0.05 in the data's shares)
awk 'BEGIN { srand(11); for (i = 0; i < 2000; i++) { y = (rand() < 0.05); r = sqrt(-2 * log(1 - rand())); t = 6.2832 * rand();
  printf "%.4f,%.4f\n", 3 * y + r * cos(t), r * sin(t) > "'"$T/imb.csv"'"; print y > "'"$T/imb_y.csv"'" } }'
printf '1.5,0\n' >"$T/mid.csv"
"$EBM" train --config "$SRC/configs/moons-jem.toml" --out "$T/imb" --set data.path="$T/imb.csv" \
  --set data.labels="$T/imb_y.csv" --set data.balance=on --set data.val_fraction=0.1 --set train.keep_best=true \
  --set train.steps=200 --set eval.sample_steps=2 --set eval.sample_chains=10 >/dev/null 2>"$T/imb.err" \
  && grep -q "p(y | x) is learned for equal class shares" "$T/imb.err" \
  && "$EBM" classify --model "$T/imb/model.pt" --input "$T/mid.csv" --out "$T/mid_p.csv" >/dev/null 2>&1 \
  && awk -F, 'NR == 2 { exit !($2 > 0.25 && $2 < 0.75) }' "$T/mid_p.csv" \
  || { echo "FAIL: data.balance = on for a classifier"; cat "$T/imb.err" "$T/mid_p.csv"; fails=$((fails + 1)); }
# (a word among class indices: named with its row, not the first label)
awk '{ print (NR == 5 ? "abc" : NR % 2) }' "$T/mj_in.csv" >"$T/mj_word.csv"
expect 65 "mj_word.csv: label 'abc' (row 5) is a word" -- "$EBM" classify --model "$T/mj_cal/model.pt" \
  --input "$T/mj_in.csv" --labels "$T/mj_word.csv" --out "$T/mj_tw.csv"
# Inpainting a vector by sampling draws from the conditional: x0 holds 10%
# of its mass in a second mode whatever x1 is, so about 10% of the filled x0
# lie there (jumps from the training rows' x0 between the modes; the DSM
# model's untried step adapted first). Without them 0 of 400 did. (1,000
# draws: sd of the share 0.0095; the band [0.05, 0.16] also allows for the
# model's own weight.)
awk 'BEGIN { srand(11); for (i = 0; i < 10000; i++) { u = rand(); v = rand(); w = rand(); z = rand();
  g1 = sqrt(-2 * log(1 - u)) * cos(6.2831853 * v); g2 = sqrt(-2 * log(1 - w)) * cos(6.2831853 * z);
  printf "%.5f,%.5f\n", (rand() < 0.1 ? 3 : -3) + 0.5 * g1, g2 } }' >"$T/bim.csv"
"$EBM" train --config "$SRC/configs/toy2d-dsm.toml" --out "$T/bim" --set data.path="$T/bim.csv" --set train.steps=1500 \
  >/dev/null 2>&1 \
  && "$EBM" inpaint --model "$T/bim/model.pt" --input "$T/bim/test.csv" --mask dims:0 --method sample \
       --out "$T/bim_fill.csv" >/dev/null 2>"$T/bim.err" \
  && share=$(awk -F, '$1 > 0 { c++ } END { print c / NR }' "$T/bim_fill.csv") \
  && awk -v s="$share" 'BEGIN { exit !(s > 0.05 && s < 0.16) }' \
  && echo "ok:   inpaint --method sample: the second mode's share $share (10% in the data)" \
  || { echo "FAIL: inpaint --method sample: the second mode's share ${share:-?}"; cat "$T/bim.err"; fails=$((fails + 1)); }
# Columns that are a linear function of one another (a length in metres and
# in feet) have no density: a note names them; independent ones draw none.
awk 'BEGIN { srand(4); for (i = 0; i < 300; i++) { a = int(rand() * 100000) / 1000; printf "%.3f,%.3f,%.6f\n", a, 2 * a, rand() } }' \
  >"$T/feet.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/feet" --set data.path="$T/feet.csv" --set train.steps=1 \
  >/dev/null 2>"$T/feet.err"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/nofeet" --set data.path="$T/bim.csv" --set train.steps=1 \
  >/dev/null 2>"$T/nofeet.err"
grep -q "columns 1, 2 are a linear function of one another" "$T/feet.err" && ! grep -q "linear function" "$T/nofeet.err" \
  || { echo "FAIL: the note of collinear columns"; cat "$T/feet.err" "$T/nofeet.err"; fails=$((fails + 1)); }
# Rows thin along a diagonal (which per-column standardisation cannot undo),
# trained by DSM with a sigma wider than that: a note; the 2-mode rows: none.
awk 'BEGIN { srand(5); for (i = 0; i < 2000; i++) { t = rand() - 0.5; e = 0.002 * (rand() - 0.5); printf "%.6f,%.6f\n", t + e, t - e } }' \
  >"$T/thin.csv"
for f in thin bim; do
  "$EBM" train --config "$SRC/configs/toy2d-dsm.toml" --out "$T/dsm_$f" --set data.path="$T/$f.csv" --set train.steps=1 \
    >/dev/null 2>"$T/dsm_$f.err"
done
grep -q "thinnest direction has sd .* under twice objective.sigma" "$T/dsm_thin.err" && ! grep -q "thinnest" "$T/dsm_bim.err" \
  || { echo "FAIL: the note of a direction thinner than DSM's sigma"; cat "$T/dsm_thin.err" "$T/dsm_bim.err"; fails=$((fails + 1)); }
# A CSV header's names are kept: a later file naming them in another order is
# refused (its values would feed the wrong inputs), the same order passes.
awk 'BEGIN { srand(7); print "u,v,w"; for (i = 0; i < 200; i++) printf "%.4f,%.4f,%.4f\n", rand(), 10 * rand(), rand() - 5 }' >"$T/named.csv"
awk -F, 'NR == 1 { print "u,w,v"; next } { print $1 "," $3 "," $2 }' "$T/named.csv" >"$T/named_swap.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/named_run" --set data.path="$T/named.csv" --set train.steps=5 \
  --set eval.sample_steps=2 >/dev/null 2>&1 && grep -q 'columns = \["u", "v", "w"\]' "$T/named_run/config.toml" \
  && "$EBM" energy --model "$T/named_run/model.pt" --input "$T/named.csv" --out "$T/named_e.csv" >/dev/null 2>&1 \
  || { echo "FAIL: a CSV header's column names kept by training"; fails=$((fails + 1)); }
expect 65 "named_swap.csv: its header names the model's columns in another order (column 2 is 'w'" -- \
  "$EBM" energy --model "$T/named_run/model.pt" --input "$T/named_swap.csv" --out "$T/named_e.csv"
# ... samples come out under those names; AIS without --data fits its base to
# the model's own training rows (not the 8gaussians default of its [data]).
"$EBM" sample --model "$T/named_run/model.pt" --n 3 --steps 2 --out "$T/named_s.csv" >/dev/null 2>&1 \
  && [ "$(head -1 "$T/named_s.csv")" = "u,v,w" ] \
  && "$EBM" eval --task ais --model "$T/named_run/model.pt" --temps 5 --chains 4 2>/dev/null \
    | grep -Eq "(gaussian|mixture) base (of [0-9]+ Gaussians )?fitted to the model's [0-9]+ training rows" \
  || { echo "FAIL: samples named as the training columns; AIS base from the model's rows"; fails=$((fails + 1)); }
# ... and so do inpainted and denoised rows (an unnamed model's have no header, as before)
"$EBM" inpaint --model "$T/named_run/model.pt" --input "$T/named.csv" --mask dims:1 --out "$T/named_i.csv" >/dev/null 2>&1 \
  && [ "$(head -1 "$T/named_i.csv")" = "u,v,w" ] && [ "$(wc -l <"$T/named_i.csv")" -eq 201 ] \
  && "$EBM" denoise --model "$M" --input "$T/good.csv" --noise-std 0.1 --out "$T/good_d.csv" >/dev/null 2>&1 \
  && [ "$(wc -l <"$T/good_d.csv")" -eq 2 ] \
  || { echo "FAIL: inpainted rows named as the training columns"; head -2 "$T/named_i.csv"; fails=$((fails + 1)); }
awk -F, '{ print $1 "," $2 }' "$T/named.csv" >"$T/named2.csv"
awk -F, 'NR == 1 { print "v,u"; next } { print $2 "," $1 }' "$T/named2.csv" >"$T/named2_swap.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/named2_run" --set data.path="$T/named2.csv" \
  --set train.steps=5 --set eval.sample_steps=2 >/dev/null 2>&1 \
  || { echo "FAIL: a 2D run on a CSV with a header"; fails=$((fails + 1)); }
expect 65 "named2_swap.csv: its header names the model's columns in another order" -- \
  "$EBM" eval --task nll2d --model "$T/named2_run/model.pt" --data "$T/named2_swap.csv"
# Chains that never reach the data (one tiny step a round, 64-d): the run says
# its energy is no fitted density.
awk 'BEGIN { srand(1); for (i = 0; i < 300; i++) { for (j = 1; j <= 64; j++) printf "%s%.4f", (j > 1 ? "," : ""), rand() - 0.5; print "" } }' >"$T/d64.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --out "$T/gap" --set data.path="$T/d64.csv" --set train.steps=100 --set train.lr=1e-2 \
  --set sampler.steps=1 --set sampler.step_size=1e-6 --set sampler.adapt=false --set eval.sample_steps=5 \
  2>"$T/gap.err" >/dev/null && grep -q "the sampler does not reach the data" "$T/gap.err" \
  || { echo "FAIL: a run whose chains never reach the data warns"; fails=$((fails + 1)); }
# JEM on 64-d labelled rows: p(x) by score matching (objective.px = auto),
# validation of the whole objective, no chains to warn about.
awk 'BEGIN { for (i = 0; i < 300; i++) print i % 3 }' >"$T/d64_y.csv"
"$EBM" train --config "$SRC/configs/moons-jem.toml" --out "$T/jem64" --set data.path="$T/d64.csv" \
  --set data.labels="$T/d64_y.csv" --set energy.classes=3 --set train.steps=20 --set train.log_every=10 \
  --set eval.sample_steps=2 --set eval.sample_chains=10 2>"$T/jem64.err" >/dev/null \
  && grep -q '"val_objective"' "$T/jem64/metrics.jsonl" && ! grep -q "does not reach" "$T/jem64.err" \
  && "$EBM" classify --model "$T/jem64/model.pt" --input "$T/d64.csv" --out "$T/jem64.csv" 2>/dev/null \
  || { echo "FAIL: JEM on 64-d rows trains p(x) by score matching"; fails=$((fails + 1)); }
# Robustness of a standardised vector model: radii in training standard
# deviations; an option of another task names itself and its task.
"$EBM" eval --task robustness --model "$T/jem64/model.pt" --data "$T/d64.csv" --labels "$T/d64_y.csv" --eps 0.1 \
  --n 20 --steps 2 --out "$T/rob64.json" >/dev/null 2>&1 \
  && grep -q '"eps_units": "training standard deviations' "$T/rob64.json" \
  || { echo "FAIL: robustness radii of a standardised vector model"; fails=$((fails + 1)); }
expect 64 "eps is an option of eval task robustness, not of --task calibration" -- "$EBM" eval --task calibration \
  --model "$T/jem64/model.pt" --data "$T/d64.csv" --labels "$T/d64_y.csv" --eps 0.1
# A model trained without chains: ebm sample adapts a MALA step in a warm-up
# first (its [sampler] step was never tried); a PCD model's sampler as trained.
"$EBM" sample --model "$T/jem64/model.pt" --n 40 --steps 30 --out "$T/jem64s.csv" >"$T/jem64s.out" 2>"$T/jem64s.err" \
  && grep -q "never tried on it: 100 warm-up transitions of mala adapt" "$T/jem64s.err" \
  && grep -q "^sampler mala: 40 chains, 100 warm-up + 30 steps" "$T/jem64s.out" \
  && "$EBM" sample --model "$T/jem64/model.pt" --n 40 --steps 30 --warmup 0 --out "$T/jem64s.csv" 2>"$T/jem64s.err" \
    >"$T/jem64s.out" && ! grep -q "never tried" "$T/jem64s.err" && grep -q "^sampler mala: 40 chains, 0 warm-up" "$T/jem64s.out" \
  && "$EBM" train --config "$SRC/configs/toy2d-dsm.toml" --out "$T/dsm5" --set train.steps=5 --set data.n=500 \
    --set eval.sample_steps=2 --set eval.sample_chains=10 >/dev/null 2>&1 \
  && "$EBM" sample --model "$T/dsm5/model.pt" --n 20 --steps 600 --out "$T/dsm5s.csv" 2>"$T/dsm5s.err" >"$T/dsm5s.out" \
  && grep -q "(0.01) was never tried on it: 500 warm-up transitions of MALA" "$T/dsm5s.err" \
  && grep -q "^sampler mala: 20 chains, 500 warm-up + 600 steps" "$T/dsm5s.out" \
  && "$EBM" sample --model "$M" --n 20 --steps 5 --out "$T/pcds.csv" 2>"$T/pcds.err" >/dev/null \
  && ! grep -q "never tried" "$T/pcds.err" \
  || { echo "FAIL: sampling a model trained without chains warms a MALA step up"; fails=$((fails + 1)); }
# (with a --warmup of the user's too, and from --init rows: the DSM recipe's
# Langevin, its noise far below sqrt(2 step), samples a colder density)
head -20 "$T/dsm5/test.csv" >"$T/dsm5_init.csv"
"$EBM" sample --model "$T/dsm5/model.pt" --steps 20 --warmup 50 --init "$T/dsm5_init.csv" --out "$T/dsm5w.csv" \
  2>"$T/dsm5w.err" >"$T/dsm5w.out" \
  && grep -q "never tried on it: 50 warm-up transitions of MALA" "$T/dsm5w.err" \
  && grep -q "^sampler mala: 20 chains, 50 warm-up + 20 steps" "$T/dsm5w.out" \
  || { echo "FAIL: a user's --warmup on a model trained without chains"; cat "$T/dsm5w.err"; fails=$((fails + 1)); }
expect 78 "objective.px must be auto, cd or dsm" -- "$EBM" train --config "$SRC/configs/moons-jem.toml" \
  --out "$T/r_px" --set objective.px=sm
expect 78 "objective.sigma_floor must be" -- "$EBM" train --config "$SRC/configs/toy2d-dsm.toml" \
  --out "$T/r_floor" --set objective.sigma_floor=auto
# Early stopping needs validation rows and a classifier.
expect 78 "set data.val_fraction" -- "$EBM" train --config "$SRC/configs/moons-jem.toml" --out "$T/kb" \
  --set data.val_fraction=0
for i in $(seq 50); do echo "$i,$((i % 7)),$((i % 3))"; done >"$T/three50.csv"
expect 78 "needs validation it can score" -- "$EBM" train --config "$SRC/configs/toy2d-dsm.toml" --out "$T/kb" \
  --set data.path="$T/three50.csv" --set data.val_fraction=0.1 --set train.keep_best=true
expect 78 "unknown dataset" -- "$EBM" eval --model "$M" --task nll2d --dataset nine
# OOD detection: the OOD sets are --out-data (--out is the JSON report, as for every task).
OOD=(eval --model "$M" --task ood --in-data "$T/good.csv")
expect 64 "likelihood: unknown score" -- "$EBM" "${OOD[@]}" --out-data uniform --score energy,likelihood
expect 64 "not class-conditional" -- "$EBM" "${OOD[@]}" --out-data uniform --score max_logit
expect 65 "three.csv"      -- "$EBM" "${OOD[@]}" --out-data uniform --out-data "$T/three.csv"
expect 64 "give --in-data" -- "$EBM" eval --model "$M" --task ood --out-data uniform
expect 66 "missing.csv"    -- "$EBM" eval --model "$M" --task ood --in "$T/missing.csv" --out-data uniform
# A report or a result whose folder is missing is refused before the work.
expect 66 "no_dir/ood.json: cannot write: no such directory" -- "$EBM" "${OOD[@]}" --out-data uniform --out "$T/no_dir/ood.json"
expect 66 "no_dir/d.csv: cannot write: no such directory" -- "$EBM" denoise --model "$M" --input "$T/good.csv" \
  --corrupt gaussian:0.1 --out "$T/no_dir/d.csv"
# A row the model has no finite energy of (a value of 1e30) is refused by
# denoise (it was written back unchanged, exit 0) and by inpaint, nothing
# written; a single row far out among typical ones is a warning.
printf '0.1,0.2\n1e30,0.4\n0.3,0.1\n' >"$T/far30.csv"
expect 65 "far30.csv: row 2 (counting from 1): the model's energy of it is not finite" -- "$EBM" denoise \
  --model "$M" --input "$T/far30.csv" --noise-std 0.1 --out "$T/d30.csv"
expect 65 "far30.csv: row 2 (counting from 1): the model's energy of it is not finite" -- "$EBM" inpaint \
  --model "$M" --input "$T/far30.csv" --mask dims:1 --out "$T/i30.csv"
[ ! -e "$T/i30.csv" ] && [ ! -e "$T/d30.csv" ] || { echo "FAIL: output written for a row of 1e30"; fails=$((fails + 1)); }
# (the far value masked: nothing to say)
expect 0 "" -- bash -c "'$EBM' inpaint --model '$M' --input '$T/far30.csv' --mask dims:0 --out '$T/i30.csv' && echo ok >&2"
printf '0.1,0.2\n900,0.4\n0.3,0.1\n' >"$T/far900.csv"
expect 0 "1 row(s) lie over 100 training standard deviations.*row 2 counting from 1, column 1" -- "$EBM" denoise \
  --model "$M" --input "$T/far900.csv" --noise-std 0.1 --out "$T/d900.csv"
expect 64 "give --out-data" -- "$EBM" "${OOD[@]}" --out "$T/ood.json"
expect 64 "flips need an image model" -- "$EBM" "${OOD[@]}" --out-data "vflip:$T/good.csv"
"$EBM" "${OOD[@]}" --out-data uniform --out-data "$T/good.csv" --out "$T/ood.json" >"$T/ood.txt" 2>/dev/null \
  && grep -q '"fpr95"' "$T/ood.json" && grep -q "grad_norm" "$T/ood.txt" || { echo "FAIL: ood"; fails=$((fails + 1)); }
# --rows: every row's scores (set 0 = in, k = k-th --out-data), as many rows as the sets have.
n_good=$(wc -l <"$T/good.csv")
"$EBM" "${OOD[@]}" --out-data "$T/good.csv" --score energy --rows "$T/ood_rows.csv" >/dev/null 2>&1 \
  && [ "$(head -1 "$T/ood_rows.csv")" = "set,row,energy,gaussian" ] \
  && [ "$(grep -c '^1,' "$T/ood_rows.csv")" = "$n_good" ] && [ "$(grep -c '^0,' "$T/ood_rows.csv")" = "$n_good" ] \
  || { echo "FAIL: ood --rows"; fails=$((fails + 1)); }
# With --n, the subset's rows by their index in the set: the same file as in
# and out set gives the same subset.
"$EBM" "${OOD[@]}" --out-data "$T/good.csv" --score energy --rows "$T/ood_rows2.csv" --n 1 >/dev/null 2>&1 \
  && [ "$(grep -c '^[01],' "$T/ood_rows2.csv")" = 2 ] \
  && [ "$(awk -F, 'NR > 1 { print $2 }' "$T/ood_rows2.csv" | sort -u | wc -l)" = 1 ] \
  || { echo "FAIL: ood --rows with --n"; fails=$((fails + 1)); }
# The Gaussian baseline: fitted to the run's own training split (rebuilt,
# here a generated set), or to --reference rows; none with --reference none.
grep -q "Gaussian fitted to the run's training split" "$T/ood.txt" || { echo "FAIL: ood baseline"; fails=$((fails + 1)); }
"$EBM" "${OOD[@]}" --out-data uniform --reference none >"$T/ood_none.txt" 2>/dev/null \
  && grep -q "no Gaussian baseline: --reference none" "$T/ood_none.txt" || { echo "FAIL: ood --reference none"; fails=$((fails + 1)); }
"$EBM" "${OOD[@]}" --out-data uniform --reference "$T/good.csv" >"$T/ood_ref.txt" 2>/dev/null \
  && grep -q "^uniform .* gaussian\*" "$T/ood_ref.txt" || { echo "FAIL: ood --reference baseline"; fails=$((fails + 1)); }
expect 65 "three.csv" -- "$EBM" "${OOD[@]}" --out-data uniform --reference "$T/three.csv"
# Found by a fuzzing pass: each once crashed, hung, or went on silently.
T4=(--config "$SRC/configs/toy2d-pcd.toml" --set train.steps=2 --set data.n=100 --set eval.sample_steps=2)
# A run's config.toml (every key written out, those its components do not
# read included) is a config that trains again.
"$EBM" train --config "$T/run/config.toml" --set train.steps=2 --out "$T/run_again" >/dev/null 2>"$T/again.err" \
  || { echo "FAIL: training from a run's config.toml"; sed 's/^/    /' "$T/again.err"; fails=$((fails + 1)); }
expect 78 "eval.sample_chains" -- "$EBM" train "${T4[@]}" --out "$T/r9" --set eval.sample_chains=0
expect 78 "energy_limit"   -- "$EBM" train "${T4[@]}" --out "$T/r10" --set train.energy_limit=nan
mkdir -p "$T/confdir"
expect 66 "is a directory" -- "$EBM" train --config "$T/confdir" --out "$T/r11"
expect 78 "hidden = \[128, 128\]" -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --set "energy.hidden=[16,16]"
cp "$T/run/config.toml" "$T/run_config.toml" && rm "$T/run/config.toml"
expect 65 "fc0.weight"     -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --set "energy.hidden=[16,16]"
cp "$T/run_config.toml" "$T/run/config.toml"
expect 78 "below the step" -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --set train.steps=1 --set data.n=500
expect 78 "buffer.capacity = 500: a checkpoint holds its own objective" -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --set data.n=500 --set buffer.capacity=500
# (a run of mala with sampler.adapt resumed with langevin, whose step does not
# adapt: the note, not "sampler langevin has no step size to adapt")
"$EBM" train "${T4[@]}" --out "$T/r_ml" >/dev/null 2>&1 \
  && "$EBM" train "${T4[@]}" --out "$T/r_ml" --resume --set train.steps=3 --set sampler.name=langevin >"$T/r_ml.out" 2>"$T/r_ml.err" \
  || { echo "FAIL: resume of a mala run with langevin"; cat "$T/r_ml.err"; fails=$((fails + 1)); }
# (a resumed run's summary counts this run's steps apart from the run's total)
grep -q "trained to step 3 (1 step in this run" "$T/r_ml.out" \
  || { echo "FAIL: a resumed run's summary line: $(head -1 "$T/r_ml.out")"; fails=$((fails + 1)); }
expect 64 "excludes"       -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --force
expect 64 "empty directory name" -- "$EBM" train "${T4[@]}" --out ""
"$EBM" train "${T4[@]}" --out "$T/r_gen" --set generator.latent_dim=5 >/dev/null 2>"$T/r_gen.err" \
  && grep -q "generator.latent_dim is set, but objective.name = \"cd\" trains no generator" "$T/r_gen.err" \
  || { echo "FAIL: a [generator] key under cd is noted"; fails=$((fails + 1)); }
cp "$T/run/checkpoint.pt" "$T/ckpt.bak" && head -c 300 "$T/ckpt.bak" >"$T/run/checkpoint.pt"
expect 65 "not a readable checkpoint" -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --set data.n=500
# (one byte changed in the middle of a checkpoint and of a model: their seals)
flip_byte() {
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf %03o $(((b + 1) % 256)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
cp "$T/ckpt.bak" "$T/run/checkpoint.pt" && flip_byte "$T/run/checkpoint.pt" $(($(stat -c %s "$T/ckpt.bak") / 2))
expect 65 "checkpoint.pt: corrupt file" -- "$EBM" train "${T4[@]}" --out "$T/run" --resume --set data.n=500
cp "$M" "$T/flipped.pt" && flip_byte "$T/flipped.pt" $(($(stat -c %s "$M") / 2))
expect 65 "flipped.pt: corrupt file" -- "$EBM" energy --model "$T/flipped.pt" --input "$T/good.csv" --out "$T/e.csv"
cp "$T/ckpt.bak" "$T/run/checkpoint.pt"
expect 66 "nothing to resume" -- "$EBM" train "${T4[@]}" --out "$T/absent/run" --resume
[ ! -e "$T/absent" ] || { echo "FAIL: --resume created a directory"; fails=$((fails + 1)); }
expect 64 "extension"      -- "$EBM" energy --model "$M" --input "$T/good.csv" --out "$M"
expect 65 "not an ebm model" -- "$EBM" energy --model "$T/run/checkpoint.pt" --input "$T/good.csv" --out "$T/e.csv"
expect 64 "threads"        -- "$EBM" energy --model "$M" --input "$T/good.csv" --out "$T/e.csv" --threads 5000
expect 64 "seconds"        -- "$EBM" bench --workload langevin-mlp --seconds inf
expect 64 "excludes"       -- "$EBM" bench --all --workload langevin-mlp
expect 78 "finite"         -- "$EBM" sample --target "banana:b=nan" --n 4 --steps 1 --out "$T/s.csv"
expect 78 "twice"          -- "$EBM" sample --target gaussian --sampler "ula:step=0.1,step=0.2" --n 4 --steps 1 --out "$T/s.csv"
printf '1,2\n3,4\n5,6\n' >"$T/three_rows.csv" && touch "$T/plain_file"
expect 65 "test_fraction"  -- "$EBM" train "${T4[@]}" --out "$T/r12" --set data.path="$T/three_rows.csv"
expect 78 "0 test point(s) from data.test_fraction = 0" -- "$EBM" train "${T4[@]}" --out "$T/r12" --set data.test_fraction=0
expect 78 "sampler.name = nuts: a run's chains take" -- "$EBM" train "${T4[@]}" --out "$T/r12" --set sampler.name=nuts
expect 66 "not a directory" -- "$EBM" train "${T4[@]}" --out "$T/plain_file"
printf '1e20,3\n0.1,0.2\n' >"$T/huge.csv"
expect 65 "energy of the input" -- "$EBM" energy --model "$M" --input "$T/huge.csv" --out "$T/e.csv"
printf '\x93NUMPY\x01\x00\x46\x00{'"'"'descr'"'"': '"'"'<f4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (0, 2), }          \n' >"$T/zero.npy"
expect 65 "no data rows"   -- "$EBM" energy --model "$M" --input "$T/zero.npy" --out "$T/e.csv"
printf '1,abc\n3,4\n' >"$T/half_header.csv"
expect 65 "half_header.csv:1" -- "$EBM" energy --model "$M" --input "$T/half_header.csv" --out "$T/e.csv"
printf '\xEF\xBB\xBF0.1,0.2\n0.3,0.4\n' >"$T/bom.csv"
"$EBM" energy --model "$M" --input "$T/bom.csv" --out "$T/e.csv" 2>/dev/null
[ "$(wc -l <"$T/e.csv")" -eq 3 ] || { echo "FAIL: a byte-order mark cost a row"; fails=$((fails + 1)); }

# Outputs that a user had are not lost when a command fails.
printf 'keep me\n' >"$T/keep.csv"
"$EBM" energy --model "$M" --input "$T/bad_cell.csv" --out "$T/keep.csv" 2>/dev/null
grep -q "keep me" "$T/keep.csv" || { echo "FAIL: failed command clobbered its output"; fails=$((fails + 1)); }
printf 'keep me\n' >"$T/pair.npy" && mkdir -p "$T/pair.chain.npy"
"$EBM" sample --target gaussian --n 4 --steps 2 --thin 1 --out "$T/pair.npy" >/dev/null 2>&1
grep -q "keep me" "$T/pair.npy" || { echo "FAIL: failed sample clobbered its output"; fails=$((fails + 1)); }

# Sampling diagnostics that do not hide a failed run: chains that never
# move (R-hat undefined was read as 0: no word); too few draws a chain half
# for an ESS (it was total x log10(total)); a target's dim= against --dim.
"$EBM" sample --target gaussian --sampler "mh:step=1e-300" --n 8 --steps 20 --out "$T/frozen.csv" \
  >"$T/frozen.out" 2>"$T/frozen.err"
grep -q "the chains did not move in 2 of 2 dimension" "$T/frozen.err" \
  || { echo "FAIL: frozen chains without a warning"; cat "$T/frozen.err"; fails=$((fails + 1)); }
grep -q "energy evaluations/chain 20" "$T/frozen.out" \
  || { echo "FAIL: mh's evaluations named gradients"; cat "$T/frozen.out"; fails=$((fails + 1)); }
"$EBM" sample --target gaussian:dim=1 --sampler "mala:step=0.0001" --n 64 --steps 11 --out "$T/short.csv" >"$T/short.out" 2>&1
awk '$1 == "0" { exit !($5 == "nan") }' "$T/short.out" \
  || { echo "FAIL: an ESS from 5 draws a chain half"; cat "$T/short.out"; fails=$((fails + 1)); }
expect 64 "dim=3 disagrees with --dim 4" -- "$EBM" sample --target gaussian:dim=3 --dim 4 --n 4 --steps 2 --out "$T/dd.csv"
# R-hat past the first 100 dimensions (a 500-d Gaussian of condition 1e4
# left dims 400-499 at R-hat 23.6 unflagged): the slow dimensions are last
"$EBM" sample --target gaussian:dim=150,cond=1e4 --sampler mala --n 8 --warmup 100 --steps 200 --out "$T/wide.csv" \
  >"$T/wide.out" 2>"$T/wide.err"
grep -Eq "have not mixed \(R-hat [0-9.]+ in dimension 1[0-4][0-9]," "$T/wide.err" \
  || { echo "FAIL: R-hat past the tracked dimensions"; cat "$T/wide.err"; fails=$((fails + 1)); }
# A --thin CSV as --init: each chain from its last draw (chain, draw columns)
"$EBM" sample --target gaussian --n 3 --steps 6 --thin 2 --out "$T/thin.csv" >/dev/null 2>&1
"$EBM" sample --target gaussian --init "$T/thin.csv" --steps 0 --out "$T/cont.csv" >/dev/null 2>"$T/cont.err" \
  && grep -q "draws of 3 chains (chain and draw columns)" "$T/cont.err" \
  && [ "$(awk -F, 'NR > 1 && $4 == 2 { print $1 "," $2 }' "$T/thin.csv")" = "$(tail -n +2 "$T/cont.csv")" ] \
  || { echo "FAIL: --init from a thinned CSV"; cat "$T/cont.err"; head "$T/thin.csv" "$T/cont.csv"; fails=$((fails + 1)); }
grep -q "steps 0: the chains' starts are written" "$T/cont.err" \
  || { echo "FAIL: --steps 0 without a note"; fails=$((fails + 1)); }
# A target without --sampler: MALA, warmed up (ULA of step 0.01 warned R-hat 1.25 here)
"$EBM" sample --target gaussian --out "$T/gdef.csv" >"$T/gdef.out" 2>"$T/gdef.err" \
  && grep -q "^sampler mala: 1000 chains, 500 warm-up + 1000 steps" "$T/gdef.out" && [ ! -s "$T/gdef.err" ] \
  || { echo "FAIL: a target's default sampler"; cat "$T/gdef.out" "$T/gdef.err"; fails=$((fails + 1)); }
# HMC's default step jitter: with a fixed step the adapted trajectory went
# near-periodic on neal100 (min ESS 16, R-hat 7.8 over 16,000 draws)
"$EBM" sample --target neal100 --sampler hmc --n 16 --warmup 1000 --steps 1000 --out "$T/hmc.csv" >"$T/hmc.out" 2>"$T/hmc.err" \
  && ! grep -q "have not mixed" "$T/hmc.err" \
  && awk '/^min ess_bulk/ { exit !($3 > 400) }' "$T/hmc.out" \
  || { echo "FAIL: default HMC on neal100"; cat "$T/hmc.out" "$T/hmc.err"; fails=$((fails + 1)); }

# Successful commands produce what they promise.
"$EBM" sample --model "$M" --n 5 --steps 2 --out "$T/final.csv" >/dev/null 2>&1 \
  && [ "$(head -1 "$T/final.csv")" = "x0,x1" ] && "$EBM" energy --model "$M" --input "$T/final.csv" --out "$T/fe.csv" 2>/dev/null \
  && [ "$(wc -l <"$T/fe.csv")" -eq 6 ] || { echo "FAIL: final states [n, D] read back by energy"; fails=$((fails + 1)); }
"$EBM" energy --model "$M" --input "$T/good.csv" --out "$T/e.csv" 2>/dev/null
[ "$(wc -l <"$T/e.csv")" -eq 3 ] || { echo "FAIL: energy output rows"; fails=$((fails + 1)); }
"$EBM" sample --target banana --sampler "mh:step=0.5" --n 50 --steps 20 --out "$T/s.npy" >/dev/null 2>&1 \
  && [ -s "$T/s.npy" ] || { echo "FAIL: sample to npy"; fails=$((fails + 1)); }
"$EBM" sample --model "$M" --n 50 --steps 20 --out "$T/s.png" >/dev/null 2>&1 \
  && [ -s "$T/s.png" ] || { echo "FAIL: sample to png"; fails=$((fails + 1)); }
for f in config.toml metrics.jsonl checkpoint.pt model.pt samples/density.png samples/samples.png eval.json; do
  [ -s "$T/run/$f" ] || { echo "FAIL: run directory lacks $f"; fails=$((fails + 1)); }
done
# The annealed sampler on a plain energy ends on exp(-E / smin): one warning
# line unless smin = 1.
expect 0 "ends on exp(-E / 0.01)" -- "$EBM" sample --target gaussian:dim=2 \
  --sampler "annealed:eps=1e-5,levels=2,steps=2" --n 4 --steps 1 --out "$T/a.csv"
"$EBM" sample --target gaussian:dim=2 --sampler "annealed:eps=1e-3,smax=4,smin=1,levels=2,steps=2" \
  --n 4 --steps 1 --out "$T/a.csv" >/dev/null 2>"$T/err" && [ ! -s "$T/err" ] \
  || { echo "FAIL: annealed with smin=1 warns"; fails=$((fails + 1)); }
"$EBM" bench --workload langevin-mlp --seconds 0.05 | grep -q '"workload":"langevin-mlp"' \
  || { echo "FAIL: bench JSON"; fails=$((fails + 1)); }

# Components: a key of another component than the one selected, and devices.
expect 78 "sampler.leapfrog" -- "$EBM" train "${T4[@]}" --out "$T/r13" --set sampler.leapfrog=5
expect 64 "device"         -- "$EBM" sample --target gaussian --n 4 --steps 1 --out "$T/s.csv" --device tpu
if ! "$EBM" sample --target gaussian --n 4 --steps 1 --out "$T/s.csv" --device cuda >/dev/null 2>&1; then
  expect 64 "no CUDA"      -- "$EBM" sample --target gaussian --n 4 --steps 1 --out "$T/s.csv" --device cuda
fi

# A few far values (3 of 300 rows at 1e5) set data.standardize's scale and
# squeeze the rest: training says so, and names the column; without them,
# nothing.
awk 'BEGIN { srand(7); for (i = 0; i < 300; i++) printf "%.4f,%.4f\n", rand(), (i % 100 == 0 ? 100000 : rand()) }' >"$T/far_rows.csv"
awk -F, '$2 < 10' "$T/far_rows.csv" >"$T/near_rows.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/far_rows.csv" --set train.steps=2 \
  --out "$T/far_run" >/dev/null 2>"$T/far.err" && grep -q "far_rows.csv: column 2's standard deviation .* clip them (--set" "$T/far.err" \
  || { echo "FAIL: the note on far values"; fails=$((fails + 1)); }
# data.clip clamps them to the training quantiles: no note, and the
# training rows stay within the clean rows' range.
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/far_rows.csv" --set "data.clip=[0.01, 0.99]" \
  --set train.steps=2 --out "$T/clip_run" >/dev/null 2>"$T/clip.err" && ! grep -q "far values" "$T/clip.err" \
  || { echo "FAIL: data.clip"; sed 's/^/    /' "$T/clip.err"; fails=$((fails + 1)); }
expect 78 "data.clip must be \[q_lo, q_hi\]" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" \
  --set data.path="$T/far_rows.csv" --set "data.clip=[0.9, 0.1]" --out "$T/clip_bad"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/near_rows.csv" --set train.steps=2 \
  --out "$T/near_run" >/dev/null 2>"$T/near.err" && ! grep -q "far values\|one value in every\|exact copies" "$T/near.err" \
  || { echo "FAIL: a far-values note on data without them"; fails=$((fails + 1)); }
# Every row five times over: the held-out rows are copies of training rows,
# and training says so.
for k in 1 2 3 4 5; do cat "$T/near_rows.csv"; done >"$T/repeated.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/repeated.csv" --set train.steps=2 \
  --out "$T/rep_run" >/dev/null 2>"$T/rep.err" && grep -q "repeated.csv: .* held-out rows (.*) are exact copies of training rows" "$T/rep.err" \
  || { echo "FAIL: the note on held-out rows copied from training"; sed 's/^/    /' "$T/rep.err"; fails=$((fails + 1)); }
# The same rows rounded to one decimal coincide without a record repeated
# (every column holds far fewer values than there are distinct rows): no
# such note.
awk -F, '{ printf "%.1f,%.1f\n", $1, $2 }' "$T/near_rows.csv" >"$T/rounded.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/rounded.csv" --set train.steps=2 \
  --out "$T/round_run" >/dev/null 2>"$T/round.err" && ! grep -q "exact copies" "$T/round.err" \
  || { echo "FAIL: the copied-rows note on rounded rows"; sed 's/^/    /' "$T/round.err"; fails=$((fails + 1)); }
# A column of one value is a point mass: training says so.
awk -F, '{ print $1 ",3.5," $2 }' "$T/near_rows.csv" >"$T/const_col.csv"
"$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/const_col.csv" --set train.steps=2 \
  --out "$T/const_run" >/dev/null 2>"$T/const.err" && grep -q "const_col.csv: column 2 (3.5) holds one value" "$T/const.err" \
  || { echo "FAIL: the note on a constant column"; sed 's/^/    /' "$T/const.err"; fails=$((fails + 1)); }

# Labels by value: -1 / 1 labels train a classifier whose classes are named
# by them; classify, eval and sample --label take the values.
awk 'BEGIN { srand(5); for (i = 0; i < 200; i++) { x = rand() * 2 - 1; y = rand() * 2 - 1;
  printf "%.4f,%.4f\n", x, y > "/dev/stdout"; print (x > 0 ? 1 : -1) > "/dev/stderr" } }' \
  >"$T/pm.csv" 2>"$T/pm_labels.csv"
sed 's/^-1$/3/' "$T/pm_labels.csv" >"$T/pm_other.csv"
if "$EBM" train --config "$SRC/configs/moons-jem.toml" --set data.path="$T/pm.csv" --set data.labels="$T/pm_labels.csv" \
    --set train.steps=5 --out "$T/pm_run" >"$T/pm.out" 2>/dev/null; then
  grep -q "labels by value: -1=0, 1=1" "$T/pm.out" || { echo "FAIL: the label map of -1 / 1 labels"; fails=$((fails + 1)); }
  "$EBM" classify --model "$T/pm_run/model.pt" --input "$T/pm.csv" --labels "$T/pm_labels.csv" --out "$T/pm_p.csv" \
    >/dev/null 2>&1 && [ "$(head -1 "$T/pm_p.csv")" = "p_-1,p_1" ] \
    || { echo "FAIL: classify with -1 / 1 labels"; fails=$((fails + 1)); }
  "$EBM" sample --model "$T/pm_run/model.pt" --label -1 --n 4 --steps 2 --out "$T/pm_s.csv" >/dev/null 2>&1 \
    || { echo "FAIL: sample --label -1"; fails=$((fails + 1)); }
  expect 64 "was trained on labels by value and has no label 0 (its labels: -1, 1)" -- \
    "$EBM" sample --model "$T/pm_run/model.pt" --label 0 --n 4 --steps 2 --out "$T/pm_s.csv"
  expect 65 "pm_other.csv: label 3 (row" -- \
    "$EBM" eval --task classify --model "$T/pm_run/model.pt" --data "$T/pm.csv" --labels "$T/pm_other.csv"
  # A class of one row counts whichever split the seed puts it in: three
  # classes, and a warning where training has none of it.
  awk 'NR == 1 { print 2; next } { print ($1 == "1" ? 1 : 0) }' "$T/pm_labels.csv" >"$T/pm_rare.csv"
  for seed in 1 2 3; do
    "$EBM" train --config "$SRC/configs/moons-jem.toml" --set data.path="$T/pm.csv" --set data.labels="$T/pm_rare.csv" \
      --set train.steps=2 --set seed=$seed --set data.test_fraction=0.3 --out "$T/rare_run" --force >/dev/null 2>"$T/rare.err" \
      && grep -q "^classes = 3" "$T/rare_run/config.toml" \
      || { echo "FAIL: a one-row class in the held-out split (seed $seed)"; sed 's/^/    /' "$T/rare.err"; fails=$((fails + 1)); }
  done
  # Labels 1 .. K (R's way) are by value too: moons-jem's two classes are 1 and 2.
  sed 's/^1$/2/; s/^-1$/1/' "$T/pm_labels.csv" >"$T/pm_12.csv"
  "$EBM" train --config "$SRC/configs/moons-jem.toml" --set data.path="$T/pm.csv" --set data.labels="$T/pm_12.csv" \
    --set train.steps=5 --out "$T/p12_run" >"$T/p12.out" 2>/dev/null && grep -q "labels by value: 1=0, 2=1" "$T/p12.out" \
    && "$EBM" classify --model "$T/p12_run/model.pt" --input "$T/pm.csv" --labels "$T/pm_12.csv" --out "$T/p12_p.csv" \
      >/dev/null 2>&1 && [ "$(head -1 "$T/p12_p.csv")" = "p_1,p_2" ] \
    || { echo "FAIL: labels 1 .. K"; fails=$((fails + 1)); }
  # Words: a species column (header line, pandas' index) names the classes.
  awk -F, 'BEGIN { print ",species" } { print NR - 1 "," ($1 > 0 ? "\"virginica\"" : "\"setosa\"") }' "$T/pm.csv" >"$T/pm_words.csv"
  "$EBM" train --config "$SRC/configs/moons-jem.toml" --set data.path="$T/pm.csv" --set data.labels="$T/pm_words.csv" \
    --set energy.classes=0 --set train.steps=5 --out "$T/pw_run" >"$T/pw.out" 2>/dev/null \
    && grep -q "classes setosa=0, virginica=1" "$T/pw.out" \
    && "$EBM" classify --model "$T/pw_run/model.pt" --input "$T/pm.csv" --labels "$T/pm_words.csv" --out "$T/pw_p.csv" \
      >/dev/null 2>&1 && [ "$(head -1 "$T/pw_p.csv")" = "p_setosa,p_virginica" ] \
    && "$EBM" sample --model "$T/pw_run/model.pt" --label virginica --n 4 --steps 2 --out "$T/pw_s.csv" >/dev/null 2>&1 \
    || { echo "FAIL: word labels"; fails=$((fails + 1)); }
  # (a name differing only in case, as data.classes takes it)
  "$EBM" sample --model "$T/pw_run/model.pt" --label VIRGINICA --n 4 --steps 2 --out "$T/pw_s2.csv" >/dev/null 2>&1 \
    || { echo "FAIL: sample --label in other case"; fails=$((fails + 1)); }
  expect 65 "pm_labels.csv: labels are words\|pm_labels.csv: label -1" -- \
    "$EBM" classify --model "$T/pw_run/model.pt" --input "$T/pm.csv" --labels "$T/pm_labels.csv" --out "$T/pw_p2.csv"
  # train.init: a run that starts from a model's weights, in its units and
  # classes. With no steps the model is unchanged (the same energies on
  # other data); new labels are looked up among its classes.
  awk -F, -v OFS=, '{ print $1 * 3 + 5, $2 * 3 + 5 }' "$T/pm.csv" >"$T/pm_moved.csv"
  awk -F, 'NR > 1 && $1 % 2 == 0 { print "virginica" } NR > 1 && $1 % 2 == 1 { print "setosa" }' "$T/pm_words.csv" >"$T/pm_w2.csv"
  INIT=(--config "$SRC/configs/moons-jem.toml" --set data.path="$T/pm_moved.csv" --set data.labels="$T/pm_w2.csv"
        --set energy.classes=0 --set train.init="$T/pw_run/model.pt")
  "$EBM" train "${INIT[@]}" --set train.steps=0 --out "$T/init0" >/dev/null 2>"$T/init.err" \
    && "$EBM" energy --model "$T/pw_run/model.pt" --input "$T/pm.csv" --out "$T/init_a.csv" 2>/dev/null \
    && "$EBM" energy --model "$T/init0/model.pt" --input "$T/pm.csv" --out "$T/init_b.csv" 2>/dev/null \
    && cmp -s "$T/init_a.csv" "$T/init_b.csv" \
    && "$EBM" train "${INIT[@]}" --set train.steps=3 --out "$T/init3" >/dev/null 2>>"$T/init.err" \
    && "$EBM" classify --model "$T/init3/model.pt" --input "$T/pm.csv" --out "$T/init_p.csv" >/dev/null 2>&1 \
    && [ "$(head -1 "$T/init_p.csv")" = "p_setosa,p_virginica" ] \
    || { echo "FAIL: train.init"; sed 's/^/    /' "$T/init.err"; fails=$((fails + 1)); }
  sed 's/^setosa$/rose/' "$T/pm_w2.csv" >"$T/pm_rose.csv"
  expect 65 "pm_moved.csv .*: label rose is not one of the classes of train.init" -- \
    "$EBM" train "${INIT[@]}" --set data.labels="$T/pm_rose.csv" --out "$T/init_bad"
  expect 78 "train.init .*: has no weight\|train.init .*: weight .* is" -- \
    "$EBM" train "${INIT[@]}" --set "energy.hidden=[8]" --out "$T/init_bad"
  expect 78 "train.init .*: trained on standardised data; this run has data.standardize = off" -- \
    "$EBM" train "${INIT[@]}" --set data.standardize=off --out "$T/init_bad"
  expect 66 "no_model.pt" -- "$EBM" train "${INIT[@]}" --set train.init="$T/no_model.pt" --out "$T/init_bad"
else
  echo "FAIL: training on -1 / 1 labels"; fails=$((fails + 1))
fi

# Trajectory prediction: a tiny particles model (T = 6 steps of F = 6 values);
# past and truth cut from its held-out rows.
TRAJ=(train --config "$SRC/configs/particles.toml" --set data.n=200 --set data.steps=6 --set train.steps=3
      --set train.batch_size=16 --set "energy.hidden=[16]" --set data.test_fraction=0.1)
if "$EBM" "${TRAJ[@]}" --out "$T/traj_run" >"$T/traj.out" 2>"$T/traj.err"; then
  TM="$T/traj_run/model.pt"
  cut -d, -f1-18 "$T/traj_run/test.csv" >"$T/past3.csv"     # 3 steps
  cut -d, -f19-30 "$T/traj_run/test.csv" >"$T/truth2.csv"   # the next 2
  cut -d, -f1-17 "$T/traj_run/test.csv" >"$T/past_ragged.csv"
  cut -d, -f1-6 "$T/traj_run/test.csv" >"$T/past1.csv"
  cut -d, -f19-24 "$T/traj_run/test.csv" >"$T/truth1.csv"
  "$EBM" predict --model "$TM" --input "$T/past3.csv" --horizon 2 --steps 2 --truth "$T/truth2.csv" \
    --out "$T/future.csv" >"$T/pred.json" 2>/dev/null && grep -q '"constant_velocity"' "$T/pred.json" \
    && grep -q '"last_position"' "$T/pred.json" && grep -q '"gaussian":\[' "$T/pred.json" \
    && grep -q '"method":"mode"' "$T/pred.json" \
    && [ "$(head -1 "$T/future.csv" | awk -F, '{print NF}')" -eq 12 ] \
    && [ "$(wc -l <"$T/future.csv")" -eq "$(wc -l <"$T/past3.csv")" ] || { echo "FAIL: predict"; fails=$((fails + 1)); }
  # A past in other units (x 1000) is predicted, with a warning.
  awk -F, -v OFS=, '{ for (i = 1; i <= NF; i++) $i = $i * 1000; print }' "$T/past3.csv" >"$T/past3_mm.csv"
  "$EBM" predict --model "$TM" --input "$T/past3_mm.csv" --horizon 1 --steps 1 --out "$T/future_mm.csv" \
    >/dev/null 2>"$T/pred_mm.err" && grep -q "far outside the model's training data" "$T/pred_mm.err" \
    || { echo "FAIL: predict warns of a past in other units"; fails=$((fails + 1)); }
  for smp in pt nuts; do
    "$EBM" predict --model "$TM" --input "$T/past3.csv" --horizon 2 --steps 2 --sampler "$smp" --out "$T/future_$smp.csv" \
      >/dev/null 2>&1 || { echo "FAIL: predict --sampler $smp"; fails=$((fails + 1)); }
  done
  PRED=(predict --model "$TM" --steps 1 --out "$T/never.csv")
  expect 64 "beyond the model's 6 steps" -- "$EBM" "${PRED[@]}" --input "$T/past3.csv" --horizon 4
  expect 64 "horizon must be >= 1" -- "$EBM" "${PRED[@]}" --input "$T/past3.csv" --horizon 0
  expect 64 "method must be mode, sample or auto" -- "$EBM" "${PRED[@]}" --input "$T/past3.csv" --horizon 1 --method best
  expect 64 "descends, it draws nothing" -- "$EBM" "${PRED[@]}" --input "$T/past3.csv" --horizon 1 --method mode --sampler nuts
  expect 65 "past_ragged.csv: rows of 17 values are not whole steps of 6" -- "$EBM" "${PRED[@]}" --input "$T/past_ragged.csv" --horizon 1
  expect 65 "past1.csv: 1 past step(s)" -- "$EBM" "${PRED[@]}" --input "$T/past1.csv" --horizon 1
  expect 65 "truth1.csv: want" -- "$EBM" "${PRED[@]}" --input "$T/past3.csv" --horizon 2 --truth "$T/truth1.csv"
  expect 66 "missing.csv"    -- "$EBM" "${PRED[@]}" --input "$T/missing.csv" --horizon 1
  expect 65 "not a model of trajectories" -- "$EBM" predict --model "$M" --input "$T/good.csv" --horizon 1 --out "$T/never.csv"
  expect 64 "extension"      -- "$EBM" predict --model "$TM" --input "$T/past3.csv" --horizon 1 --out "$T/never.txt"
  # The user's own trajectories (data.path: 4 steps of 2 values per row):
  # data.step_values says the step width, or predict's --step-values later.
  awk 'BEGIN { srand(11); for (i = 0; i < 100; i++) { x = rand(); y = rand(); u = rand() - 0.5; v = rand() - 0.5;
    for (t = 0; t < 4; t++) printf "%s%.4f,%.4f", (t ? "," : ""), x + t * u, y + t * v; print "" } }' >"$T/own_traj.csv"
  cut -d, -f1-4 "$T/own_traj.csv" >"$T/own_past.csv"
  OWN=(--config "$SRC/configs/particles.toml" --set data.path="$T/own_traj.csv" --set train.steps=2
       --set train.batch_size=16 --set "energy.hidden=[16]")
  "$EBM" train "${OWN[@]}" --set data.step_values=2 --out "$T/own_run" >/dev/null 2>&1 \
    && "$EBM" predict --model "$T/own_run/model.pt" --input "$T/own_past.csv" --horizon 2 --steps 1 \
      --out "$T/own_future.csv" >/dev/null 2>&1 && [ "$(head -1 "$T/own_future.csv" | awk -F, '{print NF}')" -eq 4 ] \
    || { echo "FAIL: predict on data.path with data.step_values"; fails=$((fails + 1)); }
  "$EBM" train "${OWN[@]}" --out "$T/own_run0" >/dev/null 2>&1 \
    && "$EBM" predict --model "$T/own_run0/model.pt" --input "$T/own_past.csv" --horizon 1 --steps 1 --step-values 2 \
      --out "$T/own_future0.csv" >/dev/null 2>&1 \
    || { echo "FAIL: predict --step-values"; fails=$((fails + 1)); }
  expect 65 "own_run0/model.pt: not a model of trajectories .*--step-values F" -- \
    "$EBM" predict --model "$T/own_run0/model.pt" --input "$T/own_past.csv" --horizon 1 --out "$T/never.csv"
  expect 64 "was trained on steps of 2 values" -- "$EBM" predict --model "$T/own_run/model.pt" --input "$T/own_past.csv" \
    --horizon 1 --step-values 4 --out "$T/never.csv"
  expect 65 "own_traj.csv: rows of shape \[8\] are not T >= 2 steps of data.step_values = 3" -- \
    "$EBM" train "${OWN[@]}" --set data.step_values=3 --out "$T/own_bad"
  [ ! -e "$T/never.csv" ] || { echo "FAIL: a failed prediction left output"; fails=$((fails + 1)); }
else
  echo "FAIL: trajectory training run"; sed 's/^/    /' "$T/traj.err"; fails=$((fails + 1))
fi

finish
