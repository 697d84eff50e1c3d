// All-to-all recurrent LIF (RLeaky / RSynaptic with an nn.Linear(N, N) recurrence) as one
// fused time loop, forward and backward, in plain C++.
//
// One step t, for batch row b and neuron i (snnTorch 1.0.0's order, see fusedsnn/kernels/spec.py):
//
//     rec[b, i] = bias[i] + sum_j W[i, j] * spk[t-1, b, j]        (spk[-1] = spk0 or zeros)
//     then the elementwise neuron update of lif.hpp's kInput recurrence with that rec.
//
// Forward: spikes are 0 or gsf, so the product skips silent inputs and adds whole rows of the
// transposed weight (wt[j, :] = W[:, j]) for each spiking j: cost B * (spiking j) * N, unit
// stride over i. The sum runs bias first, then j ascending; nn.Linear's BLAS sums in an order of
// its own, so float32 rec (and what follows) can differ from snnTorch in the last bits.
//
// Backward (reverse loop): the elementwise adjoint gives G_t = dL/drec_t (= dL/dx_t); the spike
// gradient reaching step t-1 through the recurrence is G_t @ W (dense: surrogate gradients are
// not sparse). That product goes through BLAS (a gemm pointer from the host) when it is large.
// dW = sum_t G_t^T spk_{t-1} and dbias = sum_t G_t are formed after the loop by the caller, as
// one product over all steps.
//
// Layout: per-step arrays are [T, B * N] row-major (element (t, b, i) at t * B * N + b * N + i);
// states [B * N]; parameters [N]. Compile with -ffp-contract=off (see lif.hpp).
#pragma once

#include <cstdint>

#include "lif.hpp"

namespace fusedsnn {
namespace dense {

// y[k] = y[k] + a * x[k]: the inner loop of both products. Vectorised per ISA by the caller's
// target clones; each element is one multiply then one add (no contraction), so every clone
// gives the same bits.
template <typename S>
inline void axpy(S* __restrict__ y, S a, const S* __restrict__ x, std::int64_t n) {
  for (std::int64_t k = 0; k < n; ++k) y[k] = y[k] + a * x[k];
}

// Four spiking rows in one pass: y[k] = (((y[k] + a0 * x0[k]) + a1 * x1[k]) + a2 * x2[k]) + a3 * x3[k],
// the same operations in the same order as four axpy calls (so the same bits), with the
// accumulator loaded and stored once instead of four times.
template <typename S>
inline void axpy4(S* __restrict__ y, S a0, S a1, S a2, S a3, const S* __restrict__ x0, const S* __restrict__ x1,
                  const S* __restrict__ x2, const S* __restrict__ x3, std::int64_t n) {
  for (std::int64_t k = 0; k < n; ++k) {
    S v = y[k] + a0 * x0[k];
    v = v + a1 * x1[k];
    v = v + a2 * x2[k];
    y[k] = v + a3 * x3[k];
  }
}

template <typename S>
struct ForwardArgs {
  const S* x = nullptr;      // [T, B * N]
  const S* wt = nullptr;     // [N, N], wt[j * N + i] = W[i, j]
  const S* bias = nullptr;   // [N] or null
  const S* mem0 = nullptr;   // [B * N] or null (zeros)
  const S* syn0 = nullptr;
  const S* spk0 = nullptr;
  const S* beta = nullptr;   // [N], clamped
  const S* thr = nullptr;
  const S* alpha = nullptr;
  S* spk = nullptr;          // [T, B * N] outputs
  S* syn = nullptr;          // synaptic only
  S* mem = nullptr;
  S* trace = nullptr;        // surrogate derivative
  S* pre = nullptr;          // pre-reset membrane, immediate reset only
  S* rec = nullptr;          // scratch [B * N]: this step's recurrent input
  S* h = nullptr;            // scratch [B * N]: m_pre - thr, for the surrogate row
  const S* zeros = nullptr;  // [N] of zeros: the previous state where none is given
  std::int64_t steps = 0, batch = 0, n = 0;
  std::int64_t stride = 0;   // elements per step of the [T, ...] arrays; 0: batch * n (a worker
                             // owning some batch rows has the whole batch's stride)
  int reset = kSubtract;
  bool immediate = false;
  int surrogate = kAtan;
  S c0 = 0, c1 = 0, gsf = 1;
};

// Columns of W^T per pass: a [N, kColumnBlock] slice of wt (512 KB at N = 1000) stays in L2 while
// every batch row adds its spiking rows of it, instead of streaming all of wt from L3 per row.
constexpr std::int64_t kColumnBlock = 128;

// Indices of the non-zero entries of each batch row of spikes: list[b * n + k] for k < count[b].
template <typename S>
void spiking_inputs(const S* spikes, std::int64_t batch, std::int64_t n, std::int32_t* list, std::int32_t* count) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const S* row = spikes + b * n;
    std::int32_t c = 0;
    std::int32_t* out = list + b * n;
    // Branch-free compaction (write every index, advance past the spiking ones): a branch per
    // input mispredicts at spike rates near a quarter.
    for (std::int64_t j = 0; j < n; ++j) {
      out[c] = static_cast<std::int32_t>(j);
      c += row[j] != S(0);
    }
    count[b] = c;
  }
}

