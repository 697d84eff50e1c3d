// PopART custom ops for the all-to-all recurrent LIF over the whole sequence:
// custom.fusedsnn::RLeakyAllToAllFused and RSynapticAllToAllFused (version 1), op, grad op and opx,
// running the codelets of csrc/codelets/lif_all_to_all_codelets.cpp.
//
// Written against the documented Poplar SDK 3.x API (popart::Op, popart::popx::Opx, poplar::Graph,
// poplar::program::{Sequence, Repeat, Execute, Copy}, popops::{mapInPlace, reduce, cast}). It is NOT
// compiled or run in this repository's CI (no SDK is installable there); the codelets and the
// program structure built here (per step: compute set, then exchange, then the step counter) are
// verified on the host by tests/csrc/test_all_to_all_codelets.py, which emulates this program tile by
// tile and worker by worker. Build with `make -C csrc/popart` on a machine with the SDK.
//
// Inputs (in order; bracketed ones only for RSynaptic):
//   x [T, B, N], mem0 [B, N], [syn0 [B, N]], spk0 [B, N], weight [N, N], bias [N],
//   beta [N], threshold [N], [alpha [N]]
// Outputs: spk, mem, trace [T, B, N] (+ syn for RSynaptic) (+ pre for reset_delay=False).
// The initial states and the bias are always passed (zeros when the user gave none), so the input
// list of each neuron type is fixed. float32 only (the all-to-all op's IPU type; half is not done).
//
// Tile mapping (see the codelet file for the vertex side):
//   - the tiles form a grid of batch blocks x neuron blocks (planAllToAll); the tile (bb, nb) owns
//     neurons [j0, j1) of batch rows [b0, b1) for the whole sequence: their [T, Bt, n] histories,
//     [Bt, n] states, [n] parameters, and the rows of W (forward) or columns of W (backward) of
//     its neurons, [n, N], copied to it once per call;
//   - forward: Repeat(T) { Execute(step compute set); Copy(every tile's spkOut -> the spkIn of
//     every tile of its batch block); counters += 1 }, so W never moves inside the loop and only
//     Bt * N spikes reach a tile per step;
//   - backward: the same with gradOut -> gradIn and one more Execute (k = T) for the products of
//     G_0; dW^T / db / parameter sums come out per tile and are reduced over batch blocks.
#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <popart/error.hpp>
#include <popart/names.hpp>
#include <popart/op.hpp>
#include <popart/opmanager.hpp>
#include <popart/opserialiser.hpp>
#include <popart/popx/devicex.hpp>
#include <popart/popx/opx.hpp>
#include <popart/popx/opxmanager.hpp>
#include <popart/tensorinfo.hpp>

#include <poplar/Graph.hpp>
#include <poplar/Program.hpp>
#include <popops/Cast.hpp>
#include <popops/ElementWise.hpp>
#include <popops/Expr.hpp>
#include <popops/Reduce.hpp>
#include <poputil/VertexTemplates.hpp>

#include "../kernels/lif.hpp"

namespace fusedsnn_popart_all_to_all {
namespace {

const char* const kDomain = "custom.fusedsnn";

struct AllToAllKind {
  const char* name;
  bool synaptic;
};

const AllToAllKind kKinds[] = {{"RLeakyAllToAllFused", false}, {"RSynapticAllToAllFused", true}};

popart::OperatorIdentifier forwardId(const AllToAllKind& k) { return {kDomain, k.name, 1}; }
popart::OperatorIdentifier gradId(const AllToAllKind& k) { return {kDomain, std::string(k.name) + "Grad", 1}; }

// Every attribute that changes the computation, all serialised (appendOutlineAttributes) so
// PopART's cache and outlining never confuse two configurations.
struct AllToAllAttributes {
  int64_t synaptic = 0;
  int64_t reset = 0;
  int64_t immediateReset = 0;
  int64_t surrogate = 0;
  float c0 = 0.f;
  float c1 = 0.f;
  float gsf = 1.f;

