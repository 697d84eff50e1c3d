// Fused LIF time loops (Leaky, Synaptic, RLeaky, RSynaptic), forward and backward, in plain C++.
//
// The same algorithm and operation order as fusedsnn/spec.py, the Triton kernel
// (fusedsnn/backends/triton/lif.py) and the eager reference (lif_reference.py). No Poplar and no
// torch include: the IPU codelets (csrc/codelets) and the host library (csrc/host) both call
// these functions on a range of neurons. Compile with -ffp-contract=off: a contracted a*b+c
// rounds once instead of twice and breaks bit-identity with snnTorch.
//
// Layout: every per-step array is time-major, element (t, i) at [t * stride + i], where i is
// the neuron index in [0, stride). Per-neuron arrays (parameters, states) are indexed by i.
// A caller processes neurons [begin, end); different callers never touch the same neuron.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "surrogate.hpp"  // generated from fusedsnn/surrogate.py

namespace fusedsnn {

enum Reset : int { kSubtract = 0, kZero = 1, kNone = 2 };
enum Recurrence : int { kNoRecurrence = 0, kOneToOne = 1, kAllToAll = 2 };

// Neurons handled per inner pass; the chunk's state rows live on the stack. On the host a long
// chunk keeps each per-step row access a long contiguous stream (a short one touches a new page
// per row per step); an IPU worker's stack is a few hundred bytes, so codelets use a short one.
#ifndef FUSEDSNN_CHUNK
#ifdef __IPU__
#define FUSEDSNN_CHUNK 8
#else
#define FUSEDSNN_CHUNK 2048
#endif
#endif
constexpr std::int64_t kChunk = FUSEDSNN_CHUNK;
#ifndef FUSEDSNN_BLOCK
#define FUSEDSNN_BLOCK 256
#endif
// The backward's inner block (see lif_backward_chunk): 1 KiB per float32 stream.
constexpr std::int64_t kBlock = FUSEDSNN_BLOCK < FUSEDSNN_CHUNK ? FUSEDSNN_BLOCK : FUSEDSNN_CHUNK;

// Host builds define FUSEDSNN_TARGET_CLONES (csrc/host): the chunk loops are then compiled for
// AVX-512, AVX2 and the baseline ISA, and the loader picks the widest the CPU has (an ifunc).
// Only the vector width changes: the operations, their order and -ffp-contract=off are the
// same, so every clone gives bit-identical results.
#ifndef FUSEDSNN_TARGET_CLONES
#define FUSEDSNN_TARGET_CLONES
#endif

// Pointers for one forward call. IO is the element type of x and of the spk/syn/mem outputs;
// S is the state type (float for float/half IO, double for double IO).
template <typename IO, typename S>
struct ForwardArgs {
  const IO* x = nullptr;       // [T, stride], time stride x_step (0 for a static input)
  std::int64_t x_step = 0;
  const IO* rec = nullptr;     // all-to-all recurrent input [T, stride] (kAllToAll only)
  std::int64_t rec_step = 0;
  const S* mem0 = nullptr;     // [stride] or null (zeros)
  const S* syn0 = nullptr;
  const S* spk0 = nullptr;
  const S* beta = nullptr;     // [features] (already clamped to [0, 1])
  const S* thr = nullptr;
  const S* alpha = nullptr;
  const S* v = nullptr;
  IO* spk = nullptr;           // outputs [T, stride]
  IO* syn = nullptr;
  IO* mem = nullptr;
  S* trace = nullptr;          // surrogate derivative [T, stride], or null (inference)
  S* state = nullptr;          // state-precision membrane copy, or null
  S* pre = nullptr;            // pre-reset membrane (reset_delay=False), or null (inference)
  std::int64_t steps = 0;      // T
  std::int64_t stride = 0;     // neurons per step row
  std::int64_t features = 0;   // parameters are per feature: neuron i uses index i % features
  int reset = kSubtract;
  bool immediate_reset = false;
  int surrogate = kAtan;
  S c0 = 0, c1 = 0, gsf = 1;
};

// Per-feature parameters gathered into a per-neuron row once per chunk (not per step), which
// keeps a modulo out of the time loop and avoids expanding parameters to [B * F] on the host.
template <typename S>
inline void gather_params(S* __restrict__ dst, const S* __restrict__ src, std::int64_t c0, std::int64_t n,
                          std::int64_t features) {
  // Contiguous runs of the feature vector, each a plain (vectorised) copy: a wrap-around test
  // per element kept this loop scalar, and at T=1 it cost more than the time step itself.
  std::int64_t f = c0 % features;
  for (std::int64_t j = 0; j < n;) {
    const std::int64_t run = (n - j) < (features - f) ? (n - j) : (features - f);
    for (std::int64_t k = 0; k < run; ++k) dst[j + k] = src[f + k];
    j += run;
    f = 0;
  }
}

// The rows of every parameter the neuron type has, for the chunk [c0, c0 + n).
template <bool SYNAPTIC, int RECURRENCE, typename S, typename Args>
inline void gather_chunk_params(const Args& a, std::int64_t c0, std::int64_t n, S* beta, S* thr, S* alpha, S* v) {
  gather_params(beta, a.beta, c0, n, a.features);
  gather_params(thr, a.thr, c0, n, a.features);
  if (SYNAPTIC) gather_params(alpha, a.alpha, c0, n, a.features);
  if (RECURRENCE == kOneToOne) gather_params(v, a.v, c0, n, a.features);
}

// One chunk of neurons [c0, c0 + n) over all steps. Every switch is a template parameter and
// every pointer a local __restrict__ copy, so the inner loop has no branches that depend on
// memory and vectorises.
template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE, int RESET, bool IMMEDIATE>
FUSEDSNN_TARGET_CLONES void lif_forward_chunk(const ForwardArgs<IO, S>& a, std::int64_t c0, std::int64_t n) {
  // snnTorch's Leaky resets to zero before the decay; the other three after it.
  constexpr bool kZeroBeforeDecay = RESET == kZero && !SYNAPTIC && RECURRENCE == kNoRecurrence;
  S beta[kChunk], thr[kChunk], alpha[kChunk], v[kChunk];
  gather_chunk_params<SYNAPTIC, RECURRENCE>(a, c0, n, beta, thr, alpha, v);
  const S gsf = a.gsf;
  S mem[kChunk], syn[kChunk], spk[kChunk], h[kChunk];
  for (std::int64_t j = 0; j < n; ++j) {
    mem[j] = a.mem0 ? a.mem0[c0 + j] : S(0);
    syn[j] = (SYNAPTIC && a.syn0) ? a.syn0[c0 + j] : S(0);
    spk[j] = (RECURRENCE == kOneToOne && a.spk0) ? a.spk0[c0 + j] : S(0);
  }
  for (std::int64_t t = 0; t < a.steps; ++t) {
    const IO* __restrict__ xt = a.x + t * a.x_step + c0;
    const IO* __restrict__ rt = RECURRENCE == kAllToAll ? a.rec + t * a.rec_step + c0 : nullptr;
    const std::int64_t row = t * a.stride + c0;
    IO* __restrict__ spk_out = a.spk + row;
    IO* __restrict__ mem_out = a.mem + row;
    IO* __restrict__ syn_out = SYNAPTIC ? a.syn + row : nullptr;
    S* __restrict__ pre_out = (IMMEDIATE && a.pre) ? a.pre + row : nullptr;
    for (std::int64_t j = 0; j < n; ++j) {
      const S th = thr[j];
      const S xv = static_cast<S>(xt[j]);
      const S r = static_cast<S>(mem[j] - th > S(0));  // bool -> 0/1 without a branch
      S base, s = S(0);
      if (SYNAPTIC) {
        s = alpha[j] * syn[j] + xv;
        if (RECURRENCE == kOneToOne) s = s + v[j] * spk[j];
        if (RECURRENCE == kAllToAll) s = s + static_cast<S>(rt[j]);
        base = beta[j] * mem[j] + s;
      } else if (kZeroBeforeDecay) {
        base = beta[j] * ((S(1) - r) * mem[j]) + xv;
      } else {
        base = beta[j] * mem[j] + xv;
        if (RECURRENCE == kOneToOne) base = base + v[j] * spk[j];
        if (RECURRENCE == kAllToAll) base = base + static_cast<S>(rt[j]);
      }
      S m_pre;
      if (RESET == kSubtract) {
        m_pre = base - r * th;
      } else if (RESET == kZero && !kZeroBeforeDecay) {
        m_pre = base - base * r;
      } else {
        m_pre = base;
      }
      const S hj = m_pre - th;
      h[j] = hj;
      const S spk_t = static_cast<S>(hj > S(0)) * gsf;
      S m = m_pre;
      if (IMMEDIATE) {
        if (pre_out) pre_out[j] = m_pre;
        const S do_reset = spk_t / gsf - r;
        m = (RESET == kSubtract) ? m_pre - do_reset * th : m_pre - do_reset * m_pre;
      }
      spk_out[j] = static_cast<IO>(spk_t);
      mem_out[j] = static_cast<IO>(m);
      if (SYNAPTIC) {
        syn_out[j] = static_cast<IO>(s);
        syn[j] = s;
      }
      mem[j] = m;
      spk[j] = spk_t;
    }
    // No trace in inference (no_grad): the forward then writes only its outputs.
    if (a.trace) surrogate_row<S>(a.surrogate, h, a.trace + row, n, a.c0, a.c1);
    if (a.state) {
      for (std::int64_t j = 0; j < n; ++j) a.state[row + j] = mem[j];
    }
  }
}

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE, int RESET, bool IMMEDIATE>
void lif_forward_chunks(const ForwardArgs<IO, S>& a, std::int64_t begin, std::int64_t end) {
  for (std::int64_t c0 = begin; c0 < end; c0 += kChunk) {
    lif_forward_chunk<IO, S, SYNAPTIC, RECURRENCE, RESET, IMMEDIATE>(a, c0, (end - c0) < kChunk ? (end - c0) : kChunk);
  }
}

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE>
void lif_forward_range(const ForwardArgs<IO, S>& a, std::int64_t begin, std::int64_t end) {
  const bool immediate = a.immediate_reset && a.reset != kNone;
  switch (a.reset) {
    case kSubtract:
      if (immediate) lif_forward_chunks<IO, S, SYNAPTIC, RECURRENCE, kSubtract, true>(a, begin, end);
      else lif_forward_chunks<IO, S, SYNAPTIC, RECURRENCE, kSubtract, false>(a, begin, end);
      break;
    case kZero:
      if (immediate) lif_forward_chunks<IO, S, SYNAPTIC, RECURRENCE, kZero, true>(a, begin, end);
      else lif_forward_chunks<IO, S, SYNAPTIC, RECURRENCE, kZero, false>(a, begin, end);
      break;
    default:
      lif_forward_chunks<IO, S, SYNAPTIC, RECURRENCE, kNone, false>(a, begin, end);
  }
}

// g * f, but exactly zero where the gradient g is: a step no gradient reaches must not turn a
// non-finite forward value (NaN input, overflowed membrane, exploding surrogate) into
// 0 * inf = NaN that poisons every earlier step. snnTorch's autograd never forms that product.
// A select, not a branch, so the loops still vectorise.
template <typename S>
inline S times_nonzero(S g, S f) {
  return g == S(0) ? S(0) : g * f;
}

// Pointers for one backward call; histories are the forward's outputs (mem_hist in state
// precision). Upstream gradients may be null (zero) and have their own time strides.
template <typename IO, typename S>
struct BackwardArgs {
  const IO* grad_spk = nullptr;
  std::int64_t grad_spk_step = 0;
  const IO* grad_syn = nullptr;
  std::int64_t grad_syn_step = 0;
  const IO* grad_mem = nullptr;
  std::int64_t grad_mem_step = 0;
  const S* trace = nullptr;     // surrogate derivative [T, stride], or null: recomputed (below)
  const S* mem_hist = nullptr;
  const IO* syn_hist = nullptr;
  const IO* spk_hist = nullptr;
  const S* pre = nullptr;
  const S* mem0 = nullptr;
  const S* syn0 = nullptr;
  const S* spk0 = nullptr;
  const S* beta = nullptr;
  const S* thr = nullptr;
  const S* alpha = nullptr;
  const S* v = nullptr;
  IO* grad_x = nullptr;        // [T, stride]
  S* grad_mem0 = nullptr;      // [stride], or null: not wanted
  S* grad_syn0 = nullptr;
  S* grad_spk0 = nullptr;
  S* part_beta = nullptr;      // [stride] per-neuron partial sums over time, or null
  S* part_thr = nullptr;
  S* part_alpha = nullptr;
  S* part_v = nullptr;
  std::int64_t steps = 0;
  std::int64_t stride = 0;
  std::int64_t features = 0;   // parameters are per feature: neuron i uses index i % features
  int reset = kSubtract;
  bool immediate_reset = false;
  bool need_prev_mem = false;
  // Without a trace the surrogate is evaluated again at h = m_pre - thr, where m_pre is `pre`
  // (immediate reset) or the membrane history itself (otherwise m = m_pre): the same function
  // and operations as the forward's surrogate_row, so the values are bit-identical.
  int surrogate = kAtan;
  S c0 = 0, c1 = 0;
  S gsf = 1;
};

// dst[j] = src[j] (converted), or fallback[j] when src is null, or zero when both are null.
template <typename S, typename T, typename U>
inline void load_row(S* __restrict__ dst, const T* src, const U* fallback, std::int64_t n) {
  if (src) {
    for (std::int64_t j = 0; j < n; ++j) dst[j] = static_cast<S>(src[j]);
  } else if (fallback) {
    for (std::int64_t j = 0; j < n; ++j) dst[j] = static_cast<S>(fallback[j]);
  } else {
    for (std::int64_t j = 0; j < n; ++j) dst[j] = S(0);
  }
}

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE, int RESET, bool IMMEDIATE, bool NEED_PREV>
FUSEDSNN_TARGET_CLONES void lif_backward_chunk(const BackwardArgs<IO, S>& a, std::int64_t c0, std::int64_t n) {
  constexpr bool kZeroBeforeDecay = RESET == kZero && !SYNAPTIC && RECURRENCE == kNoRecurrence;
  S beta[kChunk], thr[kChunk], alpha[kChunk], v[kChunk];
  gather_chunk_params<SYNAPTIC, RECURRENCE>(a, c0, n, beta, thr, alpha, v);
  const bool want_alpha = SYNAPTIC && a.part_alpha != nullptr;
  const bool want_v = RECURRENCE == kOneToOne && a.part_v != nullptr;
  const S gsf = a.gsf;
  S carry_mem[kChunk], carry_syn[kChunk], carry_spk[kChunk];
  S acc_beta[kChunk], acc_thr[kChunk], acc_alpha[kChunk], acc_v[kChunk];
  S mem_prev[kChunk], syn_prev[kChunk], spk_prev[kChunk];
  // Upstream gradients are read in the main loop straight from their rows (with x, the
  // histories and grad_x that is several memory streams in flight at once; copying each row
  // into a local one first made them one stream at a time, and the backward ran at a third of
  // copy bandwidth). An absent gradient reads this row of zeros instead.
  IO zero_row[kChunk];
  const bool any_absent = !a.grad_mem || !a.grad_spk || (SYNAPTIC && !a.grad_syn);
  if (any_absent) {
    for (std::int64_t j = 0; j < n; ++j) zero_row[j] = IO(0);
  }
  S h_row[kChunk], surrogate_buf[kChunk];
  const S* __restrict__ m_pre_hist = IMMEDIATE ? a.pre : a.mem_hist;
  for (std::int64_t j = 0; j < n; ++j) {
    carry_mem[j] = carry_syn[j] = carry_spk[j] = S(0);
    acc_beta[j] = acc_thr[j] = acc_alpha[j] = acc_v[j] = S(0);
  }
  for (std::int64_t t = a.steps - 1; t >= 0; --t) {
    const std::int64_t row = t * a.stride + c0;
    const std::int64_t prev_row = (t - 1) * a.stride + c0;
    // Previous-step states into local rows first (t = 0 reads the initial states), keeping
    // the main loop free of branches.
    if (want_alpha) load_row(syn_prev, t > 0 ? a.syn_hist + prev_row : nullptr, a.syn0 ? a.syn0 + c0 : nullptr, n);
    if (want_v) load_row(spk_prev, t > 0 ? a.spk_hist + prev_row : nullptr, a.spk0 ? a.spk0 + c0 : nullptr, n);
    const IO* __restrict__ g_mem_row = a.grad_mem ? a.grad_mem + t * a.grad_mem_step + c0 : zero_row;
    const IO* __restrict__ g_spk_row = a.grad_spk ? a.grad_spk + t * a.grad_spk_step + c0 : zero_row;
    const IO* __restrict__ g_syn_row =
        SYNAPTIC ? (a.grad_syn ? a.grad_syn + t * a.grad_syn_step + c0 : zero_row) : nullptr;
    const S* __restrict__ pre = IMMEDIATE ? a.pre + row : nullptr;
    IO* __restrict__ grad_x = a.grad_x + row;
    const S* mem_prev_src = t > 0 ? a.mem_hist + prev_row : nullptr;
    const S* mem0_src = a.mem0 ? a.mem0 + c0 : nullptr;
    // The step in blocks of kBlock neurons, each block's passes (previous membrane, surrogate,
    // main loop) back to back: every memory stream of the step (histories, upstream gradients,
    // grad_x) then advances together, which keeps the prefetchers on all of them, instead of
    // one whole-row pass per stream. Same operations per element: bit-identical.
    for (std::int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const std::int64_t j1 = (n - j0) < kBlock ? n : j0 + kBlock;
    if (NEED_PREV) {
      load_row(mem_prev + j0, mem_prev_src ? mem_prev_src + j0 : nullptr, mem0_src ? mem0_src + j0 : nullptr, j1 - j0);
    }
    const S* __restrict__ trace;
    if (a.trace) {
      trace = a.trace + row;
    } else {
      for (std::int64_t j = j0; j < j1; ++j) h_row[j] = m_pre_hist[row + j] - thr[j];
      surrogate_row<S>(a.surrogate, h_row + j0, surrogate_buf + j0, j1 - j0, a.c0, a.c1);
      trace = surrogate_buf;
    }
    for (std::int64_t j = j0; j < j1; ++j) {
      const S th = thr[j];
      const S g_mem = carry_mem[j] + static_cast<S>(g_mem_row[j]);
      S g_spk = carry_spk[j] + static_cast<S>(g_spk_row[j]);
      const S mp = NEED_PREV ? mem_prev[j] : S(0);
      const S r = NEED_PREV ? static_cast<S>(mp - th > S(0)) : S(0);
      S g_pre = g_mem;
      if (IMMEDIATE) {
        const S m_pre = pre[j];
        const S do_reset = static_cast<S>(m_pre - th > S(0)) - r;
        S g_do_reset;
        if (RESET == kSubtract) {
          g_do_reset = -times_nonzero(g_mem, th);
          acc_thr[j] = acc_thr[j] - do_reset * g_mem;
        } else {
          g_do_reset = -times_nonzero(g_mem, m_pre);
          g_pre = g_mem - do_reset * g_mem;
        }
        g_spk = g_spk + g_do_reset / gsf;
      }
      const S g_h = times_nonzero(g_spk * gsf, trace[j]);
      g_pre = g_pre + g_h;
      acc_thr[j] = acc_thr[j] - g_h;
      S g_base;
      if (RESET == kSubtract) {
        acc_thr[j] = acc_thr[j] - r * g_pre;
        g_base = g_pre;
      } else if (RESET == kZero && !kZeroBeforeDecay) {
        g_base = g_pre - r * g_pre;
      } else {
        g_base = g_pre;
      }
      S g_s = g_base;
      if (SYNAPTIC) {
        g_s = g_base + carry_syn[j] + static_cast<S>(g_syn_row[j]);
      }
      grad_x[j] = static_cast<IO>(g_s);
      if (kZeroBeforeDecay) {
        const S kept = S(1) - r;
        acc_beta[j] = acc_beta[j] + times_nonzero(g_base, kept * mp);
        carry_mem[j] = kept * (beta[j] * g_base);
      } else {
        acc_beta[j] = acc_beta[j] + times_nonzero(g_base, mp);
        carry_mem[j] = beta[j] * g_base;
      }
      if (SYNAPTIC) {
        if (want_alpha) acc_alpha[j] = acc_alpha[j] + times_nonzero(g_s, syn_prev[j]);
        carry_syn[j] = alpha[j] * g_s;
      }
      if (RECURRENCE == kOneToOne) {
        if (want_v) acc_v[j] = acc_v[j] + spk_prev[j] * g_s;
        carry_spk[j] = v[j] * g_s;
      }
    }
    }  // blocks
  }
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t i = c0 + j;
    if (a.grad_mem0) a.grad_mem0[i] = carry_mem[j];  // null: no initial membrane was given
    if (a.grad_syn0) a.grad_syn0[i] = carry_syn[j];
    if (a.grad_spk0) a.grad_spk0[i] = carry_spk[j];
    if (a.part_beta) a.part_beta[i] = acc_beta[j];
    if (a.part_thr) a.part_thr[i] = acc_thr[j];
    if (a.part_alpha) a.part_alpha[i] = acc_alpha[j];
    if (a.part_v) a.part_v[i] = acc_v[j];
  }
}

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE, int RESET, bool IMMEDIATE, bool NEED_PREV>
void lif_backward_chunks(const BackwardArgs<IO, S>& a, std::int64_t begin, std::int64_t end) {
  for (std::int64_t c0 = begin; c0 < end; c0 += kChunk) {
    lif_backward_chunk<IO, S, SYNAPTIC, RECURRENCE, RESET, IMMEDIATE, NEED_PREV>(
        a, c0, (end - c0) < kChunk ? (end - c0) : kChunk);
  }
}

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE>
void lif_backward_range(const BackwardArgs<IO, S>& a, std::int64_t begin, std::int64_t end) {
  // The reset r needs the previous membrane whenever immediate reset or zero reset is on, so
  // NEED_PREV is only a free choice for subtract (learnable beta/threshold) and none (beta).
  const bool immediate = a.immediate_reset && a.reset != kNone;
  switch (a.reset) {
    case kSubtract:
      if (immediate) lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kSubtract, true, true>(a, begin, end);
      else if (a.need_prev_mem) lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kSubtract, false, true>(a, begin, end);
      else lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kSubtract, false, false>(a, begin, end);
      break;
    case kZero:
      if (immediate) lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kZero, true, true>(a, begin, end);
      else lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kZero, false, true>(a, begin, end);
      break;
    default:
      if (a.need_prev_mem) lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kNone, false, true>(a, begin, end);
      else lif_backward_chunks<IO, S, SYNAPTIC, RECURRENCE, kNone, false, false>(a, begin, end);
  }
}

