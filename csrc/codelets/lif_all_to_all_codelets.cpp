// Poplar codelets for the all-to-all recurrent LIF (RLeaky / RSynaptic with an nn.Linear(N, N)
// recurrence) over the whole sequence: one forward and one backward MultiVertex per neuron type,
// each run once per time step by a Repeat program (csrc/popart/lif_all_to_all_op.cpp), with an
// exchange of every tile's spikes (forward) or recurrent-input gradients (backward) between steps.
//
// Tile layout. A tile owns a block of n neurons for a block of Bt batch rows (the planner may
// also split the batch; the vertices only see "their" rows) for the whole sequence:
//   per-step histories      [T, Bt, n]   (x, spk, syn, mem, trace, pre, gradients)
//   states                  [Bt, n]      (mem0, syn0, spk0, carries)
//   parameters              [n]          (bias, beta, threshold, alpha and their gradients)
//   forward weights         [n, N]       the tile's rows of W:        weights[j, i]  = W[j, i]
//   backward weights        [n, N]       the tile's columns of W:     weightsT[j, i] = W[i, j]
//   exchanged inputs        [Bt, N]      last step's spikes (forward) / G_{t+1} (backward) of
//                                        every neuron of the tile's batch rows
// where N is the layer width. The time step arrives through `step`, a one-element counter on the
// tile that the program advances after each step, so one compiled compute set serves every step.
//
// Forward step t (t = *step), for the tile's neurons j and batch rows b:
//     rec[b, j] = bias[j] + sum_i W[j, i] * spkIn[b, i]      (bias first, then i ascending)
//     then the neuron update of csrc/kernels/lif.hpp (kAllToAll recurrence) with that input,
//     writing row t of the histories and spkOut[b, j] = spk[t, b, j] for the exchange.
// PyTorch's nn.Linear sums the products in its BLAS's order, so float32 rec (and what follows)
// can differ from snnTorch in the last bits: the host tests compare states within a tolerance
// and spikes wherever the membrane is clear of threshold by more than that rounding.
//
// Backward iteration k = *step of k = 0 .. T (t = T - 1 - k is the step whose adjoint it runs):
//   k > 0:  gradIn holds G_{t+1} (the gradient of step t+1's recurrent input) of every neuron:
//           carrySpk[b, j] = sum_i G_{t+1}[b, i] * W[i, j]     (this tile's block of W^T g)
//           dW^T[j, :]    += spk_t[b, j] * G_{t+1}[b, :]       (spk_{-1} = spk0)
//   k < T:  the elementwise adjoint of step t (lif.hpp's, one step) with the carries and the
//           upstream gradients of step t; G_t goes to gradX[t], db and the exchange (gradOut).
// After the last iteration (k = T) carryMem / carrySyn / carrySpk are the gradients of mem0,
// syn0 and spk0. Because a tile holds its neurons' columns of W in the backward, both products
// it forms need only its own neurons' data plus the exchanged G: no partial sums cross tiles.
//
// Workers: each of a tile's workers owns a contiguous range of its neurons (worker_range) for
// every batch row, so every element any vertex writes has exactly one writer and no worker reads
// what another writes in the same compute set. Every field is 32-bit (float, unsigned), so no
// two workers ever write parts of one memory word (the sub-word hazard of half on a MultiVertex).
//
// Build for the IPU: popc -O2 -ffp-contract=off (csrc/popart/Makefile). Host verification:
// tests/csrc/test_all_to_all_codelets.py compiles this file against tests/poplar_stub.
#include <poplar/Vertex.hpp>

#include "../kernels/lif.hpp"

namespace {

template <typename T>
using InVec = poplar::Input<poplar::Vector<T>>;
template <typename T>
using OutVec = poplar::Output<poplar::Vector<T>>;
template <typename T>
using InOutVec = poplar::InOut<poplar::Vector<T>>;

// Row b of a [Bt, n] state, or null where the state is absent (lif.hpp reads zeros then).
template <typename V>
auto row_or_null(V& v, std::int64_t offset) -> decltype(&v[0]) {
  return v.size() ? &v[0] + offset : nullptr;
}

}  // namespace