  void append(popart::OpSerialiserBase& os) const {
    os.appendAttribute("synaptic", synaptic);
    os.appendAttribute("reset", reset);
    os.appendAttribute("immediate_reset", immediateReset);
    os.appendAttribute("surrogate", surrogate);
    os.appendAttribute("c0", c0);
    os.appendAttribute("c1", c1);
    os.appendAttribute("gsf", gsf);
  }
};

// Input and output indices for one neuron type.
struct AllToAllLayout {
  bool synaptic, immediate;
  int x() const { return 0; }
  int mem0() const { return 1; }
  int syn0() const { return synaptic ? 2 : -1; }
  int spk0() const { return 2 + synaptic; }
  int weight() const { return 3 + synaptic; }
  int bias() const { return 4 + synaptic; }
  int beta() const { return 5 + synaptic; }
  int thr() const { return 6 + synaptic; }
  int alpha() const { return synaptic ? 8 : -1; }
  int numInputs() const { return 8 + synaptic; }
  int spk() const { return 0; }
  int mem() const { return 1; }
  int trace() const { return 2; }
  int syn() const { return synaptic ? 3 : -1; }
  int pre() const { return immediate ? 3 + synaptic : -1; }
};

class AllToAllOp : public popart::Op {
 public:
  AllToAllOp(const popart::OperatorIdentifier& opid, const AllToAllAttributes& attrs, const popart::Op::Settings& settings)
      : popart::Op(opid, settings), attrs_(attrs) {}

  std::unique_ptr<popart::Op> clone() const final { return std::make_unique<AllToAllOp>(*this); }

  AllToAllLayout layout() const { return {attrs_.synaptic != 0, attrs_.immediateReset != 0 && attrs_.reset != 2}; }

  void setup() final {
    const auto& xi = inInfo(0);
    if (xi.dataType() != popart::DataType::FLOAT) {
      throw popart::error("fusedsnn all-to-all op: x must be float32 (half is not implemented)");
    }
    if (xi.rank() != 3) throw popart::error("fusedsnn all-to-all op: x must be [T, B, N]");
    const AllToAllLayout l = layout();
    outInfo(l.spk()) = xi;
    outInfo(l.mem()) = xi;
    outInfo(l.trace()) = xi;
    if (l.syn() >= 0) outInfo(l.syn()) = xi;
    if (l.pre() >= 0) outInfo(l.pre()) = xi;
  }

  std::vector<std::unique_ptr<popart::Op>> getGradOps() final;

  void appendOutlineAttributes(popart::OpSerialiserBase& os) const override {
    popart::Op::appendOutlineAttributes(os);
    attrs_.append(os);
  }
  float getSubgraphValue() const final { return getHighSubgraphValue(); }
  bool requiresRandomSeed() const override { return false; }
  const AllToAllAttributes& attrs() const { return attrs_; }

 private:
  AllToAllAttributes attrs_;
};

// Grad op inputs: gradients of spk, mem (and syn), then the forward outputs it reads, then every
// forward input. Outputs: one gradient per forward input.
class AllToAllGradOp : public popart::Op {
 public:
  explicit AllToAllGradOp(const AllToAllOp& fwd)
      : popart::Op(popart::OperatorIdentifier{fwd.opid.domain, fwd.opid.type + "Grad", fwd.opid.version},
                   fwd.settings),
        attrs_(fwd.attrs()), layout_(fwd.layout()) {
    using popart::GradOpInType;
    const AllToAllLayout& l = layout_;
    gradInInfo_ = {{kGradSpk, l.spk(), GradOpInType::GradOut}, {kGradMem, l.mem(), GradOpInType::GradOut},
                   {kTrace, l.trace(), GradOpInType::Out}, {kMem, l.mem(), GradOpInType::Out},
                   {kSpk, l.spk(), GradOpInType::Out}};
    if (l.synaptic) {
      gradInInfo_.push_back({kGradSyn, l.syn(), GradOpInType::GradOut});
      gradInInfo_.push_back({kSyn, l.syn(), GradOpInType::Out});
    }
    if (l.immediate) gradInInfo_.push_back({kPre, l.pre(), GradOpInType::Out});
    for (int i = 0; i < l.numInputs(); ++i) {
      gradInInfo_.push_back({kFwdInBase + i, i, GradOpInType::In});
      gradOutToNonGradIn_[i] = i;
      fwdInInfo_[i] = fwd.inInfo(i);
    }
  }

  std::unique_ptr<popart::Op> clone() const final { return std::make_unique<AllToAllGradOp>(*this); }
  void setup() final {
    for (const auto& kv : gradOutToNonGradIn_) outInfo(kv.first) = fwdInInfo_.at(kv.second);
  }
  const std::vector<popart::GradInOutMapper>& gradInputInfo() const final { return gradInInfo_; }
  const std::map<int, int>& gradOutToNonGradIn() const final { return gradOutToNonGradIn_; }
  void appendOutlineAttributes(popart::OpSerialiserBase& os) const override {
    popart::Op::appendOutlineAttributes(os);
    attrs_.append(os);
  }
  float getSubgraphValue() const final { return getLowSubgraphValue(); }
  const AllToAllAttributes& attrs() const { return attrs_; }
  const AllToAllLayout& layout() const { return layout_; }

