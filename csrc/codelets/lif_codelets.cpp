// Poplar codelets for the fused LIF neurons: one forward and one backward MultiVertex per neuron
// type (Leaky, Synaptic, RLeaky, RSynaptic, plus the all-to-all step), for float and half.
//
// A vertex owns the whole neurons mapped to its tile (csrc/popart maps whole neurons per tile)
// and runs their complete time loop; the six workers of a tile split those neurons into
// contiguous ranges (fusedsnn::worker_range). The arithmetic is csrc/kernels/lif.hpp, shared with
// the host backend, so what the host tests verify is what the IPU runs.
//
// Tile layout: per-step arrays are [steps, n] time-major for the n neurons on the tile;
// per-neuron arrays (parameters, initial states) are [n]. A field a neuron type does not use
// is connected to an empty tensor. Vertex names, e.g. "LIFForward<half,true,1>", are formed by
// poputil::templateVertex("LIFForward", half, synaptic, recurrence).
//
// Build for the IPU: popc -O2 -ffp-contract=off lif_codelets.cpp -o lif_codelets.gp
// (csrc/popart/Makefile). Host verification: tests/poplar_stub compiles this same file against
// a minimal <poplar/Vertex.hpp>.
#include <poplar/Vertex.hpp>

#include "../kernels/lif.hpp"

template <typename T>
using InVec = poplar::Input<poplar::Vector<T>>;
template <typename T>
using OutVec = poplar::Output<poplar::Vector<T>>;

namespace {

template <typename T>
const T* ptr_or_null(const InVec<T>& v) {
  return v.size() ? &v[0] : nullptr;
}
template <typename T>
T* ptr_or_null(OutVec<T>& v) {
  return v.size() ? &v[0] : nullptr;
}

}  // namespace

template <typename T, bool SYNAPTIC, int RECURRENCE>
class LIFForward : public poplar::MultiVertex {
 public:
  InVec<T> x;            // [steps, n]
  InVec<T> rec;          // [steps, n] all-to-all recurrent input, or empty
  InVec<float> mem0;     // [n] or empty (zeros)
  InVec<float> syn0;
  InVec<float> spk0;
  InVec<float> beta;     // [n], already clamped to [0, 1]
  InVec<float> thr;
  InVec<float> alpha;    // [n] or empty
  InVec<float> v;
  OutVec<T> spk;         // [steps, n]
  OutVec<T> syn;         // [steps, n] or empty
  OutVec<T> mem;
  OutVec<float> trace;   // surrogate derivative [steps, n]
  OutVec<float> state;   // float32 membrane for half input when the backward needs it, or empty
  OutVec<float> pre;     // pre-reset membrane (reset_delay=False), or empty
  unsigned steps;
  unsigned reset;
  unsigned immediateReset;
  unsigned surrogate;
  float c0;
  float c1;
  float gsf;

  bool compute(unsigned workerId) {
    const std::int64_t n = beta.size();
    std::int64_t begin, end;
    fusedsnn::worker_range(n, workerId, numWorkers(), &begin, &end);
    fusedsnn::ForwardArgs<T, float> a;
    a.x = &x[0];
    a.x_step = n;
    a.rec = ptr_or_null(rec);
    a.rec_step = n;
    a.mem0 = ptr_or_null(mem0);
    a.syn0 = ptr_or_null(syn0);
    a.spk0 = ptr_or_null(spk0);
    a.beta = &beta[0];
    a.thr = &thr[0];
    a.alpha = ptr_or_null(alpha);
    a.v = ptr_or_null(v);
    a.spk = &spk[0];
    a.syn = ptr_or_null(syn);
    a.mem = &mem[0];
    a.trace = &trace[0];
    a.state = ptr_or_null(state);
    a.pre = ptr_or_null(pre);
    a.steps = steps;
    a.stride = n;
    a.features = n;  // parameters arrive per neuron on a tile
    a.reset = static_cast<int>(reset);
    a.immediate_reset = immediateReset != 0;
    a.surrogate = static_cast<int>(surrogate);
    a.c0 = c0;
    a.c1 = c1;
    a.gsf = gsf;
    if (end > begin) fusedsnn::lif_forward_range<T, float, SYNAPTIC, RECURRENCE>(a, begin, end);
    return true;
  }
};

