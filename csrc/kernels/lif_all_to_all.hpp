// All-to-all recurrent LIF (RLeaky / RSynaptic with an nn.Linear(N, N) recurrence) as one
// fused time loop, forward and backward, in plain C++.
//
// One step t, for batch row b and neuron i (snnTorch 1.0.0's order, see fusedsnn/spec.py):
//
//     rec[b, i] = bias[i] + sum_j W[i, j] * spk[t-1, b, j]        (spk[-1] = spk0 or zeros)
//     then the elementwise neuron update of lif.hpp's kAllToAll recurrence with that rec.
//
// Forward: spikes are 0 or gsf, so the product skips silent inputs and adds whole rows of the
// transposed weight (wt[j, :] = W[:, j]) for each spiking j: cost B * (spiking j) * N, unit
// stride over i, register-blocked (recurrent_input below). The sum runs bias first, then j
// ascending, however it is blocked or split; nn.Linear's BLAS sums in an order of its own, so
// float32 rec (and what follows) can differ from snnTorch in the last bits.
//
// Backward (reverse loop): the elementwise adjoint gives G_t = dL/drec_t (= dL/dx_t); the spike
// gradient reaching step t-1 through the recurrence is G_t @ W (dense: surrogate gradients are
// not sparse). That product goes through BLAS (a gemm pointer from the host) when it is large.
// After the loop dW = sum_t G_t^T spk_{t-1} again uses the spikes being 0/gsf: for each input j,
// the rows of G where j spiked (spike_weight_gradient); dbias = sum_t G_t is the caller's.
//
// Layout: per-step arrays are [T, B * N] row-major (element (t, b, i) at t * B * N + b * N + i);
// states [B * N]; parameters [N]. Compile with -ffp-contract=off (see lif.hpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

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

template <typename S>
struct ForwardArgs {
  const S* x = nullptr;      // [T, B * N]
  const S* wt = nullptr;     // [N, wt_stride], wt[j * wt_stride + i] = W[i, j]
  const S* bias = nullptr;   // [N] or null; [wt_stride] (zero-padded) where bias_padded
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
  S* rec = nullptr;          // scratch [B, rec_stride]: this step's recurrent input
  S* h = nullptr;            // scratch [B * N]: m_pre - thr, for the surrogate row
  const S* zeros = nullptr;  // [N] of zeros: the previous state where none is given
  std::int64_t steps = 0, batch = 0, n = 0;
  // elements per row of wt and of rec (>= n): a multiple of the vector width keeps every row
  // of both 64-byte aligned (measured: split loads made the product up to twice as slow)
  std::int64_t wt_stride = 0, rec_stride = 0;
  bool bias_padded = false;  // bias (when given) has wt_stride elements: vectors may read past N
  std::int64_t stride = 0;   // elements per step of the [T, ...] arrays; 0: batch * n (a worker
                             // owning some batch rows has the whole batch's stride)
  int reset = kSubtract;
  bool immediate = false;
  int surrogate = kAtan;
  S c0 = 0, c1 = 0, gsf = 1;
};

// ---------------------------------------------------------------------------------------------
// The two products with 0/1 (or graded) spikes, register-blocked
// ---------------------------------------------------------------------------------------------
//
// Both products add rows of a dense matrix selected by which spikes are non-zero: the forward's
// rec[b, :] = bias + sum_{j: spk[b, j] != 0} spk[b, j] * wt[j, :], and the weight gradient's
// dW^T[j, :] = sum_{r: spk[r, j] != 0} G[r, :]. The selection is a bit mask (64 inputs or rows per
// word, visited with count-trailing-zeros), and a block of columns of the accumulator is held in
// vector registers while its selected rows stream in, so each added element costs one load and
// one add: no accumulator traffic per row (the first version loaded and stored it per four rows
// and ran at about a third of this rate). Pack<S, BYTES> is one vector of BYTES bytes (a GCC/Clang
// vector extension, lowered to the widest registers of the calling function's ISA); each lane
// does the same scalar operations in the same order, so every ISA gives the same bits.

