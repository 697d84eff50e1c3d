// C ABI over csrc/kernels/lif_all_to_all.hpp: the all-to-all recurrent LIF's whole time loop on the
// host, loaded from Python with ctypes (fusedsnn/backends/host/all_to_all.py). A library of its
// own, so it neither depends on nor changes the elementwise host library's ABI or thread pool.
//
// Forward partition, as the IPU maps this neuron: each worker ("tile") owns a contiguous range of
// neurons, i.e. their rows of W (columns of wt), for every batch row and the whole sequence. Per
// step it computes its neurons' recurrent input from all of last step's spikes and updates them
// (compute), then waits at a barrier until every worker has written this step's spikes (the
// exchange + sync). One team of threads per call (torch's OpenMP workers, see run_team); a single
// thread when the work is small. That mapping is used when there are fewer batch rows than
// threads; otherwise each thread owns a share of the (independent) batch rows for all neurons and
// needs no barrier (forward_batches).
//
// Backward: the elementwise adjoint is O(B * N) per step and runs on the calling thread; the
// O(B * N * N) spike-gradient product G_t @ W goes to BLAS's gemm when the host passes one (torch's
// own sgemm_/dgemm_, which threads itself), else to the axpy loop below. The weight gradient is
// a call of its own (fusedsnn_spike_linear_weight_gradient below, with as many outputs as inputs),
// made by the host after the backward.
//
// The same spike products for a Linear layer fed by spikes (fusedsnn.memory's spike_product):
// fusedsnn_spike_linear (out = bias + spikes @ W^T, after checking the input is spikes) and
// fusedsnn_spike_linear_weight_gradient (dW^T from the spikes' bit masks).
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../kernels/lif_all_to_all.hpp"

extern "C" {

// Fortran BLAS gemm (column-major), as exported by the BLAS torch links.
typedef void (*fusedsnn_sgemm_fn)(const char*, const char*, const int*, const int*, const int*, const float*,
                                  const float*, const int*, const float*, const int*, const float*, float*,
                                  const int*);
typedef void (*fusedsnn_dgemm_fn)(const char*, const char*, const int*, const int*, const int*, const double*,
                                  const double*, const int*, const double*, const int*, const double*, double*,
                                  const int*);

// Mirrors fusedsnn/backends/host/all_to_all.py's ctypes Structure: keep the two in the same order.
struct fusedsnn_all_to_all_desc {
  const void* x; const void* wt; const void* w; const void* bias;
  const void* mem0; const void* syn0; const void* spk0;
  const void* beta; const void* thr; const void* alpha;
  void* spk; void* syn; void* mem; void* trace; void* pre;
  void* scratch;  // B * rec_stride + B * N elements, 64-byte aligned
  const void* grad_spk; const void* grad_syn; const void* grad_mem;
  void* grad_x; void* grad_mem0; void* grad_syn0; void* grad_spk0;
  void* part_beta; void* part_thr; void* part_alpha;
  void* gemm;  // fusedsnn_sgemm_fn / fusedsnn_dgemm_fn matching dtype, or null
  std::int64_t steps; std::int64_t batch; std::int64_t n;
  std::int32_t synaptic; std::int32_t reset; std::int32_t immediate; std::int32_t surrogate;
  std::int32_t dtype;  // 0 = float32, 1 = float64
  std::int32_t threads;
  double c0; double c1; double gsf;
  // elements per step of grad_spk / grad_syn / grad_mem: B * N, or 0 for one row broadcast over time
  std::int64_t grad_spk_step; std::int64_t grad_syn_step; std::int64_t grad_mem_step;
  // elements per row of wt and of the scratch's recurrent input (>= n; 0 means n); bias_padded:
  // bias (when given) has wt_stride elements, zero past n
  std::int64_t wt_stride; std::int64_t rec_stride; std::int32_t bias_padded;
};

}  // extern "C"