template <typename T, bool SYNAPTIC, int RECURRENCE>
class LIFBackward : public poplar::MultiVertex {
 public:
  InVec<T> gradSpk;      // [steps, n] or empty (zero)
  InVec<T> gradSyn;
  InVec<T> gradMem;
  InVec<float> trace;    // [steps, n]
  InVec<float> memHist;  // [steps, n] membrane in float32, or empty when not needed
  InVec<T> synHist;      // [steps, n] or empty
  InVec<T> spkHist;
  InVec<float> pre;      // or empty
  InVec<float> mem0;
  InVec<float> syn0;
  InVec<float> spk0;
  InVec<float> beta;
  InVec<float> thr;
  InVec<float> alpha;
  InVec<float> v;
  OutVec<T> gradX;       // [steps, n]
  OutVec<float> gradMem0;  // [n]
  OutVec<float> gradSyn0;  // [n] or empty
  OutVec<float> gradSpk0;
  OutVec<float> partBeta;  // [n] per-neuron sums over time, or empty
  OutVec<float> partThr;
  OutVec<float> partAlpha;
  OutVec<float> partV;
  unsigned steps;
  unsigned reset;
  unsigned immediateReset;
  unsigned needPrevMem;
  float gsf;

  bool compute(unsigned workerId) {
    const std::int64_t n = beta.size();
    std::int64_t begin, end;
    fusedsnn::worker_range(n, workerId, numWorkers(), &begin, &end);
    fusedsnn::BackwardArgs<T, float> a;
    a.grad_spk = ptr_or_null(gradSpk);
    a.grad_spk_step = n;
    a.grad_syn = ptr_or_null(gradSyn);
    a.grad_syn_step = n;
    a.grad_mem = ptr_or_null(gradMem);
    a.grad_mem_step = n;
    a.trace = &trace[0];
    a.mem_hist = ptr_or_null(memHist);
    a.syn_hist = ptr_or_null(synHist);
    a.spk_hist = ptr_or_null(spkHist);
    a.pre = ptr_or_null(pre);
    a.mem0 = ptr_or_null(mem0);
    a.syn0 = ptr_or_null(syn0);
    a.spk0 = ptr_or_null(spk0);
    a.beta = &beta[0];
    a.thr = &thr[0];
    a.alpha = ptr_or_null(alpha);
    a.v = ptr_or_null(v);
    a.grad_x = &gradX[0];
    a.grad_mem0 = &gradMem0[0];
    a.grad_syn0 = ptr_or_null(gradSyn0);
    a.grad_spk0 = ptr_or_null(gradSpk0);
    a.part_beta = ptr_or_null(partBeta);
    a.part_thr = ptr_or_null(partThr);
    a.part_alpha = ptr_or_null(partAlpha);
    a.part_v = ptr_or_null(partV);
    a.steps = steps;
    a.stride = n;
    a.features = n;
    a.reset = static_cast<int>(reset);
    a.immediate_reset = immediateReset != 0;
    a.need_prev_mem = needPrevMem != 0;
    a.gsf = gsf;
    if (end > begin) fusedsnn::lif_backward_range<T, float, SYNAPTIC, RECURRENCE>(a, begin, end);
    return true;
  }
};

// Leaky <.., false, 0>, Synaptic <.., true, 0>, RLeaky <.., false, 1>, RSynaptic <.., true, 1>,
// and the all-to-all step of RLeaky / RSynaptic <.., *, 2>.
#define FUSEDSNN_INSTANTIATE(T)                                                      \
  template class LIFForward<T, false, 0>;                                            \
  template class LIFForward<T, true, 0>;                                             \
  template class LIFForward<T, false, 1>;                                            \
  template class LIFForward<T, true, 1>;                                             \
  template class LIFForward<T, false, 2>;                                            \
  template class LIFForward<T, true, 2>;                                             \
  template class LIFBackward<T, false, 0>;                                           \
  template class LIFBackward<T, true, 0>;                                            \
  template class LIFBackward<T, false, 1>;                                           \
  template class LIFBackward<T, true, 1>;                                            \
  template class LIFBackward<T, false, 2>;                                           \
  template class LIFBackward<T, true, 2>;

FUSEDSNN_INSTANTIATE(float)
FUSEDSNN_INSTANTIATE(half)
