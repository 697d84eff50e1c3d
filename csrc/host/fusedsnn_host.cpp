// C ABI over csrc/kernels/lif.hpp for the host (CPU) backend, loaded from Python with ctypes.
//
// Neurons are partitioned exactly as the IPU op maps them (csrc/popart): contiguous ranges of
// whole neurons per tile, then per worker within a tile (worker_range). Each (tile, worker) piece
// is a task; tasks run on `threads` CPU threads of a persistent pool (the caller is one of them).
// The partition is a parameter, so a study can emulate an IPU's 1472 tiles x 6 workers or match
// the CPU's cores.
//
// Built with only a C++ compiler (no Poplar, no torch headers): see setup.py.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

// Runtime ISA dispatch for the time loops (see lif.hpp): GCC on x86-64 Linux (ifunc). Other
// compilers and targets get the baseline build.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(FUSEDSNN_NO_CLONES)
#define FUSEDSNN_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#include "../kernels/lif.hpp"

extern "C" {

// Mirrors fusedsnn/backends/host/lif.py's ctypes Structure: keep the two in the same order.
struct fusedsnn_lif_desc {
  // forward inputs / outputs
  const void* x; std::int64_t x_step;
  const void* rec; std::int64_t rec_step;
  const void* mem0; const void* syn0; const void* spk0;
  const void* beta; const void* thr; const void* alpha; const void* v;
  void* spk; void* syn; void* mem; void* trace; void* state; void* pre;
  // backward inputs / outputs
  const void* grad_spk; std::int64_t grad_spk_step;
  const void* grad_syn; std::int64_t grad_syn_step;
  const void* grad_mem; std::int64_t grad_mem_step;
  const void* mem_hist; const void* syn_hist; const void* spk_hist;
  void* grad_x; void* grad_mem0; void* grad_syn0; void* grad_spk0;
  void* part_beta; void* part_thr; void* part_alpha; void* part_v;
  // shape and configuration
  std::int64_t steps; std::int64_t neurons; std::int64_t features;
  std::int32_t synaptic; std::int32_t recurrence; std::int32_t reset; std::int32_t immediate_reset;
  std::int32_t surrogate; std::int32_t need_prev_mem;
  std::int32_t dtype;  // 0 = float32, 1 = float64
  double c0; double c1; double gsf;
  // partition
  std::int32_t tiles; std::int32_t workers_per_tile; std::int32_t threads;
};

}  // extern "C"

namespace {

// Below this many neuron-steps a call runs on the calling thread: waking a worker costs more
// than the work (a T=1, B=1 call is a few hundred neuron-steps).
constexpr std::int64_t kMinParallelWork = std::int64_t(1) << 15;

#ifndef _OPENMP
// Persistent workers, started on first use and reused by every call: creating threads per call
// cost more than a small kernel. One parallel job at a time; a concurrent caller (another Python
// thread, ctypes releases the GIL) runs its job inline instead of waiting. After fork() the
// child has no workers, so the pool is abandoned (not destroyed: its mutexes may be held by
// threads that do not exist in the child) and a new one is made on the child's first call.
class WorkerPool {
 public:
  // Runs task(k) for k in [0, tasks) on `threads` threads including the caller.
  template <typename Task>
  void run(std::int64_t tasks, std::int64_t threads, Task&& task) {
    std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || threads <= 1) {
      for (std::int64_t k = 0; k < tasks; ++k) task(k);
      return;
    }
    const std::int64_t helpers = threads - 1;
    std::atomic<std::int64_t> next{0};
    auto body = [&]() {
      for (std::int64_t k = next++; k < tasks; k = next++) task(k);
    };
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<std::int64_t>(workers_.size()) < helpers) {
        workers_.emplace_back([this, index = workers_.size()] { loop(static_cast<std::int64_t>(index)); });
      }
      job_ = body;
      active_ = helpers;
      running_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    body();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return running_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(std::int64_t index) {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= active_) continue;  // this job asked for fewer helpers
      std::function<void()> job = job_;
      lock.unlock();
      job();
      lock.lock();
      if (--running_ == 0) done_.notify_one();
    }
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  std::function<void()> job_;
  std::int64_t active_ = 0, running_ = 0;
  std::uint64_t generation_ = 0;
};

