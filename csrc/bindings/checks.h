// Argument checks shared by the bindings. Every array that reaches C++ is float32
// (or the stated dtype), native byte order, C-contiguous and of the stated shape:
// nothing is converted or copied behind the caller's back, and a mismatch raises a
// TypeError/ValueError that names the argument, what it got and what was expected.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace fastdl::bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

// An array argument of the given dtype (numpy kind char + itemsize) and rank.
inline py::array checked_array(py::handle h, const char* name, int ndim, const char* what,
                               char kind = 'f', int itemsize = 4, bool writable = false) {
  const std::string dtype_name = kind == 'f' ? "float" + std::to_string(itemsize * 8)
                                 : kind == 'u' ? "uint" + std::to_string(itemsize * 8)
                                               : "int" + std::to_string(itemsize * 8);
  if (!py::isinstance<py::array>(h)) {
    if (py::hasattr(h, "__cuda_array_interface__"))
      throw py::type_error(std::string(name) + ": got a GPU array (" + type_name(h) +
                           "); the CPU kernels need a numpy.ndarray (the GPU kernels take "
                           "device arrays through fastdl.kernels with the 'cuda' extra)");
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray of " + dtype_name +
                         " " + what + ", got " + type_name(h));
  }
  auto a = py::reinterpret_borrow<py::array>(h);
  const py::dtype dt = a.dtype();
  const char bo = dt.byteorder();
  if (dt.kind() != kind || dt.itemsize() != itemsize || bo == '>')
    throw py::type_error(std::string(name) + ": expected dtype " + dtype_name + ", got " +
                         std::string(py::str(dt)) + " (convert with .astype(np." + dtype_name +
                         "))");
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) +
                          "-D array " + what + ", got shape " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array, got a strided " +
                          "view of shape " + shape_str(a) +
                          " (use np.ascontiguousarray; fastdl never copies silently)");
  if (writable && !a.writeable())
    throw py::value_error(std::string(name) + ": the array is read-only");
  return a;
}

inline py::array checked_f32(py::handle h, const char* name, int ndim, const char* what,
                             bool writable = false) {
  return checked_array(h, name, ndim, what, 'f', 4, writable);
}

// Requires dimension d of a to equal expected, naming where the expectation came from.
inline void expect_dim(const py::array& a, const char* name, int d, py::ssize_t expected,
                       const std::string& why) {
  if (a.shape(d) != expected)
    throw py::value_error(std::string(name) + ": expected shape[" + std::to_string(d) + "] == " +
                          std::to_string(expected) + " (" + why + "), got shape " + shape_str(a));
}

// The bytes an array spans (a hot path that checks one array against many others takes
// them once).
struct ByteRange {
  const char* begin;
  const char* end;
  bool overlaps(const ByteRange& o) const {
    return begin < end && o.begin < o.end && begin < o.end && o.begin < end;
  }
};

inline ByteRange range_of(const py::array& a) {
  const char* p = static_cast<const char*>(a.data());
  return {p, p + a.nbytes()};
}

inline bool overlaps(const py::array& a, const py::array& b) {
  return range_of(a).overlaps(range_of(b));
}

// An `out=` array: float32 (or the stated dtype), C-contiguous, writable, exactly the
// given shape, and not sharing memory with any input.
inline py::array checked_out(py::handle h, const char* name, const std::vector<py::ssize_t>& shape,
                             std::initializer_list<std::pair<const char*, const py::array*>> inputs,
                             char kind = 'f', int itemsize = 4) {
  py::array out = checked_array(h, name, (int)shape.size(), "", kind, itemsize, /*writable=*/true);
  for (size_t d = 0; d < shape.size(); ++d)
    expect_dim(out, name, (int)d, shape[d], "the result's shape");
  for (auto& [in_name, in] : inputs)
    if (in && overlaps(out, *in))
      throw py::value_error(std::string(name) + ": shares memory with input '" + in_name +
                            "'; the kernels do not run in place");
  return out;
}

