// Class labels read from a file (data.labels, a command's --labels). Labels
// whose distinct values are 0 .. K-1 are class indices, as they are. Other
// integer labels (-1 / 1, 1 .. K as R and MATLAB number classes, {3, 7}) are
// taken by value: their sorted distinct values are the classes 0 .. K-1,
// named by the values (model.pt keeps the names), and every command reads
// and writes labels in those values. Labels that are words ("setosa") are
// classes in sorted (byte) order, named by the words.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ebm {

// A labels file as read: numbers (CSV, NPY, IDX, .txt), or words, one per line
// of a CSV or .txt file (a header line, when the file has one line more than
// `rows`, and pandas' index column are dropped; double quotes too). Either
// way one label per row of the `rows` rows it labels (kBadData otherwise).
// A first word that is one of a model's `classes` (given: a command's
// labels) is a label, never a header.
struct LabelFile {
  torch::Tensor values;            // [N, ...] float, when numbers
  std::vector<std::string> words;  // when words
};
LabelFile read_label_file(const std::string& path, int64_t rows, const std::vector<std::string>& classes = {});

struct FileLabels {
  torch::Tensor index;             // [N] int64 class indices
  std::vector<std::string> names;  // by value: class k's value; else empty
};
// y: the labels as read (any shape with N values, float); `path` names them in
// errors (kBadData: a label that is not an integer).
FileLabels training_labels(const torch::Tensor& y, const std::string& path);
FileLabels training_labels(const LabelFile& file, const std::string& path);

// Class names that are label values: every name an integer, and not simply
// each class's own index ("0", "1", ... as MNIST's are).
bool named_by_value(const std::vector<std::string>& names);

// Labels from a file given to a model with `names` (its classes' names) and
// k classes (0: unknown): values looked up among the names when the model
// was trained on labels by value, else indices in 0 .. k-1 (kBadData naming
// `path` and the first label that is not one of the model's classes).
torch::Tensor labels_as_trained(const torch::Tensor& y, const std::vector<std::string>& names, int64_t k,
                                const std::string& path);
// ... and words, looked up among the names (kBadData naming the first that
// is not one, or when the model keeps no names).
torch::Tensor labels_as_trained(const LabelFile& file, const std::vector<std::string>& names, int64_t k,
                                const std::string& path);

// Labels y [N] already in a model's numbering, from whatever source (a
// file, a class folder, a built-in set): kBadData naming `from`, the first
// row and its label when one is outside the model's k classes.
void check_labels_in_classes(const torch::Tensor& y, int64_t k, const std::string& from);

// A class named by value by the number `text` ("-1"; "01" is 1), or -1 when
// the model's names are not label values or none is that number.
int64_t class_by_value(const std::string& text, const std::vector<std::string>& names);

// The index of `name` among a model's or data set's class `names`: an exact
// match, else the one name equal but for case ("sandal" for "Sandal"); -1
// when none (or several differ only in case).
int64_t find_class_name(const std::string& name, const std::vector<std::string>& names);

// The class indices that data.classes' entries name among `names` (a data
// set's or model's class names; empty: plain indices): a class's name
// ("sandal", a folder's name, a label value), else a number as the class
// index (sorted order for words and folders). kBadConfig, naming `what` and
// the classes, for an entry that names none.
std::vector<int64_t> named_classes(const std::vector<std::string>& entries, const std::vector<std::string>& names,
                                   const std::string& what);

}  // namespace ebm