template <bool SYNAPTIC>
class LIFAllToAllForward : public poplar::MultiVertex {
 public:
  poplar::Input<unsigned> step;  // t
  InVec<float> x;                // [T, Bt, n]
  InVec<float> weights;          // [n, N] this tile's rows of W
  InVec<float> bias;             // [n] or empty
  InVec<float> spkIn;            // [Bt, N] every neuron's spikes of step t-1 (spk0 or zeros at t = 0)
  InVec<float> mem0;             // [Bt, n] or empty (zeros)
  InVec<float> syn0;             // [Bt, n] or empty (synaptic only)
  InVec<float> beta;             // [n], already clamped to [0, 1]
  InVec<float> thr;              // [n]
  InVec<float> alpha;            // [n], synaptic only
  OutVec<float> rec;             // [Bt, n] scratch: this step's recurrent input
  OutVec<float> spkOut;          // [Bt, n] this step's spikes: the source of the exchange
  // Histories written one row per step: InOut, because the rows of earlier steps must stay live
  // across the Repeat's iterations (an Output edge would declare the whole tensor overwritten).
  InOutVec<float> spk;           // [T, Bt, n]
  InOutVec<float> syn;           // [T, Bt, n] or empty
  InOutVec<float> mem;           // [T, Bt, n]
  InOutVec<float> trace;         // [T, Bt, n] surrogate derivative
  InOutVec<float> pre;           // [T, Bt, n] pre-reset membrane (reset_delay=False), or empty
  unsigned batch;                // Bt
  unsigned reset;
  unsigned immediateReset;
  unsigned surrogate;
  float c0;
  float c1;
  float gsf;

  bool compute(unsigned workerId) {
    const std::int64_t n = beta.size(), B = batch;
    if (n == 0 || B == 0) return true;
    const std::int64_t N = spkIn.size() / B;
    const std::int64_t t = *step, M = B * n;  // M: elements per step row of a history
    std::int64_t j0, j1;
    fusedsnn::worker_range(n, workerId, numWorkers(), &j0, &j1);
    if (j1 <= j0) return true;
    const bool has_bias = bias.size() != 0;
    for (std::int64_t b = 0; b < B; ++b) {
      const float* s = &spkIn[b * N];
      for (std::int64_t j = j0; j < j1; ++j) {
        const float* w = &weights[j * N];
        float acc = has_bias ? bias[j] : 0.0f;
        for (std::int64_t i = 0; i < N; ++i) acc = acc + w[i] * s[i];
        rec[b * n + j] = acc;
      }
    }
    fusedsnn::ForwardArgs<float, float> a;
    a.x_step = 0;
    a.rec_step = 0;
    a.beta = &beta[0];
    a.thr = &thr[0];
    a.alpha = SYNAPTIC ? &alpha[0] : nullptr;
    a.steps = 1;
    a.stride = n;
    a.features = n;
    a.reset = static_cast<int>(reset);
    a.immediate_reset = immediateReset != 0;
    a.surrogate = static_cast<int>(surrogate);
    a.c0 = c0;
    a.c1 = c1;
    a.gsf = gsf;
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t row = t * M + b * n;  // (t, b, 0) of the histories
      a.x = &x[row];
      a.rec = &rec[b * n];
      // The previous state is last step's history row (float32 state, so no precision is lost).
      a.mem0 = t > 0 ? &mem[row - M] : row_or_null(mem0, b * n);
      a.syn0 = SYNAPTIC ? (t > 0 ? &syn[row - M] : row_or_null(syn0, b * n)) : nullptr;
      a.spk = &spk[row];
      a.syn = SYNAPTIC ? &syn[row] : nullptr;
      a.mem = &mem[row];
      a.trace = &trace[row];
      a.pre = pre.size() ? &pre[row] : nullptr;
      fusedsnn::lif_forward_range<float, float, SYNAPTIC, fusedsnn::kAllToAll>(a, j0, j1);
      for (std::int64_t j = j0; j < j1; ++j) spkOut[b * n + j] = spk[row + j];
    }
    return true;
  }
};

