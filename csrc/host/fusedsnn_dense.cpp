// C ABI over csrc/kernels/lif_dense.hpp: the all-to-all recurrent LIF's whole time loop on the
// host, loaded from Python with ctypes (fusedsnn/kernels/lif_dense_host.py). A library of its
// own, so it neither depends on nor changes the elementwise host library's ABI or thread pool.
//
// Forward partition, as the IPU maps this neuron: each worker ("tile") owns a contiguous range of
// neurons, i.e. their rows of W (columns of wt), for every batch row and the whole sequence. Per
// step it computes its neurons' recurrent input from all of last step's spikes and updates them
// (compute), then waits at a barrier until every worker has written this step's spikes (the
// exchange + sync). One team of threads per call; a single thread when the work is small. That
// mapping is used when there are fewer batch rows than threads; otherwise each thread owns a share
// of the (independent) batch rows for all neurons and needs no barrier (forward_batches).
//
// Backward: the elementwise adjoint is O(B * N) per step and runs on the calling thread; the
// O(B * N * N) spike-gradient product G_t @ W goes to BLAS's gemm when the host passes one (torch's
// own sgemm_/dgemm_, which threads itself), else to the axpy loop below.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "../kernels/lif_dense.hpp"

extern "C" {

// Fortran BLAS gemm (column-major), as exported by the BLAS torch links.
typedef void (*fusedsnn_sgemm_fn)(const char*, const char*, const int*, const int*, const int*, const float*,
                                  const float*, const int*, const float*, const int*, const float*, float*,
                                  const int*);
typedef void (*fusedsnn_dgemm_fn)(const char*, const char*, const int*, const int*, const int*, const double*,
                                  const double*, const int*, const double*, const int*, const double*, double*,
                                  const int*);

// Mirrors fusedsnn/kernels/lif_dense_host.py's ctypes Structure: keep the two in the same order.
struct fusedsnn_dense_desc {
  const void* x; const void* wt; const void* w; const void* bias;
  const void* mem0; const void* syn0; const void* spk0;
  const void* beta; const void* thr; const void* alpha;
  void* spk; void* syn; void* mem; void* trace; void* pre; void* scratch;  // scratch: 2 * B * N
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
};

}  // extern "C"

