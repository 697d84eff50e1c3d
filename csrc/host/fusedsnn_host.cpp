// C ABI over csrc/kernels/lif.hpp for the host (CPU) backend, loaded from Python with ctypes.
//
// Neurons are partitioned exactly as the IPU op maps them (csrc/popart): contiguous ranges of
// whole neurons per tile, then per worker within a tile (worker_range). Each (tile, worker) piece
// is a task; tasks run on `threads` CPU threads. The partition is a parameter, so a study can
// emulate an IPU's 1472 tiles x 6 workers or match the CPU's cores.
//
// Built with only a C++ compiler (no Poplar, no torch headers): see setup.py.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "../kernels/lif.hpp"

extern "C" {

// Mirrors fusedsnn/kernels/lif_host.py's ctypes Structure: keep the two in the same order.
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
  const std::int64_t threads = std::max<std::int64_t>(1, std::min<std::int64_t>(d.threads, tasks));
  if (threads == 1) {
    for (std::int64_t task = 0; task < tasks; ++task) run_task(task);
    return;
  }
  std::atomic<std::int64_t> next{0};
  auto worker = [&]() {
    for (std::int64_t task = next++; task < tasks; task = next++) run_task(task);
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (std::int64_t i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
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
  a.gsf = static_cast<S>(d.gsf);
  run_partitioned(d, [&](std::int64_t begin, std::int64_t end) {
    fusedsnn::lif_backward_dispatch<S, S>(d.synaptic != 0, d.recurrence, a, begin, end);
  });
}

}  // namespace

extern "C" {

// ABI version: bump when fusedsnn_lif_desc changes, so a stale library is not loaded.
int fusedsnn_host_abi_version() { return 3; }

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