  static constexpr int kGradSpk = 0, kGradMem = 1, kGradSyn = 2, kTrace = 3, kMem = 4, kSyn = 5, kSpk = 6,
                       kPre = 7, kFwdInBase = 8;

 private:
  AllToAllAttributes attrs_;
  AllToAllLayout layout_;
  std::vector<popart::GradInOutMapper> gradInInfo_;
  std::map<int, int> gradOutToNonGradIn_;
  std::map<int, popart::TensorInfo> fwdInInfo_;
};

std::vector<std::unique_ptr<popart::Op>> AllToAllOp::getGradOps() {
  std::vector<std::unique_ptr<popart::Op>> ops;
  ops.push_back(std::make_unique<AllToAllGradOp>(*this));
  return ops;
}

// ------------------------------------------------------------------------------------------
// Tile plan and tile-local tensors
// ------------------------------------------------------------------------------------------

struct AllToAllTile {
  unsigned tile;
  std::size_t block;          // batch block index (tiles of one block exchange with each other)
  std::size_t b0, b1, j0, j1;  // batch rows [b0, b1), neurons [j0, j1)
};

struct AllToAllPlan {
  std::size_t batchBlocks = 1, neuronBlocks = 1;
  std::vector<AllToAllTile> tiles;  // batch-block major, neuron blocks ascending within a block
};

// The grid of batch blocks x neuron blocks with the fewest bytes on the fullest tile: its rows of
// W, the exchanged [Bt, N] spikes and its [T, Bt, n] histories (about six float arrays). A first
// model, to be tuned against the profile on hardware.
AllToAllPlan planAllToAll(const poplar::Graph& g, std::size_t T, std::size_t B, std::size_t N) {
  const std::size_t numTiles = g.getTarget().getNumTiles();
  auto ceilDiv = [](std::size_t a, std::size_t b) { return (a + b - 1) / b; };
  AllToAllPlan best;
  std::size_t bestBytes = ~std::size_t(0);
  for (std::size_t bb = 1; bb <= std::min(B, numTiles); ++bb) {
    const std::size_t nb = std::min(N, numTiles / bb);
    if (nb == 0) break;
    const std::size_t n = ceilDiv(N, nb), bt = ceilDiv(B, bb);
    const std::size_t bytes = 4 * (n * N + bt * N + 6 * T * bt * n);
    if (bytes < bestBytes) {
      bestBytes = bytes;
      best.batchBlocks = bb;
      best.neuronBlocks = nb;
    }
  }
  unsigned tile = 0;
  for (std::size_t bb = 0; bb < best.batchBlocks; ++bb) {
    std::int64_t b0, b1;
    fusedsnn::worker_range(static_cast<std::int64_t>(B), static_cast<unsigned>(bb),
                           static_cast<unsigned>(best.batchBlocks), &b0, &b1);
    for (std::size_t nb = 0; nb < best.neuronBlocks; ++nb) {
      std::int64_t j0, j1;
      fusedsnn::worker_range(static_cast<std::int64_t>(N), static_cast<unsigned>(nb),
                             static_cast<unsigned>(best.neuronBlocks), &j0, &j1);
      if (b1 > b0 && j1 > j0) {
        best.tiles.push_back({tile++, bb, static_cast<std::size_t>(b0), static_cast<std::size_t>(b1),
                              static_cast<std::size_t>(j0), static_cast<std::size_t>(j1)});
      }
    }
  }
  return best;
}

// One variable per tile, each mapped to its tile, plus the logical tensor they form.
struct Blocked {
  std::vector<poplar::Tensor> local;  // per tile
  poplar::Tensor whole;               // the logical tensor (a view over the per-tile variables)
};

// Per-tile blocks of a [T, B, N] (withTime) or [B, N] tensor.
Blocked blockedStates(poplar::Graph& g, const AllToAllPlan& plan, std::size_t T, bool withTime,
                      const std::string& name) {
  Blocked r;
  std::vector<poplar::Tensor> rows;  // one per batch block: [.., Bt, N]
  std::vector<poplar::Tensor> cols;
  std::size_t block = 0;
  for (const auto& t : plan.tiles) {
    if (t.block != block) {
      rows.push_back(poplar::concat(cols, withTime ? 2 : 1));
      cols.clear();
      block = t.block;
    }
    std::vector<std::size_t> shape = {t.b1 - t.b0, t.j1 - t.j0};
    if (withTime) shape.insert(shape.begin(), T);
    poplar::Tensor v = g.addVariable(poplar::FLOAT, shape, name);
    g.setTileMapping(v, t.tile);
    r.local.push_back(v);
    cols.push_back(v);
  }
  rows.push_back(poplar::concat(cols, withTime ? 2 : 1));
  r.whole = poplar::concat(rows, withTime ? 1 : 0);
  return r;
}

// Per-tile [rows..., cols] variables with no logical whole (scratch, per-neuron data).
std::vector<poplar::Tensor> perTile(poplar::Graph& g, const AllToAllPlan& plan,
                                    const std::function<std::vector<std::size_t>(const AllToAllTile&)>& shape,
                                    const std::string& name) {
  std::vector<poplar::Tensor> r;
  for (const auto& t : plan.tiles) {
    poplar::Tensor v = g.addVariable(poplar::FLOAT, shape(t), name);
    g.setTileMapping(v, t.tile);
    r.push_back(v);
  }
  return r;
}

// The exchange: every tile's [Bt, n] `source` goes to the [Bt, N] `dest` of every tile of its
// batch block, as one Copy (one exchange phase).
poplar::program::Copy exchange(const AllToAllPlan& plan, const std::vector<poplar::Tensor>& source,
                               const std::vector<poplar::Tensor>& dest) {
  std::map<std::size_t, std::vector<poplar::Tensor>> byBlock;
  for (std::size_t k = 0; k < plan.tiles.size(); ++k) byBlock[plan.tiles[k].block].push_back(source[k]);
  std::vector<poplar::Tensor> src, dst;
  for (std::size_t k = 0; k < plan.tiles.size(); ++k) {
    src.push_back(poplar::concat(byBlock[plan.tiles[k].block], 1).flatten());
    dst.push_back(dest[k].flatten());
  }
  return poplar::program::Copy(poplar::concat(src), poplar::concat(dst));
}

// The step counters, one unsigned per tile on its tile (the vertices' `step` field).
poplar::Tensor stepCounters(poplar::Graph& g, const AllToAllPlan& plan, poplar::program::Sequence& prog,
                            const std::string& name) {
  std::vector<poplar::Tensor> parts;
  for (const auto& t : plan.tiles) {
    poplar::Tensor c = g.addVariable(poplar::UNSIGNED_INT, {1}, name);
    g.setTileMapping(c, t.tile);
    parts.push_back(c);
  }
  poplar::Tensor counters = poplar::concat(parts);
  poplar::Tensor zero = g.addConstant(poplar::UNSIGNED_INT, {counters.numElements()}, 0u);
  g.setTileMapping(zero, 0);
  prog.add(poplar::program::Copy(zero, counters));
  return counters;
}

void advance(poplar::Graph& g, const poplar::Tensor& counters, poplar::program::Sequence& body) {
  namespace pe = popops::expr;
  popops::mapInPlace(g, pe::Add(pe::_1, pe::Const(1u)), {counters}, body);
}

poplar::Tensor asFloat(poplar::Graph& g, const poplar::Tensor& t, poplar::program::Sequence& prog) {
  return t.elementType() == poplar::FLOAT ? t : popops::cast(g, t, poplar::FLOAT, prog);
}

std::string allToAllCodeletPath() {
  if (const char* env = std::getenv("FUSEDSNN_ALL_TO_ALL_CODELETS")) return env;
  return "lif_all_to_all_codelets.gp";
}

class AllToAllOpx : public popart::popx::Opx {
 public:
  AllToAllOpx(popart::Op* op, popart::popx::Devicex* devicex) : popart::popx::Opx(op, devicex) {
    verifyOp<AllToAllOp>(op);
    graph().addCodelets(allToAllCodeletPath());
  }

