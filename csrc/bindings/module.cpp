// fastdl._C: the Python face of the kernel library. Each concern registers its
// functions from its own file; this one only assembles the module.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fastdl::bind {
void register_runtime(py::module_& m);
void register_dense(py::module_& m);
void register_dense_stack(py::module_& m);
void register_losses(py::module_& m);
void register_batchnorm(py::module_& m);
void register_dropout(py::module_& m);
void register_maxout(py::module_& m);
void register_optim(py::module_& m);
}  // namespace fastdl::bind

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastdl compiled kernels (CPU). Use fastdl.kernels, not this module.";
  fastdl::bind::register_runtime(m);
  fastdl::bind::register_dense(m);
  fastdl::bind::register_dense_stack(m);
  fastdl::bind::register_losses(m);
  fastdl::bind::register_batchnorm(m);
  fastdl::bind::register_dropout(m);
  fastdl::bind::register_maxout(m);
  fastdl::bind::register_optim(m);
}