std::atomic<WorkerPool*> g_pool{nullptr};
std::mutex g_pool_create;

void forget_pool_after_fork() { g_pool.store(nullptr); }  // leaked on purpose, see WorkerPool

WorkerPool& pool() {
  WorkerPool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  std::lock_guard<std::mutex> lock(g_pool_create);
  p = g_pool.load();
  if (!p) {
    static bool registered = (pthread_atfork(nullptr, nullptr, forget_pool_after_fork), true);
    (void)registered;
    p = new WorkerPool();  // never destroyed: workers block on it until the process exits
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}
#endif  // !_OPENMP

std::atomic<bool> g_forked_child{false};
void mark_forked_child() { g_forked_child.store(true); }
const bool g_fork_handler_registered = (pthread_atfork(nullptr, nullptr, mark_forked_child) == 0);

template <typename Fn>
void run_partitioned(const fusedsnn_lif_desc& d, Fn&& fn) {
  const std::int64_t tiles = std::max<std::int32_t>(1, d.tiles);
  const unsigned workers = static_cast<unsigned>(std::max<std::int32_t>(1, d.workers_per_tile));
  const std::int64_t tasks = tiles * workers;
  auto run_task = [&](std::int64_t task) {
    std::int64_t tile_begin, tile_end, begin, end;
    fusedsnn::worker_range(d.neurons, static_cast<unsigned>(task / workers), static_cast<unsigned>(tiles),
                           &tile_begin, &tile_end);
    fusedsnn::worker_range(tile_end - tile_begin, static_cast<unsigned>(task % workers), workers, &begin, &end);
    if (end > begin) fn(tile_begin + begin, tile_begin + end);
  };
  std::int64_t threads = std::max<std::int64_t>(1, std::min<std::int64_t>(d.threads, tasks));
  if (d.steps * d.neurons < kMinParallelWork) threads = 1;
#ifdef _OPENMP
  // libgomp cannot start a parallel region in a child forked after the parent used one (it
  // waits for workers that were not copied): a forked child runs its loops on one thread.
  if (g_forked_child.load(std::memory_order_relaxed)) threads = 1;
  // Built with -fopenmp the library links libgomp.so.1, which resolves to the copy torch has
  // already loaded: the loops run on torch's own OpenMP workers (hot after torch's last op)
  // instead of a second pool competing with them for the same cores.
  if (threads > 1) {
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) run_task(task);
    return;
  }
  for (std::int64_t task = 0; task < tasks; ++task) run_task(task);
#else
  pool().run(tasks, threads, run_task);
#endif
}

template <typename S>
void forward(const fusedsnn_lif_desc& d) {
  fusedsnn::ForwardArgs<S, S> a;
  a.x = static_cast<const S*>(d.x); a.x_step = d.x_step;
  a.rec = static_cast<const S*>(d.rec); a.rec_step = d.rec_step;
  a.mem0 = static_cast<const S*>(d.mem0); a.syn0 = static_cast<const S*>(d.syn0);
  a.spk0 = static_cast<const S*>(d.spk0);
  a.beta = static_cast<const S*>(d.beta); a.thr = static_cast<const S*>(d.thr);
  a.alpha = static_cast<const S*>(d.alpha); a.v = static_cast<const S*>(d.v);
  a.spk = static_cast<S*>(d.spk); a.syn = static_cast<S*>(d.syn); a.mem = static_cast<S*>(d.mem);
  a.trace = static_cast<S*>(d.trace); a.state = static_cast<S*>(d.state); a.pre = static_cast<S*>(d.pre);
  a.steps = d.steps; a.stride = d.neurons; a.features = d.features;
  a.reset = d.reset; a.immediate_reset = d.immediate_reset != 0;
  a.surrogate = d.surrogate;
  a.c0 = static_cast<S>(d.c0); a.c1 = static_cast<S>(d.c1); a.gsf = static_cast<S>(d.gsf);
  run_partitioned(d, [&](std::int64_t begin, std::int64_t end) {
    fusedsnn::lif_forward_dispatch<S, S>(d.synaptic != 0, d.recurrence, a, begin, end);
  });
}

