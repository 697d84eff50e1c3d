// Minimal stand-in for the Poplar SDK's <poplar/Vertex.hpp>, for compiling the real codelets
// (csrc/codelets) on the host in tests. It declares only what the codelets use: Vertex,
// MultiVertex (with numWorkers), Input, Output, InOut (of a Vector, or of one scalar, read and
// written through `*field`) and Vector. It is not Poplar: fields are plain pointer + size views
// that the test drivers (drive_codelets.cpp, drive_all_to_all_codelets.cpp) point at host memory.
#pragma once

#include <cstddef>
#include <type_traits>

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

namespace stub {
// A field of one scalar (e.g. Input<unsigned>): connected to a one-element tensor, used as *field.
template <typename T>
class Scalar {
 public:
  T* data_ = nullptr;
  T& operator*() const { return *data_; }
  std::size_t size() const { return data_ ? 1 : 0; }
  void bind(T* data, std::size_t /*size: 1*/) { data_ = data; }
};
template <typename V>
using Field = typename std::conditional<std::is_arithmetic<V>::value, Scalar<V>, V>::type;

// An Input is read-only on the IPU: only const access compiles here, so a codelet that writes
// to an Input fails on the host as it would under popc.
template <typename F>
class ReadOnly : public F {
 public:
  template <typename I>
  const auto& operator[](I i) const { return F::operator[](i); }
  const auto& operator*() const { return F::operator*(); }
};
}  // namespace stub

template <typename V>
class Input : public stub::ReadOnly<stub::Field<V>> {};
template <typename V>
class Output : public stub::Field<V> {};
template <typename V>
class InOut : public stub::Field<V> {};

class Vertex {};

class MultiVertex {
 public:
  static unsigned numWorkers() { return stub::num_workers; }
};

}  // namespace poplar