// Run-time neuron type -> compile-time template: calls fn(synaptic, recurrence) with both as
// std::integral_constant, for the four neuron types plus the all-to-all step (kAllToAll).
template <typename Fn>
void with_neuron_type(bool synaptic, int recurrence, Fn&& fn) {
  auto with_recurrence = [&](auto syn) {
    if (recurrence == kOneToOne) fn(syn, std::integral_constant<int, kOneToOne>{});
    else if (recurrence == kAllToAll) fn(syn, std::integral_constant<int, kAllToAll>{});
    else fn(syn, std::integral_constant<int, kNoRecurrence>{});
  };
  if (synaptic) with_recurrence(std::true_type{});
  else with_recurrence(std::false_type{});
}

template <typename IO, typename S>
void lif_forward_dispatch(bool synaptic, int recurrence, const ForwardArgs<IO, S>& a,
                          std::int64_t begin, std::int64_t end) {
  with_neuron_type(synaptic, recurrence, [&](auto syn, auto rec) {
    lif_forward_range<IO, S, decltype(syn)::value, decltype(rec)::value>(a, begin, end);
  });
}

// An all-to-all step's recurrent input has the gradient grad_x; W's gradient is formed by
// autograd outside, so kAllToAll only differs from no recurrence in the zero-reset order.
template <typename IO, typename S>
void lif_backward_dispatch(bool synaptic, int recurrence, const BackwardArgs<IO, S>& a,
                           std::int64_t begin, std::int64_t end) {
  with_neuron_type(synaptic, recurrence, [&](auto syn, auto rec) {
    lif_backward_range<IO, S, decltype(syn)::value, decltype(rec)::value>(a, begin, end);
  });
}

// Neuron range of worker w out of `workers` over `n` neurons: contiguous, sizes differ by <= 1.
inline void worker_range(std::int64_t n, unsigned w, unsigned workers, std::int64_t* begin, std::int64_t* end) {
  const std::int64_t base = n / workers, extra = n % workers;
  *begin = w * base + (static_cast<std::int64_t>(w) < extra ? w : extra);
  *end = *begin + base + (static_cast<std::int64_t>(w) < extra ? 1 : 0);
}

}  // namespace fusedsnn
