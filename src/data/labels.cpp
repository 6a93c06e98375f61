// Class labels from files: indices, values or words (data/labels.h).
#include "ebm/data/labels.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/io/io.h"

namespace ebm {
namespace {

// y as int64 [N], every value an integer (kBadData naming path otherwise).
torch::Tensor integer_labels(const torch::Tensor& y, const std::string& path) {
  const auto d = y.reshape({-1}).to(torch::kDouble);
  if (d.numel() == 0) return torch::empty({0}, torch::kLong);
  EBM_CHECK_DATA(torch::isfinite(d).all().item<bool>(), path, ": labels must be finite integers");
  const auto off = (d != d.round()).nonzero();
  if (off.numel() > 0) {
    const int64_t i = off[0][0].item<int64_t>();
    fail(ExitCode::kBadData, path, ": labels must be integers, got ", d[i].item<double>(), " in row ", i + 1, " (index ", i, ")");
  }
  EBM_CHECK_DATA(d.abs().max().item<double>() < 1e15, path, ": labels must be integers below 1e15 in size");
  return d.to(torch::kLong);
}

bool integer_text(const std::string& s, int64_t* value) {
  if (s.empty()) return false;
  size_t used = 0;
  try {
    *value = std::stoll(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == s.size() && std::to_string(*value) == s;
}

std::string trimmed(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

std::string unquoted(std::string s) {
  s = trimmed(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = trimmed(s.substr(1, s.size() - 2));
  return s;
}

std::string name_list(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 20; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 20) out += ", ...";
  return out;
}

// A line's last field: after its last comma, tab or semicolon (pandas'
// "index,label"), else its last double-quoted word (R's write.table: "1"
// "setosa"), else the whole line.
std::string last_field(const std::string& line) {
  for (char sep : {',', '\t', ';'})
    if (const auto at = line.rfind(sep); at != std::string::npos) return line.substr(at + 1);
  const auto t = trimmed(line);
  if (t.size() >= 2 && t.back() == '"') {
    const auto open = t.rfind('"', t.size() - 2);
    if (open != std::string::npos && open > 0 && t.find_last_not_of(" \t", open - 1) < open - 1)
      return t.substr(open);
  }
  return line;
}

// One word per line (the last field of each).
std::vector<std::string> read_words(const std::string& path, int64_t rows, const std::vector<std::string>& classes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ExitCode::kMissingInput, path, ": cannot open for reading");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  while (!lines.empty() && trimmed(lines.back()).empty()) lines.pop_back();
  if (!lines.empty() && lines[0].rfind("\xEF\xBB\xBF", 0) == 0) lines[0].erase(0, 3);
  std::vector<std::string> words;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto w = unquoted(last_field(lines[i]));
    EBM_CHECK_DATA(!w.empty() || (i == 0 && lines.size() > 1), path, ":", i + 1, ": empty label");
    words.push_back(w);
  }
  // A header: one line more than the rows labelled, whose word is no label
  // of the other lines ("species", pandas' ",label"). A first line that is
  // one of the labels is a label: the file has a label too many for the
  // rows (a data file that lost its last row), which the caller refuses
  // rather than pair every row with its neighbour's label.
  if (int64_t(lines.size()) == rows + 1 &&
      std::find(words.begin() + 1, words.end(), words[0]) == words.end() &&
      (classes.empty() || find_class_name(words[0], classes) < 0))
    words.erase(words.begin());
  EBM_CHECK_DATA(!words.empty() && !words[0].empty(), path, ":1: empty label");
  return words;
}

}  // namespace

LabelFile read_label_file(const std::string& path, int64_t rows, const std::vector<std::string>& classes) {
  LabelFile out;
  try {
    out.values = read_matrix(path);
  } catch (const Error& e) {
    const auto ext = file_extension(path);  // (text files: .csv, .txt, .tsv)
    // (one word on one line reads as a CSV header with no rows)
    const std::string what = e.what();
    const bool words = (ext == ".csv" || ext == ".txt" || ext == ".tsv") && e.code() == ExitCode::kBadData &&
                       (what.find("non-numeric") != std::string::npos ||
                        what.find("header line but no data rows") != std::string::npos);
    if (!words) throw;
  }
  if (const auto& y = out.values; y.defined()) {
    EBM_CHECK_DATA(y.size(0) == rows && y.numel() == rows, path, ": want one label per row (", rows,
                   " rows), got ", y.size(0), " x ", y.size(1));
    return out;
  }
  out.words = read_words(path, rows, classes);
  EBM_CHECK_DATA(int64_t(out.words.size()) == rows, path, ": want one label per row (", rows, " rows), got ",
                 out.words.size());
  return out;
}

FileLabels training_labels(const LabelFile& file, const std::string& path) {
  if (file.words.empty()) return training_labels(file.values, path);
  // (a number among words is a class of its own, most often a typo: say so)
  size_t numbers = 0, first = 0;
  for (size_t i = 0; i < file.words.size(); ++i) {
    int64_t v = 0;
    if (integer_text(file.words[i], &v) && numbers++ == 0) first = i;
  }
  if (numbers > 0 && numbers < file.words.size())
    notes() << "ebm: note: " << path << ": " << numbers << " of its " << file.words.size()
            << " labels are numbers among words (the first, '" << file.words[first] << "', row " << first + 1 << ", index " << first
            << "); each distinct one is a class of its own\n";
  FileLabels out;
  out.names = file.words;
  std::sort(out.names.begin(), out.names.end());
  out.names.erase(std::unique(out.names.begin(), out.names.end()), out.names.end());
  std::vector<int64_t> index;
  for (const auto& w : file.words)
    index.push_back(int64_t(std::lower_bound(out.names.begin(), out.names.end(), w) - out.names.begin()));
  out.index = torch::tensor(index, torch::kLong);
  return out;
}

torch::Tensor labels_as_trained(const LabelFile& file, const std::vector<std::string>& names, int64_t k,
                                const std::string& path) {
  if (file.words.empty()) return labels_as_trained(file.values, names, k, path);
  static_cast<void>(k);  // (the names are the model's classes)
  if (names.empty()) {
    // (the first label that is not a class index: a typo among indices
    // named the first label, '0', as the word)
    size_t bad = 0;
    int64_t v = 0;
    while (bad + 1 < file.words.size() && integer_text(file.words[bad], &v)) ++bad;
    fail(ExitCode::kBadData, path, ": label '", file.words[bad], "' (row ", bad + 1,
         ") is a word, but the model keeps no class names; give class indices");
  }
  std::vector<int64_t> index;
  for (size_t i = 0; i < file.words.size(); ++i) {
    const auto it = std::find(names.begin(), names.end(), file.words[i]);
    if (it == names.end())
      fail(ExitCode::kBadData, path, ": label '", file.words[i], "' (row ", i + 1, ", index ", i, ") is not one of the model's classes (",
           name_list(names), ")");
    index.push_back(int64_t(it - names.begin()));
  }
  return torch::tensor(index, torch::kLong);
}

FileLabels training_labels(const torch::Tensor& y, const std::string& path) {
  FileLabels out;
  const auto v = integer_labels(y, path);
  if (v.numel() == 0) {
    out.index = v;
    return out;
  }
  const auto uniq = std::get<0>(torch::_unique(v, /*sorted=*/true));
  const int64_t k = uniq.numel();
  if (uniq[0].item<int64_t>() == 0 && uniq[k - 1].item<int64_t>() == k - 1) {  // (0 .. K-1: indices)
    out.index = v;
    return out;
  }
  out.index = torch::searchsorted(uniq, v);
  const auto* p = uniq.data_ptr<int64_t>();
  for (int64_t c = 0; c < k; ++c) out.names.push_back(std::to_string(p[c]));
  return out;
}

bool named_by_value(const std::vector<std::string>& names) {
  bool identity = true;
  for (size_t k = 0; k < names.size(); ++k) {
    int64_t v = 0;
    if (!integer_text(names[k], &v)) return false;
    identity = identity && v == int64_t(k);
  }
  return !names.empty() && !identity;
}

torch::Tensor labels_as_trained(const torch::Tensor& y, const std::vector<std::string>& names, int64_t k,
                                const std::string& path) {
  const auto v = integer_labels(y, path);
  if (v.numel() == 0) return v;
  if (!named_by_value(names)) {
    const int64_t lo = v.min().item<int64_t>(), hi = v.max().item<int64_t>();
    EBM_CHECK_DATA(lo >= 0, path, ": label ", lo, " is negative; the model's labels are class indices 0 to ",
                   k > 0 ? std::to_string(k - 1) : std::string("K-1"));
    EBM_CHECK_DATA(k <= 0 || hi < k, path, ": label ", hi, " outside the model's classes 0 to ", k - 1);
    return v;
  }
  std::map<int64_t, int64_t> index_of;  // value -> class
  for (size_t i = 0; i < names.size(); ++i) {
    int64_t value = 0;
    integer_text(names[i], &value);
    index_of[value] = int64_t(i);
  }
  auto out = torch::empty_like(v);
  const auto* in = v.data_ptr<int64_t>();
  auto* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < v.numel(); ++i) {
    const auto it = index_of.find(in[i]);
    if (it == index_of.end())
      fail(ExitCode::kBadData, path, ": label ", in[i], " (row ", i + 1, ", index ", i, ") is not one of the model's labels (",
           name_list(names), ")");
    o[i] = it->second;
  }
  return out;
}

int64_t class_by_value(const std::string& text, const std::vector<std::string>& names) {
  if (!named_by_value(names)) return -1;
  int64_t value = 0;  // (any spelling of the number: "01" is 1, a folder 01/'s label)
  size_t used = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    return -1;
  }
  if (text.empty() || used != text.size()) return -1;
  const auto it = std::find(names.begin(), names.end(), std::to_string(value));
  return it == names.end() ? -1 : int64_t(it - names.begin());
}