template <typename S>
void backward(const fusedsnn_lif_desc& d) {
  fusedsnn::BackwardArgs<S, S> a;
  a.grad_spk = static_cast<const S*>(d.grad_spk); a.grad_spk_step = d.grad_spk_step;
  a.grad_syn = static_cast<const S*>(d.grad_syn); a.grad_syn_step = d.grad_syn_step;
  a.grad_mem = static_cast<const S*>(d.grad_mem); a.grad_mem_step = d.grad_mem_step;
  a.trace = static_cast<const S*>(d.trace); a.mem_hist = static_cast<const S*>(d.mem_hist);
  a.syn_hist = static_cast<const S*>(d.syn_hist); a.spk_hist = static_cast<const S*>(d.spk_hist);
  a.pre = static_cast<const S*>(d.pre);
  a.mem0 = static_cast<const S*>(d.mem0); a.syn0 = static_cast<const S*>(d.syn0);
  a.spk0 = static_cast<const S*>(d.spk0);
  a.beta = static_cast<const S*>(d.beta); a.thr = static_cast<const S*>(d.thr);
  a.alpha = static_cast<const S*>(d.alpha); a.v = static_cast<const S*>(d.v);
  a.grad_x = static_cast<S*>(d.grad_x); a.grad_mem0 = static_cast<S*>(d.grad_mem0);
  a.grad_syn0 = static_cast<S*>(d.grad_syn0); a.grad_spk0 = static_cast<S*>(d.grad_spk0);
  a.part_beta = static_cast<S*>(d.part_beta); a.part_thr = static_cast<S*>(d.part_thr);
  a.part_alpha = static_cast<S*>(d.part_alpha); a.part_v = static_cast<S*>(d.part_v);
  a.steps = d.steps; a.stride = d.neurons; a.features = d.features;
  a.reset = d.reset; a.immediate_reset = d.immediate_reset != 0;
  a.need_prev_mem = d.need_prev_mem != 0;
  a.surrogate = d.surrogate;
  a.c0 = static_cast<S>(d.c0); a.c1 = static_cast<S>(d.c1);
  a.gsf = static_cast<S>(d.gsf);
  run_partitioned(d, [&](std::int64_t begin, std::int64_t end) {
    fusedsnn::lif_backward_dispatch<S, S>(d.synaptic != 0, d.recurrence, a, begin, end);
  });
}

}  // namespace

extern "C" {

// ABI version: bump when fusedsnn_lif_desc or its meaning changes, so a stale library is not
// loaded (4: trace and pre may be null in the forward, for inference; 5: a null trace in the
// backward means "recompute the surrogate from pre or mem_hist", which needs the surrogate fields;
// 6: grad_mem0 may be null in the backward, when no initial membrane was given).
int fusedsnn_host_abi_version() { return 6; }

int fusedsnn_lif_forward(const fusedsnn_lif_desc* d) {
  if (!d || d->dtype < 0 || d->dtype > 1 || d->features < 1 || d->neurons % d->features != 0) return 1;
  if (d->dtype == 0) forward<float>(*d); else forward<double>(*d);
  return 0;
}

int fusedsnn_lif_backward(const fusedsnn_lif_desc* d) {
  if (!d || d->dtype < 0 || d->dtype > 1 || d->features < 1 || d->neurons % d->features != 0) return 1;
  if (d->dtype == 0) backward<float>(*d); else backward<double>(*d);
  return 0;
}

}  // extern "C"