template <bool SYNAPTIC>
class LIFAllToAllBackward : public poplar::MultiVertex {
 public:
  poplar::Input<unsigned> step;  // k; this iteration runs the adjoint of step t = T - 1 - k
  InVec<float> gradSpk;          // [T, Bt, n] upstream gradients, or empty (zero)
  InVec<float> gradSyn;
  InVec<float> gradMem;
  InVec<float> trace;            // [T, Bt, n] the forward's histories
  InVec<float> memHist;
  InVec<float> synHist;          // or empty
  InVec<float> spkHist;
  InVec<float> pre;              // or empty
  InVec<float> mem0;             // [Bt, n] or empty
  InVec<float> syn0;
  InVec<float> spk0;
  InVec<float> weightsT;         // [n, N]: row j is column j of W
  InVec<float> beta;             // [n]
  InVec<float> thr;
  InVec<float> alpha;            // [n], synaptic only
  InVec<float> gradIn;           // [Bt, N] G_{t+1} of every neuron (read only when k > 0)
  OutVec<float> gradOut;         // [Bt, n] G_t of this tile's neurons: the source of the exchange
  OutVec<float> parts;           // [3, n] scratch: one step's beta / threshold / alpha sums
  // Written a row (or an accumulation) per iteration and read by later ones: InOut.
  InOutVec<float> gradX;         // [T, Bt, n] G_t, the gradient of x and of rec
  InOutVec<float> carryMem;      // [Bt, n]: dL/dmem carried back; after k = T, the gradient of mem0
  InOutVec<float> carrySyn;      // [Bt, n] or empty; after k = T, the gradient of syn0
  InOutVec<float> carrySpk;      // [Bt, n]: G_{t+1} @ W; after k = T, the gradient of spk0
  InOutVec<float> gradWeightsT;  // [n, N] dW^T rows of this tile's neurons (sum over its batch rows)
  InOutVec<float> gradBias;      // [n] or empty
  InOutVec<float> gradBeta;      // [n] or empty
  InOutVec<float> gradThr;       // [n] or empty
  InOutVec<float> gradAlpha;     // [n] or empty
  unsigned steps;                // T
  unsigned batch;                // Bt
  unsigned reset;
  unsigned immediateReset;
  unsigned needPrevMem;
  float gsf;