template <typename S, int BYTES>
struct Pack {
  typedef S vec __attribute__((vector_size(BYTES)));
  static constexpr std::int64_t kLanes = BYTES / static_cast<int>(sizeof(S));
  static inline vec load(const S* p) {
    vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static inline void store(S* p, vec v) { std::memcpy(p, &v, sizeof v); }
};

// Vectors per register block: 8 accumulators plus the streamed operand fit 16 or 32 registers.
constexpr int kBlockVectors = 8;
// Spiking inputs per pass of the forward (one mask word): the [64, block] slice of wt it adds
// from stays in L1 while every batch row of the worker visits it.
constexpr std::int64_t kInputsPerPass = 64;

// fn(std::integral_constant<int, v>{}) for a run-time v in [1, MAX] (the pass over the last
// columns gets exactly the registers it needs); false, calling nothing, for any other v.
template <int MAX, typename Fn>
inline bool with_vectors(std::int64_t v, Fn&& fn) {
  if constexpr (MAX >= 1) {
    if (v == MAX) {
      fn(std::integral_constant<int, MAX>{});
      return true;
    }
    return with_vectors<MAX - 1>(v, fn);
  } else {
    return false;
  }
}

// words[b * nw + w], nw = ceil(n / 64): bit k set when spikes[b * n + 64 w + k] != 0.
template <typename S>
void spike_words(const S* spikes, std::int64_t batch, std::int64_t n, std::uint64_t* words) {
  const std::int64_t nw = (n + 63) / 64;
  for (std::int64_t b = 0; b < batch; ++b) {
    const S* row = spikes + b * n;
    for (std::int64_t w = 0; w < nw; ++w) {
      const std::int64_t k1 = (n - 64 * w) < 64 ? (n - 64 * w) : 64;
      std::uint64_t m = 0;
      for (std::int64_t k = 0; k < k1; ++k) m |= static_cast<std::uint64_t>(row[64 * w + k] != S(0)) << k;
      words[b * nw + w] = m;
    }
  }
}

// spike_words for spikes that must be +0.0 or exactly the value whose bits are c_bits: the words
// as above, and the number of set bits; -1 (words incomplete) when any element is neither.
template <typename S>
std::int64_t spike_words_checked(const S* spikes, std::int64_t rows, std::int64_t n,
                                 typename std::conditional<sizeof(S) == 4, std::uint32_t, std::uint64_t>::type c_bits,
                                 std::uint64_t* words) {
  using Bits = typename std::conditional<sizeof(S) == 4, std::uint32_t, std::uint64_t>::type;
  const std::int64_t nw = (n + 63) / 64;
  std::int64_t ones = 0;
  for (std::int64_t b = 0; b < rows; ++b) {
    const S* row = spikes + b * n;
    Bits bad = 0;
    for (std::int64_t w = 0; w < nw; ++w) {
      const std::int64_t k1 = (n - 64 * w) < 64 ? (n - 64 * w) : 64;
      std::uint64_t m = 0;
      for (std::int64_t k = 0; k < k1; ++k) {
        Bits e;
        std::memcpy(&e, row + 64 * w + k, sizeof e);
        m |= static_cast<std::uint64_t>(e != 0) << k;
        bad |= static_cast<Bits>(e != 0 && e != c_bits);
      }
      words[b * nw + w] = m;
      ones += __builtin_popcountll(m);
    }
    if (bad) return -1;
  }
  return ones;
}

// rec[b, c0 : c0 + V * lanes] for every row b, adding the spiking inputs of words [w0, w1) to
// what rec holds (or, for w0 == 0, to the bias or zero). UNIT: every spike is exactly 1, so
// a * x is x and the multiply is skipped (the same bits: 1 * x == x).
template <typename S, int BYTES, int V, bool UNIT>
inline void recurrent_block(const S* __restrict__ wt, std::int64_t ldw, const S* bias, const S* prev,
                            const std::uint64_t* words, std::int64_t batch, std::int64_t n, S* rec,
                            std::int64_t ldr, std::int64_t c0, std::int64_t w0, std::int64_t w1) {
  using P = Pack<S, BYTES>;
  using vec = typename P::vec;
  constexpr std::int64_t L = P::kLanes;
  const std::int64_t nw = (n + 63) / 64;
  for (std::int64_t b = 0; b < batch; ++b) {
    S* out = rec + b * ldr + c0;
    vec acc[V];
    if (w0 == 0) {
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[v] = bias ? P::load(bias + c0 + v * L) : vec{};
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[v] = P::load(out + v * L);
    }
    for (std::int64_t w = w0; w < w1; ++w) {
      for (std::uint64_t m = words[b * nw + w]; m; m &= m - 1) {
        const std::int64_t j = 64 * w + __builtin_ctzll(m);
        const S* __restrict__ row = wt + j * ldw + c0;
        if (UNIT) {
#pragma GCC unroll 8
          for (int v = 0; v < V; ++v) acc[v] = acc[v] + P::load(row + v * L);
        } else {
          const S a = prev[b * n + j];
#pragma GCC unroll 8
          for (int v = 0; v < V; ++v) acc[v] = acc[v] + a * P::load(row + v * L);
        }
      }
    }
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) P::store(out + v * L, acc[v]);
  }
}

