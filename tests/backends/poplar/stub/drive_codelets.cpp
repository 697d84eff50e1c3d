// Test driver: compiles the real codelet source against the stub Poplar header and exposes a C
// function per direction that builds a vertex, binds its fields to host buffers and runs
// compute(workerId) for one worker, as the IPU runtime would on one tile.
#include <cstdint>

#include "../../../../csrc/codelets/lif_codelets.cpp"

extern "C" {

// Buffers for one vertex; a null pointer with size 0 is an unconnected (empty) field.
struct drive_fields {
  void* ptr[24];
  std::int64_t size[24];
};

struct drive_scalars {
  unsigned steps, reset, immediate_reset, surrogate, need_prev_mem, num_workers;
  float c0, c1, gsf;
};

}  // extern "C"

namespace {

template <typename V, typename P>
void bind(V& field, const drive_fields& f, int i) {
  field.bind(static_cast<P*>(f.ptr[i]), static_cast<std::size_t>(f.size[i]));
}

template <typename T, bool S, int R>
void forward(const drive_fields& f, const drive_scalars& s, unsigned worker) {
  LIFForward<T, S, R> v;
  bind<decltype(v.x), T>(v.x, f, 0); bind<decltype(v.rec), T>(v.rec, f, 1);
  bind<decltype(v.mem0), float>(v.mem0, f, 2); bind<decltype(v.syn0), float>(v.syn0, f, 3);
  bind<decltype(v.spk0), float>(v.spk0, f, 4); bind<decltype(v.beta), float>(v.beta, f, 5);
  bind<decltype(v.thr), float>(v.thr, f, 6); bind<decltype(v.alpha), float>(v.alpha, f, 7);
  bind<decltype(v.v), float>(v.v, f, 8); bind<decltype(v.spk), T>(v.spk, f, 9);
  bind<decltype(v.syn), T>(v.syn, f, 10); bind<decltype(v.mem), T>(v.mem, f, 11);
  bind<decltype(v.trace), float>(v.trace, f, 12); bind<decltype(v.state), float>(v.state, f, 13);
  bind<decltype(v.pre), float>(v.pre, f, 14);
  v.steps = s.steps; v.reset = s.reset; v.immediateReset = s.immediate_reset; v.surrogate = s.surrogate;
  v.c0 = s.c0; v.c1 = s.c1; v.gsf = s.gsf;
  v.compute(worker);
}

template <typename T, bool S, int R>
void backward(const drive_fields& f, const drive_scalars& s, unsigned worker) {
  LIFBackward<T, S, R> v;
  bind<decltype(v.gradSpk), T>(v.gradSpk, f, 0); bind<decltype(v.gradSyn), T>(v.gradSyn, f, 1);
  bind<decltype(v.gradMem), T>(v.gradMem, f, 2); bind<decltype(v.trace), float>(v.trace, f, 3);
  bind<decltype(v.memHist), float>(v.memHist, f, 4); bind<decltype(v.synHist), T>(v.synHist, f, 5);
  bind<decltype(v.spkHist), T>(v.spkHist, f, 6); bind<decltype(v.pre), float>(v.pre, f, 7);
  bind<decltype(v.mem0), float>(v.mem0, f, 8); bind<decltype(v.syn0), float>(v.syn0, f, 9);
  bind<decltype(v.spk0), float>(v.spk0, f, 10); bind<decltype(v.beta), float>(v.beta, f, 11);
  bind<decltype(v.thr), float>(v.thr, f, 12); bind<decltype(v.alpha), float>(v.alpha, f, 13);
  bind<decltype(v.v), float>(v.v, f, 14); bind<decltype(v.gradX), T>(v.gradX, f, 15);
  bind<decltype(v.gradMem0), float>(v.gradMem0, f, 16); bind<decltype(v.gradSyn0), float>(v.gradSyn0, f, 17);
  bind<decltype(v.gradSpk0), float>(v.gradSpk0, f, 18); bind<decltype(v.partBeta), float>(v.partBeta, f, 19);
  bind<decltype(v.partThr), float>(v.partThr, f, 20); bind<decltype(v.partAlpha), float>(v.partAlpha, f, 21);
  bind<decltype(v.partV), float>(v.partV, f, 22);
  v.steps = s.steps; v.reset = s.reset; v.immediateReset = s.immediate_reset; v.needPrevMem = s.need_prev_mem;
  v.gsf = s.gsf;
  v.compute(worker);
}

template <typename T>
int dispatch(bool fwd, int synaptic, int recurrence, const drive_fields& f, const drive_scalars& s, unsigned w) {
#define FUSEDSNN_CASE(S, R)                                          \
  if (synaptic == S && recurrence == R) {                            \
    if (fwd) forward<T, S, R>(f, s, w); else backward<T, S, R>(f, s, w); \
    return 0;                                                        \
  }
  FUSEDSNN_CASE(0, 0) FUSEDSNN_CASE(1, 0) FUSEDSNN_CASE(0, 1) FUSEDSNN_CASE(1, 1)
  FUSEDSNN_CASE(0, 2) FUSEDSNN_CASE(1, 2)
#undef FUSEDSNN_CASE
  return 1;
}

}  // namespace

extern "C" int drive_vertex(int forward_pass, int io_half, int synaptic, int recurrence,
                            const drive_fields* f, const drive_scalars* s, unsigned worker) {
  poplar::stub::num_workers = s->num_workers;
  if (io_half) return dispatch<half>(forward_pass != 0, synaptic, recurrence, *f, *s, worker);
  return dispatch<float>(forward_pass != 0, synaptic, recurrence, *f, *s, worker);
}