  void grow(poplar::program::Sequence& prog) const final {
    auto& op = getOp<AllToAllOp>();
    const auto& a = op.attrs();
    const AllToAllLayout l = op.layout();
    poplar::Graph& g = graph();
    poplar::Tensor x = getInTensor(l.x());
    const std::size_t T = x.dim(0), B = x.dim(1), N = x.dim(2);
    const AllToAllPlan plan = planAllToAll(g, T, B, N);
    const std::size_t tiles = plan.tiles.size();
    auto name = [&](const char* s) { return debugContext(s).getPathName(); };

    // Inputs to their tiles, once per call.
    Blocked xL = blockedStates(g, plan, T, true, name("x"));
    prog.add(poplar::program::Copy(x, xL.whole));
    Blocked mem0 = blockedStates(g, plan, T, false, name("mem0"));
    prog.add(poplar::program::Copy(getInTensor(l.mem0()), mem0.whole));
    Blocked syn0;
    if (l.synaptic) {
      syn0 = blockedStates(g, plan, T, false, name("syn0"));
      prog.add(poplar::program::Copy(getInTensor(l.syn0()), syn0.whole));
    }
    poplar::Tensor weight = getInTensor(l.weight()), spk0 = getInTensor(l.spk0());
    auto rowsOfW = perTile(g, plan, [&](const AllToAllTile& t) { return std::vector<std::size_t>{t.j1 - t.j0, N}; },
                           name("weights"));
    auto spkIn = perTile(g, plan, [&](const AllToAllTile& t) { return std::vector<std::size_t>{t.b1 - t.b0, N}; },
                         name("spkIn"));
    auto perNeuron = [&](int input, const char* label) {
      auto local = perTile(g, plan, [](const AllToAllTile& t) { return std::vector<std::size_t>{t.j1 - t.j0}; },
                           name(label));
      poplar::Tensor source = getInTensor(input);
      for (std::size_t k = 0; k < tiles; ++k) {
        prog.add(poplar::program::Copy(source.slice(plan.tiles[k].j0, plan.tiles[k].j1), local[k]));
      }
      return local;
    };
    for (std::size_t k = 0; k < tiles; ++k) {
      const AllToAllTile& t = plan.tiles[k];
      prog.add(poplar::program::Copy(weight.slice(t.j0, t.j1, 0), rowsOfW[k]));
      prog.add(poplar::program::Copy(spk0.slice(t.b0, t.b1, 0), spkIn[k]));  // spikes of step -1
    }
    auto bias = perNeuron(l.bias(), "bias");
    auto beta = perNeuron(l.beta(), "beta");
    auto thr = perNeuron(l.thr(), "threshold");
    std::vector<poplar::Tensor> alpha = l.synaptic ? perNeuron(l.alpha(), "alpha") : std::vector<poplar::Tensor>{};

    // Outputs and scratch, all tile-local.
    Blocked spk = blockedStates(g, plan, T, true, name("spk"));
    Blocked mem = blockedStates(g, plan, T, true, name("mem"));
    Blocked trace = blockedStates(g, plan, T, true, name("trace"));
    Blocked syn = l.synaptic ? blockedStates(g, plan, T, true, name("syn")) : Blocked{};
    Blocked pre = l.immediate ? blockedStates(g, plan, T, true, name("pre")) : Blocked{};
    auto stateShape = [](const AllToAllTile& t) { return std::vector<std::size_t>{t.b1 - t.b0, t.j1 - t.j0}; };
    auto rec = perTile(g, plan, stateShape, name("rec"));
    auto spkOut = perTile(g, plan, stateShape, name("spkOut"));

    poplar::Tensor counters = stepCounters(g, plan, prog, name("step"));
    poplar::Tensor empty = g.addConstant(poplar::FLOAT, {0}, 0.f);
    g.setTileMapping(empty, 0);
    poplar::ComputeSet cs = g.addComputeSet(debugContext("lifAllToAllStep"));
    const std::string vertexName = poputil::templateVertex("LIFAllToAllForward", l.synaptic);
    for (std::size_t k = 0; k < tiles; ++k) {
      const AllToAllTile& t = plan.tiles[k];
      auto v = g.addVertex(cs, vertexName);
      g.connect(v["step"], counters[k]);
      g.connect(v["x"], xL.local[k].flatten());
      g.connect(v["weights"], rowsOfW[k].flatten());
      g.connect(v["bias"], bias[k]);
      g.connect(v["spkIn"], spkIn[k].flatten());
      g.connect(v["mem0"], mem0.local[k].flatten());
      g.connect(v["syn0"], l.synaptic ? syn0.local[k].flatten() : empty);
      g.connect(v["beta"], beta[k]);
      g.connect(v["thr"], thr[k]);
      g.connect(v["alpha"], l.synaptic ? alpha[k] : empty);
      g.connect(v["rec"], rec[k].flatten());
      g.connect(v["spkOut"], spkOut[k].flatten());
      g.connect(v["spk"], spk.local[k].flatten());
      g.connect(v["syn"], l.synaptic ? syn.local[k].flatten() : empty);
      g.connect(v["mem"], mem.local[k].flatten());
      g.connect(v["trace"], trace.local[k].flatten());
      g.connect(v["pre"], l.immediate ? pre.local[k].flatten() : empty);
      g.setInitialValue(v["batch"], static_cast<unsigned>(t.b1 - t.b0));
      g.setInitialValue(v["reset"], static_cast<unsigned>(a.reset));
      g.setInitialValue(v["immediateReset"], static_cast<unsigned>(l.immediate));
      g.setInitialValue(v["surrogate"], static_cast<unsigned>(a.surrogate));
      g.setInitialValue(v["c0"], a.c0);
      g.setInitialValue(v["c1"], a.c1);
      g.setInitialValue(v["gsf"], a.gsf);
      g.setTileMapping(v, t.tile);
    }
    poplar::program::Sequence body;
    body.add(poplar::program::Execute(cs));
    body.add(exchange(plan, spkOut, spkIn));  // after the sync: step t's spikes to every tile
    advance(g, counters, body);
    prog.add(poplar::program::Repeat(static_cast<unsigned>(T), body));

    setOutTensor(l.spk(), spk.whole);
    setOutTensor(l.mem(), mem.whole);
    setOutTensor(l.trace(), trace.whole);
    if (l.synaptic) setOutTensor(l.syn(), syn.whole);
    if (l.immediate) setOutTensor(l.pre(), pre.whole);
  }
};

class AllToAllGradOpx : public popart::popx::Opx {
 public:
  AllToAllGradOpx(popart::Op* op, popart::popx::Devicex* devicex) : popart::popx::Opx(op, devicex) {
    verifyOp<AllToAllGradOp>(op);
    graph().addCodelets(allToAllCodeletPath());
  }

