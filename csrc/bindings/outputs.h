// The optional out= of a kernel with several results: a tuple (or list) with one entry
// per result, each a preallocated array or None ("allocate it"). A network passes the
// buffers it keeps per batch size here, so a training step allocates nothing.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/checks.h"

namespace fastdl::bind {

// One result: its name ("y", "mask", ...), shape and dtype (numpy kind + itemsize).
struct OutputSpec {
  const char* name;
  std::vector<py::ssize_t> shape;
  char kind = 'f';
  int itemsize = 4;
};

using Inputs = std::initializer_list<std::pair<const char*, const py::array*>>;

// "out[i] (name)", the name errors give entry i, assembled without printf or the heap:
// it is made for every entry of every call (a few per layer per training step).
struct EntryLabel {
  char text[48];
  EntryLabel(size_t i, const char* name) {
    size_t n = 0;
    for (const char* p = "out["; *p;) text[n++] = *p++;
    text[n++] = (char)('0' + i % 10);  // results never number ten
    for (const char* p = "] ("; *p;) text[n++] = *p++;
    for (const char* p = name; *p && n < sizeof text - 2;) text[n++] = *p++;
    text[n++] = ')';
    text[n] = '\0';
  }
};

// The given arrays of out_h, entry i named "out[i] (name)", checked (dtype, shape,
// C-contiguous, writable, overlapping no input and no other entry) before anything is
// written; nullopt where the entry is None or out_h is None.
inline std::vector<std::optional<py::array>> given_outputs(py::handle out_h,
                                                           const std::vector<OutputSpec>& specs,
                                                           Inputs inputs) {
  std::vector<std::optional<py::array>> got(specs.size());
  if (out_h.is_none()) return got;
  // The messages' strings are built only on the way to an error: this runs every step.
  auto names = [&] {
    std::string s;
    for (size_t i = 0; i < specs.size(); ++i) s += (i ? ", " : "") + std::string(specs[i].name);
    return s;
  };
  if (!py::isinstance<py::tuple>(out_h) && !py::isinstance<py::list>(out_h))
    throw py::type_error("out: expected a tuple (" + names() + ") of arrays or None, got " +
                         type_name(out_h));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(out_h);
  if (seq.size() != specs.size())
    throw py::value_error("out: expected " + std::to_string(specs.size()) + " entries (" + names() +
                          "), got " + std::to_string(seq.size()));
  for (size_t i = 0; i < specs.size(); ++i) {
    py::object entry = seq[i];
    if (entry.is_none()) continue;
    const EntryLabel label(i, specs[i].name);
    const char* name = label.text;
    py::array a = checked_out(entry, name, specs[i].shape, inputs, specs[i].kind, specs[i].itemsize);
    for (size_t j = 0; j < i; ++j)
      if (got[j] && overlaps(a, *got[j]))
        throw py::value_error(std::string(name) + ": shares memory with another entry of out");
    got[i] = a;
  }
  return got;
}

inline py::array fresh_output(const OutputSpec& spec) {
  return py::array(py::dtype(std::string(1, spec.kind) + std::to_string(spec.itemsize)), spec.shape);
}

// Every result: the given array, or a fresh one where its entry was None.
inline std::vector<py::array> output_arrays(py::handle out_h, const std::vector<OutputSpec>& specs,
                                            Inputs inputs) {
  std::vector<std::optional<py::array>> got = given_outputs(out_h, specs, inputs);
  std::vector<py::array> arrays;
  arrays.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) arrays.push_back(got[i] ? *got[i] : fresh_output(specs[i]));
  return arrays;
}

// out= of a kernel that took its first result alone before it took the tuple
// (dense_forward, dropout_forward): a tuple lists every result; anything else is the
// first result alone ("out", the others allocated). Only a tuple: a list stands for an
// array, as everywhere in numpy.
inline std::vector<py::array> output_arrays_or_first(py::handle out_h,
                                                     const std::vector<OutputSpec>& specs,
                                                     Inputs inputs) {
  if (py::isinstance<py::tuple>(out_h)) return output_arrays(out_h, specs, inputs);
  std::vector<py::array> arrays;
  arrays.reserve(specs.size());
  arrays.push_back(out_h.is_none() ? fresh_output(specs[0])
                                   : checked_out(out_h, "out", specs[0].shape, inputs,
                                                 specs[0].kind, specs[0].itemsize));
  for (size_t i = 1; i < specs.size(); ++i) arrays.push_back(fresh_output(specs[i]));
  return arrays;
}

// A single-result out=: the given array (checked as above) or a fresh float32 one.
inline py::array output_array(py::handle out_h, const std::vector<py::ssize_t>& shape, Inputs inputs) {
  return out_h.is_none() ? py::array(empty_f32(shape)) : checked_out(out_h, "out", shape, inputs);
}

}  // namespace fastdl::bind
