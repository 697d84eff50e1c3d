// Test driver for the all-to-all codelets (csrc/codelets/lif_all_to_all_codelets.cpp), compiled with
// the stub Poplar header: one C function that builds a vertex, binds its fields (in declaration
// order) to host buffers and runs compute(workerId) for one worker of one tile. The program around
// it (steps, exchanges, tiles) is emulated by tests/backends/poplar/test_all_to_all_codelets.py.
#include <cstdint>

#include "../../../../csrc/codelets/lif_all_to_all_codelets.cpp"

extern "C" {

// Buffers for one vertex, in the vertex's field order; a null pointer with size 0 is an
// unconnected (empty) field.
struct drive_all_to_all_fields {
  void* ptr[32];
  std::int64_t size[32];
};

struct drive_all_to_all_scalars {
  unsigned steps, batch, reset, immediate_reset, surrogate, need_prev_mem, num_workers;
  float c0, c1, gsf;
};

}  // extern "C"

namespace {

// Binds the next field: every field of these vertices holds float, except the step counter.
struct Binder {
  const drive_all_to_all_fields& f;
  int next = 0;
  template <typename Field>
  void operator()(Field& field) {
    using Element = typename std::remove_reference<decltype(*&field[0])>::type;
    field.bind(static_cast<typename std::remove_const<Element>::type*>(f.ptr[next]),
               static_cast<std::size_t>(f.size[next]));
    ++next;
  }
  template <typename Field>
  void counter(Field& field) {
    field.bind(static_cast<unsigned*>(f.ptr[next]), 1);
    ++next;
  }
};

template <bool S>
void forward(const drive_all_to_all_fields& f, const drive_all_to_all_scalars& s, unsigned worker) {
  LIFAllToAllForward<S> v;
  Binder bind{f};
  bind.counter(v.step);
  bind(v.x); bind(v.weights); bind(v.bias); bind(v.spkIn); bind(v.mem0); bind(v.syn0);
  bind(v.beta); bind(v.thr); bind(v.alpha); bind(v.rec); bind(v.spkOut);
  bind(v.spk); bind(v.syn); bind(v.mem); bind(v.trace); bind(v.pre);
  v.batch = s.batch; v.reset = s.reset; v.immediateReset = s.immediate_reset; v.surrogate = s.surrogate;
  v.c0 = s.c0; v.c1 = s.c1; v.gsf = s.gsf;
  v.compute(worker);
}

template <bool S>
void backward(const drive_all_to_all_fields& f, const drive_all_to_all_scalars& s, unsigned worker) {
  LIFAllToAllBackward<S> v;
  Binder bind{f};
  bind.counter(v.step);
  bind(v.gradSpk); bind(v.gradSyn); bind(v.gradMem);
  bind(v.trace); bind(v.memHist); bind(v.synHist); bind(v.spkHist); bind(v.pre);
  bind(v.mem0); bind(v.syn0); bind(v.spk0); bind(v.weightsT);
  bind(v.beta); bind(v.thr); bind(v.alpha); bind(v.gradIn);
  bind(v.gradOut); bind(v.parts); bind(v.gradX);
  bind(v.carryMem); bind(v.carrySyn); bind(v.carrySpk);
  bind(v.gradWeightsT); bind(v.gradBias); bind(v.gradBeta); bind(v.gradThr); bind(v.gradAlpha);
  v.steps = s.steps; v.batch = s.batch; v.reset = s.reset; v.immediateReset = s.immediate_reset;
  v.needPrevMem = s.need_prev_mem; v.gsf = s.gsf;
  v.compute(worker);
}

}  // namespace

extern "C" int drive_all_to_all_vertex(int forward_pass, int synaptic, const drive_all_to_all_fields* f,
                                  const drive_all_to_all_scalars* s, unsigned worker) {
  if (!f || !s || worker >= s->num_workers) return 1;
  poplar::stub::num_workers = s->num_workers;
  if (forward_pass) {
    if (synaptic) forward<true>(*f, *s, worker); else forward<false>(*f, *s, worker);
  } else {
    if (synaptic) backward<true>(*f, *s, worker); else backward<false>(*f, *s, worker);
  }
  return 0;
}
