#include <omp.h>

#include "registry.h"

namespace vtalign {
std::vector<Registrar>& registrars() {
  static std::vector<Registrar> r;
  return r;
}
}  // namespace vtalign

PYBIND11_MODULE(_C, m) {
  m.doc() = "vtalign CPU kernels (C++17, OpenMP); raw buffers in, GIL released";
  m.def("num_threads", []() { return omp_get_max_threads(); },
        "OpenMP threads the kernels use");
  for (auto reg : vtalign::registrars()) reg(m);
}