// rec[b, i0:i1] for every b at step t: the columns [i0, i1) of W @ spk[t-1], summed bias first,
// then the spiking inputs j in ascending order. list/count: spiking_inputs of spk[t-1].
template <typename S, typename Axpy, typename Axpy4>
void recurrent_input(const ForwardArgs<S>& a, std::int64_t t, std::int64_t i0, std::int64_t i1,
                     const std::int32_t* list, const std::int32_t* count, Axpy&& add, Axpy4&& add4) {
  const std::int64_t N = a.n, M = a.stride ? a.stride : a.batch * a.n;
  const S* prev_all = t > 0 ? a.spk + (t - 1) * M : a.spk0;
  for (std::int64_t c0 = i0; c0 < i1; c0 += kColumnBlock) {
    const std::int64_t width = (i1 - c0) < kColumnBlock ? (i1 - c0) : kColumnBlock;
    for (std::int64_t b = 0; b < a.batch; ++b) {
      S* __restrict__ acc = a.rec + b * N + c0;
      for (std::int64_t i = 0; i < width; ++i) acc[i] = a.bias ? a.bias[c0 + i] : S(0);
      if (!prev_all) continue;
      const S* prev = prev_all + b * N;
      const std::int32_t* idx = list + b * N;
      std::int32_t k = 0;
      for (; k + 4 <= count[b]; k += 4) {
        const std::int64_t j0 = idx[k], j1 = idx[k + 1], j2 = idx[k + 2], j3 = idx[k + 3];
        add4(acc, prev[j0], prev[j1], prev[j2], prev[j3], a.wt + j0 * N + c0, a.wt + j1 * N + c0,
             a.wt + j2 * N + c0, a.wt + j3 * N + c0, width);
      }
      for (; k < count[b]; ++k) {
        const std::int64_t j = idx[k];
        add(acc, prev[j], a.wt + j * N + c0, width);
      }
    }
  }
}

// One row of the neuron update: every array a __restrict__ parameter, so the loop vectorises (with
// the same loop inline in neuron_step, GCC 12 gave up on it: "no vectype").
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
inline void neuron_row(const S* __restrict__ mem_prev, const S* __restrict__ syn_prev, const S* __restrict__ xt,
                       const S* __restrict__ rt, const S* __restrict__ beta, const S* __restrict__ thr,
                       const S* __restrict__ alpha, S gsf, S* __restrict__ h, S* __restrict__ spk_out,
                       S* __restrict__ mem_out, S* __restrict__ syn_out, S* __restrict__ pre_out,
                       std::int64_t width) {
  for (std::int64_t k = 0; k < width; ++k) {
    const S th = thr[k];
    const S mp = mem_prev[k];
    const S r = static_cast<S>(mp - th > S(0));
    S base, s = S(0);
    if (SYNAPTIC) {
      s = alpha[k] * syn_prev[k] + xt[k];
      s = s + rt[k];
      base = beta[k] * mp + s;
    } else {
      base = beta[k] * mp + xt[k];
      base = base + rt[k];
    }
    S m_pre;
    if (RESET == kSubtract) m_pre = base - r * th;
    else if (RESET == kZero) m_pre = base - base * r;
    else m_pre = base;
    const S hk = m_pre - th;
    h[k] = hk;
    const S spk_t = static_cast<S>(hk > S(0)) * gsf;
    S m = m_pre;
    if (IMMEDIATE) {
      pre_out[k] = m_pre;
      const S do_reset = spk_t / gsf - r;
      m = (RESET == kSubtract) ? m_pre - do_reset * th : m_pre - do_reset * m_pre;
    }
    spk_out[k] = spk_t;
    mem_out[k] = m;
    if (SYNAPTIC) syn_out[k] = s;
  }
}