// The same for columns [c0, c1) narrower than a vector, one scalar at a time.
template <typename S, bool UNIT>
inline void recurrent_columns(const S* __restrict__ wt, std::int64_t ldw, const S* bias, const S* prev,
                              const std::uint64_t* words, std::int64_t batch, std::int64_t n, S* rec,
                              std::int64_t ldr, std::int64_t c0, std::int64_t c1) {
  const std::int64_t nw = (n + 63) / 64;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = c0; i < c1; ++i) {
      S acc = bias ? bias[i] : S(0);
      for (std::int64_t w = 0; w < nw; ++w) {
        for (std::uint64_t m = words[b * nw + w]; m; m &= m - 1) {
          const std::int64_t j = 64 * w + __builtin_ctzll(m);
          acc = UNIT ? acc + wt[j * ldw + i] : acc + prev[b * n + j] * wt[j * ldw + i];
        }
      }
      rec[b * ldr + i] = acc;
    }
  }
}

// out[b, i0:i1] = bias[i0:i1] + sum_{j: spikes[b, j] != 0} spikes[b, j] * wt[j, i0:i1] for
// every row b < rows: the product of a spike matrix [rows, n] with a dense [n, ldw] one, summed
// bias first, then the spiking inputs j in ascending order (so out is the same, bit for bit,
// however the columns and rows are blocked or split between workers). words: spike_words of
// spikes (rows * ceil(n / 64)). unit: every non-zero spike is exactly 1. bias_padded: bias (when
// given) and every row of wt and out are readable/writable up to min(ldw, ldo) elements, so the
// last columns may run as whole vectors (the padding lanes compute values nobody reads). Rows
// go in tiles of kRowsPerTile, so a tile's outputs stay in cache across the passes over inputs.
// Used by the all-to-all recurrence (rows = batch, one step) and by a Linear layer fed by spikes
// (fusedsnn.memory, rows = steps * batch).
constexpr std::int64_t kRowsPerTile = 32;

template <typename S, int BYTES>
void spike_product(const S* wt, std::int64_t ldw, const S* bias, bool bias_padded, const S* spikes,
                   const std::uint64_t* words, std::int64_t rows, std::int64_t n, S* out, std::int64_t ldo,
                   std::int64_t i0, std::int64_t i1, bool unit) {
  constexpr std::int64_t L = Pack<S, BYTES>::kLanes, CB = kBlockVectors * L;
  const std::int64_t nw = (n + 63) / 64, words_per_pass = kInputsPerPass / 64;
  for (std::int64_t r0 = 0; r0 < rows; r0 += kRowsPerTile) {
    const std::int64_t tile = (rows - r0) < kRowsPerTile ? (rows - r0) : kRowsPerTile;
    const S* prev = spikes + r0 * n;
    const std::uint64_t* tile_words = words + r0 * nw;
    S* rec = out + r0 * ldo;
    std::int64_t c = i0;
    auto pass = [&](auto vectors) {
      constexpr int V = decltype(vectors)::value;
      for (std::int64_t w0 = 0; w0 < nw; w0 += words_per_pass) {
        const std::int64_t w1 = (w0 + words_per_pass) < nw ? (w0 + words_per_pass) : nw;
        if (unit) recurrent_block<S, BYTES, V, true>(wt, ldw, bias, prev, tile_words, tile, n, rec, ldo, c, w0, w1);
        else recurrent_block<S, BYTES, V, false>(wt, ldw, bias, prev, tile_words, tile, n, rec, ldo, c, w0, w1);
      }
    };
    for (; c + CB <= i1; c += CB) pass(std::integral_constant<int, kBlockVectors>{});
    // The last columns in one pass of as many vectors as they need (a pass of one vector is one
    // dependent chain of adds, latency-bound), where the padding allows it.
    const std::int64_t vectors = (i1 - c + L - 1) / L;
    if (c < i1 && c + vectors * L <= (ldw < ldo ? ldw : ldo) && bias_padded) {
      if (with_vectors<kBlockVectors>(vectors, pass)) c = i1;
    }
    for (; c + L <= i1; c += L) pass(std::integral_constant<int, 1>{});
    if (c < i1) {
      if (unit) recurrent_columns<S, true>(wt, ldw, bias, prev, tile_words, tile, n, rec, ldo, c, i1);
      else recurrent_columns<S, false>(wt, ldw, bias, prev, tile_words, tile, n, rec, ldo, c, i1);
    }
  }
}