int64_t find_class_name(const std::string& name, const std::vector<std::string>& names) {
  if (const auto it = std::find(names.begin(), names.end(), name); it != names.end()) return int64_t(it - names.begin());
  int64_t found = -1;
  for (size_t c = 0; c < names.size(); ++c)
    if (names[c].size() == name.size() &&
        std::equal(name.begin(), name.end(), names[c].begin(),
                   [](unsigned char a, unsigned char b) { return std::tolower(a) == std::tolower(b); })) {
      if (found >= 0) return -1;  // (two names fold to it: neither)
      found = int64_t(c);
    }
  return found;
}

std::vector<int64_t> named_classes(const std::vector<std::string>& entries, const std::vector<std::string>& names,
                                   const std::string& what) {
  std::vector<int64_t> out;
  for (const auto& e : entries) {
    if (const int64_t c = find_class_name(e, names); c >= 0) {
      out.push_back(c);
      continue;
    }
    if (named_by_value(names)) {  // (labels by value: "05" is 5; no index reading)
      const int64_t c = class_by_value(e, names);
      EBM_CHECK_CONFIG(c >= 0, "data.classes: ", what, " has no label ", e, " (its labels: ", name_list(names), ")");
      out.push_back(c);
      continue;
    }
    int64_t k = 0;
    const bool number = integer_text(e, &k);
    EBM_CHECK_CONFIG(number || !names.empty(), "data.classes: '", e, "' is not a class index, and ", what,
                     " has no class names");
    EBM_CHECK_CONFIG(number, "data.classes: ", what, " has no class named '", e, "' (its classes: ",
                     name_list(names), ")");
    EBM_CHECK_CONFIG(k >= 0 && (names.empty() || k < int64_t(names.size())), "data.classes: ", what,
                     " has no class ", k, names.empty() ? std::string() : " (its classes: 0 to " +
                     std::to_string(names.size() - 1) + ": " + name_list(names) + ")");
    out.push_back(k);
  }
  return out;
}

void check_labels_in_classes(const torch::Tensor& y, int64_t k, const std::string& from) {
  const auto v = y.to(torch::kCPU, torch::kLong).reshape({-1});
  const auto bad = ((v < 0) | (v >= k)).nonzero();
  if (bad.numel() == 0) return;
  const int64_t row = bad[0][0].item<int64_t>();
  fail(ExitCode::kBadData, from, ": row ", row + 1, " (index ", row, "): label ", v[row].item<int64_t>(), " outside the model's ", k,
       " classes (0 to ", k - 1, ")");
}

}  // namespace ebm
