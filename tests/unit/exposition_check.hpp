#pragma once
// A strict checker of the Prometheus text exposition format (0.0.4), for the
// tests of GET /metrics: every sample's family has HELP and TYPE (once, before
// its samples, its samples together), names and label names are valid, label
// values use only the three escapes, values are numbers, no series appears
// twice, and every histogram series has cumulative buckets ending in
// le="+Inf" with _sum and a _count equal to the +Inf bucket. Returns the
// problems found (empty: valid) and, through `samples`, what it parsed.
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::testing {

struct ParsedSample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped
  double value = 0;
};

inline bool valid_metric_name(const std::string& n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_' || n[0] == ':')) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  return true;
}

inline bool valid_label_name(const std::string& n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_')) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

inline bool parse_value(const std::string& s, double& v) {
  if (s == "+Inf" || s == "Inf") return v = INFINITY, true;
  if (s == "-Inf") return v = -INFINITY, true;
  if (s == "NaN") return v = NAN, true;
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

inline std::vector<std::string> check_exposition(const std::string& text, std::vector<ParsedSample>* samples = nullptr) {
  std::vector<std::string> problems;
  auto problem = [&](int line, const std::string& what) { problems.push_back("line " + std::to_string(line) + ": " + what); };
  if (!text.empty() && text.back() != '\n') problems.push_back("the exposition does not end with a newline");

  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helps;
  std::set<std::string> finished;  // families whose samples are over
  std::string current;             // the family whose samples are being read
  std::set<std::string> series;
  std::vector<ParsedSample> all;

  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream l(line);
      std::string hash, kind, name;
      l >> hash >> kind >> name;
      if (kind != "HELP" && kind != "TYPE") continue;  // a comment
      if (!valid_metric_name(name)) problem(n, "invalid metric name in " + kind + ": " + name);
      if (finished.count(name) || (current != name && (helps.count(name) || types.count(name))))
        problem(n, kind + " for " + name + " after its samples or repeated");
      if (kind == "HELP") {
        if (!helps.insert(name).second) problem(n, "second HELP for " + name);
        // The help text: only \\ and \n escapes.
        auto rest = line.substr(std::min(line.size(), 7 + name.size() + 1));
        for (std::size_t i = 0; i < rest.size(); ++i)
          if (rest[i] == '\\') {
            if (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n'))
              problem(n, "bad escape in HELP of " + name);
            ++i;
          }
      } else {
        std::string type;
        l >> type;
        static const std::set<std::string> known{"counter", "gauge", "histogram", "summary", "untyped"};
        if (!known.count(type)) problem(n, "unknown type " + type);
        if (types.count(name)) problem(n, "second TYPE for " + name);
        types[name] = type;
      }
      if (current != name) {
        if (!current.empty()) finished.insert(current);
        current = name;
      }
      continue;
    }
    // name{labels} value
    ParsedSample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!valid_metric_name(s.name)) problem(n, "invalid metric name: " + s.name);
    std::vector<std::pair<std::string, std::string>> ordered;
    if (i < line.size() && line[i] == '{') {
      ++i;
      bool ok = true;
      while (ok && i < line.size() && line[i] != '}') {
        auto eq = line.find('=', i);
        if (eq == std::string::npos) {
          ok = false;
          break;
        }
        auto lname = line.substr(i, eq - i);
        if (!valid_label_name(lname)) problem(n, "invalid label name: " + lname);
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') {
          ok = false;
          break;
        }
        ++i;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) break;
            char e = line[i++];
            if (e == '\\') value += '\\';
            else if (e == '"') value += '"';
            else if (e == 'n') value += '\n';
            else problem(n, std::string("bad escape \\") + e + " in label " + lname);
            continue;
          }
          value += c;
        }
        if (!closed) {
          ok = false;
          break;
        }
        if (s.labels.count(lname)) problem(n, "label " + lname + " twice");
        s.labels[lname] = value;
        ordered.emplace_back(lname, value);
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (!ok || i >= line.size() || line[i] != '}') {
        problem(n, "malformed labels: " + line);
        continue;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      problem(n, "no value: " + line);
      continue;
    }
    auto value_text = line.substr(i + 1);
    if (auto sp = value_text.find(' '); sp != std::string::npos) value_text = value_text.substr(0, sp);  // a timestamp
    if (!parse_value(value_text, s.value)) problem(n, "not a number: " + value_text);

    // Its family.
    std::string family = s.name;
    if (!types.count(family)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        std::string sfx = suffix;
        if (s.name.size() > sfx.size() && s.name.ends_with(sfx)) {
          auto base = s.name.substr(0, s.name.size() - sfx.size());
          if (types.count(base) && (types[base] == "histogram" || (types[base] == "summary" && sfx != "_bucket")))
            family = base;
        }
      }
    }
    if (!types.count(family)) problem(n, "sample of " + s.name + " without TYPE");
    if (!helps.count(family)) problem(n, "sample of " + s.name + " without HELP");
    if (family != current) problem(n, "sample of " + family + " outside its family's block");
    if (types.count(family) && types[family] == "counter" && s.value < 0) problem(n, "negative counter " + s.name);
    std::string key = s.name + "{";
    for (const auto& [k, v] : s.labels) key += k + "=\"" + v + "\",";
    if (!series.insert(key).second) problem(n, "duplicate series " + key + "}");
    s.labels["__family__"] = family;
    all.push_back(s);
  }

  // Histograms: per series (labels without le) in order of appearance.
  struct Hist {
    std::vector<std::pair<double, double>> buckets;  // le, value
    bool sum = false, count = false;
    double count_value = 0;
  };
  std::map<std::string, Hist> hists;
  for (const auto& s : all) {
    auto family = s.labels.at("__family__");
    if (types[family] != "histogram") continue;
    std::string key = family + "{";
    for (const auto& [k, v] : s.labels)
      if (k != "le" && k != "__family__") key += k + "=\"" + v + "\",";
    auto& h = hists[key];
    if (s.name == family + "_bucket") {
      if (!s.labels.count("le")) {
        problems.push_back(key + ": bucket without le");
        continue;
      }
      double le = 0;
      if (!parse_value(s.labels.at("le"), le)) problems.push_back(key + ": le not a number");
      h.buckets.emplace_back(le, s.value);
    } else if (s.name == family + "_sum") {
      h.sum = true;
    } else if (s.name == family + "_count") {
      h.count = true;
      h.count_value = s.value;
    } else {
      problems.push_back(key + ": " + s.name + " in a histogram");
    }
  }
  for (const auto& [key, h] : hists) {
    if (h.buckets.empty()) problems.push_back(key + ": no buckets");
    if (!h.sum) problems.push_back(key + ": no _sum");
    if (!h.count) problems.push_back(key + ": no _count");
    for (std::size_t i = 1; i < h.buckets.size(); ++i) {
      if (!(h.buckets[i].first > h.buckets[i - 1].first)) problems.push_back(key + ": le not ascending");
      if (h.buckets[i].second < h.buckets[i - 1].second) problems.push_back(key + ": buckets not cumulative");
    }
    if (!h.buckets.empty() && !std::isinf(h.buckets.back().first)) problems.push_back(key + ": last bucket is not +Inf");
    if (!h.buckets.empty() && h.count && h.buckets.back().second != h.count_value)
      problems.push_back(key + ": _count differs from the +Inf bucket");
  }
  for (auto& s : all) s.labels.erase("__family__");
  if (samples) *samples = std::move(all);
  return problems;
}

// The value of the sample `name` with exactly `labels`, or NaN.
inline double sample_value(const std::vector<ParsedSample>& samples, const std::string& name,
                           const std::map<std::string, std::string>& labels = {}) {
  for (const auto& s : samples)
    if (s.name == name && s.labels == labels) return s.value;
  return NAN;
}

}  // namespace sluice::testing