namespace {

using fusedsnn::dense::BackwardArgs;
using fusedsnn::dense::ForwardArgs;

// The two product loops, cloned per ISA (AVX-512, AVX2, baseline) and picked at load time.
__attribute__((target_clones("avx512f", "avx2", "default")))
void axpy_f32(float* __restrict__ y, float a, const float* __restrict__ x, std::int64_t n) {
  fusedsnn::dense::axpy<float>(y, a, x, n);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void axpy_f64(double* __restrict__ y, double a, const double* __restrict__ x, std::int64_t n) {
  fusedsnn::dense::axpy<double>(y, a, x, n);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void axpy4_f32(float* __restrict__ y, float a0, float a1, float a2, float a3, const float* __restrict__ x0,
               const float* __restrict__ x1, const float* __restrict__ x2, const float* __restrict__ x3,
               std::int64_t n) {
  fusedsnn::dense::axpy4<float>(y, a0, a1, a2, a3, x0, x1, x2, x3, n);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void axpy4_f64(double* __restrict__ y, double a0, double a1, double a2, double a3, const double* __restrict__ x0,
               const double* __restrict__ x1, const double* __restrict__ x2, const double* __restrict__ x3,
               std::int64_t n) {
  fusedsnn::dense::axpy4<double>(y, a0, a1, a2, a3, x0, x1, x2, x3, n);
}

inline void axpy4(float* y, float a0, float a1, float a2, float a3, const float* x0, const float* x1,
                  const float* x2, const float* x3, std::int64_t n) {
  axpy4_f32(y, a0, a1, a2, a3, x0, x1, x2, x3, n);
}
inline void axpy4(double* y, double a0, double a1, double a2, double a3, const double* x0, const double* x1,
                  const double* x2, const double* x3, std::int64_t n) {
  axpy4_f64(y, a0, a1, a2, a3, x0, x1, x2, x3, n);
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

// Below this many multiply-adds per step (a dense upper bound, B * N * N) one thread does it all:
// a barrier per step costs more than the work.
constexpr std::int64_t kThreadedWork = std::int64_t(1) << 16;
// Neurons per worker at least: a narrower slice of wt rows wastes the vector width.
constexpr std::int64_t kMinNeuronsPerWorker = 32;
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

template <typename S, bool SYNAPTIC, int RESET, bool IMMEDIATE>
void forward_loop(const ForwardArgs<S>& a, int threads) {
  auto add = [](S* y, S s, const S* x, std::int64_t n) { axpy(y, s, x, n); };
  auto add4 = [](S* y, S s0, S s1, S s2, S s3, const S* x0, const S* x1, const S* x2, const S* x3,
                 std::int64_t n) { axpy4(y, s0, s1, s2, s3, x0, x1, x2, x3, n); };
  const std::int64_t work = a.batch * a.n * a.n;
  std::int64_t workers = work < kThreadedWork ? 1 : std::min<std::int64_t>(threads, a.n / kMinNeuronsPerWorker);
  workers = std::max<std::int64_t>(1, workers);
  Barrier barrier(static_cast<int>(workers));
  const Isa isa = host_isa();
  auto tile = [&](std::int64_t w) {
    std::int64_t i0, i1;
    fusedsnn::worker_range(a.n, static_cast<unsigned>(w), static_cast<unsigned>(workers), &i0, &i1);
    // Each tile indexes last step's spikes itself (B * N compares, against B * N * width
    // multiply-adds): the "exchange" is every tile reading the shared spike row.
    std::vector<std::int32_t> list(a.batch * a.n), count(a.batch);
    for (std::int64_t t = 0; t < a.steps; ++t) {
      const S* prev = t > 0 ? a.spk + (t - 1) * (a.stride ? a.stride : a.batch * a.n) : a.spk0;
      if (prev) fusedsnn::dense::spiking_inputs(prev, a.batch, a.n, list.data(), count.data());
      fusedsnn::dense::recurrent_input<S>(a, t, i0, i1, list.data(), count.data(), add, add4);
      neuron_step<S, SYNAPTIC, RESET, IMMEDIATE>(isa, a, t, i0, i1);
      if (workers > 1) barrier.wait();  // step t's spikes of every tile are written before any tile reads them
    }
  };
  if (workers == 1) {
    tile(0);
    return;
  }
  std::vector<std::thread> team;
  team.reserve(workers - 1);
  for (std::int64_t w = 1; w < workers; ++w) team.emplace_back(tile, w);
  tile(0);
  for (auto& th : team) th.join();
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
  auto share = [&](std::int64_t w) {
    std::int64_t b0, b1;
    fusedsnn::worker_range(a.batch, static_cast<unsigned>(w), static_cast<unsigned>(workers), &b0, &b1);
    const std::int64_t off = b0 * a.n;
    auto at = [off](auto* p) { return p ? p + off : p; };
    ForwardArgs<S> s = a;
    s.x = at(a.x); s.mem0 = at(a.mem0); s.syn0 = at(a.syn0); s.spk0 = at(a.spk0);
    s.spk = at(a.spk); s.syn = at(a.syn); s.mem = at(a.mem); s.trace = at(a.trace); s.pre = at(a.pre);
    s.rec = at(a.rec); s.h = at(a.h);
    s.batch = b1 - b0;
    s.stride = M;
    forward_loop<S, SYNAPTIC, RESET, IMMEDIATE>(s, 1);
  };
  std::vector<std::thread> team;
  for (std::int64_t w = 1; w < workers; ++w) team.emplace_back(share, w);
  share(0);
  for (auto& th : team) th.join();
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
  for (std::int64_t t = a.steps - 1; t >= 0; --t) {
    if (parts) fusedsnn::dense::neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, true>(b, t, zeros.data());
    else fusedsnn::dense::neuron_step_backward<S, SYNAPTIC, RESET, IMMEDIATE, false>(b, t, zeros.data());
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
void forward(const fusedsnn_dense_desc& d) {
  ForwardArgs<S> a;
  a.x = static_cast<const S*>(d.x); a.wt = static_cast<const S*>(d.wt); 
  a.bias = static_cast<const S*>(d.bias);
  a.mem0 = static_cast<const S*>(d.mem0); a.syn0 = static_cast<const S*>(d.syn0);
  a.spk0 = static_cast<const S*>(d.spk0);
  a.beta = static_cast<const S*>(d.beta); a.thr = static_cast<const S*>(d.thr);
  a.alpha = static_cast<const S*>(d.alpha);
  a.spk = static_cast<S*>(d.spk); a.syn = static_cast<S*>(d.syn); a.mem = static_cast<S*>(d.mem);
  a.trace = static_cast<S*>(d.trace); a.pre = static_cast<S*>(d.pre);
  a.rec = static_cast<S*>(d.scratch); a.h = a.rec + d.batch * d.n;
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
void backward(const fusedsnn_dense_desc& d) {
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

bool valid(const fusedsnn_dense_desc* d) {
  return d && d->dtype >= 0 && d->dtype <= 1 && d->n >= 1 && d->batch >= 1 && d->steps >= 1 &&
         d->n <= 2147483647 && d->batch <= 2147483647;
}

}  // namespace

extern "C" {

// ABI version: bump when fusedsnn_dense_desc changes, so a stale library is not loaded.
int fusedsnn_dense_abi_version() { return 3; }

int fusedsnn_dense_forward(const fusedsnn_dense_desc* d) {
  if (!valid(d)) return 1;
  if (d->dtype == 0) forward<float>(*d); else forward<double>(*d);
  return 0;
}

int fusedsnn_dense_backward(const fusedsnn_dense_desc* d) {
  if (!valid(d) || !d->grad_mem0 || !d->grad_syn0 || !d->grad_spk0) return 1;
  const std::int64_t M = d->batch * d->n;
  for (std::int64_t step : {d->grad_spk_step, d->grad_syn_step, d->grad_mem_step}) {
    if (step != 0 && step != M) return 1;
  }
  if (d->dtype == 0) backward<float>(*d); else backward<double>(*d);
  return 0;
}

}  // extern "C"
