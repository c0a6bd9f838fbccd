#include <pybind11/pybind11.h>

#include <string>

#include "fastdl/activation.h"
#include "fastdl/runtime.h"
#include "runtime/cache_size.h"

namespace py = pybind11;

namespace fastdl::bind {

void register_runtime(py::module_& m) {
  m.def("set_num_threads", &fastdl::set_num_threads, py::arg("n"),
        "Sets the number of threads every kernel uses (default: the number of cores).");
  m.def("get_num_threads", &fastdl::get_num_threads);
  m.def("get_isa", [] { return std::string(path_name(selected_path())); },
        "The kernel path in use: 'amx', 'avx512_bf16', 'avx512', 'avx2' or 'generic' (the "
        "first two are avx512 plus a bf16 GEMM path; docs/kernels.md).");
  m.def("set_isa", [](const std::string& name) { fastdl::set_path(parse_path(name.c_str())); },
        py::arg("name"), "Forces a kernel path (also: environment variable FASTDL_ISA).");
  m.def("last_level_cache_bytes", &fastdl::last_level_cache_bytes,
        "The CPU's last-level cache in bytes (L3, else L2) as the C library reports it; "
        "0 where it cannot say.");
  m.def("cpu_supports", [](const std::string& name) { return fastdl::cpu_supports(parse_path(name.c_str())); },
        py::arg("name"));
  py::list names;
  for (int i = 0; i < kNumActivations; ++i) names.append(activation_name(static_cast<Activation>(i)));
  m.attr("ACTIVATIONS") = py::tuple(names);
}

}  // namespace fastdl::bind
