// Each csrc/*.cpp registers its own bindings with a static `Register`, so a new
// op family is one new file and CMake's glob picks it up; module.cpp never
// needs editing.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace vtalign {

using Registrar = void (*)(pybind11::module_&);

std::vector<Registrar>& registrars();

struct Register {
  explicit Register(Registrar r) { registrars().push_back(r); }
};

// C-contiguous numpy view of a caller-owned buffer (torch tensors arrive via
// Tensor.numpy(), so no copy is made and no torch header is needed).
template <typename T>
using carray = pybind11::array_t<T, pybind11::array::c_style>;

// A buffer the kernel writes into: it must already have the exact dtype and be
// C-contiguous, because pybind11 would otherwise convert it into a temporary
// and the results would be silently lost.
template <typename T>
T* out_ptr(pybind11::array& a, const char* name) {
  if (!a.dtype().is(pybind11::dtype::of<T>()))
    throw std::invalid_argument(std::string(name) + ": wrong dtype for an output buffer");
  if (!(a.flags() & pybind11::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(name) + ": output buffer must be C-contiguous and writeable");
  return static_cast<T*>(a.mutable_data());
}

}  // namespace vtalign