// rec[b, i0:i1] for every b at step t: the columns [i0, i1) of W @ spk[t-1] + bias (see
// spike_product). words: scratch of batch * ceil(N / 64), filled here with spike_words of
// spk[t-1] (in the caller's ISA: vectorised compares). unit: every non-zero previous spike is
// exactly 1.
template <typename S, int BYTES>
void recurrent_input(const ForwardArgs<S>& a, std::int64_t t, std::int64_t i0, std::int64_t i1,
                     std::uint64_t* words, bool unit) {
  const std::int64_t N = a.n, M = a.stride ? a.stride : a.batch * a.n;
  const std::int64_t ldw = a.wt_stride ? a.wt_stride : N, ldr = a.rec_stride ? a.rec_stride : N;
  const S* prev = t > 0 ? a.spk + (t - 1) * M : a.spk0;
  if (!prev) {
    for (std::int64_t b = 0; b < a.batch; ++b) {
      for (std::int64_t i = i0; i < i1; ++i) a.rec[b * ldr + i] = a.bias ? a.bias[i] : S(0);
    }
    return;
  }
  spike_words(prev, a.batch, N, words);
  spike_product<S, BYTES>(a.wt, ldw, a.bias, a.bias_padded, prev, words, a.batch, N, a.rec, ldr, i0, i1, unit);
}

// masks[k * n + j], k = row chunk of 64: bit q set when spikes[(64 k + q) * n + j] != 0, for the
// chunks [k0, k1) of rows [0, rows).
template <typename S>
void spike_masks(const S* spikes, std::int64_t rows, std::int64_t n, std::int64_t k0, std::int64_t k1,
                 std::uint64_t* masks) {
  for (std::int64_t k = k0; k < k1; ++k) {
    std::uint64_t* __restrict__ m = masks + k * n;
    for (std::int64_t j = 0; j < n; ++j) m[j] = 0;
    const std::int64_t q1 = (rows - 64 * k) < 64 ? (rows - 64 * k) : 64;
    for (std::int64_t q = 0; q < q1; ++q) {
      const S* __restrict__ row = spikes + (64 * k + q) * n;
      for (std::int64_t j = 0; j < n; ++j) m[j] |= static_cast<std::uint64_t>(row[j] != S(0)) << q;
    }
  }
}

// dwt[j, c0 : c0 + V * lanes] for every j, adding the rows q of chunk (row q at chunk + q * ldc,
// for each set bit q of masks[j]); the first chunk (first) starts from zero.
template <typename S, int BYTES, int V>
inline void weight_gradient_block(const S* __restrict__ chunk, std::int64_t ldc, const std::uint64_t* masks,
                                  std::int64_t n, bool first, S* dwt, std::int64_t ldd, std::int64_t c0,
                                  std::int64_t cc) {
  using P = Pack<S, BYTES>;
  using vec = typename P::vec;
  constexpr std::int64_t L = P::kLanes;
  for (std::int64_t j = 0; j < n; ++j) {
    std::uint64_t m = masks[j];
    S* out = dwt + j * ldd + c0;
    vec acc[V];
    if (first) {
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[v] = vec{};
    } else {
      if (!m) continue;
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[v] = P::load(out + v * L);
    }
    for (; m; m &= m - 1) {
      const S* __restrict__ row = chunk + __builtin_ctzll(m) * ldc + cc;
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[v] = acc[v] + P::load(row + v * L);
    }
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) P::store(out + v * L, acc[v]);
  }
}

// dwt[j, i] = sum over rows r with spikes[r, j] != 0 of g[r, i], for i in [i0, i1) and every j < n
// (g's rows ldg elements apart):
// the weight gradient dW = G^T spk as dW^T (row stride ldd), for spikes that are 0 or 1 (the
// caller scales by a graded factor). The rows are summed in ascending order, one chunk of 64 at
// a time: the chunk's columns [i0, i1) are first copied into buf (64 rows of chunk_row(i1 - i0)
// elements, 64-byte aligned) so every vector load is aligned and the [64, block] slice stays
// in L1 while every j visits it. masks: spike_masks of all chunks.
// Elements per row of spike_weight_gradient's copy of a row chunk (buf): whole 16-element
// vectors, and not a multiple of 512 bytes, so the chunk's 64 rows spread over the L1 sets (rows
// 1 or 2 KiB apart fall into a quarter of them and evict each other: measured 1.3x slower).
template <typename S>
inline std::int64_t chunk_row(std::int64_t width) {
  const std::int64_t row = (width + 15) / 16 * 16;
  return (row * static_cast<std::int64_t>(sizeof(S))) % 512 == 0 ? row + 16 : row;
}