  void grow(poplar::program::Sequence& prog) const final {
    auto& op = getOp<AllToAllGradOp>();
    const auto& a = op.attrs();
    const AllToAllLayout& l = op.layout();
    poplar::Graph& g = graph();
    const int base = AllToAllGradOp::kFwdInBase;
    poplar::Tensor traceIn = getInTensor(AllToAllGradOp::kTrace);
    const std::size_t T = traceIn.dim(0), B = traceIn.dim(1), N = traceIn.dim(2);
    const AllToAllPlan plan = planAllToAll(g, T, B, N);
    const std::size_t tiles = plan.tiles.size();
    auto name = [&](const char* s) { return debugContext(s).getPathName(); };
    auto toTiles = [&](const poplar::Tensor& t, bool withTime, const char* label) {
      Blocked b = blockedStates(g, plan, T, withTime, name(label));
      prog.add(poplar::program::Copy(asFloat(g, t, prog), b.whole));
      return b;
    };
    Blocked gSpk = toTiles(getInTensor(AllToAllGradOp::kGradSpk), true, "gradSpk");
    Blocked gMem = toTiles(getInTensor(AllToAllGradOp::kGradMem), true, "gradMem");
    Blocked gSyn = l.synaptic ? toTiles(getInTensor(AllToAllGradOp::kGradSyn), true, "gradSyn") : Blocked{};
    Blocked trace = toTiles(traceIn, true, "trace");
    Blocked memHist = toTiles(getInTensor(AllToAllGradOp::kMem), true, "memHist");
    Blocked synHist = l.synaptic ? toTiles(getInTensor(AllToAllGradOp::kSyn), true, "synHist") : Blocked{};
    Blocked spkHist = toTiles(getInTensor(AllToAllGradOp::kSpk), true, "spkHist");
    Blocked pre = l.immediate ? toTiles(getInTensor(AllToAllGradOp::kPre), true, "pre") : Blocked{};
    Blocked mem0 = toTiles(getInTensor(base + l.mem0()), false, "mem0");
    Blocked syn0 = l.synaptic ? toTiles(getInTensor(base + l.syn0()), false, "syn0") : Blocked{};
    Blocked spk0 = toTiles(getInTensor(base + l.spk0()), false, "spk0");

    auto nShape = [](const AllToAllTile& t) { return std::vector<std::size_t>{t.j1 - t.j0}; };
    auto stateShape = [](const AllToAllTile& t) { return std::vector<std::size_t>{t.b1 - t.b0, t.j1 - t.j0}; };
    auto wShape = [&](const AllToAllTile& t) { return std::vector<std::size_t>{t.j1 - t.j0, N}; };
    auto perNeuron = [&](int input, const char* label) {
      auto local = perTile(g, plan, nShape, name(label));
      for (std::size_t k = 0; k < tiles; ++k) {
        prog.add(poplar::program::Copy(getInTensor(base + input).slice(plan.tiles[k].j0, plan.tiles[k].j1),
                                       local[k]));
      }
      return local;
    };
    // The tile's columns of W, as rows: weightsT[j, i] = W[i, j] for its neurons j.
    auto columnsOfW = perTile(g, plan, wShape, name("weightsT"));
    poplar::Tensor weight = getInTensor(base + l.weight());
    for (std::size_t k = 0; k < tiles; ++k) {
      prog.add(poplar::program::Copy(weight.slice(plan.tiles[k].j0, plan.tiles[k].j1, 1).transpose(), columnsOfW[k]));
    }
    auto beta = perNeuron(l.beta(), "beta");
    auto thr = perNeuron(l.thr(), "threshold");
    std::vector<poplar::Tensor> alpha = l.synaptic ? perNeuron(l.alpha(), "alpha") : std::vector<poplar::Tensor>{};

    auto gradIn = perTile(g, plan, [&](const AllToAllTile& t) { return std::vector<std::size_t>{t.b1 - t.b0, N}; },
                          name("gradIn"));
    auto gradOut = perTile(g, plan, stateShape, name("gradOut"));
    auto parts = perTile(g, plan, [](const AllToAllTile& t) { return std::vector<std::size_t>{3, t.j1 - t.j0}; },
                         name("parts"));
    Blocked gradX = blockedStates(g, plan, T, true, name("gradX"));
    Blocked carryMem = blockedStates(g, plan, T, false, name("carryMem"));
    Blocked carrySyn = l.synaptic ? blockedStates(g, plan, T, false, name("carrySyn")) : Blocked{};
    Blocked carrySpk = blockedStates(g, plan, T, false, name("carrySpk"));
    auto gradWT = perTile(g, plan, wShape, name("gradWeightsT"));
    auto gradBias = perTile(g, plan, nShape, name("gradBias"));
    auto gradBeta = perTile(g, plan, nShape, name("gradBeta"));
    auto gradThr = perTile(g, plan, nShape, name("gradThr"));
    std::vector<poplar::Tensor> gradAlpha = l.synaptic ? perTile(g, plan, nShape, name("gradAlpha"))
                                                       : std::vector<poplar::Tensor>{};

    poplar::Tensor counters = stepCounters(g, plan, prog, name("step"));
    poplar::Tensor empty = g.addConstant(poplar::FLOAT, {0}, 0.f);
    g.setTileMapping(empty, 0);
    poplar::ComputeSet cs = g.addComputeSet(debugContext("lifAllToAllStepBackward"));
    const std::string vertexName = poputil::templateVertex("LIFAllToAllBackward", l.synaptic);
    auto flat = [&](const Blocked& b, std::size_t k) { return b.local.empty() ? empty : b.local[k].flatten(); };
    for (std::size_t k = 0; k < tiles; ++k) {
      const AllToAllTile& t = plan.tiles[k];
      auto v = g.addVertex(cs, vertexName);
      g.connect(v["step"], counters[k]);
      g.connect(v["gradSpk"], flat(gSpk, k));
      g.connect(v["gradSyn"], flat(gSyn, k));
      g.connect(v["gradMem"], flat(gMem, k));
      g.connect(v["trace"], flat(trace, k));
      g.connect(v["memHist"], flat(memHist, k));
      g.connect(v["synHist"], flat(synHist, k));
      g.connect(v["spkHist"], flat(spkHist, k));
      g.connect(v["pre"], flat(pre, k));
      g.connect(v["mem0"], flat(mem0, k));
      g.connect(v["syn0"], flat(syn0, k));
      g.connect(v["spk0"], flat(spk0, k));
      g.connect(v["weightsT"], columnsOfW[k].flatten());
      g.connect(v["beta"], beta[k]);
      g.connect(v["thr"], thr[k]);
      g.connect(v["alpha"], l.synaptic ? alpha[k] : empty);
      g.connect(v["gradIn"], gradIn[k].flatten());
      g.connect(v["gradOut"], gradOut[k].flatten());
      g.connect(v["parts"], parts[k].flatten());
      g.connect(v["gradX"], flat(gradX, k));
      g.connect(v["carryMem"], flat(carryMem, k));
      g.connect(v["carrySyn"], flat(carrySyn, k));
      g.connect(v["carrySpk"], flat(carrySpk, k));
      g.connect(v["gradWeightsT"], gradWT[k].flatten());
      g.connect(v["gradBias"], gradBias[k]);
      g.connect(v["gradBeta"], gradBeta[k]);
      g.connect(v["gradThr"], gradThr[k]);
      g.connect(v["gradAlpha"], l.synaptic ? gradAlpha[k] : empty);
      g.setInitialValue(v["steps"], static_cast<unsigned>(T));
      g.setInitialValue(v["batch"], static_cast<unsigned>(t.b1 - t.b0));
      g.setInitialValue(v["reset"], static_cast<unsigned>(a.reset));
      g.setInitialValue(v["immediateReset"], static_cast<unsigned>(l.immediate));
      g.setInitialValue(v["needPrevMem"], 1u);  // every parameter gradient is produced
      g.setInitialValue(v["gsf"], a.gsf);
      g.setTileMapping(v, t.tile);
    }
    poplar::program::Sequence body;
    body.add(poplar::program::Execute(cs));
    body.add(exchange(plan, gradOut, gradIn));  // G_t of every neuron to every tile of the block
    advance(g, counters, body);
    prog.add(poplar::program::Repeat(static_cast<unsigned>(T), body));
    prog.add(poplar::program::Execute(cs));  // k = T: the products of G_0 (spk0's gradient, dW)

    // Per-tile sums -> gradients: dW^T blocks stacked by neuron block, summed over batch blocks.
    auto sumOverBatchBlocks = [&](const std::vector<poplar::Tensor>& local) {
      std::vector<poplar::Tensor> byBlock;
      std::vector<poplar::Tensor> current;
      std::size_t block = 0;
      for (std::size_t k = 0; k < tiles; ++k) {
        if (plan.tiles[k].block != block) {
          byBlock.push_back(poplar::concat(current, 0).expand({0}));
          current.clear();
          block = plan.tiles[k].block;
        }
        current.push_back(local[k]);
      }
      byBlock.push_back(poplar::concat(current, 0).expand({0}));
      poplar::Tensor stacked = poplar::concat(byBlock, 0);  // [batchBlocks, N(, N)]
      return popops::reduce(g, stacked, {0}, {popops::Operation::ADD}, prog, debugContext("sumOverBatchBlocks"));
    };
    setOutTensor(l.x(), gradX.whole);
    setOutTensor(l.mem0(), carryMem.whole);
    if (l.synaptic) setOutTensor(l.syn0(), carrySyn.whole);
    setOutTensor(l.spk0(), carrySpk.whole);
    setOutTensor(l.weight(), sumOverBatchBlocks(gradWT).transpose());
    setOutTensor(l.bias(), sumOverBatchBlocks(gradBias));
    setOutTensor(l.beta(), sumOverBatchBlocks(gradBeta));
    setOutTensor(l.thr(), sumOverBatchBlocks(gradThr));
    if (l.synaptic) setOutTensor(l.alpha(), sumOverBatchBlocks(gradAlpha));
  }
};

// ------------------------------------------------------------------------------------------
// Registration
// ------------------------------------------------------------------------------------------

AllToAllAttributes readAttributes(const popart::OpCreatorInfo& info, const AllToAllKind& kind) {
  AllToAllAttributes a;
  a.synaptic = kind.synaptic;
  a.reset = info.attributes.getAttribute<popart::Attributes::Int>("reset", 0);
  a.immediateReset = info.attributes.getAttribute<popart::Attributes::Int>("immediate_reset", 0);
  a.surrogate = info.attributes.getAttribute<popart::Attributes::Int>("surrogate", 0);
  a.c0 = info.attributes.getAttribute<popart::Attributes::Float>("c0", 3.14159265f);
  a.c1 = info.attributes.getAttribute<popart::Attributes::Float>("c1", 1.f);
  a.gsf = info.attributes.getAttribute<popart::Attributes::Float>("gsf", 1.f);
  return a;
}

popart::OpDefinition definition() {
  const popart::OpDefinition::DataTypes f32 = {popart::DataType::FLOAT};
  return popart::OpDefinition({popart::OpDefinition::Inputs({{"x", f32}}),
                               popart::OpDefinition::Outputs({{"spk", f32}}),
                               popart::OpDefinition::Attributes({{"reset", {"*"}},
                                                                  {"immediate_reset", {"*"}},
                                                                  {"surrogate", {"*"}},
                                                                  {"c0", {"*"}},
                                                                  {"c1", {"*"}},
                                                                  {"gsf", {"*"}}})});
}

#define FUSEDSNN_REGISTER_DENSE(INDEX)                                                                   \
  popart::OpCreator<AllToAllOp> allToAllOpCreator##INDEX(                                                      \
      popart::OpDefinitions({{forwardId(kKinds[INDEX]), definition()}}),                                 \
      [](const popart::OpCreatorInfo& info) {                                                            \
        return std::make_unique<AllToAllOp>(info.opid, readAttributes(info, kKinds[INDEX]), info.settings); \
      },                                                                                                 \
      true);                                                                                             \
  popart::popx::OpxCreator<AllToAllOpx> allToAllOpxCreator##INDEX(forwardId(kKinds[INDEX]));                  \
  popart::popx::OpxCreator<AllToAllGradOpx> allToAllGradOpxCreator##INDEX(gradId(kKinds[INDEX]));

FUSEDSNN_REGISTER_DENSE(0)
FUSEDSNN_REGISTER_DENSE(1)

}  // namespace
}  // namespace fusedsnn_popart_all_to_all