  bool compute(unsigned workerId) {
    const std::int64_t n = beta.size(), B = batch, T = steps;
    if (n == 0 || B == 0) return true;
    const std::int64_t N = weightsT.size() / n;
    const std::int64_t k = *step, t = T - 1 - k, M = B * n;
    std::int64_t j0, j1;
    fusedsnn::worker_range(n, workerId, numWorkers(), &j0, &j1);
    if (j1 <= j0) return true;
    if (k == 0) {
      for (std::int64_t j = j0; j < j1; ++j) {
        for (std::int64_t b = 0; b < B; ++b) {
          carryMem[b * n + j] = 0.0f;
          carrySpk[b * n + j] = 0.0f;
          if (carrySyn.size()) carrySyn[b * n + j] = 0.0f;
        }
        for (std::int64_t i = 0; i < N; ++i) gradWeightsT[j * N + i] = 0.0f;
        if (gradBias.size()) gradBias[j] = 0.0f;
        if (gradBeta.size()) gradBeta[j] = 0.0f;
        if (gradThr.size()) gradThr[j] = 0.0f;
        if (gradAlpha.size()) gradAlpha[j] = 0.0f;
      }
    }
    if (k > 0) {
      // Through the recurrence: G_{t+1} reaches step t's spikes as G_{t+1} @ W, and W's gradient
      // gains G_{t+1}^T spk_t. Spikes are 0 or gsf, so silent ones add nothing to dW.
      for (std::int64_t j = j0; j < j1; ++j) {
        const float* wt = &weightsT[j * N];
        float* gw = &gradWeightsT[j * N];
        for (std::int64_t b = 0; b < B; ++b) {
          const float* g = &gradIn[b * N];
          float acc = 0.0f;
          for (std::int64_t i = 0; i < N; ++i) acc = acc + g[i] * wt[i];
          carrySpk[b * n + j] = acc;
          const float s = t >= 0 ? spkHist[t * M + b * n + j] : (spk0.size() ? spk0[b * n + j] : 0.0f);
          if (s != 0.0f) {
            for (std::int64_t i = 0; i < N; ++i) gw[i] = gw[i] + s * g[i];
          }
        }
      }
    }
    if (k >= T) return true;
    // The adjoint of step t, one step of lif.hpp's reverse loop per batch row. Its carries start
    // at zero, so the carried gradients enter as upstream ones: carry += upstream gradient of
    // step t, then lif.hpp reads them and writes the carries for step t - 1 over them (it reads
    // a chunk's gradients before it writes that chunk's carries).
    fusedsnn::BackwardArgs<float, float> a;
    a.grad_spk_step = a.grad_syn_step = a.grad_mem_step = 0;
    a.beta = &beta[0];
    a.thr = &thr[0];
    a.alpha = SYNAPTIC ? &alpha[0] : nullptr;
    a.part_beta = gradBeta.size() ? &parts[0] : nullptr;
    a.part_thr = gradThr.size() ? &parts[n] : nullptr;
    a.part_alpha = (SYNAPTIC && gradAlpha.size()) ? &parts[2 * n] : nullptr;
    a.steps = 1;
    a.stride = n;
    a.features = n;
    a.reset = static_cast<int>(reset);
    a.immediate_reset = immediateReset != 0;
    a.need_prev_mem = needPrevMem != 0;
    a.gsf = gsf;
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t row = t * M + b * n, e = b * n;
      for (std::int64_t j = j0; j < j1; ++j) {
        if (gradMem.size()) carryMem[e + j] = carryMem[e + j] + gradMem[row + j];
        if (gradSpk.size()) carrySpk[e + j] = carrySpk[e + j] + gradSpk[row + j];
        if (SYNAPTIC && gradSyn.size()) carrySyn[e + j] = carrySyn[e + j] + gradSyn[row + j];
      }
      a.grad_mem = &carryMem[e];
      a.grad_spk = &carrySpk[e];
      a.grad_syn = SYNAPTIC ? &carrySyn[e] : nullptr;
      a.trace = &trace[row];
      a.mem_hist = &memHist[row];
      a.syn_hist = SYNAPTIC ? &synHist[row] : nullptr;
      a.spk_hist = &spkHist[row];
      a.pre = pre.size() ? &pre[row] : nullptr;
      a.mem0 = t > 0 ? &memHist[row - M] : row_or_null(mem0, e);
      a.syn0 = SYNAPTIC ? (t > 0 ? &synHist[row - M] : row_or_null(syn0, e)) : nullptr;
      a.grad_x = &gradX[row];
      a.grad_mem0 = &carryMem[e];
      a.grad_syn0 = SYNAPTIC ? &carrySyn[e] : nullptr;
      fusedsnn::lif_backward_range<float, float, SYNAPTIC, fusedsnn::kAllToAll>(a, j0, j1);
      for (std::int64_t j = j0; j < j1; ++j) {
        const float g = gradX[row + j];
        gradOut[e + j] = g;
        if (gradBias.size()) gradBias[j] = gradBias[j] + g;
        if (gradBeta.size()) gradBeta[j] = gradBeta[j] + parts[j];
        if (gradThr.size()) gradThr[j] = gradThr[j] + parts[n + j];
        if (SYNAPTIC && gradAlpha.size()) gradAlpha[j] = gradAlpha[j] + parts[2 * n + j];
      }
    }
    return true;
  }
};

template class LIFAllToAllForward<false>;  // RLeaky
template class LIFAllToAllForward<true>;   // RSynaptic
template class LIFAllToAllBackward<false>;
template class LIFAllToAllBackward<true>;
