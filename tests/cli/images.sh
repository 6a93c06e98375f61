#!/usr/bin/env bash
# CLI contract (DESIGN.md) of image models: tiny conv energies on 8x8
# images, pixel files, conditional models and the image applications.
source "$(dirname "$0")/lib.sh" "$@"

# Shapes end to end: a tiny conv energy on [N, 1, 8, 8] images (rows of 64
# values shaped by data.shape), trained, sampled to a PNG grid and scored.
"$EBM" sample --target gaussian:dim=64 --sampler "mh:step=0.1" --n 96 --steps 0 --out "$T/img.npy" >/dev/null 2>&1
IMG=(--config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/img.npy" --set "data.shape=[1,8,8]"
     --set energy.name=conv --set "energy.channels=[4,8]" --set "energy.kernels=[3,3]"
     --set "energy.strides=[2,2]" --set "energy.paddings=[1,1]" --set "energy.hidden=[16]"
     --set energy.prior_std=0 --set train.steps=3 --set train.batch_size=8 --set sampler.steps=2
     --set eval.sample_steps=2 --set buffer.capacity=50)
expect 78 "px = \"dsm\" takes vectors" -- "$EBM" train "${IMG[@]}" --out "$T/img_dsm" --set objective.name=jem \
  --set energy.classes=2 --set objective.px=dsm