inline py::array_t<float> empty_f32(std::vector<py::ssize_t> shape) {
  return py::array_t<float>(shape);
}

// Scalars. One set of rules for every kernel argument that is a number: a bool is not a
// number (TypeError); numpy scalars and 0-d arrays are; a value that does not fit what
// the kernel computes with is a ValueError naming the argument (never pybind11's
// RuntimeError or its signature dump); hyperparameters are finite.

// True for Python's bool and numpy's bool_ (neither is accepted where a number is meant).
inline bool is_bool_like(py::handle h) {
  if (py::isinstance<py::bool_>(h)) return true;
  if (py::isinstance<py::array>(h) || !py::hasattr(h, "dtype")) return false;
  py::object kind = py::getattr(h.attr("dtype"), "kind", py::none());
  return py::isinstance<py::str>(kind) && kind.cast<std::string>() == "b";
}

// A short text of a scalar for a message (a 400-digit int is cut).
inline std::string scalar_str(py::handle h) {
  std::string s = py::str(h);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// An integer scalar argument (a Python int or a numpy integer, never a bool or a float),
// as a Python int of any size: TypeError naming the argument otherwise.
inline py::int_ int_arg(py::handle h, const char* name) {
  if (PyLong_CheckExact(h.ptr())) return py::reinterpret_borrow<py::int_>(h);  // the common case
  if (is_bool_like(h) || py::isinstance<py::float_>(h) || !py::hasattr(h, "__index__"))
    throw py::type_error(std::string(name) + ": expected an int, got " + type_name(h));
  PyObject* v = PyNumber_Index(h.ptr());  // numpy integers and 0-d integer arrays
  if (!v) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + ": expected an int, got " + type_name(h));
  }
  return py::reinterpret_steal<py::int_>(v);
}

// An integer argument in [lo, hi]: int_arg's rules, then ValueError naming the range.
inline long long int_in_range(py::handle h, const char* name, long long lo, long long hi) {
  const py::int_ v = int_arg(h, name);
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow || x < lo || x > hi)
    throw py::value_error(std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + scalar_str(v));
  return x;
}

// A real scalar argument (Python int/float, a numpy scalar or 0-d array, anything with
// __float__; never a bool): TypeError naming the argument otherwise, ValueError when it
// does not fit a double.
inline double float_arg(py::handle h, const char* name) {
  if (PyFloat_CheckExact(h.ptr())) return PyFloat_AS_DOUBLE(h.ptr());  // the common case
  const bool array = py::isinstance<py::array>(h);
  const bool number = py::isinstance<py::float_>(h) || py::isinstance<py::int_>(h) ||
                      (py::hasattr(h, "__float__") &&
                       (!array || py::reinterpret_borrow<py::array>(h).ndim() == 0));
  if (is_bool_like(h) || !number)
    throw py::type_error(std::string(name) + ": expected a float, got " + type_name(h));
  const double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + ": " + scalar_str(h) + " does not fit a double");
  }
  return v;
}

// A hyperparameter: float_arg's rules, and finite (ValueError naming it otherwise).
inline double finite_arg(py::handle h, const char* name) {
  const double v = float_arg(h, name);
  if (!std::isfinite(v))
    throw py::value_error(std::string(name) + ": expected a finite number, got " + scalar_str(h));
  return v;
}

// A hyperparameter the kernels hold in float32: finite_arg's rules, and within float32's
// range (1e300 would become inf there).
inline float f32_arg(py::handle h, const char* name) {
  const double v = finite_arg(h, name);
  if (std::fabs(v) > (double)std::numeric_limits<float>::max())
    throw py::value_error(std::string(name) + ": " + scalar_str(h) +
                          " is beyond float32's range (the kernels compute in float32)");
  return (float)v;
}

inline float* fptr(const py::array& a) { return static_cast<float*>(const_cast<void*>(a.data())); }

}  // namespace fastdl::bind