// The neuron update of step t for neurons [i0, i1) of every batch row, reading rec.
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
void neuron_step(const ForwardArgs<S>& a, std::int64_t t, std::int64_t i0, std::int64_t i1) {
  const std::int64_t N = a.n, M = a.stride ? a.stride : a.batch * a.n;
  const S gsf = a.gsf;
  for (std::int64_t b = 0; b < a.batch; ++b) {
    const std::int64_t e0 = b * N + i0, width = i1 - i0;
    // Absent initial states read a row of zeros: no per-element test, so the loop vectorises.
    const S* __restrict__ mem_prev = t > 0 ? a.mem + (t - 1) * M + e0 : (a.mem0 ? a.mem0 + e0 : a.zeros);
    const S* __restrict__ syn_prev =
        SYNAPTIC ? (t > 0 ? a.syn + (t - 1) * M + e0 : (a.syn0 ? a.syn0 + e0 : a.zeros)) : nullptr;
    const S* __restrict__ xt = a.x + t * M + e0;
    const S* __restrict__ rt = a.rec + e0;
    S* __restrict__ spk_out = a.spk + t * M + e0;
    S* __restrict__ mem_out = a.mem + t * M + e0;
    S* __restrict__ syn_out = SYNAPTIC ? a.syn + t * M + e0 : nullptr;
    S* __restrict__ pre_out = IMMEDIATE ? a.pre + t * M + e0 : nullptr;
    S* __restrict__ h = a.h + e0;
    const S* __restrict__ beta = a.beta + i0;
    const S* __restrict__ thr = a.thr + i0;
    const S* __restrict__ alpha = SYNAPTIC ? a.alpha + i0 : nullptr;
    neuron_row<S, SYNAPTIC, RESET, IMMEDIATE>(mem_prev, syn_prev, xt, rt, beta, thr, alpha, gsf, h, spk_out, mem_out,
                                              syn_out, pre_out, width);
    surrogate_row<S>(a.surrogate, h, a.trace + t * M + e0, width, a.c0, a.c1);
  }
}

template <typename S>
struct BackwardArgs {
  const S* grad_spk = nullptr;   // [T, B * N], [B * N] (see grad_spk_step) or null (zero)
  const S* grad_syn = nullptr;
  const S* grad_mem = nullptr;
  const S* trace = nullptr;      // forward's saved arrays [T, B * N]
  const S* mem_hist = nullptr;
  const S* syn_hist = nullptr;
  const S* pre = nullptr;
  const S* mem0 = nullptr;       // [B * N] or null
  const S* syn0 = nullptr;
  const S* w = nullptr;          // [N, N] row-major W[i, j]
  const S* beta = nullptr;       // [N]
  const S* thr = nullptr;
  const S* alpha = nullptr;
  S* grad_x = nullptr;           // [T, B * N]: G_t, also the gradient of rec_t
  S* grad_mem0 = nullptr;        // [B * N]; carries dL/dmem between steps
  S* grad_syn0 = nullptr;        // [B * N]; carries dL/dsyn (synaptic only, else scratch)
  S* grad_spk0 = nullptr;        // [B * N]; carries G_{t+1} @ W, the recurrent spike gradient
  S* part_beta = nullptr;        // [B * N] per-neuron sums over time, or null
  S* part_thr = nullptr;
  S* part_alpha = nullptr;
  std::int64_t steps = 0, batch = 0, n = 0;
  // elements per step of grad_spk / grad_syn / grad_mem: B * N, or 0 where one [B * N] row
  // stands for every step (a gradient broadcast over time, as that of a sum)
  std::int64_t grad_spk_step = 0, grad_syn_step = 0, grad_mem_step = 0;
  int reset = kSubtract;
  bool immediate = false;
  S gsf = 1;
};