namespace {

using fusedsnn::dense::BackwardArgs;
using fusedsnn::dense::ForwardArgs;

// The backward's fallback product loop (no BLAS), cloned per ISA (AVX-512, AVX2, baseline) and
// picked at load time.
__attribute__((target_clones("avx512f", "avx2", "default")))
void axpy_f32(float* __restrict__ y, float a, const float* __restrict__ x, std::int64_t n) {
  fusedsnn::dense::axpy<float>(y, a, x, n);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void axpy_f64(double* __restrict__ y, double a, const double* __restrict__ x, std::int64_t n) {
  fusedsnn::dense::axpy<double>(y, a, x, n);
}

inline void axpy(float* y, float a, const float* x, std::int64_t n) { axpy_f32(y, a, x, n); }
inline void axpy(double* y, double a, const double* x, std::int64_t n) { axpy_f64(y, a, x, n); }

// A sense-reversing barrier for one team: spin briefly, then yield (the machine may be shared).
class Barrier {
 public:
  explicit Barrier(int count) : count_(count), waiting_(0), sense_(false) {}
  void wait() {
    const bool my_sense = !sense_.load(std::memory_order_relaxed);
    if (waiting_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      waiting_.store(0, std::memory_order_relaxed);
      sense_.store(my_sense, std::memory_order_release);
      return;
    }
    for (int spin = 0; sense_.load(std::memory_order_acquire) != my_sense; ++spin) {
      if (spin > 256) std::this_thread::yield();
    }
  }

 private:
  const int count_;
  std::atomic<int> waiting_;
  std::atomic<bool> sense_;
};

std::atomic<bool> g_forked_child{false};
void mark_forked_child() { g_forked_child.store(true); }
const bool g_fork_handler_registered = (pthread_atfork(nullptr, nullptr, mark_forked_child) == 0);

#ifdef _OPENMP
void team_barrier() {
#pragma omp barrier
}
#endif

// fn(w, team, sync) on a team of up to `workers` threads, w in [0, team); sync() waits until
// every member has reached it. Built with -fopenmp (as the elementwise host library is) the team
// is torch's own OpenMP pool: libgomp.so.1 resolves to the copy torch loaded, whose workers spin
// for a while after each torch op; a team of separate std::threads then competed with those
// spinning workers for the same two cores (measured: two threads slower than one). The team may
// be smaller than asked (OpenMP may grant fewer threads), so callers split work by `team`.
// Without OpenMP, or in a child forked after the parent used it (libgomp cannot start a region
// there), a team of std::threads with a spinning barrier.
template <typename Fn>
void run_team(std::int64_t workers, Fn&& fn) {
  if (workers <= 1) {
    fn(std::int64_t(0), std::int64_t(1), [] {});
    return;
  }
#ifdef _OPENMP
  if (!g_forked_child.load(std::memory_order_relaxed)) {
#pragma omp parallel num_threads(static_cast<int>(workers))
    fn(static_cast<std::int64_t>(omp_get_thread_num()), static_cast<std::int64_t>(omp_get_num_threads()),
       [] { team_barrier(); });
    return;
  }
#endif
  Barrier barrier(static_cast<int>(workers));
  auto member = [&](std::int64_t w) { fn(w, workers, [&] { barrier.wait(); }); };
  std::vector<std::thread> team;
  team.reserve(workers - 1);
  for (std::int64_t w = 1; w < workers; ++w) team.emplace_back(member, w);
  member(0);
  for (auto& th : team) th.join();
}

// Below this many multiply-adds per step (a dense upper bound, B * N * N) one thread does it all:
// a barrier per step costs more than the work.
constexpr std::int64_t kThreadedWork = std::int64_t(1) << 16;
// Neurons per worker at least: a narrower slice of wt rows wastes the vector width.
constexpr std::int64_t kMinNeuronsPerWorker = 32;
// Columns per share when workers split neurons: one AVX-512 float vector.
constexpr std::int64_t kTileUnit = 16;
// Below this many multiply-adds per step the axpy loop beats a BLAS call.
constexpr std::int64_t kGemmWork = std::int64_t(1) << 14;

// The neuron update per ISA. At the baseline (SSE2) GCC leaves its loop scalar (the comparisons
// turned into 0/1 factors do not if-convert there), with AVX2 or AVX-512 it vectorises; without
// contraction and with IEEE division every version gives the same bits. flatten: the loop and
// the surrogate row are inlined into each clone, so they are compiled for its ISA.
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
__attribute__((target("avx512f"), flatten)) void neuron_step_avx512(const ForwardArgs<S>& a, std::int64_t t,
                                                                    std::int64_t i0, std::int64_t i1) {
  fusedsnn::dense::neuron_step<S, SYNAPTIC, RESET, IMMEDIATE>(a, t, i0, i1);
}

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
__attribute__((target("avx2"), flatten)) void neuron_step_avx2(const ForwardArgs<S>& a, std::int64_t t,
                                                              std::int64_t i0, std::int64_t i1) {
  fusedsnn::dense::neuron_step<S, SYNAPTIC, RESET, IMMEDIATE>(a, t, i0, i1);
}

enum class Isa { kBaseline, kAvx2, kAvx512 };

Isa host_isa() {
  static const Isa isa = __builtin_cpu_supports("avx512f") ? Isa::kAvx512
                         : __builtin_cpu_supports("avx2") ? Isa::kAvx2
                                                          : Isa::kBaseline;
  return isa;
}

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
void neuron_step(Isa isa, const ForwardArgs<S>& a, std::int64_t t, std::int64_t i0, std::int64_t i1) {
  if (isa == Isa::kAvx512) neuron_step_avx512<S, SYNAPTIC, RESET, IMMEDIATE>(a, t, i0, i1);
  else if (isa == Isa::kAvx2) neuron_step_avx2<S, SYNAPTIC, RESET, IMMEDIATE>(a, t, i0, i1);
  else fusedsnn::dense::neuron_step<S, SYNAPTIC, RESET, IMMEDIATE>(a, t, i0, i1);
}

// The forward's product per ISA, each with the vector width of its registers (Pack<S, BYTES>).
template <typename S>
__attribute__((target("avx512f"), flatten)) void recurrent_input_avx512(const ForwardArgs<S>& a, std::int64_t t,
                                                                        std::int64_t i0, std::int64_t i1,
                                                                        std::uint64_t* words, bool unit) {
  fusedsnn::dense::recurrent_input<S, 64>(a, t, i0, i1, words, unit);
}

template <typename S>
__attribute__((target("avx2"), flatten)) void recurrent_input_avx2(const ForwardArgs<S>& a, std::int64_t t,
                                                                  std::int64_t i0, std::int64_t i1,
                                                                  std::uint64_t* words, bool unit) {
  fusedsnn::dense::recurrent_input<S, 32>(a, t, i0, i1, words, unit);
}

template <typename S>
void recurrent_input(Isa isa, const ForwardArgs<S>& a, std::int64_t t, std::int64_t i0, std::int64_t i1,
                     std::uint64_t* words, bool unit) {
  if (isa == Isa::kAvx512) recurrent_input_avx512<S>(a, t, i0, i1, words, unit);
  else if (isa == Isa::kAvx2) recurrent_input_avx2<S>(a, t, i0, i1, words, unit);
  else fusedsnn::dense::recurrent_input<S, 16>(a, t, i0, i1, words, unit);
}

// The weight gradient's product per ISA.
template <typename S>
__attribute__((target("avx512f"), flatten)) void spike_weight_gradient_avx512(
    const S* g, std::int64_t ldg, const std::uint64_t* masks, std::int64_t rows, std::int64_t n, S* dwt,
    std::int64_t ldd, std::int64_t i0, std::int64_t i1, S* buf) {
  fusedsnn::dense::spike_weight_gradient<S, 64>(g, ldg, masks, rows, n, dwt, ldd, i0, i1, buf);
}

template <typename S>
__attribute__((target("avx2"), flatten)) void spike_weight_gradient_avx2(
    const S* g, std::int64_t ldg, const std::uint64_t* masks, std::int64_t rows, std::int64_t n, S* dwt,
    std::int64_t ldd, std::int64_t i0, std::int64_t i1, S* buf) {
  fusedsnn::dense::spike_weight_gradient<S, 32>(g, ldg, masks, rows, n, dwt, ldd, i0, i1, buf);
}

template <typename S>
void spike_weight_gradient(Isa isa, const S* g, std::int64_t ldg, const std::uint64_t* masks, std::int64_t rows,
                           std::int64_t n, S* dwt, std::int64_t ldd, std::int64_t i0, std::int64_t i1, S* buf) {
  if (isa == Isa::kAvx512) spike_weight_gradient_avx512<S>(g, ldg, masks, rows, n, dwt, ldd, i0, i1, buf);
  else if (isa == Isa::kAvx2) spike_weight_gradient_avx2<S>(g, ldg, masks, rows, n, dwt, ldd, i0, i1, buf);
  else fusedsnn::dense::spike_weight_gradient<S, 16>(g, ldg, masks, rows, n, dwt, ldd, i0, i1, buf);
}

// The spike-matrix product of a Linear layer fed by spikes, per ISA.
template <typename S>
__attribute__((target("avx512f"), flatten)) void spike_product_avx512(
    const S* wt, std::int64_t ldw, const S* bias, bool padded, const S* spikes, const std::uint64_t* words,
    std::int64_t rows, std::int64_t n, S* out, std::int64_t ldo, std::int64_t i1, bool unit) {
  fusedsnn::dense::spike_product<S, 64>(wt, ldw, bias, padded, spikes, words, rows, n, out, ldo, 0, i1, unit);
}

template <typename S>
__attribute__((target("avx2"), flatten)) void spike_product_avx2(
    const S* wt, std::int64_t ldw, const S* bias, bool padded, const S* spikes, const std::uint64_t* words,
    std::int64_t rows, std::int64_t n, S* out, std::int64_t ldo, std::int64_t i1, bool unit) {
  fusedsnn::dense::spike_product<S, 32>(wt, ldw, bias, padded, spikes, words, rows, n, out, ldo, 0, i1, unit);
}

// out = bias + spikes @ wt, words: spike_words of spikes.
template <typename S>
void spike_product(Isa isa, const S* wt, std::int64_t ldw, const S* bias, bool padded, const S* spikes,
                   const std::uint64_t* words, std::int64_t rows, std::int64_t n, S* out, std::int64_t ldo,
                   std::int64_t i1, bool unit) {
  if (isa == Isa::kAvx512) spike_product_avx512<S>(wt, ldw, bias, padded, spikes, words, rows, n, out, ldo, i1, unit);
  else if (isa == Isa::kAvx2) spike_product_avx2<S>(wt, ldw, bias, padded, spikes, words, rows, n, out, ldo, i1, unit);
  else fusedsnn::dense::spike_product<S, 16>(wt, ldw, bias, padded, spikes, words, rows, n, out, ldo, 0, i1, unit);
}

// spike_words_checked per ISA (vectorised compares).
template <typename S, typename Bits>
__attribute__((target("avx512f"), flatten)) std::int64_t spike_words_checked_avx512(const S* x, std::int64_t rows,
                                                                                    std::int64_t n, Bits c_bits,
                                                                                    std::uint64_t* words) {
  return fusedsnn::dense::spike_words_checked<S>(x, rows, n, c_bits, words);
}

template <typename S, typename Bits>
__attribute__((target("avx2"), flatten)) std::int64_t spike_words_checked_avx2(const S* x, std::int64_t rows,
                                                                              std::int64_t n, Bits c_bits,
                                                                              std::uint64_t* words) {
  return fusedsnn::dense::spike_words_checked<S>(x, rows, n, c_bits, words);
}

template <typename S, typename Bits>
std::int64_t spike_words_checked(Isa isa, const S* x, std::int64_t rows, std::int64_t n, Bits c_bits,
                                 std::uint64_t* words) {
  if (isa == Isa::kAvx512) return spike_words_checked_avx512<S, Bits>(x, rows, n, c_bits, words);
  if (isa == Isa::kAvx2) return spike_words_checked_avx2<S, Bits>(x, rows, n, c_bits, words);
  return fusedsnn::dense::spike_words_checked<S>(x, rows, n, c_bits, words);
}

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
void forward_loop(const ForwardArgs<S>& a, int threads) {
  const std::int64_t work = a.batch * a.n * a.n;
  std::int64_t workers = work < kThreadedWork ? 1 : std::min<std::int64_t>(threads, a.n / kMinNeuronsPerWorker);
  workers = std::max<std::int64_t>(1, workers);
  const Isa isa = host_isa();
  run_team(workers, [&](std::int64_t w, std::int64_t team, auto&& sync) {
    // whole vectors of neurons per tile, so each tile's columns start 64-byte aligned
    std::int64_t u0, u1;
    fusedsnn::worker_range((a.n + kTileUnit - 1) / kTileUnit, static_cast<unsigned>(w), static_cast<unsigned>(team),
                           &u0, &u1);
    const std::int64_t i0 = std::min(a.n, u0 * kTileUnit), i1 = std::min(a.n, u1 * kTileUnit);
    // Each tile indexes last step's spikes itself (B * N compares, against B * N * width
    // adds): the "exchange" is every tile reading the shared spike row.
    std::vector<std::uint64_t> words(a.batch * ((a.n + 63) / 64));
    for (std::int64_t t = 0; t < a.steps; ++t) {
      // the forward's own spikes are 0 or gsf: with gsf == 1 the product needs no multiply
      recurrent_input<S>(isa, a, t, i0, i1, words.data(), t > 0 && a.gsf == S(1));
      neuron_step<S, SYNAPTIC, RESET, IMMEDIATE>(isa, a, t, i0, i1);
      if (team > 1) sync();  // step t's spikes of every tile are written before any tile reads them
    }
  });
}

// Batch rows are independent (the recurrence mixes neurons, not rows): with at least as many rows
// as workers, each worker runs the whole loop over all neurons for its share of the rows, with no
// barrier per step and no spike list built twice (measured: the neuron-tile team above was slower
// on two threads than one thread alone once the neuron update vectorised). Fewer rows than
// workers keep the neuron tiles.
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
void forward_batches(const ForwardArgs<S>& a, int threads) {
  const std::int64_t work = a.batch * a.n * a.n;
  const std::int64_t workers = work < kThreadedWork ? 1 : std::min<std::int64_t>(threads, a.batch);
  if (workers <= 1 || a.batch < threads) {
    forward_loop<S, SYNAPTIC, RESET, IMMEDIATE>(a, workers <= 1 ? 1 : threads);
    return;
  }
  const std::int64_t M = a.batch * a.n;
  run_team(workers, [&](std::int64_t w, std::int64_t team, auto&&) {
    std::int64_t b0, b1;
    fusedsnn::worker_range(a.batch, static_cast<unsigned>(w), static_cast<unsigned>(team), &b0, &b1);
    const std::int64_t off = b0 * a.n;
    auto at = [off](auto* p) { return p ? p + off : p; };
    ForwardArgs<S> s = a;
    s.x = at(a.x); s.mem0 = at(a.mem0); s.syn0 = at(a.syn0); s.spk0 = at(a.spk0);
    s.spk = at(a.spk); s.syn = at(a.syn); s.mem = at(a.mem); s.trace = at(a.trace); s.pre = at(a.pre);
    s.rec = a.rec + b0 * (a.rec_stride ? a.rec_stride : a.n);
    s.h = at(a.h);
    s.batch = b1 - b0;
    s.stride = M;
    forward_loop<S, SYNAPTIC, RESET, IMMEDIATE>(s, 1);
  });
}

inline void gemm_call(void* fn, const int* m, const int* n, const int* k, const float* w, const float* g, float* c) {
  const float one = 1.0f, zero = 0.0f;
  reinterpret_cast<fusedsnn_sgemm_fn>(fn)("N", "N", m, n, k, &one, w, m, g, k, &zero, c, m);
}

inline void gemm_call(void* fn, const int* m, const int* n, const int* k, const double* w, const double* g,
                      double* c) {
  const double one = 1.0, zero = 0.0;
  reinterpret_cast<fusedsnn_dgemm_fn>(fn)("N", "N", m, n, k, &one, w, m, g, k, &zero, c, m);
}

// carry[B, N] = G[B, N] @ W[N, N] (all row-major). In column-major terms that is
// carry^T = W^T G^T with W^T and G^T being the row-major arrays as they are: gemm("N", "N").
template <typename S>
void spike_gradient(const BackwardArgs<S>& a, const S* g, S* carry, void* gemm) {
  const std::int64_t N = a.n;
  if (gemm && a.batch * N * N >= kGemmWork) {
    const int m = static_cast<int>(N), n = static_cast<int>(a.batch), k = static_cast<int>(N);
    gemm_call(gemm, &m, &n, &k, a.w, g, carry);
    return;
  }
  for (std::int64_t b = 0; b < a.batch; ++b) {
    S* row = carry + b * N;
    std::fill(row, row + N, S(0));
    for (std::int64_t i = 0; i < N; ++i) axpy(row, g[b * N + i], a.w + i * N, N);
  }
}

// The backward's elementwise adjoint per ISA, as neuron_step: vectorised clones with the same
// operations in the same order (no contraction, IEEE division), so the same bits.
template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE, bool PARTS>
__attribute__((target("avx512f"), flatten)) void neuron_step_backward_avx512(const BackwardArgs<S>& a, std::int64_t t,
                                                                             const S* zeros, std::int64_t b0,
                                                                             std::int64_t b1) {
  fusedsnn::dense::neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, PARTS>(a, t, zeros, b0, b1);
}

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE, bool PARTS>
__attribute__((target("avx2"), flatten)) void neuron_step_backward_avx2(const BackwardArgs<S>& a, std::int64_t t,
                                                                       const S* zeros, std::int64_t b0,
                                                                       std::int64_t b1) {
  fusedsnn::dense::neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, PARTS>(a, t, zeros, b0, b1);
}

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE, bool PARTS>
void neuron_step_backward(Isa isa, const BackwardArgs<S>& a, std::int64_t t, const S* zeros, std::int64_t b0,
                          std::int64_t b1) {
  if (isa == Isa::kAvx512) neuron_step_backward_avx512<S, SYNAPTIC, RESET, IMMEDIATE, PARTS>(a, t, zeros, b0, b1);
  else if (isa == Isa::kAvx2) neuron_step_backward_avx2<S, SYNAPTIC, RESET, IMMEDIATE, PARTS>(a, t, zeros, b0, b1);
  else fusedsnn::dense::neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, PARTS>(a, t, zeros, b0, b1);
}

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
void backward_loop(const BackwardArgs<S>& a, void* gemm) {
  const std::int64_t M = a.batch * a.n;
  std::fill(a.grad_mem0, a.grad_mem0 + M, S(0));
  std::fill(a.grad_syn0, a.grad_syn0 + M, S(0));
  std::fill(a.grad_spk0, a.grad_spk0 + M, S(0));
  for (S* part : {a.part_beta, a.part_thr, a.part_alpha}) {
    if (part) std::fill(part, part + M, S(0));
  }
  const std::vector<S> zeros(static_cast<std::size_t>(M), S(0));
  const bool parts = a.part_beta || a.part_thr || a.part_alpha;
  // With any parameter sum needed, the unneeded ones accumulate into scratch (no per-element test).
  std::vector<S> scratch;
  BackwardArgs<S> b = a;
  if (parts) {
    const int missing = !a.part_beta + !a.part_thr + !a.part_alpha;
    scratch.assign(static_cast<std::size_t>(missing * M), S(0));
    S* next = scratch.data();
    for (S** part : {&b.part_beta, &b.part_thr, &b.part_alpha}) {
      if (!*part) {
        *part = next;
        next += M;
      }
    }
  }
  const Isa isa = host_isa();
  // The adjoint (O(B * N) per step) stays on the calling thread: splitting it by batch rows
  // added a second parallel region per step beside BLAS's, a sync point that costs a scheduler
  // time slice whenever the cores are shared with other work, for at most a millisecond or two
  // per call saved on a quiet machine at T=25, B=128, N=1000.
  for (std::int64_t t = a.steps - 1; t >= 0; --t) {
    if (parts) neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, true>(isa, b, t, zeros.data(), 0, a.batch);
    else neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, false>(isa, b, t, zeros.data(), 0, a.batch);
    spike_gradient<S>(a, a.grad_x + t * M, a.grad_spk0, gemm);
  }
}

// Run-time flags -> template: fn(synaptic, reset, immediate) as integral constants.
template <typename Fn>
void with_variant(bool synaptic, int reset, bool immediate, Fn&& fn) {
  using fusedsnn::kNone;
  using fusedsnn::kSubtract;
  using fusedsnn::kZero;
  auto by_reset = [&](auto syn) {
    if (reset == kSubtract) {
      if (immediate) fn(syn, std::integral_constant<int, kSubtract>{}, std::true_type{});
      else fn(syn, std::integral_constant<int, kSubtract>{}, std::false_type{});
    } else if (reset == kZero) {
      if (immediate) fn(syn, std::integral_constant<int, kZero>{}, std::true_type{});
      else fn(syn, std::integral_constant<int, kZero>{}, std::false_type{});
    } else {
      fn(syn, std::integral_constant<int, kNone>{}, std::false_type{});
    }
  };
  if (synaptic) by_reset(std::true_type{});
  else by_reset(std::false_type{});
}

template <typename S>
void forward(const fusedsnn_all_to_all_desc& d) {
  ForwardArgs<S> a;
  a.x = static_cast<const S*>(d.x); a.wt = static_cast<const S*>(d.wt); 
  a.bias = static_cast<const S*>(d.bias);
  a.mem0 = static_cast<const S*>(d.mem0); a.syn0 = static_cast<const S*>(d.syn0);
  a.spk0 = static_cast<const S*>(d.spk0);
  a.beta = static_cast<const S*>(d.beta); a.thr = static_cast<const S*>(d.thr);
  a.alpha = static_cast<const S*>(d.alpha);
  a.spk = static_cast<S*>(d.spk); a.syn = static_cast<S*>(d.syn); a.mem = static_cast<S*>(d.mem);
  a.trace = static_cast<S*>(d.trace); a.pre = static_cast<S*>(d.pre);
  a.wt_stride = d.wt_stride ? d.wt_stride : d.n;
  a.rec_stride = d.rec_stride ? d.rec_stride : d.n;
  a.bias_padded = d.bias_padded != 0 || !d.bias;
  a.rec = static_cast<S*>(d.scratch); a.h = a.rec + d.batch * a.rec_stride;
  a.steps = d.steps; a.batch = d.batch; a.n = d.n;
  a.reset = d.reset; a.immediate = d.immediate != 0; a.surrogate = d.surrogate;
  a.c0 = static_cast<S>(d.c0); a.c1 = static_cast<S>(d.c1); a.gsf = static_cast<S>(d.gsf);
  const std::vector<S> zeros(static_cast<std::size_t>(d.n), S(0));
  a.zeros = zeros.data();
  with_variant(d.synaptic != 0, d.reset, a.immediate, [&](auto syn, auto reset, auto immediate) {
    forward_batches<S, decltype(syn)::value, decltype(reset)::value, decltype(immediate)::value>(a, d.threads);
  });
}

template <typename S>
void backward(const fusedsnn_all_to_all_desc& d) {
  BackwardArgs<S> a;
  a.grad_spk = static_cast<const S*>(d.grad_spk); a.grad_syn = static_cast<const S*>(d.grad_syn);
  a.grad_mem = static_cast<const S*>(d.grad_mem);
  a.grad_spk_step = d.grad_spk_step; a.grad_syn_step = d.grad_syn_step; a.grad_mem_step = d.grad_mem_step;
  a.trace = static_cast<const S*>(d.trace); a.mem_hist = static_cast<const S*>(d.mem);
  a.syn_hist = static_cast<const S*>(d.syn); a.pre = static_cast<const S*>(d.pre);
  a.mem0 = static_cast<const S*>(d.mem0); a.syn0 = static_cast<const S*>(d.syn0);
  a.w = static_cast<const S*>(d.w);
  a.beta = static_cast<const S*>(d.beta); a.thr = static_cast<const S*>(d.thr);
  a.alpha = static_cast<const S*>(d.alpha);
  a.grad_x = static_cast<S*>(d.grad_x); a.grad_mem0 = static_cast<S*>(d.grad_mem0);
  a.grad_syn0 = static_cast<S*>(d.grad_syn0); a.grad_spk0 = static_cast<S*>(d.grad_spk0);
  a.part_beta = static_cast<S*>(d.part_beta); a.part_thr = static_cast<S*>(d.part_thr);
  a.part_alpha = static_cast<S*>(d.part_alpha);
  a.steps = d.steps; a.batch = d.batch; a.n = d.n;
  a.reset = d.reset; a.immediate = d.immediate != 0;
  a.gsf = static_cast<S>(d.gsf);
  with_variant(d.synaptic != 0, d.reset, a.immediate, [&](auto syn, auto reset, auto immediate) {
    backward_loop<S, decltype(syn)::value, decltype(reset)::value, decltype(immediate)::value>(a, d.gemm);
  });
}

// dwt[j, i] = sum_r g[r, i] * (spikes[r, j] != 0), r < rows, j < n, i < n_out: the weight gradient
// dW^T for 0/1 spikes [rows, n] and g [rows, ldg] (see spike_weight_gradient), rows of dwt ldd
// elements apart. Each worker first builds the masks of a share of the row chunks, then (after a
// barrier) sums a share of the columns i (whole vectors) for every j, so no two workers write the
// same element and the sum's order does not depend on the split.
template <typename S>
void weight_gradient(const S* g, std::int64_t ldg, const S* spikes, std::int64_t rows, std::int64_t n,
                     std::int64_t n_out, S* dwt, std::int64_t ldd, int threads) {
  const std::int64_t chunks = (rows + 63) / 64;
  std::vector<std::uint64_t> masks(static_cast<std::size_t>(std::max<std::int64_t>(chunks, 1) * n));
  const std::int64_t units = (n_out + kTileUnit - 1) / kTileUnit;
  std::int64_t workers = rows * n * n_out < kThreadedWork ? 1 : std::min<std::int64_t>(threads, units);
  workers = std::max<std::int64_t>(1, workers);
  const Isa isa = host_isa();
  run_team(workers, [&](std::int64_t w, std::int64_t team, auto&& sync) {
    std::int64_t k0, k1, u0, u1;
    fusedsnn::worker_range(chunks, static_cast<unsigned>(w), static_cast<unsigned>(team), &k0, &k1);
    fusedsnn::dense::spike_masks(spikes, rows, n, k0, k1, masks.data());
    fusedsnn::worker_range(units, static_cast<unsigned>(w), static_cast<unsigned>(team), &u0, &u1);
    const std::int64_t i0 = std::min(n_out, u0 * kTileUnit), i1 = std::min(n_out, u1 * kTileUnit);
    // this worker's copy of a row chunk: 64 rows of chunk_row(its columns), 64-byte aligned
    std::vector<S> chunk(static_cast<std::size_t>(64 * fusedsnn::dense::chunk_row<S>(i1 - i0) + 64 / sizeof(S)));
    S* buf = chunk.data();
    while (reinterpret_cast<std::uintptr_t>(buf) % 64 != 0) ++buf;
    if (team > 1) sync();  // every chunk's masks are written before any worker reads them
    spike_weight_gradient<S>(isa, g, ldg, masks.data(), rows, n, dwt, ldd, i0, i1, buf);
  });
}

// out [rows, ldo] = bias + spikes [rows, n] @ wt [n, ldw] (columns < n_out) for spikes whose
// elements are all +0.0 or one finite non-zero value c (bitwise; written to *value, 0 when every
// element is +0.0). Each worker builds the spike words of a share of the rows, checking every
// element; after one barrier (the count decides) it multiplies the same rows: no two workers
// write the same element and the result does not depend on the split. *nonzero receives the
// count of non-zero elements (-1 when x is not spikes). Returns 0 (done), 2 (not spikes: a third
// value, -0.0, NaN or infinity; or more than max_rate of the elements non-zero, where the dense
// product is faster; or c is neither 0 nor 1 while unit_only is set; a negative max_rate only
// checks and counts); out is written only for 0.
template <typename S>
int spike_linear(const S* spikes, std::int64_t rows, std::int64_t n, const S* wt, std::int64_t ldw, const S* bias,
                 bool padded, S* out, std::int64_t ldo, std::int64_t n_out, double max_rate, bool unit_only,
                 int threads, S* value, std::int64_t* nonzero) {
  using Bits = typename std::conditional<sizeof(S) == 4, std::uint32_t, std::uint64_t>::type;
  const std::int64_t count = rows * n;
  Bits c_bits = 0;
  for (std::int64_t e = 0; e < count && c_bits == 0; ++e) std::memcpy(&c_bits, spikes + e, sizeof c_bits);
  S c;
  std::memcpy(&c, &c_bits, sizeof c);
  *nonzero = -1;
  if (c_bits != 0 && (!(c == c) || c == S(0) || c - c != S(0))) return 2;  // NaN, -0.0, infinity
  *value = c;
  const bool refused = max_rate < 0 || (unit_only && c_bits != 0 && c != S(1));
  const std::int64_t nw = (n + 63) / 64;
  std::vector<std::uint64_t> words(static_cast<std::size_t>(std::max<std::int64_t>(rows * nw, 1)));
  const std::int64_t workers =
      rows * n * n_out < kThreadedWork ? 1 : std::max<std::int64_t>(1, std::min<std::int64_t>(threads, rows));
  const Isa isa = host_isa();
  const bool unit = c == S(1);
  std::vector<std::int64_t> ones(static_cast<std::size_t>(workers), 0);
  std::atomic<int> status{0};
  run_team(workers, [&](std::int64_t w, std::int64_t team, auto&& sync) {
    std::int64_t r0, r1;
    fusedsnn::worker_range(rows, static_cast<unsigned>(w), static_cast<unsigned>(team), &r0, &r1);
    ones[w] = spike_words_checked<S, Bits>(isa, spikes + r0 * n, r1 - r0, n, c_bits, words.data() + r0 * nw);
    if (team > 1) sync();  // every share is checked and counted before any product
    std::int64_t total = 0;
    for (std::int64_t k = 0; k < team; ++k) {
      if (ones[k] < 0) total = count + 1;
      else if (total <= count) total += ones[k];
    }
    if (w == 0) *nonzero = total > count ? -1 : total;
    if (refused || total > count || static_cast<double>(total) > max_rate * static_cast<double>(count)) {
      status.store(2, std::memory_order_relaxed);
      return;
    }
    spike_product<S>(isa, wt, ldw, bias, padded, spikes + r0 * n, words.data() + r0 * nw, r1 - r0, n, out + r0 * ldo,
                     ldo, n_out, unit);
  });
  return status.load();
}

bool valid(const fusedsnn_all_to_all_desc* d) {
  return d && d->dtype >= 0 && d->dtype <= 1 && d->n >= 1 && d->batch >= 1 && d->steps >= 1 &&
         d->n <= 2147483647 && d->batch <= 2147483647 && (d->wt_stride == 0 || d->wt_stride >= d->n) &&
         (d->rec_stride == 0 || d->rec_stride >= d->n);
}

}  // namespace

extern "C" {

// ABI version: bump when fusedsnn_all_to_all_desc changes, so a stale library is not loaded.
int fusedsnn_all_to_all_abi_version() { return 6; }

int fusedsnn_all_to_all_forward(const fusedsnn_all_to_all_desc* d) {
  if (!valid(d)) return 1;
  if (d->dtype == 0) forward<float>(*d); else forward<double>(*d);
  return 0;
}

int fusedsnn_all_to_all_backward(const fusedsnn_all_to_all_desc* d) {
  if (!valid(d) || !d->grad_mem0 || !d->grad_syn0 || !d->grad_spk0) return 1;
  const std::int64_t M = d->batch * d->n;
  for (std::int64_t step : {d->grad_spk_step, d->grad_syn_step, d->grad_mem_step}) {
    if (step != 0 && step != M) return 1;
  }
  if (d->dtype == 0) backward<float>(*d); else backward<double>(*d);
  return 0;
}

// A Linear layer fed by spikes x [rows, n_in] (row-major): out [rows, n_out] = bias + x @ wt,
// wt [n_in, ldw] = W^T, summed bias first, then the spiking inputs in ascending order. Only when
// every element of x is +0.0 or one finite non-zero value c (written to *value; 0 when x is all
// zeros), at most max_rate of them are non-zero and, with unit_only != 0, c is 1 (or x all
// zeros); else out is not written. *nonzero receives the count of non-zero elements of x, or -1
// when x is not spikes, whatever the outcome. A negative max_rate only checks and counts (wt
// and out may then be null). bias: null, or [ldw] zero-padded past n_out when padded != 0 (else
// [n_out]). Returns 0 (done), 2 (x is not spikes, denser than max_rate, graded under unit_only,
// or only counted: use a dense product) or 1 (invalid arguments).
int fusedsnn_spike_linear(const void* x, std::int64_t rows, std::int64_t n_in, const void* wt, std::int64_t ldw,
                          const void* bias, std::int32_t padded, void* out, std::int64_t n_out, double max_rate,
                          std::int32_t unit_only, std::int32_t dtype, std::int32_t threads, void* value,
                          std::int64_t* nonzero) {
  const bool count_only = max_rate < 0;
  if (!x || (!count_only && (!wt || !out)) || !value || !nonzero || rows < 0 || n_in < 1 || n_out < 1 ||
      ldw < n_out || dtype < 0 || dtype > 1) {
    return 1;
  }
  if (rows == 0) {
    *nonzero = 0;
    return count_only ? 2 : 0;
  }
  if (dtype == 0) {
    return spike_linear<float>(static_cast<const float*>(x), rows, n_in, static_cast<const float*>(wt), ldw,
                               static_cast<const float*>(bias), padded != 0, static_cast<float*>(out), n_out, n_out,
                               max_rate, unit_only != 0, threads, static_cast<float*>(value), nonzero);
  }
  return spike_linear<double>(static_cast<const double*>(x), rows, n_in, static_cast<const double*>(wt), ldw,
                                static_cast<const double*>(bias), padded != 0, static_cast<double*>(out), n_out,
                                n_out, max_rate, unit_only != 0, threads, static_cast<double*>(value), nonzero);
}

// dwt [n_in, ldd] = sum_r g[r, :n_out]^T (x[r, :] != 0) for a Linear layer's input x [rows, n_in]
// (0 or one value; the caller scales by it) and output gradient g [rows, n_out]: dW^T, rows
// summed in ascending order. Returns 0, or 1 for invalid arguments.
int fusedsnn_spike_linear_weight_gradient(const void* g, const void* x, std::int64_t rows, std::int64_t n_in,
                                          std::int64_t n_out, void* dwt, std::int64_t ldd, std::int32_t dtype,
                                          std::int32_t threads) {
  if (!g || !x || !dwt || rows < 0 || n_in < 1 || n_out < 1 || ldd < n_out || dtype < 0 || dtype > 1) return 1;
  if (dtype == 0) {
    weight_gradient<float>(static_cast<const float*>(g), n_out, static_cast<const float*>(x), rows, n_in, n_out,
                           static_cast<float*>(dwt), ldd, threads);
  } else {
    weight_gradient<double>(static_cast<const double*>(g), n_out, static_cast<const double*>(x), rows, n_in, n_out,
                            static_cast<double*>(dwt), ldd, threads);
  }
  return 0;
}

}  // extern "C"
