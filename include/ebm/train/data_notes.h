// Notes on training data that train, but train poorly as they are.
#pragma once

#include "ebm/data/data.h"

namespace ebm {

// Vector data standardised by data.standardize whose scale a few far values
// set: a column whose standard deviation is over 10x that of its central
// 98% of training rows (heavy tails, stray outliers, a tiny far cluster)
// has the rest squeezed into a small part of the model's units. One note
// (core/progress.h notes()) naming the worst column; nothing otherwise.
// Float images mapped by their range (data.standardize) likewise, when 99.8%
// of their values span under a tenth of it.
void note_far_values(const DataSplit& split);

// Vector data with a column of one value in every training row: a point
// mass, which no density fits (the energy sharpens without end there). One
// note naming the columns (at most 10); nothing otherwise.
void note_constant_columns(const DataSplit& split);

// Vector data whose columns are a linear function of one another in every
// training row (one column a multiple of another: a length in metres and in
// feet), a variance under 1e-12 of the columns' along some combination of
// the standardised columns: no density exists on the thinner set the rows
// lie on (a probe's PCD test NLL fell from -0.68 to -1.73 as it trained on,
// with no word). One note naming the columns (at most 10); nothing
// otherwise (from 2 to 2,048 columns, with more rows than columns; the
// trainer skips trajectories, whose dynamics hold exactly in some columns).
void note_collinear_columns(const DataSplit& split);

// Vector data trained by denoising score matching whose thinnest direction
// (the smallest principal sd of the training rows in the model's units) is
// under 2 sigma: the model learns the data blurred across it (a probe's
// mixture thinned 100x along a diagonal, which per-column standardisation
// cannot undo: 0.72 nats from the truth at sigma 0.03, against PCD's 0.14).
// One note; nothing otherwise.
void note_thin_direction(const DataSplit& split, double sigma);

// Held-out rows (test and validation) that are exact copies of training rows,
// when they are 1% or more of them: data with repeated records, whose
// held-out scores then reward memory. One note; nothing otherwise.
void note_shared_rows(const DataSplit& split);

// Vector data with a column of a few distinct values (2 to 20 among 100
// rows or more; data.dequantize not gaussian): point masses, on which a continuous
// energy sharpens without end (a probe's column of 0, 1, 2: test NLL -0.67
// at 3,000 steps, -1.65 at 10,000). One note naming the columns (at most 10),
// pointing to data.dequantize = gaussian; nothing otherwise.
void note_discrete_columns(const DataSplit& split, const std::string& dequantize);

// A batch twice the training set or more: rows are drawn with replacement, so
// every batch repeats rows (a batch of 1e8 took 11.6 GB before anything was
// said). One note; nothing otherwise.
void note_batch_size(const DataSplit& split, int64_t batch_size);

// Trajectory rows (T steps of F values, data.step_values = F) whose first
// steps spread over 10x more than the trajectories move from them (tracks
// that start far apart): standardised per column by the spread of
// positions, a step of motion is a small fraction of the model's units,
// below what denoising resolves (a probe's tracks 4,000-6,000 km apart
// moving 1.5 km a step: predictions 9x worse than the last position held;
// the same tracks relative to their starts 1e6x better). One note naming
// the worst value of a step; nothing otherwise.
void note_trajectory_offsets(const DataSplit& split, int64_t step_values);

// Labelled images under data.flip (half of every batch mirrored): a class
// whose mean image, mirrored, is within half its distance to its own mean
// of another class's mean, and within half the unmirrored distance to it
// (left and right arrows, b and d), cannot be told apart
// from that class once flipped (a probe's arrows: accuracy 0.49 with flips,
// 1.00 without). One note naming the pairs; nothing otherwise.
void note_mirrored_classes(const DataSplit& split);

// Labelled vector rows with a column that names the label: at most 2K
// distinct values (K classes), each of which only one class's rows hold (the
// label column left among the features gave a probe accuracy 1.0000, NLL
// -0.0000, and no word). One note naming the columns (at most 5); nothing
// otherwise.
void note_label_columns(const DataSplit& split);

}  // namespace ebm