// One batch row of the elementwise adjoint: every array a __restrict__ parameter and no null
// tests inside, so the loop vectorises (absent inputs are rows of zeros). PARTS: the per-neuron
// parameter sums part_beta/part_thr/part_alpha are accumulated (all three valid; alpha's only
// read when SYNAPTIC).
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE, bool PARTS>
inline void neuron_row_backward(const S* __restrict__ g_spk_up, const S* __restrict__ g_mem_up,
                                const S* __restrict__ g_syn_up, const S* __restrict__ mem_prev,
                                const S* __restrict__ syn_prev, const S* __restrict__ trace,
                                const S* __restrict__ pre, const S* __restrict__ thr, const S* __restrict__ beta,
                                const S* __restrict__ alpha, S gsf, S* __restrict__ grad_x,
                                S* __restrict__ carry_mem, S* __restrict__ carry_syn,
                                const S* __restrict__ carry_spk, S* __restrict__ part_beta,
                                S* __restrict__ part_thr, S* __restrict__ part_alpha, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const S th = thr[i];
    const S g_mem = g_mem_up[i] + carry_mem[i];
    S g_spk = g_spk_up[i] + carry_spk[i];
    const S mp = mem_prev[i];
    const S r = static_cast<S>(mp - th > S(0));
    S g_pre = g_mem;
    S thr_part = PARTS ? part_thr[i] : S(0);
    if (IMMEDIATE) {
      const S m_pre = pre[i];
      const S do_reset = static_cast<S>(m_pre - th > S(0)) - r;
      S g_do_reset;
      if (RESET == kSubtract) {
        g_do_reset = -(th * g_mem);
        if (PARTS) thr_part = thr_part - do_reset * g_mem;
      } else {
        g_do_reset = -(m_pre * g_mem);
        g_pre = g_mem - do_reset * g_mem;
      }
      g_spk = g_spk + g_do_reset / gsf;
    }
    const S g_h = g_spk * gsf * trace[i];
    g_pre = g_pre + g_h;
    S thr_acc = PARTS ? thr_part - g_h : S(0);
    S g_base;
    if (RESET == kSubtract) {
      thr_acc = thr_acc - r * g_pre;
      g_base = g_pre;
    } else if (RESET == kZero) {
      g_base = g_pre - r * g_pre;
    } else {
      g_base = g_pre;
    }
    if (PARTS) part_thr[i] = thr_acc;
    S g_s = g_base;
    if (SYNAPTIC) {
      g_s = g_base + g_syn_up[i] + carry_syn[i];
      if (PARTS) part_alpha[i] = part_alpha[i] + syn_prev[i] * g_s;
      carry_syn[i] = alpha[i] * g_s;
    }
    grad_x[i] = g_s;
    if (PARTS) part_beta[i] = part_beta[i] + mp * g_base;
    carry_mem[i] = beta[i] * g_base;
  }
}

// The elementwise adjoint of step t over all B * N neurons: reads the carries for step t + 1,
// writes G_t = grad_x[t] and the carries for step t - 1 (all but the spike carry, which the
// product forms from G_t afterwards). zeros: [B * N] of zeros, read for absent inputs. PARTS:
// part_beta, part_thr and part_alpha are all non-null (the caller points unneeded ones at
// scratch), else none is used.
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE, bool PARTS>
void neuron_step_backward(const BackwardArgs<S>& a, std::int64_t t, const S* zeros) {
  const std::int64_t N = a.n, M = a.batch * a.n;
  const S* mem_prev = t > 0 ? a.mem_hist + (t - 1) * M : (a.mem0 ? a.mem0 : zeros);
  const S* syn_prev = SYNAPTIC ? (t > 0 ? a.syn_hist + (t - 1) * M : (a.syn0 ? a.syn0 : zeros)) : zeros;
  const S* g_spk_up = a.grad_spk ? a.grad_spk + t * a.grad_spk_step : zeros;
  const S* g_mem_up = a.grad_mem ? a.grad_mem + t * a.grad_mem_step : zeros;
  const S* g_syn_up = (SYNAPTIC && a.grad_syn) ? a.grad_syn + t * a.grad_syn_step : zeros;
  const S* trace = a.trace + t * M;
  const S* pre = IMMEDIATE ? a.pre + t * M : zeros;
  S* grad_x = a.grad_x + t * M;
  for (std::int64_t b = 0; b < a.batch; ++b) {
    const std::int64_t e = b * N;
    neuron_row_backward<S, SYNAPTIC, RESET, IMMEDIATE, PARTS>(
        g_spk_up + e, g_mem_up + e, g_syn_up + e, mem_prev + e, syn_prev + e, trace + e, pre + e, a.thr, a.beta,
        SYNAPTIC ? a.alpha : a.beta, a.gsf, grad_x + e, a.grad_mem0 + e, a.grad_syn0 + e, a.grad_spk0 + e,
        PARTS ? a.part_beta + e : nullptr, PARTS ? a.part_thr + e : nullptr,
        PARTS ? a.part_alpha + e : nullptr, N);
  }
}

}  // namespace dense
}  // namespace fusedsnn
