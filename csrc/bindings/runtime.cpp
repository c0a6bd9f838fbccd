#include <pybind11/pybind11.h>

#include <string>

#include "bindings/checks.h"
#include "fastdl/activation.h"
#include "fastdl/runtime.h"
#include "runtime/cache_size.h"

namespace py = pybind11;

namespace fastdl::bind {

void register_runtime(py::module_& m) {
  m.def(
      "set_num_threads",
      [](py::handle n_h) {
        const py::int_ n = int_arg(n_h, "n");  // a Python or numpy int of any size
        const int cap = fastdl::max_num_threads();
        if (n.attr("__lt__")(1).cast<bool>() || n.attr("__gt__")(cap).cast<bool>())
          throw py::value_error("n: expected 1 <= n <= " + std::to_string(cap) +
                                " threads (the cap, fastdl.max_num_threads(): " +
                                std::to_string(kThreadCapPerProcessor) +
                                " per processor OpenMP reports, at least " +
                                std::to_string(kMinThreadCap) + "), got " + std::string(py::str(n)));
        fastdl::set_num_threads(n.cast<int>());
      },
      py::arg("n"),
      "Sets the number of threads every kernel uses (default: the number of cores), at most "
      "max_num_threads().");
  m.def("max_num_threads", &fastdl::max_num_threads,
        "The most threads set_num_threads accepts: 4 per processor OpenMP reports, at least 64.");
  m.def("get_num_threads", &fastdl::get_num_threads, "The number of threads the kernels use.");
  m.def("get_isa", [] { return std::string(path_name(selected_path())); },
        "The kernel path in use: 'amx', 'avx512_bf16', 'avx512', 'avx2' or 'generic' (the "
        "first two are avx512 plus a bf16 GEMM path; docs/kernels.md).");
  m.def("set_isa", [](const std::string& name) { fastdl::set_path(parse_path(name.c_str())); },
        py::arg("name"), "Forces a kernel path (also: environment variable FASTDL_ISA).");
  m.def("last_level_cache_bytes", &fastdl::last_level_cache_bytes,
        "The CPU's last-level cache in bytes (L3, else L2) as the C library reports it; "
        "0 where it cannot say.");
  m.def("cpu_supports", [](const std::string& name) { return fastdl::cpu_supports(parse_path(name.c_str())); },
        py::arg("name"), "Whether this CPU can run the kernel path `name` (see get_isa).");
  // The activation registry, the one source of these facts for the Python layers and the
  // CUDA kernels (fastdl/activations.py): name, code (the enum's value), whether the
  // backward needs z, what alpha is, and its default where it is a scalar.
  py::list names, table;
  static const char* const kAlphaKinds[] = {"none", "scalar", "learned"};
  for (int i = 0; i < kNumActivations; ++i) {
    const Activation a = static_cast<Activation>(i);
    names.append(activation_name(a));
    py::dict row;
    row["name"] = activation_name(a);
    row["code"] = i;
    row["needs_z"] = activation_needs_z(a);
    row["alpha"] = kAlphaKinds[static_cast<int>(activation_alpha_kind(a))];
    row["default_alpha"] = activation_alpha_kind(a) == AlphaKind::scalar
                               ? py::object(py::float_(activation_default_alpha(a)))
                               : py::object(py::none());
    table.append(row);
  }
  m.attr("ACTIVATIONS") = py::tuple(names);
  m.attr("ACTIVATION_TABLE") = py::tuple(table);
}

}  // namespace fastdl::bind
