// Minimal stand-in for the Poplar SDK's <poplar/Vertex.hpp>, for compiling the real codelets
// (csrc/codelets) on the host in tests. It declares only what the codelets use: Vertex,
// MultiVertex (with numWorkers), Input, Output, InOut and Vector. It is not Poplar: fields are
// plain pointer + size views that the test driver (drive_codelets.cpp) points at host memory.
#pragma once

#include <cstddef>

// The IPU compiler has a native `half`; on the host the test uses the C++ 16-bit float type,
// which has the same IEEE binary16 layout as torch.float16.
using half = _Float16;

namespace poplar {

enum class VectorLayout { ONE_PTR, SPAN };

namespace stub {
// How many workers MultiVertex::numWorkers() reports (six on an IPU Mk2 tile).
inline unsigned num_workers = 6;
}  // namespace stub

template <typename T, VectorLayout L = VectorLayout::SPAN>
class Vector {
 public:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  T& operator[](std::size_t i) const { return data_[i]; }
  std::size_t size() const { return size_; }
  void bind(T* data, std::size_t size) {
    data_ = data;
    size_ = size;
  }
};

template <typename V>
class Input : public V {};
template <typename V>
class Output : public V {};
template <typename V>
class InOut : public V {};

class Vertex {};

class MultiVertex {
 public:
  static unsigned numWorkers() { return stub::num_workers; }
};

}  // namespace poplar