template <typename S, int BYTES>
void spike_weight_gradient(const S* g, std::int64_t ldg, const std::uint64_t* masks, std::int64_t rows,
                           std::int64_t n, S* dwt, std::int64_t ldd, std::int64_t i0, std::int64_t i1, S* buf) {
  if (rows == 0) {
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = i0; i < i1; ++i) dwt[j * ldd + i] = S(0);
    }
    return;
  }
  constexpr std::int64_t L = Pack<S, BYTES>::kLanes, CB = kBlockVectors * L;
  const std::int64_t chunks = (rows + 63) / 64, width = i1 - i0, ldc = chunk_row<S>(width);
  for (std::int64_t k = 0; k < chunks; ++k) {
    const std::int64_t q1 = (rows - 64 * k) < 64 ? (rows - 64 * k) : 64;
    for (std::int64_t q = 0; q < q1; ++q) std::memcpy(buf + q * ldc, g + (64 * k + q) * ldg + i0, width * sizeof(S));
    const std::uint64_t* chunk_masks = masks + k * n;
    std::int64_t c = i0;
    for (; c + CB <= i1; c += CB) {
      weight_gradient_block<S, BYTES, kBlockVectors>(buf, ldc, chunk_masks, n, k == 0, dwt, ldd, c, c - i0);
    }
    // the last columns in one pass, as in recurrent_input (buf's rows are ldc long, dwt's ldd)
    const std::int64_t vectors = (i1 - c + L - 1) / L;
    if (c < i1 && (c - i0) + vectors * L <= ldc && c + vectors * L <= ldd) {
      const bool done = with_vectors<kBlockVectors>(vectors, [&](auto v) {
        weight_gradient_block<S, BYTES, decltype(v)::value>(buf, ldc, chunk_masks, n, k == 0, dwt, ldd, c, c - i0);
      });
      if (done) c = i1;
    }
    for (; c + L <= i1; c += L) weight_gradient_block<S, BYTES, 1>(buf, ldc, chunk_masks, n, k == 0, dwt, ldd, c, c - i0);
    for (std::int64_t j = 0; j < n; ++j) {
      const std::uint64_t m0 = chunk_masks[j];
      for (std::int64_t i = c; i < i1; ++i) {
        S acc = k == 0 ? S(0) : dwt[j * ldd + i];
        for (std::uint64_t m = m0; m; m &= m - 1) acc = acc + buf[__builtin_ctzll(m) * ldc + (i - i0)];
        dwt[j * ldd + i] = acc;
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
    const S* __restrict__ rt = a.rec + b * (a.rec_stride ? a.rec_stride : N) + i0;
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

// The elementwise adjoint of step t over the batch rows [b0, b1) (all N neurons each): reads the carries for step t + 1,
// writes G_t = grad_x[t] and the carries for step t - 1 (all but the spike carry, which the
// product forms from G_t afterwards). zeros: [B * N] of zeros, read for absent inputs. PARTS:
// part_beta, part_thr and part_alpha are all non-null (the caller points unneeded ones at
// scratch), else none is used.
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE, bool PARTS>
void neuron_step_backward(const BackwardArgs<S>& a, std::int64_t t, const S* zeros, std::int64_t b0,
                          std::int64_t b1) {
  const std::int64_t N = a.n, M = a.batch * a.n;
  const S* mem_prev = t > 0 ? a.mem_hist + (t - 1) * M : (a.mem0 ? a.mem0 : zeros);
  const S* syn_prev = SYNAPTIC ? (t > 0 ? a.syn_hist + (t - 1) * M : (a.syn0 ? a.syn0 : zeros)) : zeros;
  const S* g_spk_up = a.grad_spk ? a.grad_spk + t * a.grad_spk_step : zeros;
  const S* g_mem_up = a.grad_mem ? a.grad_mem + t * a.grad_mem_step : zeros;
  const S* g_syn_up = (SYNAPTIC && a.grad_syn) ? a.grad_syn + t * a.grad_syn_step : zeros;
  const S* trace = a.trace + t * M;
  const S* pre = IMMEDIATE ? a.pre + t * M : zeros;
  S* grad_x = a.grad_x + t * M;
  for (std::int64_t b = b0; b < b1; ++b) {
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