if "$EBM" train "${IMG[@]}" --out "$T/img_run" >"$T/img.out" 2>"$T/img.err"; then
  [ -s "$T/img_run/samples/samples.png" ] || { echo "FAIL: image run wrote no sample grid"; fails=$((fails + 1)); }
  "$EBM" sample --model "$T/img_run/model.pt" --n 16 --steps 3 --sampler "langevin:step=0.01" \
    --out "$T/grid.png" >/dev/null 2>&1 && [ "$(head -c 4 "$T/grid.png" | tail -c 3)" = "PNG" ] \
    || { echo "FAIL: image model sampled to a PNG grid"; fails=$((fails + 1)); }
  "$EBM" energy --model "$T/img_run/model.pt" --input "$T/img.npy" --out "$T/img_e.csv" 2>/dev/null \
    && [ "$(wc -l <"$T/img_e.csv")" -eq 97 ] || { echo "FAIL: image energies"; fails=$((fails + 1)); }
  expect 65 "samples are \[1, 8, 8\]" -- "$EBM" energy --model "$T/img_run/model.pt" --input "$T/good.csv" --out "$T/e.csv"
  # Float images (values of about -4 to 4): --corrupt's std and the scores
  # are in 0-1 units of the training images' range, so gaussian:0.05 scores
  # an MSE of about 0.05^2 (before this the [-1, 1] pixel map was assumed).
  "$EBM" denoise --model "$T/img_run/model.pt" --input "$T/img.npy" --corrupt gaussian:0.05 --steps 0 \
    --init corrupted --out "$T/den.npy" >"$T/den.json" 2>/dev/null && grep -q "the images' range \[-" "$T/den.json" \
    && grep -o '"corrupted":{"mse":[0-9.e-]*' "$T/den.json" | awk -F: '{ exit !($3 > 0.0020 && $3 < 0.0030) }' \
    || { echo "FAIL: denoise of float images in their range's units"; cat "$T/den.json"; fails=$((fails + 1)); }
  # A float-image model's uniform starts come from its range (its images'
  # range mapped onto data.scale, data.standardize = auto), and IDX writes
  # that range as 0-255: few bytes at 0 or 255 (N(0, 1) starts through
  # [-1, 1], as once before, put 16% at each).
  printf '[data]\nshape = [1, 8, 8]\n[energy]\nname = "conv"\nchannels = [4]\nkernels = [3]\nstrides = [2]\npaddings = [1]\nhidden = [8]\n[buffer]\ncapacity = 16\ninit = "uniform"\n[train]\nsteps = 2\nbatch_size = 8\n[eval]\nsample_steps = 2\nsample_chains = 8\n' >"$T/box.toml"
  "$EBM" train --config "$T/box.toml" --set data.path="$T/img.npy" --out "$T/box_run" >/dev/null 2>&1 \
    && "$EBM" sample --model "$T/box_run/model.pt" --n 50 --steps 0 --out "$T/box.idx" >/dev/null 2>&1 \
    && od -An -tu1 -v -j16 "$T/box.idx" | tr -s ' ' '\n' | awk 'NF { n++; if ($1 == 0 || $1 == 255) c++ }
         END { exit !(n == 3200 && c < 0.03 * n) }' \
    || { echo "FAIL: a float-image model's starts and IDX pixels span its images' range"; fails=$((fails + 1)); }
  # A run on float images taken as they are resumes only as they are: a
  # checkpoint continues in its own units (images of -1 and 1, which the map
  # would leave as they are, so no note joins the error).
  hdr4="{'descr': '<f4', 'fortran_order': False, 'shape': (16, 1, 8, 8), }"
  while [ $(( (10 + ${#hdr4} + 1) % 64 )) -ne 0 ]; do hdr4="$hdr4 "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr4} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr4"
    for i in $(seq 512); do printf '\x00\x00\x80\xbf\x00\x00\x80\x3f'; done; } >"$T/fpm1.npy"
  "$EBM" train --config "$T/box.toml" --set data.path="$T/fpm1.npy" --set data.standardize=off --out "$T/r54" \
    >/dev/null 2>&1 || { echo "FAIL: training on float images as they are"; fails=$((fails + 1)); }
  expect 78 "trained on float images as they are (data.standardize = \"off\"" -- "$EBM" train --config "$T/box.toml" \
    --set data.path="$T/fpm1.npy" --set train.steps=3 --out "$T/r54" --resume
  # Float images in [0.25, 0.75] with one hot pixel at 1e6: the map of
  # their whole range squeezes them, and training says so.
  # (64 images, hot pixels in two: one in a thousand values at most)
  hdr6="{'descr': '<f4', 'fortran_order': False, 'shape': (64, 1, 8, 8), }"
  while [ $(( (10 + ${#hdr6} + 1) % 64 )) -ne 0 ]; do hdr6="$hdr6 "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr6} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr6"
    for i in $(seq 0 2047); do
      if [ "$i" -eq 0 ] || [ "$i" -eq 1280 ]; then printf '\x00\x24\x74\x49\x00\x00\x40\x3f'
      else printf '\x00\x00\x80\x3e\x00\x00\x40\x3f'; fi
    done; } >"$T/hot.npy"
  "$EBM" train --config "$T/box.toml" --set data.path="$T/hot.npy" --out "$T/hot_run" >/dev/null 2>"$T/hot.err" \
    && grep -q "hot.npy: 99.8% of the images' values lie in \[0.25, 0.7[0-9]*\], under a tenth of their whole range" "$T/hot.err" \
    || { echo "FAIL: the note on far values in float images"; sed 's/^/    /' "$T/hot.err"; fails=$((fails + 1)); }
  # The image recipe on float images with nothing but data.path (and a tiny
  # net): dequantize = auto adds no pixel noise to values, and their range
  # (about [-4, 4]) is mapped onto data.scale, whose box the chains get, as
  # pixels' (before, exit 78 and then 65 until both keys were set).
  "$EBM" train --config "$SRC/configs/fmnist-igebm.toml" --set data.path="$T/img.npy" --set "data.shape=[1,8,8]" \
    --set "energy.channels=[4]" --set "energy.kernels=[3]" --set "energy.strides=[2]" --set "energy.paddings=[1]" \
    --set "energy.hidden=[8]" --set train.steps=2 --set train.batch_size=8 --set sampler.steps=2 \
    --set buffer.capacity=16 --set eval.sample_steps=2 --set eval.sample_chains=8 --out "$T/frec" >/dev/null 2>"$T/frec.err" \
    && grep -q '^clamp_min = -1' "$T/frec/config.toml" && grep -q '^init_low = -1' "$T/frec/config.toml" \
    && grep -q "float images spanning \[-[0-9.]*, [0-9.]*\], mapped onto data.scale = \[-1, 1\]" "$T/frec.err" \
    || { echo "FAIL: the image recipe on float images"; sed 's/^/    /' "$T/frec.err"; fails=$((fails + 1)); }
  # Float images spanning [0, 255] (CSV rows shaped [1, 8, 8]) are mapped
  # onto [-1, 1]; taken as they are (data.standardize = off), training says
  # that the recipe's steps are tuned for [-1, 1].
  awk 'BEGIN { srand(7); for (i = 0; i < 32; i++) { for (j = 0; j < 64; j++) printf "%s%d", j ? "," : "", (j == 0 ? 255 * (i % 2) : int(256 * rand())); print "" } }' >"$T/f255.csv"
  F255=(--config "$SRC/configs/fmnist-igebm.toml" --set data.path="$T/f255.csv" --set "data.shape=[1,8,8]"
    --set "energy.channels=[4]" --set "energy.kernels=[3]" --set "energy.strides=[2]" --set "energy.paddings=[1]"
    --set "energy.hidden=[8]" --set train.steps=1 --set train.batch_size=8 --set sampler.steps=1
    --set buffer.capacity=16 --set eval.sample_steps=1 --set eval.sample_chains=8)
  "$EBM" train "${F255[@]}" --out "$T/f255" >/dev/null 2>"$T/f255.err" \
    && grep -q "float images spanning \[0, 255\], mapped onto data.scale" "$T/f255.err" \
    && ! grep -q "the sampler's step_size" "$T/f255.err" "$T/frec.err" \
    && "$EBM" sample --model "$T/f255/model.pt" --n 8 --steps 2 --out "$T/f255s.csv" >/dev/null 2>&1 \
    && awk -F, 'NR > 1 { for (i = 1; i <= NF; i++) { if ($i > hi) hi = $i; if ($i < lo) lo = $i } }
         END { exit !(hi > 100 && hi <= 255.01 && lo >= -0.01) }' "$T/f255s.csv" \
    && "$EBM" energy --model "$T/f255/model.pt" --input "$T/f255.csv" --out "$T/f255e.csv" >/dev/null 2>&1 \
    && [ "$(wc -l <"$T/f255e.csv")" -eq 33 ] \
    && "$EBM" train "${F255[@]}" --set data.standardize=off --out "$T/f255off" >/dev/null 2>"$T/f255.err" \
    && grep -q "float images spanning \[0, 255\]; the sampler's step_size" "$T/f255.err" \
    || { echo "FAIL: float images in [0, 255] (mapped, sampled in their units; or a note when off)"; sed 's/^/    /' "$T/f255.err"; fails=$((fails + 1)); }
else
  echo "FAIL: image training run"; sed 's/^/    /' "$T/img.err"; fails=$((fails + 1))
fi

# A built-in image set by name is an input like any file: one energy per
# test image (a one-step Fashion-MNIST model with a tiny net).
if "$EBM" train --config "$SRC/configs/fmnist-igebm.toml" --set train.steps=1 --set train.batch_size=4 \
    --set "energy.channels=[2]" --set "energy.kernels=[3]" --set "energy.strides=[4]" --set "energy.paddings=[1]" \
    --set "energy.hidden=[4]" --set sampler.steps=1 --set eval.sample_steps=1 --set eval.sample_chains=4 \
    --set buffer.capacity=8 --out "$T/fm1" >/dev/null 2>"$T/fm1.err"; then
  "$EBM" energy --model "$T/fm1/model.pt" --input fashion_mnist --out "$T/fm1_e.csv" 2>/dev/null \
    && [ "$(wc -l <"$T/fm1_e.csv")" -eq 10001 ] || { echo "FAIL: energy of fashion_mnist's test split"; fails=$((fails + 1)); }
else
  echo "FAIL: a one-step Fashion-MNIST run"; sed 's/^/    /' "$T/fm1.err"; fails=$((fails + 1))
fi

# Pixels: a uint8 NPY of 40 random 8x8 images with 3 classes, a conditional
# conv energy on it, PNGs written by that model, and the image bad inputs.
hdr="{'descr': '|u1', 'fortran_order': False, 'shape': (40, 1, 8, 8), }"
while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
{ printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr"
  head -c 2560 /dev/urandom; } >"$T/pix.npy"
for i in $(seq 0 39); do echo $((i % 3)); done >"$T/pix_labels.csv"
head -n 39 "$T/pix_labels.csv" >"$T/pix_labels39.csv"
PIX=(--config "$SRC/configs/fmnist-igebm-cond.toml" --set data.path="$T/pix.npy" --set data.labels="$T/pix_labels.csv"
     --set data.name=8gaussians --set "energy.channels=[4,8]" --set "energy.kernels=[3,3]" --set "energy.strides=[2,2]"
     --set "energy.paddings=[1,1]" --set "energy.hidden=[16]" --set train.steps=2 --set train.batch_size=8
     --set sampler.steps=2 --set eval.sample_steps=2 --set buffer.capacity=30 --set train.sample_every=1)
if "$EBM" train "${PIX[@]}" --out "$T/pix_run" >"$T/pix.out" 2>"$T/pix.err"; then
  P="$T/pix_run/model.pt"
  [ -s "$T/pix_run/samples/step-000002.png" ] || { echo "FAIL: no samples/step-000002.png"; fails=$((fails + 1)); }
  # --force starts over: the old run's grids and files go, the user's stay.
  cp -r "$T/pix_run" "$T/force_run" && touch "$T/force_run/mine.txt"
  "$EBM" train "${PIX[@]}" --set train.steps=1 --out "$T/force_run" --force >/dev/null 2>&1 \
    && [ -s "$T/force_run/samples/step-000001.png" ] && [ ! -e "$T/force_run/samples/step-000002.png" ] \
    && [ -e "$T/force_run/mine.txt" ] || { echo "FAIL: --force left the old run's grids"; fails=$((fails + 1)); }
  mkdir -p "$T/mixed"
  "$EBM" sample --model "$P" --n 1 --steps 1 --out "$T/mixed/a.png" >/dev/null 2>&1
  "$EBM" sample --model "$P" --n 4 --steps 1 --out "$T/mixed/b.png" >/dev/null 2>&1
  "$EBM" sample --model "$P" --n 40 --steps 1 --label 2 --out "$T/draws.idx" >/dev/null 2>&1 \
    && [ "$(stat -c %s "$T/draws.idx")" -eq $((16 + 2560)) ] || { echo "FAIL: IDX draws"; fails=$((fails + 1)); }
  "$EBM" classify --model "$P" --input "$T/draws.idx" --labels "$T/pix_labels.csv" --out "$T/probs.csv" >/dev/null 2>&1 \
    && [ "$(wc -l <"$T/probs.csv")" -eq 41 ] || { echo "FAIL: classify"; fails=$((fails + 1)); }
  gzip -c "$T/draws.idx" >"$T/draws-ubyte.gz"   # (MNIST's naming: pixels, whatever the extension)
  "$EBM" classify --model "$P" --input "$T/draws-ubyte.gz" --out "$T/probs_gz.csv" >/dev/null 2>&1 \
    && cmp -s "$T/probs.csv" "$T/probs_gz.csv" || { echo "FAIL: classify of gzipped IDX differs"; fails=$((fails + 1)); }
  printf '\x89PNG\r\n\x1a\nthis is not an image' >"$T/bad.png"
  printf '\x00\x00\x08\x07\x00\x00\x00\x01' >"$T/bad_magic.idx"
  { printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x08\x00\x00\x00\x08'; head -c 70 /dev/zero; } >"$T/short.idx"
  expect 65 "bad.png"        -- "$EBM" sample --model "$P" --n 1 --steps 1 --init "$T/bad.png" --out "$T/never.png"
  [ ! -e "$T/never.png" ] || { echo "FAIL: a failed sample left $T/never.png"; fails=$((fails + 1)); }
  expect 65 "bad_magic.idx"  -- "$EBM" energy --model "$P" --input "$T/bad_magic.idx" --out "$T/e.csv"
  expect 65 "short.idx"      -- "$EBM" energy --model "$P" --input "$T/short.idx" --out "$T/e.csv"
  expect 65 "b.png"          -- "$EBM" train "${PIX[@]}" --set data.path="$T/mixed" --set data.labels="" --set energy.conditional=false --out "$T/r20"
  # (data.image_size: the folder's two sizes made one; the model reads any size as its own)
  "$EBM" train "${PIX[@]}" --set data.path="$T/mixed" --set data.labels="" --set energy.conditional=false \
    --set "data.image_size=[8]" --out "$T/r20s" >/dev/null 2>&1 \
    && "$EBM" energy --model "$T/r20s/model.pt" --input "$T/mixed/b.png" --out "$T/r20s.csv" >/dev/null 2>&1 \
    && [ "$(wc -l <"$T/r20s.csv")" -eq 2 ] \
    && "$EBM" inpaint --model "$T/r20s/model.pt" --input "$T/mixed/a.png" --mask "$T/mixed/b.png" --steps 1 \
         --out "$T/r20s_inp.png" >/dev/null 2>&1 || { echo "FAIL: data.image_size"; fails=$((fails + 1)); }
  expect 65 "data.image_size = 8x8 (crop) resizes images" -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" \
    --set data.path="$T/pix_labels.csv" --set "data.image_size=[8]" --out "$T/r20v"
  expect 78 "data.alpha must be auto, black, white or drop" -- "$EBM" train "${PIX[@]}" --set data.alpha=grey --out "$T/r20a"
  # (data.channels = 3: the grey folder read as colour, and so are the model's inputs)
  "$EBM" train "${PIX[@]}" --set data.path="$T/mixed" --set data.labels="" --set energy.conditional=false \
    --set "data.image_size=[8]" --set data.channels=3 --out "$T/r20c" >/dev/null 2>&1 \
    && "$EBM" sample --model "$T/r20c/model.pt" --n 1 --steps 1 --init "$T/mixed/a.png" --out "$T/r20c.npy" >/dev/null 2>&1 \
    && [ "$(head -c 80 "$T/r20c.npy" | grep -c "(1, 3, 8, 8)")" -eq 1 ] || { echo "FAIL: data.channels"; fails=$((fails + 1)); }
  expect 65 "pix_labels39.csv" -- "$EBM" train "${PIX[@]}" --set data.labels="$T/pix_labels39.csv" --out "$T/r21"
  expect 78 "data.classes"   -- "$EBM" train "${PIX[@]}" --set "data.classes=[5]" --out "$T/r22"
  expect 65 "outside the model's 2 classes" -- "$EBM" train "${PIX[@]}" --set energy.classes=2 --out "$T/r23"
  expect 64 "classes 0 to 2" -- "$EBM" sample --model "$P" --n 1 --steps 1 --label 3 --out "$T/s.png"
  expect 64 "not class-conditional" -- "$EBM" sample --model "$T/img_run/model.pt" --n 1 --steps 1 --label 0 --out "$T/s.png"
  expect 64 "not a classifier" -- "$EBM" classify --model "$M" --input "$T/good.csv" --out "$T/p.csv"
  expect 65 "pix_labels39.csv" -- "$EBM" classify --model "$P" --input "$T/draws.idx" --labels "$T/pix_labels39.csv" --out "$T/p.csv"
  expect 65 "expects \[2\]" -- "$EBM" energy --model "$M" --input "$T/pix.npy" --out "$T/e.csv"
  # Integers given to a model trained on pixels are pixels, in 0..255.
  hdr5="{'descr': '<i2', 'fortran_order': False, 'shape': (1, 1, 8, 8), }"
  while [ $(( (10 + ${#hdr5} + 1) % 64 )) -ne 0 ]; do hdr5="$hdr5 "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr5} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr5"
    head -c 126 /dev/zero; printf '\x00\x01'; } >"$T/i2_256.npy"
  expect 65 "i2_256.npy: integer values are raw pixels and must lie in 0..255, got 256 at row 0, value 63" -- \
    "$EBM" energy --model "$P" --input "$T/i2_256.npy" --out "$T/e.csv"
  expect 78 "takes images"   -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set energy.name=conv --out "$T/r24"
  expect 78 "takes vectors"  -- "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/pix.npy" --out "$T/r25"
  # The same count of values in another [C, H, W] is another image, not a reshape.
  hdr2="{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 4, 16), }"
  while [ $(( (10 + ${#hdr2} + 1) % 64 )) -ne 0 ]; do hdr2="$hdr2 "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr2} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr2"
    head -c 128 /dev/urandom; } >"$T/wide.npy"
  expect 65 "\[1, 4, 16\] for a model whose samples are \[1, 8, 8\]" -- "$EBM" energy --model "$P" --input "$T/wide.npy" --out "$T/e.csv"
  # An MLP classifier on the same pixels flattened (data.shape = [64]) reads
  # pixel files through its pixel map as an image model does: the draws as
  # uint8 IDX and as floats in the model's range get the same energies (to
  # the pixels' rounding), and it serves as FID features for the conv model.
  printf '[data]\nshape = [64]\n[energy]\nname = "mlp"\nconditional = true\nhidden = [16]\n[objective]\nname = "ce"\n[train]\nsteps = 3\nbatch_size = 8\n' >"$T/flat.toml"
  if "$EBM" train --config "$T/flat.toml" --set data.path="$T/pix.npy" --set data.labels="$T/pix_labels.csv" \
      --out "$T/flat_run" >/dev/null 2>"$T/flat.err"; then
    "$EBM" sample --model "$P" --n 8 --steps 1 --seed 3 --out "$T/d8.idx" >/dev/null 2>&1
    "$EBM" sample --model "$P" --n 8 --steps 1 --seed 3 --out "$T/d8.npy" >/dev/null 2>&1
    "$EBM" energy --model "$T/flat_run/model.pt" --input "$T/d8.idx" --out "$T/e_idx.csv" 2>/dev/null \
      && "$EBM" energy --model "$T/flat_run/model.pt" --input "$T/d8.npy" --out "$T/e_npy.csv" 2>/dev/null \
      && paste -d, "$T/e_idx.csv" "$T/e_npy.csv" | awk -F, 'NR > 1 { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++ }
           END { exit !(n == 8 && m < 0.05) }' \
      || { echo "FAIL: a flattened-pixel model reads IDX pixels through its pixel map"; paste "$T/e_idx.csv" "$T/e_npy.csv" | head -4; fails=$((fails + 1)); }
    "$EBM" classify --model "$T/flat_run/model.pt" --input "$T/d8.idx" --out "$T/p_idx.csv" 2>/dev/null \
      && "$EBM" classify --model "$T/flat_run/model.pt" --input "$T/d8.npy" --out "$T/p_npy.csv" 2>/dev/null \
      && paste -d, "$T/p_idx.csv" "$T/p_npy.csv" | awk -F, 'NR > 1 { for (i = 1; i <= 3; i++) { d = $i - $(i + 3); if (d < 0) d = -d; if (d > m) m = d }; n++ }
           END { exit !(n == 8 && m < 0.01) }' \
      || { echo "FAIL: a flattened-pixel classifier reads IDX pixels through its pixel map"; fails=$((fails + 1)); }
    "$EBM" eval --task fid --model "$P" --features "$T/flat_run/model.pt" --reference "$T/pix.npy" --n 20 --steps 1 \
      --out "$T/fid_flat.json" >/dev/null 2>&1 && grep -q '"fid_real"' "$T/fid_flat.json" \
      || { echo "FAIL: FID with a flattened-image classifier's features"; fails=$((fails + 1)); }
    grep -q '"class_shares": "training"' "$T/fid_flat.json" || { echo "FAIL: FID's class shares (training)"; fails=$((fails + 1)); }
    # A reference folder of numbered class sub-folders (of the sample grids
    # above, made 8x8 by the model's data.image_size): the conditional
    # model's draws are made at the reference images' own labels.
    for k in 0 1 2; do mkdir -p "$T/ref3/$k" && cp "$T/mixed/a.png" "$T/ref3/$k/a.png" && cp "$T/mixed/a.png" "$T/ref3/$k/b.png"; done
    "$EBM" train "${PIX[@]}" --set "data.image_size=[8,8]" --out "$T/c8_run" >/dev/null 2>&1 \
      && "$EBM" eval --task fid --model "$T/c8_run/model.pt" --features "$T/flat_run/model.pt" --reference "$T/ref3" \
        --n 3 --steps 1 --out "$T/fid_ref3.json" >/dev/null 2>&1 && grep -q '"class_shares": "held_out"' "$T/fid_ref3.json" \
        && grep -q '"fid_real_sd"' "$T/fid_ref3.json" \
      || { echo "FAIL: FID at the reference folder's labels"; fails=$((fails + 1)); }
    # Named class folders for a model trained on numbered labels: no names to
    # match them by, so exit 65 (their sorted places would be guesses).
    for k in alpha beta; do mkdir -p "$T/named3/$k" && cp "$T/mixed/a.png" "$T/named3/$k/a.png"; done
    expect 65 "the model's classes have none" -- "$EBM" classify --model "$T/c8_run/model.pt" --input "$T/named3" \
      --out "$T/named3.csv"
    # The Gaussian baseline has its own stream: --steps 3 draws other model
    # samples (another fid) but the same baseline.
    "$EBM" eval --task fid --model "$P" --features "$T/flat_run/model.pt" --reference "$T/pix.npy" --n 20 --steps 3 \
      --out "$T/fid_flat3.json" >/dev/null 2>&1 \
      && [ "$(grep -o '"fid_gaussian": [0-9.e+-]*' "$T/fid_flat.json")" = "$(grep -o '"fid_gaussian": [0-9.e+-]*' "$T/fid_flat3.json")" ] \
      && [ "$(grep -o '"fid": [0-9.e+-]*' "$T/fid_flat.json")" != "$(grep -o '"fid": [0-9.e+-]*' "$T/fid_flat3.json")" ] \
      || { echo "FAIL: FID's Gaussian baseline depends on the model's sampling"; fails=$((fails + 1)); }
    # Fewer images than features (8 against 16): a warning in the report (20
    # images: not that one); one image: exit 65.
    "$EBM" eval --task fid --model "$P" --features "$T/flat_run/model.pt" --reference "$T/pix.npy" --n 8 --steps 1 \
      --out "$T/fid_flat8.json" >/dev/null 2>&1 && grep -q 'the covariances are singular' "$T/fid_flat8.json" \
      && ! grep -q 'the covariances are singular' "$T/fid_flat.json" \
      || { echo "FAIL: FID of 8 images on 16 features does not warn of its singular covariances"; fails=$((fails + 1)); }
    # Given samples (pixels) need no --model: the same distance without it.
    "$EBM" sample --model "$P" --n 20 --steps 1 --out "$T/twenty.idx" >/dev/null 2>&1
    "$EBM" eval --task fid --model "$P" --features "$T/flat_run/model.pt" --reference "$T/pix.npy" --n 20 \
      --samples "$T/twenty.idx" --out "$T/fid_m.json" >/dev/null 2>&1 \
      && "$EBM" eval --task fid --features "$T/flat_run/model.pt" --reference "$T/pix.npy" --n 20 \
      --samples "$T/twenty.idx" --out "$T/fid_nom.json" >/dev/null 2>&1 \
      && [ "$(grep '"fid"' "$T/fid_m.json")" = "$(grep '"fid"' "$T/fid_nom.json")" ] \
      || { echo "FAIL: fid --samples without --model"; fails=$((fails + 1)); }
    "$EBM" sample --model "$P" --n 1 --steps 1 --out "$T/one.npy" >/dev/null 2>&1
    expect 65 "one.npy: 1 image; FID compares covariances" -- "$EBM" eval --task fid --model "$P" \
      --features "$T/flat_run/model.pt" --reference "$T/pix.npy" --n 20 --samples "$T/one.npy"
  else
    echo "FAIL: MLP classifier on flattened pixels"; sed 's/^/    /' "$T/flat.err"; fails=$((fails + 1))
  fi
  # Float images (a float NPY, taken as in the model's own range): FID
  # compares every image in the feature network's units, so the feature
  # network and the model must both be float (or both pixel) models.
  "$EBM" sample --model "$P" --n 40 --steps 1 --out "$T/fl.npy" >/dev/null 2>&1
  FL=("${PIX[@]}" --set data.path="$T/fl.npy" --set data.dequantize=none)
  printf '[energy]\nname = "conv"\nconditional = true\nchannels = [4, 8]\nkernels = [3, 3]\nstrides = [2, 2]\npaddings = [1, 1]\nhidden = [16]\n[objective]\nname = "ce"\n[train]\nsteps = 3\nbatch_size = 8\n' >"$T/fl_clf.toml"
  if "$EBM" train --config "$T/fl_clf.toml" --set data.path="$T/fl.npy" --set data.labels="$T/pix_labels.csv" \
      --out "$T/fl_clf" >/dev/null 2>"$T/fl.err" \
      && "$EBM" train "${FL[@]}" --set energy.conditional=false --set data.labels="" --out "$T/fl_run" >/dev/null 2>>"$T/fl.err"; then
    "$EBM" eval --task fid --model "$T/fl_run/model.pt" --features "$T/fl_clf/model.pt" --reference "$T/fl.npy" --n 20 \
      --steps 1 --out "$T/fid_fl.json" >/dev/null 2>&1 && grep -Eq '"fid": [0-9]' "$T/fid_fl.json" \
      && grep -Eq '"fid_gaussian": [0-9]' "$T/fid_fl.json" || { echo "FAIL: FID of a float-image model"; fails=$((fails + 1)); }
    expect 65 "trained on 0-255 pixels and the model on float values" -- "$EBM" eval --task fid --model "$T/fl_run/model.pt" \
      --features "$T/flat_run/model.pt" --reference "$T/fl.npy" --n 20 --steps 1
    expect 65 "pix.npy: reference images must be float values" -- "$EBM" eval --task fid --model "$T/fl_run/model.pt" \
      --features "$T/fl_clf/model.pt" --reference "$T/pix.npy" --n 20 --steps 1
    # Float images of other units: a model of 0-255 floats (the f255 run
    # above) against features of images in [-1, 1], and 0-255 references
    # for those features, are refused rather than compared wrongly.
    expect 65 "the feature network was trained on float images spanning \[-" -- "$EBM" eval --task fid \
      --model "$T/f255/model.pt" --features "$T/fl_clf/model.pt" --reference "$T/fl.npy" --n 20 --steps 1
    "$EBM" sample --model "$T/f255/model.pt" --n 40 --steps 1 --out "$T/f255s40.npy" >/dev/null 2>&1
    expect 65 "f255s40.npy: float images spanning \[[0-9.]*, [0-9.]*\], for a feature network trained on \[-" -- \
      "$EBM" eval --task fid --model "$T/fl_run/model.pt" --features "$T/fl_clf/model.pt" --reference "$T/f255s40.npy" \
      --n 20 --steps 1
  else
    echo "FAIL: training on float images"; sed 's/^/    /' "$T/fl.err"; fails=$((fails + 1))
  fi
  # Score matching on pixels: dsm, ssm and mdsm (Li et al.'s form) train the
  # conv energy; NCSN's form needs a noise-conditional energy.
  printf '[energy]\nname = "conv"\nchannels = [4, 8]\nkernels = [3, 3]\nstrides = [2, 2]\npaddings = [1, 1]\nhidden = [16]\n[train]\nsteps = 2\nbatch_size = 8\n[eval]\nsample_steps = 2\nsample_chains = 8\n' >"$T/sm.toml"
  SM=(--config "$T/sm.toml" --set data.path="$T/pix.npy")
  for sm in dsm ssm mdsm; do
    "$EBM" train "${SM[@]}" --set objective.name=$sm $([ $sm = mdsm ] && echo --set objective.form=li) \
      --out "$T/sm_$sm" >/dev/null 2>"$T/sm.err" && [ -s "$T/sm_$sm/model.pt" ] && [ -s "$T/sm_$sm/samples/samples.png" ] \
      || { echo "FAIL: $sm on pixel images"; sed 's/^/    /' "$T/sm.err"; fails=$((fails + 1)); }
  done
  expect 78 "objective.form = \"li\"" -- "$EBM" train "${SM[@]}" --set objective.name=mdsm --out "$T/sm_ncsn"
  # NCSN on images: the network made noise-conditional, E(x, sigma) = f(x) / sigma,
  # sampled by annealed Langevin with the final denoising step.
  # (its own annealed sampler: one sweep when --steps is not given)
  "$EBM" train "${SM[@]}" --set objective.name=mdsm --set energy.noise_conditional=true --out "$T/sm_nc" \
      --set sampler.name=annealed --set sampler.levels=3 --set sampler.level_steps=2 --set sampler.denoise=true \
      --set sampler.step_size=1e-5 >/dev/null 2>"$T/sm.err" \
    && "$EBM" sample --model "$T/sm_nc/model.pt" --n 4 --out "$T/nc.png" >"$T/nc.out" 2>/dev/null && [ -s "$T/nc.png" ] \
    && grep -q "0 warm-up + 1 steps" "$T/nc.out" \
    && "$EBM" eval --task fid --model "$T/sm_nc/model.pt" --features "$T/flat_run/model.pt" --reference "$T/pix.npy" \
      --n 20 --out "$T/fid_nc.json" >/dev/null 2>&1 && grep -q '"steps": 1,' "$T/fid_nc.json" \
    || { echo "FAIL: NCSN (mdsm, noise-conditional conv) on pixel images"; sed 's/^/    /' "$T/sm.err"; fails=$((fails + 1)); }
  expect 78 "\"esm\" takes vectors" -- "$EBM" train "${SM[@]}" --set objective.name=esm --out "$T/sm_esm"
  # 0-255 pixels saved as floats, taken as they are (data.standardize = off),
  # for chains clamped to [-1, 1].
  BOX1=(--set sampler.clamp_min=-1 --set sampler.clamp_max=1)
  hdr3="{'descr': '<f4', 'fortran_order': False, 'shape': (8, 1, 8, 8), }"
  while [ $(( (10 + ${#hdr3} + 1) % 64 )) -ne 0 ]; do hdr3="$hdr3 "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr3} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr3"
    for i in $(seq 512); do printf '\x00\x00\x7f\x43'; done; } >"$T/f255.npy"
  expect 65 "float values span \[255, 255\], far outside \[-1, 1\]" -- "$EBM" train "${PIX[@]}" --set data.path="$T/f255.npy" \
    --set data.labels="" --set energy.conditional=false --set data.dequantize=none "${BOX1[@]}" \
    --set data.standardize=off --out "$T/r40"
  expect 65 "far outside \[-1, 1\]" -- "$EBM" energy --model "$P" --input "$T/f255.npy" --out "$T/e.csv"
  # A model trained on float images of 0.5 keeps their units (constant
  # images: a range as wide as data.scale about their value, [-0.5, 1.5]):
  # 0-255 floats given to it later are refused too.
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr3} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr3"
    for i in $(seq 512); do printf '\x00\x00\x00\x3f'; done; } >"$T/fhalf.npy"
  if "$EBM" train "${PIX[@]}" --set data.path="$T/fhalf.npy" --set data.labels="" --set energy.conditional=false \
      --set data.dequantize=none --set data.test_fraction=0 "${BOX1[@]}" --out "$T/r43" >/dev/null 2>&1; then
    expect 65 "float values span \[255, 255\], far outside \[-0.5, 1.5\]" -- "$EBM" energy --model "$T/r43/model.pt" \
      --input "$T/f255.npy" --out "$T/e.csv"
    "$EBM" energy --model "$T/r43/model.pt" --input "$T/fhalf.npy" --out "$T/e43.csv" >/dev/null 2>&1 \
      && [ "$(wc -l <"$T/e43.csv")" -ge 8 ] || { echo "FAIL: energy of in-range float images"; fails=$((fails + 1)); }
  else
    echo "FAIL: training on float images"; fails=$((fails + 1))
  fi
  # Float images in [0, 1] (alternating 0 and 1) under a [-1, 1] clamp:
  # uniform dequantization is refused with the key that fits; mapped onto
  # data.scale they fill the box, and taken as they are (data.standardize =
  # off) training notes the keys that match the chains' box to the images.
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr3} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr3"
    for i in $(seq 256); do printf '\x00\x00\x00\x00\x00\x00\x80\x3f'; done; } >"$T/f01.npy"
  expect 78 "for float images use none" -- "$EBM" train "${PIX[@]}" --set data.path="$T/f01.npy" --set data.labels="" \
    --set energy.conditional=false --set data.dequantize=uniform --out "$T/r44"
  "$EBM" train "${PIX[@]}" --set data.path="$T/f01.npy" --set data.labels="" --set energy.conditional=false \
    --set data.dequantize=none "${BOX1[@]}" --out "$T/r53" >/dev/null 2>"$T/r53.err" \
    && grep -q "spanning \[0, 1\], mapped onto data.scale = \[-1, 1\]" "$T/r53.err" && ! grep -q "half or less" "$T/r53.err" \
    && "$EBM" train "${PIX[@]}" --set data.path="$T/f01.npy" --set data.labels="" --set energy.conditional=false \
      --set data.dequantize=none "${BOX1[@]}" --set data.standardize=off --out "$T/r46" >/dev/null 2>"$T/r46.err" \
    && grep -q "spanning \[0, 1\], half or less of the box the chains are clamped to, \[-1, 1\]" "$T/r46.err" \
    || { echo "FAIL: float images in [0, 1] trained without the note on the chains' box"; fails=$((fails + 1)); }
  # Pixels mapped onto [0, 1] under a [-1, 1] clamp: a note; the recipe's
  # own scale: none. The recipe leaves the clamp out, so it follows data.scale.
  "$EBM" train "${PIX[@]}" --set "data.scale=[0,1]" --out "$T/r52" >/dev/null 2>"$T/r52.err" \
    && grep -q '^clamp_min = 0' "$T/r52/config.toml" && grep -q '^init_high = 1' "$T/r52/config.toml" \
    && ! grep -q "pixels are mapped onto" "$T/r52.err" \
    || { echo "FAIL: the recipe's clamp and start box follow data.scale"; fails=$((fails + 1)); }
  "$EBM" train "${PIX[@]}" --set "data.scale=[0,1]" "${BOX1[@]}" --out "$T/r50" >/dev/null 2>"$T/r50.err" \
    && grep -q "pixels are mapped onto data.scale = \[0, 1\] but the chains are clamped to \[-1, 1\]" "$T/r50.err" \
    && ! grep -q "pixels are mapped onto" "$T/pix.err" \
    || { echo "FAIL: data.scale [0, 1] under a [-1, 1] clamp trained without the note (or the recipe got it)"; fails=$((fails + 1)); }
  # Chains started from the data's Gaussian (buffer.init = fit): model.pt
  # keeps it and ebm sample starts from it.
  "$EBM" train "${PIX[@]}" --set buffer.init=fit --out "$T/r47" >/dev/null 2>&1 \
    && grep -qa "start_basis" "$T/r47/model.pt" \
    && "$EBM" sample --model "$T/r47/model.pt" --n 4 --steps 1 --out "$T/r47.png" >/dev/null 2>&1 && [ -s "$T/r47.png" ] \
    || { echo "FAIL: buffer.init = fit trains and samples"; fails=$((fails + 1)); }
  expect 78 "buffer.init must be auto, uniform, gaussian, data, fit or mixed" -- "$EBM" train "${PIX[@]}" --set buffer.init=pca --out "$T/r48"
  expect 78 "buffer.init_noise must be in \[0, 1\]" -- "$EBM" train "${PIX[@]}" --set buffer.init_noise=2 --out "$T/r48c"
  "$EBM" train "${PIX[@]}" --set buffer.init_noise=0.5 --out "$T/r48d" >/dev/null 2>&1 && [ -s "$T/r48d/model.pt" ] \
    || { echo "FAIL: buffer.init_noise under auto (mixed) on images"; fails=$((fails + 1)); }
  # buffer.init = auto (the default): image models start their chains from the
  # data's Gaussian (colour and grey), vector models do not.
  hdrc="{'descr': '|u1', 'fortran_order': False, 'shape': (40, 3, 8, 8), }"
  while [ $(( (10 + ${#hdrc} + 1) % 64 )) -ne 0 ]; do hdrc="$hdrc "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdrc} + 1) % 256 )))\\x00"; printf '%s\n' "$hdrc"
    head -c 7680 /dev/urandom; } >"$T/pixc.npy"
  "$EBM" train "${PIX[@]}" --set data.path="$T/pixc.npy" --out "$T/r49" >/dev/null 2>&1 \
    && grep -qa "start_basis" "$T/r49/model.pt" && grep -qa "start_basis" "$P" && ! grep -qa "start_basis" "$M" \
    || { echo "FAIL: buffer.init = auto fits images only"; fails=$((fails + 1)); }
  expect 66 "no such file or directory" -- "$EBM" train "${PIX[@]}" --set data.path="$T/no_such_dir" --out "$T/r41"
  # Sub-folders named by numbers are classes in numeric order (10 after 2),
  # named by the numbers: labels by value, no classes without data.
  mkdir -p "$T/numbered/2" "$T/numbered/10"
  cp "$T/mixed/a.png" "$T/numbered/2/x.png" && cp "$T/mixed/a.png" "$T/numbered/10/y.png" && cp "$T/mixed/a.png" "$T/numbered/10/z.png"
  "$EBM" train "${PIX[@]}" --set data.path="$T/numbered" --set data.labels="" --set data.test_fraction=0 \
    --set train.batch_size=2 --out "$T/r42" >"$T/num.out" 2>"$T/num.err" \
    && grep -q "classes 2=0, 10=1" "$T/num.out" && ! grep -q "have no training rows" "$T/num.err" \
    && "$EBM" sample --model "$T/r42/model.pt" --label 10 --n 2 --steps 2 --out "$T/num10.npy" 2>"$T/num.err" \
    && "$EBM" sample --model "$T/r42/model.pt" --label 02 --n 2 --steps 2 --out "$T/num02.npy" 2>"$T/num.err" \
    || { echo "FAIL: numbered class folders"; sed 's/^/    /' "$T/num.err"; fails=$((fails + 1)); }
  # Early stopping on images: a conditional conv model validates p(y | x).
  "$EBM" train "${PIX[@]}" --set data.val_fraction=0.2 --set train.keep_best=true --set train.log_every=1 \
    --out "$T/r45" >/dev/null 2>&1 && grep -q '"val_accuracy"' "$T/r45/metrics.jsonl" \
    && grep -q '"event":"keep_best"' "$T/r45/metrics.jsonl" \
    || { echo "FAIL: keep_best on an image classifier"; fails=$((fails + 1)); }
  # Named class folders: classify's columns carry the names.
  mkdir -p "$T/named/cat" "$T/named/dog"
  cp "$T/mixed/a.png" "$T/named/cat/x.png" && cp "$T/mixed/a.png" "$T/named/dog/y.png"
  "$EBM" train "${PIX[@]}" --set data.path="$T/named" --set data.labels="" --set data.test_fraction=0 \
    --set train.batch_size=2 --out "$T/r44" >/dev/null 2>&1 \
    && "$EBM" classify --model "$T/r44/model.pt" --input "$T/named" --out "$T/named.csv" >/dev/null 2>&1 \
    && [ "$(head -1 "$T/named.csv")" = "file,p_cat,p_dog" ] && [ "$(wc -l <"$T/named.csv")" -eq 3 ] \
    && [ "$(cut -d, -f1 "$T/named.csv" | tr '\n' ' ')" = "file cat/x.png dog/y.png " ] \
    || { echo "FAIL: classify names the class folders' columns"; head -2 "$T/named.csv"; fails=$((fails + 1)); }
  # --label takes a class's name as the model keeps it: dog is class 1, the
  # same draws as --label 1 and not those of cat; a name it lacks is exit 64.
  for l in dog 1 cat; do
    "$EBM" sample --model "$T/r44/model.pt" --label "$l" --n 4 --steps 3 --out "$T/lab_$l.npy" >/dev/null 2>&1
  done
  cmp -s "$T/lab_dog.npy" "$T/lab_1.npy" && [ -s "$T/lab_cat.npy" ] && ! cmp -s "$T/lab_dog.npy" "$T/lab_cat.npy" \
    || { echo "FAIL: --label by class name"; fails=$((fails + 1)); }
  expect 64 "no class of that name (cat=0, dog=1)" -- "$EBM" sample --model "$T/r44/model.pt" --label cow --n 1 --steps 1 --out "$T/s.png"
  # A class folder labels its rows by name in the model's numbering (dog is
  # the model's class 1, the folder's only one, 0): the printed NLL is
  # -log p_dog.
  mkdir -p "$T/only_dog/dog" && cp "$T/mixed/a.png" "$T/only_dog/dog/z.png"
  "$EBM" classify --model "$T/r44/model.pt" --input "$T/only_dog" --out "$T/dog.csv" >"$T/dog.json" 2>/dev/null \
    && grep -q '^{"n": 1,' "$T/dog.json" \
    && awk -F, -v got="$(sed 's/.*"nll": *\([^}]*\)}.*/\1/' "$T/dog.json")" \
      'NR == 2 { want = -log($3); d = got - want; exit !((d < 0 ? -d : d) <= 1e-4 * (want > 1 ? want : 1)) }' "$T/dog.csv" \
    || { echo "FAIL: classify of a class folder maps its labels by name"; cat "$T/dog.json"; fails=$((fails + 1)); }
  # Restoration and composition on the pixel model.
  "$EBM" inpaint --model "$P" --input "$T/pix.npy" --mask center:4 --steps 2 --chains 2 --truth "$T/pix.npy" \
    --reference "$T/pix.npy" --out "$T/inp.png" >"$T/inp.json" 2>"$T/inp.err" && grep -q '"nearest"' "$T/inp.json" \
    && [ -s "$T/inp.png" ] || { echo "FAIL: inpaint"; fails=$((fails + 1)); }
  # (the recipe's chains started from the data's Gaussian: a note points to
  # buffer.init = uniform for restoration; a model trained from noise: none)
  grep -q "for inpainting and denoising train with --set buffer.init=uniform" "$T/inp.err" \
    && "$EBM" train "${PIX[@]}" --set buffer.init=uniform --out "$T/r51" >/dev/null 2>&1 \
    && "$EBM" inpaint --model "$T/r51/model.pt" --input "$T/pix.npy" --mask center:4 --steps 2 --chains 2 \
      --out "$T/r51.png" >/dev/null 2>"$T/r51.err" && ! grep -q "buffer.init=uniform" "$T/r51.err" \
    || { echo "FAIL: inpaint's note on models trained from the data's Gaussian"; fails=$((fails + 1)); }
  "$EBM" denoise --model "$P" --input "$T/pix.npy" --corrupt gaussian:0.3 --steps 2 --out "$T/den.npy" >"$T/den.json" \
    2>/dev/null && grep -q '"blur"' "$T/den.json" && [ -s "$T/den.npy" ] || { echo "FAIL: denoise"; fails=$((fails + 1)); }
  "$EBM" sample --model "$P" --label 0 --model "$P" --label 1 --compose and --n 4 --steps 1 --out "$T/and.png" \
    >/dev/null 2>&1 && [ -s "$T/and.png" ] || { echo "FAIL: composed sample"; fails=$((fails + 1)); }
  expect 65 "good.csv"       -- "$EBM" inpaint --model "$P" --input "$T/pix.npy" --mask "$T/good.csv" --out "$T/never.png"
  expect 64 "side must be"   -- "$EBM" inpaint --model "$P" --input "$T/pix.npy" --mask center:20 --out "$T/never.png"
  expect 64 "not images"     -- "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask left-half --out "$T/never.csv"
  # (the baselines' training rows: the run's own training split, rebuilt)
  # (vectors: the conditional mode by default, beside the Gaussian's conditional mean)
  "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask dims:1 --truth "$T/good.csv" --steps 2 --out "$T/inp_vec.csv" \
    >"$T/inp_vec.json" 2>/dev/null && grep -q "the run's training split" "$T/inp_vec.json" \
    && grep -q '"method":"mode"' "$T/inp_vec.json" && grep -q '"gaussian":{"mse"' "$T/inp_vec.json" \
    && "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask dims:1 --truth "$T/good.csv" --steps 2 --chains 2 \
      --out "$T/inp_vec2.csv" 2>/dev/null | grep -q '"method":"sample"' \
    || { echo "FAIL: vector inpaint baselines"; fails=$((fails + 1)); }
  # Vectors: idx/png outputs refused before any work; denoise starts from the
  # corrupted rows by default, with noise in the data's units; salt refused.
  expect 64 "this model's rows are vectors" -- "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask dims:1 --out "$T/never.idx"
  expect 64 "salt is for image models" -- "$EBM" denoise --model "$M" --input "$T/good.csv" --corrupt salt:0.1 --out "$T/never.csv"
  expect 66 "missing_mask.csv" -- "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask "$T/missing_mask.csv" --out "$T/never.csv"
  # --mask missing: a CSV's empty and NA cells are the mask; the known ones are kept
  printf '0.1,\n0.3,NA\n-0.2,0.5\n' >"$T/missing.csv"
  "$EBM" inpaint --model "$M" --input "$T/missing.csv" --mask missing --out "$T/missing_out.csv" >/dev/null 2>&1 \
    && [ "$(wc -l <"$T/missing_out.csv")" -eq 3 ] && ! grep -qi "na" "$T/missing_out.csv" \
    && awk -F, 'NR == 1 && ($1 - 0.1) ^ 2 < 1e-10 { a = 1 } NR == 3 && ($2 - 0.5) ^ 2 < 1e-10 { b = 1 }
                END { exit !(a && b) }' "$T/missing_out.csv" \
    || { echo "FAIL: inpaint --mask missing"; fails=$((fails + 1)); }
  expect 65 "no missing cells to fill" -- "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask missing --out "$T/never.csv"
  expect 64 "mask missing: fills the empty or NA cells" -- "$EBM" inpaint --model "$P" --input "$T/pix.npy" --mask missing \
    --out "$T/never.png"
  expect 64 "method mode descends from one start per row" -- "$EBM" inpaint --model "$M" --input "$T/good.csv" \
    --mask dims:1 --method mode --chains 3 --out "$T/never.csv"
  expect 64 "noise-std 1e-40: out of float32's range" -- "$EBM" denoise --model "$M" --input "$T/good.csv" \
    --noise-std 1e-40 --out "$T/never.csv"
  "$EBM" denoise --model "$M" --input "$T/good.csv" --corrupt gaussian:0.001 --steps 0 --out "$T/den_vec.csv" >"$T/den_vec.json" \
    2>/dev/null && grep -q '"init":"corrupted"' "$T/den_vec.json" && grep -q '"units":"the data' "$T/den_vec.json" \
    && grep -q '"method":"mode"' "$T/den_vec.json" && grep -q '"gaussian":{"mse"' "$T/den_vec.json" \
    && ! grep -q psnr "$T/den_vec.json" || { echo "FAIL: vector denoise"; fails=$((fails + 1)); }
  # Samplers that evaluate stacked (pt) or partial (nuts) sets of chains
  # complete rows too (each once failed with a tensor size mismatch).
  for smp in pt nuts; do
    "$EBM" denoise --model "$M" --input "$T/good.csv" --corrupt gaussian:0.1 --method sample --sampler "$smp" --steps 3 \
      --out "$T/den_$smp.csv" >/dev/null 2>&1 \
      && "$EBM" inpaint --model "$M" --input "$T/good.csv" --mask dims:1 --sampler "$smp" --steps 3 --out "$T/inp_$smp.csv" \
      >/dev/null 2>&1 || { echo "FAIL: denoise and inpaint with --sampler $smp"; fails=$((fails + 1)); }
  done
  expect 64 "noise-std 1 with --corrupt gaussian:0.5: .*give one of them" -- \
    "$EBM" denoise --model "$M" --input "$T/good.csv" --corrupt gaussian:0.5 --noise-std 1 --out "$T/never.csv"
  expect 64 "needs the noise's std" -- "$EBM" denoise --model "$M" --input "$T/good.csv" --out "$T/never.csv"
  expect 64 "method must be"        -- "$EBM" denoise --model "$M" --input "$T/good.csv" --method map --out "$T/never.csv"
  expect 64 "not a named mask"     -- "$EBM" inpaint --model "$P" --input "$T/pix.npy" --mask middle --out "$T/never.png"
  expect 64 "gaussian:STD"   -- "$EBM" denoise --model "$P" --input "$T/pix.npy" --corrupt speckle:1 --out "$T/never.png"
  expect 64 "one or the other" -- "$EBM" denoise --model "$P" --input "$T/pix.npy" --corrupt gaussian:0.3 --truth "$T/pix.npy" --out "$T/never.png"
  [ ! -e "$T/never.png" ] && [ ! -e "$T/never.csv" ] || { echo "FAIL: a failed restoration left output"; fails=$((fails + 1)); }
  expect 64 "event shape"    -- "$EBM" sample --model "$P" --model "$M" --compose and --n 1 --steps 1 --out "$T/s.csv"
  expect 64 "pixel range"    -- "$EBM" sample --model "$P" --model "$T/img_run/model.pt" --compose or --n 1 --steps 1 --out "$T/s.png"
  expect 64 "not class-conditional" -- "$EBM" sample --model "$M" --label 0 --model "$M" --compose and --n 1 --steps 1 --out "$T/s.csv"
  expect 64 "--compose and|or|not" -- "$EBM" sample --model "$M" --model "$M" --n 1 --steps 1 --out "$T/s.csv"
  expect 64 "two energies"   -- "$EBM" sample --model "$M" --model "$M" --model "$M" --compose not --n 1 --steps 1 --out "$T/s.csv"
  # OOD scores of the conditional pixel model: its class scores too; shapes checked.
  "$EBM" eval --model "$P" --task ood --in-data "$T/pix.npy" --out-data "vflip:$T/pix.npy" --out-data uniform \
    --out "$T/ood_pix.json" >/dev/null 2>&1 && grep -q '"max_logit"' "$T/ood_pix.json" \
    && grep -q '"kind": "gaussian"' "$T/ood_pix.json" \
    || { echo "FAIL: ood on the pixel model"; fails=$((fails + 1)); }
  expect 65 "good.csv"       -- "$EBM" eval --model "$P" --task ood --in-data "$T/pix.npy" --out-data "$T/good.csv"
  # An image of another size (the 2x2 grid b.png, 17x17) is refused as it
  # is, and scored once fit: resizes it (and would convert its channels).
  expect 65 "b.png"          -- "$EBM" eval --model "$P" --task ood --in-data "$T/pix.npy" --out-data "$T/mixed/b.png"
  "$EBM" eval --model "$P" --task ood --in-data "$T/pix.npy" --out-data "fit:$T/mixed/b.png" --score energy \
    --out "$T/ood_fit.json" >/dev/null 2>&1 && grep -q "\"fit:$T/mixed/b.png\"" "$T/ood_fit.json" \
    || { echo "FAIL: ood of a resized image (fit:)"; fails=$((fails + 1)); }
  # Class-incremental training (3 classes, 3 tasks) and its evaluation.
  # (six classes, two per task: objective.normalize = batch needs two a task;
  # paths relative to the run's directory, which model.pt keeps absolute)
  for i in $(seq 0 39); do echo $((i % 6)); done >"$T/pix_labels6.csv"
  head -n 39 "$T/pix_labels6.csv" >"$T/pix_labels6_39.csv"
  CONT=(--config "$SRC/configs/mnist-continual.toml" --set data.path="$T/pix.npy" --set data.labels="$T/pix_labels6.csv"
        --set "energy.channels=[4,8]" --set "energy.kernels=[3,3]" --set "energy.strides=[2,2]"
        --set "energy.paddings=[1,1]" --set "energy.hidden=[16]" --set data.tasks=3 --set train.steps=3
        --set train.batch_size=8 --set data.test_fraction=0.25)
  expect 78 "makes tasks of one class" -- "$EBM" train "${CONT[@]}" --set data.labels="$T/pix_labels.csv" --out "$T/one_class"
  if (cd "$T" && "$EBM" train "${CONT[@]}" --set data.path=pix.npy --set data.labels=pix_labels6.csv --out cont_run \
        >/dev/null 2>"$T/cont.err"); then
    [ -s "$T/cont_run/model-task-3.pt" ] && [ "$(grep -c task_end "$T/cont_run/metrics.jsonl")" -eq 3 ] \
      || { echo "FAIL: continual run snapshots"; fails=$((fails + 1)); }
    "$EBM" eval --model "$T/cont_run/model.pt" --task continual --data "$T/pix.npy" --labels "$T/pix_labels6.csv" \
      --out "$T/cont.json" >/dev/null 2>&1 && grep -q '"average_accuracy"' "$T/cont.json" \
      && grep -q '"forgetting"' "$T/cont.json" && grep -q '"backward_transfer"' "$T/cont.json" \
      && python3 -c "import json, sys; j = json.load(open(sys.argv[1])); a = j['after_task'][0]['accuracy']
sys.exit(0 if a[1] is None and a[2] is None and a[0] is not None else 1)" "$T/cont.json" \
      || { echo "FAIL: eval --task continual"; cat "$T/cont.json"; fails=$((fails + 1)); }
    expect 65 "pix_labels6_39.csv" -- "$EBM" eval --model "$T/cont_run/model.pt" --task continual --data "$T/pix.npy" --labels "$T/pix_labels6_39.csv"
    # (test rows of one class: scored in the run's tasks of two, not re-cut)
    for i in $(seq 0 39); do echo 2; done >"$T/pix_labels_all2.csv"
    "$EBM" eval --model "$T/cont_run/model.pt" --task continual --data "$T/pix.npy" --labels "$T/pix_labels_all2.csv" \
      --out "$T/cont2.json" >/dev/null 2>"$T/cont2.err"; grep -q "no rows of task classes \[0, 1\]" "$T/cont2.err" \
      || { echo "FAIL: continual tasks cut from the model's classes"; fails=$((fails + 1)); }
    # (no --data, from another directory: the run's own held-out rows, the split rebuilt)
    (cd / && "$EBM" eval --model "$T/cont_run/model.pt" --task continual) >"$T/cont_self.txt" 2>&1 \
      || { echo "FAIL: continual on the run's held-out split"; sed 's/^/    /' "$T/cont_self.txt"; fails=$((fails + 1)); }
  else
    echo "FAIL: continual training run"; sed 's/^/    /' "$T/cont.err"; fails=$((fails + 1))
  fi
  # Calibration of the conditional pixel model.
  for i in $(seq 0 39); do echo $((i % 5)); done >"$T/labels_big.csv"
  "$EBM" eval --model "$P" --task calibration --data "$T/pix.npy" --labels "$T/pix_labels.csv" --bins 5 \
    --plot "$T/rel.png" --out "$T/cal.json" >/dev/null 2>&1 && grep -q '"ece"' "$T/cal.json" && grep -q '"temperature_scaled"' "$T/cal.json" && [ -s "$T/rel.png" ] \
    || { echo "FAIL: eval --task calibration"; fails=$((fails + 1)); }
  expect 64 "not a classifier" -- "$EBM" eval --model "$T/img_run/model.pt" --task calibration --data "$T/pix.npy" --labels "$T/pix_labels.csv"
  "$EBM" eval --model "$P" --task classify --data "$T/pix.npy" --labels "$T/pix_labels.csv" --out "$T/cls.json" \
    >/dev/null 2>&1 && grep -q '"nll"' "$T/cls.json" || { echo "FAIL: eval --task classify"; fails=$((fails + 1)); }
  expect 64 "classify: the model is not class-conditional" -- "$EBM" eval --model "$T/img_run/model.pt" --task classify --data "$T/pix.npy" --labels "$T/pix_labels.csv"
  expect 65 "labels_big.csv: row 4 (index 3): label 3 outside the model's 3 classes" -- "$EBM" eval --model "$P" --task classify --data "$T/pix.npy" --labels "$T/labels_big.csv"
  expect 64 "bins must be"  -- "$EBM" eval --model "$P" --task calibration --data "$T/pix.npy" --labels "$T/pix_labels.csv" --bins 0
  expect 64 "bins must be 1 to 1000"  -- "$EBM" eval --model "$P" --task calibration --data "$T/pix.npy" --labels "$T/pix_labels.csv" --bins 100000
  expect 64 "is a PNG"  -- "$EBM" eval --model "$P" --task calibration --data "$T/pix.npy" --labels "$T/pix_labels.csv" --plot "$T/rel.jpg"
  # A mask saved as one 2-D plane [H, W] (its centre 4x4) masks every image.
  hdr="{'descr': '|u1', 'fortran_order': False, 'shape': (8, 8), }"
  while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#hdr} + 1) % 256 )))\\x00"; printf '%s\n' "$hdr"
    for r in 0 1 2 3 4 5 6 7; do
      for c in 0 1 2 3 4 5 6 7; do [ $r -ge 2 ] && [ $r -lt 6 ] && [ $c -ge 2 ] && [ $c -lt 6 ] && printf '\x01' || printf '\x00'; done
    done; } >"$T/plane.npy"
  "$EBM" inpaint --model "$P" --input "$T/pix.npy" --mask "$T/plane.npy" --steps 1 --out "$T/plane_inp.npy" >/dev/null 2>&1 \
    || { echo "FAIL: inpaint with a 2-D [H, W] NPY mask"; fails=$((fails + 1)); }
  # Robustness of the conditional pixel model: PGD at two radii, with purification.
  "$EBM" eval --model "$P" --task robustness --data "$T/pix.npy" --labels "$T/pix_labels.csv" --eps 0,0.05 \
    --steps 2 --purify 1 --out "$T/rob.json" >/dev/null 2>&1 && grep -q '"purified_accuracy"' "$T/rob.json" \
    || { echo "FAIL: eval --task robustness"; fails=$((fails + 1)); }
  ROB=(eval --model "$P" --task robustness --data "$T/pix.npy" --labels "$T/pix_labels.csv" --steps 1)
  expect 64 "eps must be >= 0" -- "$EBM" "${ROB[@]}" --eps 0.1,-0.01
  expect 64 "norm must be linf or l2" -- "$EBM" "${ROB[@]}" --norm l1
  expect 64 "robustness: the model is not class-conditional" -- "$EBM" eval --model "$T/img_run/model.pt" --task robustness --data "$T/pix.npy" --labels "$T/pix_labels.csv"
  expect 64 "not class-conditional" -- "$EBM" eval --model "$M" --task robustness --eps 0.1
  # JEM on the pixel rows through the named wrapper; a label beyond energy.classes.
  JEM=(--config "$SRC/configs/fmnist-jem.toml" --set data.path="$T/pix.npy" --set data.labels="$T/pix_labels.csv"
       --set energy.name=jem --set energy.net=conv --set "energy.channels=[4,8]" --set "energy.kernels=[3,3]"
       --set "energy.strides=[2,2]" --set "energy.paddings=[1,1]" --set "energy.hidden=[16]" --set train.steps=2
       --set train.batch_size=8 --set sampler.steps=2 --set buffer.capacity=16 --set data.test_fraction=0.25)
  "$EBM" train "${JEM[@]}" --out "$T/jem_run" >/dev/null 2>&1 \
    && "$EBM" classify --model "$T/jem_run/model.pt" --input "$T/pix.npy" --out "$T/jem_probs.csv" >/dev/null 2>&1 \
    && [ "$(wc -l <"$T/jem_probs.csv")" -eq 41 ] || { echo "FAIL: jem energy train + classify"; fails=$((fails + 1)); }
  expect 65 "label 2 outside the model's 2 classes" -- "$EBM" train "${JEM[@]}" --set energy.classes=2 --out "$T/r27"
  expect 78 "energy.blocks does not apply" -- "$EBM" train "${JEM[@]}" --set "energy.blocks=[1]" --out "$T/r28"
  expect 78 "do not split into 4 tasks" -- "$EBM" train "${CONT[@]}" --set data.tasks=4 --set train.steps=4 --out "$T/r26"
  expect 64 "not class-conditional" -- "$EBM" eval --model "$T/img_run/model.pt" --task continual --data "$T/pix.npy" --labels "$T/pix_labels.csv"
else
  echo "FAIL: pixel training run"; sed 's/^/    /' "$T/pix.err"; fails=$((fails + 1))
fi


# Models of one kind given where the other is wanted.
if [ -f "$P" ]; then
  awk 'BEGIN { srand(5); for (i = 0; i < 200; i++) printf "%.4f,%.4f\n", rand(), rand() }' >"$T/vec2.csv"
  expect 65 "train.init .*: trained on 0-255 pixels, this run's data .* are vectors" -- \
    "$EBM" train --config "$SRC/configs/toy2d-pcd.toml" --set data.path="$T/vec2.csv" --set train.init="$P" --out "$T/init_bad"
fi
if [ -f "$T/img_run/model.pt" ]; then
  awk 'BEGIN { for (i = 0; i < 4; i++) { for (j = 0; j < 18; j++) printf "%s%.2f", (j ? "," : ""), j / 10; printf "\n" } }' >"$T/past18.csv"
  expect 65 "an image model" -- "$EBM" predict --model "$T/img_run/model.pt" --input "$T/past18.csv" --horizon 1 --out "$T/never.csv"
fi

finish
