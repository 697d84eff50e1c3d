// Fused LIF time loops (Leaky, Synaptic, RLeaky, RSynaptic), forward and backward, in plain C++.
//
// The same algorithm and operation order as fusedsnn/kernels/spec.py, the Triton kernel
// (fusedsnn/kernels/lif_triton.py) and the eager reference (lif_reference.py). No Poplar and no
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

namespace fusedsnn {

enum Reset : int { kSubtract = 0, kZero = 1, kNone = 2 };
enum Recurrence : int { kNoRecurrence = 0, kOneToOne = 1, kInput = 2 };
enum SurrogateCode : int {
  kAtan = 0, kFastSigmoid = 1, kSigmoid = 2, kStraightThrough = 3,
  kTriangular = 4, kSpikeRateEscape = 5, kDisabled = 6
};

// Neurons handled per inner pass: the state of one chunk stays in L1 (host) or tile memory.
constexpr std::int64_t kChunk = 256;

// Surrogate derivative dS/dh; c0, c1 are precomputed on the host exactly as the Python side
// forms them (atan: c0 = pi/2 * alpha, c1 = alpha / 2; others: their parameters).
template <typename S>
inline S surrogate_derivative(int code, S h, S c0, S c1) {
  switch (code) {
    case kAtan: {
      S scaled = c0 * h;
      return c1 / (S(1) + scaled * scaled);
    }
    case kFastSigmoid: {
      S denom = c0 * std::fabs(h) + S(1);
      return S(1) / (denom * denom);
    }
    case kSigmoid: {  // symmetric, overflow-free form of snnTorch's expression
      S e = std::exp(-c0 * std::fabs(h));
      return c0 * e / ((e + S(1)) * (e + S(1)));
    }
    case kStraightThrough:
      return S(1);
    case kTriangular:  // snnTorch 1.0.0's sign convention
      return h >= S(0) ? -c0 : c0;
    case kSpikeRateEscape:
      return c1 * std::exp(-c0 * std::fabs(h - S(1)));
    default:
      return S(0);
  }
}

// Pointers for one forward call. IO is the element type of x and of the spk/syn/mem outputs;
// S is the state type (float for float/half IO, double for double IO).
template <typename IO, typename S>
struct ForwardArgs {
  const IO* x = nullptr;       // [T, stride], time stride x_step (0 for a static input)
  std::int64_t x_step = 0;
  const IO* rec = nullptr;     // all-to-all recurrent input [T, stride] (kInput only)
  std::int64_t rec_step = 0;
  const S* mem0 = nullptr;     // [stride] or null (zeros)
  const S* syn0 = nullptr;
  const S* spk0 = nullptr;
  const S* beta = nullptr;     // [stride] per neuron (already clamped to [0, 1])
  const S* thr = nullptr;
  const S* alpha = nullptr;
  const S* v = nullptr;
  IO* spk = nullptr;           // outputs [T, stride]
  IO* syn = nullptr;
  IO* mem = nullptr;
  S* trace = nullptr;          // surrogate derivative [T, stride]
  S* state = nullptr;          // state-precision membrane copy, or null
  S* pre = nullptr;            // pre-reset membrane (reset_delay=False), or null
  std::int64_t steps = 0;      // T
  std::int64_t stride = 0;     // neurons per step row
  int reset = kSubtract;
  bool immediate_reset = false;
  bool zero_before_decay = false;  // snnTorch's Leaky zeroes before the decay, the others after
  int surrogate = kAtan;
  S c0 = 0, c1 = 0, gsf = 1;
};

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE>
void lif_forward_range(const ForwardArgs<IO, S>& a, std::int64_t begin, std::int64_t end) {
  const bool zero_before_decay = a.zero_before_decay;
  S mem[kChunk], syn[kChunk], spk[kChunk];
  for (std::int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const std::int64_t n = (end - c0) < kChunk ? (end - c0) : kChunk;
    for (std::int64_t j = 0; j < n; ++j) {
      const std::int64_t i = c0 + j;
      mem[j] = a.mem0 ? a.mem0[i] : S(0);
      syn[j] = (SYNAPTIC && a.syn0) ? a.syn0[i] : S(0);
      spk[j] = (RECURRENCE == kOneToOne && a.spk0) ? a.spk0[i] : S(0);
    }
    for (std::int64_t t = 0; t < a.steps; ++t) {
      const IO* xt = a.x + t * a.x_step + c0;
      const std::int64_t row = t * a.stride + c0;
      for (std::int64_t j = 0; j < n; ++j) {
        const std::int64_t i = c0 + j;
        const S thr = a.thr[i];
        const S beta = a.beta[i];
        const S xv = static_cast<S>(xt[j]);
        const S r = (mem[j] - thr > S(0)) ? S(1) : S(0);
        S base, s = S(0);
        if (SYNAPTIC) {
          s = a.alpha[i] * syn[j] + xv;
          if (RECURRENCE == kOneToOne) s = s + a.v[i] * spk[j];
          if (RECURRENCE == kInput) s = s + static_cast<S>(a.rec[t * a.rec_step + i]);
          base = beta * mem[j] + s;
        } else if (zero_before_decay) {
          base = beta * ((S(1) - r) * mem[j]) + xv;
        } else {
          base = beta * mem[j] + xv;
          if (RECURRENCE == kOneToOne) base = base + a.v[i] * spk[j];
          if (RECURRENCE == kInput) base = base + static_cast<S>(a.rec[t * a.rec_step + i]);
        }
        S m_pre;
        if (a.reset == kSubtract) {
          m_pre = base - r * thr;
        } else if (a.reset == kZero && !zero_before_decay) {
          m_pre = base - base * r;
        } else {
          m_pre = base;
        }
        const S h = m_pre - thr;
        const S spk_t = (h > S(0) ? S(1) : S(0)) * a.gsf;
        a.trace[row + j] = surrogate_derivative<S>(a.surrogate, h, a.c0, a.c1);
        S m = m_pre;
        if (a.immediate_reset) {
          a.pre[row + j] = m_pre;
          const S do_reset = spk_t / a.gsf - r;
          m = (a.reset == kSubtract) ? m_pre - do_reset * thr : m_pre - do_reset * m_pre;
        }
        a.spk[row + j] = static_cast<IO>(spk_t);
        a.mem[row + j] = static_cast<IO>(m);
        if (a.state) a.state[row + j] = m;
        if (SYNAPTIC) {
          a.syn[row + j] = static_cast<IO>(s);
          syn[j] = s;
        }
        mem[j] = m;
        spk[j] = spk_t;
      }
    }
  }
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
  const S* trace = nullptr;
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
  S* grad_mem0 = nullptr;      // [stride]
  S* grad_syn0 = nullptr;
  S* grad_spk0 = nullptr;
  S* part_beta = nullptr;      // [stride] per-neuron partial sums over time, or null
  S* part_thr = nullptr;
  S* part_alpha = nullptr;
  S* part_v = nullptr;
  std::int64_t steps = 0;
  std::int64_t stride = 0;
  int reset = kSubtract;
  bool immediate_reset = false;
  bool zero_before_decay = false;
  bool need_prev_mem = false;
  S gsf = 1;
};

template <typename IO, typename S, bool SYNAPTIC, int RECURRENCE>
void lif_backward_range(const BackwardArgs<IO, S>& a, std::int64_t begin, std::int64_t end) {
  const bool zero_before_decay = a.zero_before_decay;
  for (std::int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const std::int64_t n = (end - c0) < kChunk ? (end - c0) : kChunk;
    S carry_mem[kChunk], carry_syn[kChunk], carry_spk[kChunk];
    S acc_beta[kChunk], acc_thr[kChunk], acc_alpha[kChunk], acc_v[kChunk];
    for (std::int64_t j = 0; j < n; ++j) {
      carry_mem[j] = carry_syn[j] = carry_spk[j] = S(0);
      acc_beta[j] = acc_thr[j] = acc_alpha[j] = acc_v[j] = S(0);
    }
    for (std::int64_t t = a.steps - 1; t >= 0; --t) {
      const std::int64_t row = t * a.stride + c0;
      const std::int64_t prev_row = (t - 1) * a.stride + c0;
      for (std::int64_t j = 0; j < n; ++j) {
        const std::int64_t i = c0 + j;
        const S thr = a.thr[i];
        S g_mem = carry_mem[j];
        if (a.grad_mem) g_mem += static_cast<S>(a.grad_mem[t * a.grad_mem_step + i]);
        S g_spk = carry_spk[j];
        if (a.grad_spk) g_spk += static_cast<S>(a.grad_spk[t * a.grad_spk_step + i]);
        S mem_prev = S(0), r = S(0);
        if (a.need_prev_mem) {
          mem_prev = t > 0 ? a.mem_hist[prev_row + j] : (a.mem0 ? a.mem0[i] : S(0));
          r = (mem_prev - thr > S(0)) ? S(1) : S(0);
        }
        S g_pre = g_mem;
        if (a.immediate_reset) {
          const S m_pre = a.pre[row + j];
          const S do_reset = ((m_pre - thr > S(0)) ? S(1) : S(0)) - r;
          S g_do_reset;
          if (a.reset == kSubtract) {
            g_do_reset = -(thr * g_mem);
            acc_thr[j] = acc_thr[j] - do_reset * g_mem;
          } else {
            g_do_reset = -(m_pre * g_mem);
            g_pre = g_mem - do_reset * g_mem;
          }
          g_spk = g_spk + g_do_reset / a.gsf;
        }
        const S g_h = g_spk * a.gsf * a.trace[row + j];
        g_pre = g_pre + g_h;
        acc_thr[j] = acc_thr[j] - g_h;
        S g_base;
        if (a.reset == kSubtract) {
          acc_thr[j] = acc_thr[j] - r * g_pre;
          g_base = g_pre;
        } else if (a.reset == kZero && !zero_before_decay) {
          g_base = g_pre - r * g_pre;
        } else {
          g_base = g_pre;
        }
        S g_s = g_base;
        if (SYNAPTIC) {
          g_s = g_base + carry_syn[j];
          if (a.grad_syn) g_s += static_cast<S>(a.grad_syn[t * a.grad_syn_step + i]);
        }
        a.grad_x[row + j] = static_cast<IO>(g_s);
        const S beta = a.beta[i];
        if (zero_before_decay) {
          const S kept = S(1) - r;
          acc_beta[j] = acc_beta[j] + (kept * mem_prev) * g_base;
          carry_mem[j] = kept * (beta * g_base);
        } else {
          acc_beta[j] = acc_beta[j] + mem_prev * g_base;
          carry_mem[j] = beta * g_base;
        }
        if (SYNAPTIC) {
          if (a.part_alpha) {
            const S syn_prev = t > 0 ? static_cast<S>(a.syn_hist[prev_row + j]) : (a.syn0 ? a.syn0[i] : S(0));
            acc_alpha[j] = acc_alpha[j] + syn_prev * g_s;
          }
          carry_syn[j] = a.alpha[i] * g_s;
        }
        if (RECURRENCE == kOneToOne) {
          if (a.part_v) {
            const S spk_prev = t > 0 ? static_cast<S>(a.spk_hist[prev_row + j]) : (a.spk0 ? a.spk0[i] : S(0));
            acc_v[j] = acc_v[j] + spk_prev * g_s;
          }
          carry_spk[j] = a.v[i] * g_s;
        }
      }
    }
    for (std::int64_t j = 0; j < n; ++j) {
      const std::int64_t i = c0 + j;
      a.grad_mem0[i] = carry_mem[j];
      if (a.grad_syn0) a.grad_syn0[i] = carry_syn[j];
      if (a.grad_spk0) a.grad_spk0[i] = carry_spk[j];
      if (a.part_beta) a.part_beta[i] = acc_beta[j];
      if (a.part_thr) a.part_thr[i] = acc_thr[j];
      if (a.part_alpha) a.part_alpha[i] = acc_alpha[j];
      if (a.part_v) a.part_v[i] = acc_v[j];
    }
  }
}

// Run-time neuron type -> compile-time template: the four neuron types (plus all-to-all input).
template <typename IO, typename S>
void lif_forward_dispatch(bool synaptic, int recurrence, const ForwardArgs<IO, S>& a,
                          std::int64_t begin, std::int64_t end) {
  if (synaptic) {
    if (recurrence == kOneToOne) lif_forward_range<IO, S, true, kOneToOne>(a, begin, end);
    else if (recurrence == kInput) lif_forward_range<IO, S, true, kInput>(a, begin, end);
    else lif_forward_range<IO, S, true, kNoRecurrence>(a, begin, end);
  } else {
    if (recurrence == kOneToOne) lif_forward_range<IO, S, false, kOneToOne>(a, begin, end);
    else if (recurrence == kInput) lif_forward_range<IO, S, false, kInput>(a, begin, end);
    else lif_forward_range<IO, S, false, kNoRecurrence>(a, begin, end);
  }
}

template <typename IO, typename S>
void lif_backward_dispatch(bool synaptic, int recurrence, const BackwardArgs<IO, S>& a,
                           std::int64_t begin, std::int64_t end) {
  // The backward of an all-to-all step is that of the non-recurrent neuron: the recurrent
  // input's gradient equals grad_x, and W's gradient is formed by autograd outside.
  if (synaptic) {
    if (recurrence == kOneToOne) lif_backward_range<IO, S, true, kOneToOne>(a, begin, end);
    else lif_backward_range<IO, S, true, kNoRecurrence>(a, begin, end);
  } else {
    if (recurrence == kOneToOne) lif_backward_range<IO, S, false, kOneToOne>(a, begin, end);
    else lif_backward_range<IO, S, false, kNoRecurrence>(a, begin, end);
  }
}

// Neuron range of worker w out of `workers` over `n` neurons: contiguous, sizes differ by <= 1.
inline void worker_range(std::int64_t n, unsigned w, unsigned workers, std::int64_t* begin, std::int64_t* end) {
  const std::int64_t base = n / workers, extra = n % workers;
  *begin = w * base + (static_cast<std::int64_t>(w) < extra ? w : extra);
  *end = *begin + base + (static_cast<std::int64_t>(w) < extra ? 1 : 0);
}

}  // namespace fusedsnn
