// PopART custom ops for the fused LIF neurons: op, grad op, opx (forward and backward), and
// registration, for Leaky, Synaptic, RLeaky (one-to-one) and RSynaptic (one-to-one).
//
// Written against the documented Poplar SDK 3.x API (popart::Op, popart::popx::Opx,
// popart::OpCreator, popart::popx::OpxCreator). It is NOT compiled or run in this repository's
// CI (no SDK is installable there); the codelets it launches are verified on the host by
// tests/csrc/test_codelets.py. Build with `make -C csrc/popart` on a machine with the SDK.
//
// Inputs (in order; bracketed ones only for the neuron types that have them):
//   x [T, B, *features], mem0 [B, *features], [syn0], [spk0], beta [F], threshold [F], [alpha], [V]
// Outputs:
//   spk, mem, trace (+ syn for synaptic types) (+ pre for reset_delay=False) (+ state for half)
// The initial states are always passed (zeros when the user gave none) so that the input list of
// each neuron type is fixed; parameters are per feature (F = prod(features)), broadcast here.
//
// Tile mapping: whole neurons per tile. The B * F neurons are split into contiguous ranges, one
// per tile (fusedsnn::worker_range, exactly as the host backend partitions them), each tile gets
// its neurons' whole [T, n] history in tile-contiguous memory, and one MultiVertex per tile runs
// the time loop with its 6 workers. The forward writes only fresh tensors: nothing the grad op
// reads (inputs, trace, mem, syn, spk, pre, state) is ever overwritten in place.
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <popart/names.hpp>
#include <popart/op.hpp>
#include <popart/opmanager.hpp>
#include <popart/opserialiser.hpp>
#include <popart/popx/devicex.hpp>
#include <popart/popx/opx.hpp>
#include <popart/popx/opxmanager.hpp>
#include <popart/tensorinfo.hpp>

#include <poplar/Graph.hpp>
#include <popops/ElementWise.hpp>
#include <popops/Reduce.hpp>
#include <poputil/TileMapping.hpp>
#include <poputil/VertexTemplates.hpp>

#include "../kernels/lif.hpp"

namespace fusedsnn_popart {

const char* kDomain = "custom.fusedsnn";

struct NeuronKind {
  const char* name;
  bool synaptic;
  int recurrence;
};

const NeuronKind kKinds[] = {
    {"LeakyFused", false, 0},
    {"SynapticFused", true, 0},
    {"RLeakyFused", false, 1},
    {"RSynapticFused", true, 1},
};

popart::OperatorIdentifier forwardId(const NeuronKind& k) { return {kDomain, k.name, 1}; }
popart::OperatorIdentifier gradId(const NeuronKind& k) {
  return {kDomain, std::string(k.name) + "Grad", 1};
}

// Every attribute that changes the computation; all of them are serialised (appendOutlineAttributes)
// so PopART's executable cache and outlining never confuse two different neurons.
struct LIFAttributes {
  int64_t synaptic = 0;
  int64_t recurrence = 0;
  int64_t reset = 0;
  int64_t immediateReset = 0;
  int64_t surrogate = 0;
  float c0 = 0.f;
  float c1 = 0.f;
  float gsf = 1.f;

  void append(popart::OpSerialiserBase& os) const {
    os.appendAttribute("synaptic", synaptic);
    os.appendAttribute("recurrence", recurrence);
    os.appendAttribute("reset", reset);
    os.appendAttribute("immediate_reset", immediateReset);
    os.appendAttribute("surrogate", surrogate);
    os.appendAttribute("c0", c0);
    os.appendAttribute("c1", c1);
    os.appendAttribute("gsf", gsf);
  }
};

// Input and output indices for one neuron type.
struct Layout {
  bool synaptic, recurrent, immediate;
  int x() const { return 0; }
  int mem0() const { return 1; }
  int syn0() const { return synaptic ? 2 : -1; }
  int spk0() const { return recurrent ? 2 + synaptic : -1; }
  int beta() const { return 2 + synaptic + recurrent; }
  int thr() const { return beta() + 1; }
  int alpha() const { return synaptic ? thr() + 1 : -1; }
  int v() const { return recurrent ? thr() + 1 + synaptic : -1; }
  int numInputs() const { return thr() + 1 + synaptic + recurrent; }
  // outputs
  int spk() const { return 0; }
  int mem() const { return 1; }
  int trace() const { return 2; }
  int syn() const { return synaptic ? 3 : -1; }
  int pre() const { return immediate ? 3 + synaptic : -1; }
  int state(bool half) const { return half ? 3 + synaptic + immediate : -1; }
};

class LIFOp : public popart::Op {
 public:
  LIFOp(const popart::OperatorIdentifier& opid, const LIFAttributes& attrs, const popart::Op::Settings& settings)
      : popart::Op(opid, settings), attrs_(attrs) {}

  std::unique_ptr<popart::Op> clone() const final { return std::make_unique<LIFOp>(*this); }

  Layout layout() const {
    return {attrs_.synaptic != 0, attrs_.recurrence == 1, attrs_.immediateReset != 0 && attrs_.reset != 2};
  }
  bool isHalf() const { return inInfo(0).dataType() == popart::DataType::FLOAT16; }

  void setup() final {
    const auto& xi = inInfo(0);
    const Layout l = layout();
    const popart::TensorInfo f32(popart::DataType::FLOAT, xi.shape());
    outInfo(l.spk()) = xi;
    outInfo(l.mem()) = xi;
    outInfo(l.trace()) = f32;
    if (l.syn() >= 0) outInfo(l.syn()) = xi;
    if (l.pre() >= 0) outInfo(l.pre()) = f32;
    if (l.state(isHalf()) >= 0) outInfo(l.state(isHalf())) = f32;
  }

  std::vector<std::unique_ptr<popart::Op>> getGradOps() final;

  void appendOutlineAttributes(popart::OpSerialiserBase& os) const override {
    popart::Op::appendOutlineAttributes(os);
    attrs_.append(os);
  }
  float getSubgraphValue() const final { return getHighSubgraphValue(); }
  bool requiresRandomSeed() const override { return false; }
  const LIFAttributes& attrs() const { return attrs_; }

 private:
  LIFAttributes attrs_;
};

// Grad op inputs: gradients of spk, mem (and syn), then the forward tensors it reads.
class LIFGradOp : public popart::Op {
 public:
  explicit LIFGradOp(const LIFOp& fwd)
      : popart::Op(gradIdFor(fwd.opid), fwd.settings), attrs_(fwd.attrs()), layout_(fwd.layout()),
        half_(fwd.isHalf()) {
    buildMaps();
  }

  std::unique_ptr<popart::Op> clone() const final { return std::make_unique<LIFGradOp>(*this); }

  void setup() final {
    // One gradient per forward input, each of that input's shape and type.
    for (const auto& kv : gradOutToNonGradIn_) outInfo(kv.first) = fwdInInfo_.at(kv.second);
  }

  const std::vector<popart::GradInOutMapper>& gradInputInfo() const final { return gradInInfo_; }
  const std::map<int, int>& gradOutToNonGradIn() const final { return gradOutToNonGradIn_; }

  void appendOutlineAttributes(popart::OpSerialiserBase& os) const override {
    popart::Op::appendOutlineAttributes(os);
    attrs_.append(os);
  }
  float getSubgraphValue() const final { return getLowSubgraphValue(); }
  const LIFAttributes& attrs() const { return attrs_; }
  const Layout& layout() const { return layout_; }
  bool isHalf() const { return half_; }

  // grad-op input indices
  static constexpr int kGradSpk = 0, kGradMem = 1, kGradSyn = 2;
  int traceIn() const { return 3; }
  int memIn() const { return 4; }
  int synIn() const { return 5; }
  int spkIn() const { return 6; }
  int preIn() const { return 7; }
  int stateIn() const { return 8; }
  int fwdInBase() const { return 9; }  // then every forward input, in forward order

  void setForwardInputInfo(const LIFOp& fwd) {
    for (int i = 0; i < layout_.numInputs(); ++i) fwdInInfo_[i] = fwd.inInfo(i);
  }

 private:
  static popart::OperatorIdentifier gradIdFor(const popart::OperatorIdentifier& fwd) {
    return {fwd.domain, fwd.type + "Grad", fwd.version};
  }

  void buildMaps() {
    using popart::GradOpInType;
    const Layout& l = layout_;
    gradInInfo_ = {{kGradSpk, l.spk(), GradOpInType::GradOut}, {kGradMem, l.mem(), GradOpInType::GradOut},
                   {traceIn(), l.trace(), GradOpInType::Out}, {memIn(), l.mem(), GradOpInType::Out},
                   {spkIn(), l.spk(), GradOpInType::Out}};
    if (l.synaptic) {
      gradInInfo_.push_back({kGradSyn, l.syn(), GradOpInType::GradOut});
      gradInInfo_.push_back({synIn(), l.syn(), GradOpInType::Out});
    }
    if (l.immediate) gradInInfo_.push_back({preIn(), l.pre(), GradOpInType::Out});
    if (half_) gradInInfo_.push_back({stateIn(), l.state(true), GradOpInType::Out});
    for (int i = 0; i < l.numInputs(); ++i) {
      gradInInfo_.push_back({fwdInBase() + i, i, GradOpInType::In});
      gradOutToNonGradIn_[i] = i;  // grad-op output i is the gradient of forward input i
    }
  }

  LIFAttributes attrs_;
  Layout layout_;
  bool half_;
  std::vector<popart::GradInOutMapper> gradInInfo_;
  std::map<int, int> gradOutToNonGradIn_;
  std::map<int, popart::TensorInfo> fwdInInfo_;
};

std::vector<std::unique_ptr<popart::Op>> LIFOp::getGradOps() {
  auto grad = std::make_unique<LIFGradOp>(*this);
  grad->setForwardInputInfo(*this);
  std::vector<std::unique_ptr<popart::Op>> ops;
  ops.push_back(std::move(grad));
  return ops;
}

// ------------------------------------------------------------------------------------------
// Opx: tile mapping and vertices
// ------------------------------------------------------------------------------------------

// [T, M] tensor whose tile-t piece [T, n_t] is one contiguous variable on tile t.
poplar::Tensor tileContiguous(poplar::Graph& g, poplar::Type type, std::size_t T, const std::vector<std::int64_t>& bounds,
                              const std::vector<unsigned>& tiles, const std::string& name) {
  std::vector<poplar::Tensor> pieces;
  for (std::size_t k = 0; k < tiles.size(); ++k) {
    const std::size_t n = bounds[k + 1] - bounds[k];
    poplar::Tensor piece = g.addVariable(type, {T, n}, name);
    g.setTileMapping(piece, tiles[k]);
    pieces.push_back(piece);
  }
  return poplar::concat(pieces, 1);
}

struct TilePlan {
  std::vector<unsigned> tiles;          // tiles that own at least one neuron
  std::vector<std::int64_t> bounds;     // neuron ranges: tile k owns [bounds[k], bounds[k+1])
};

TilePlan planTiles(const poplar::Graph& g, std::int64_t neurons) {
  const unsigned numTiles = g.getTarget().getNumTiles();
  TilePlan plan;
  plan.bounds.push_back(0);
  for (unsigned tile = 0; tile < numTiles; ++tile) {
    std::int64_t b, e;
    fusedsnn::worker_range(neurons, tile, numTiles, &b, &e);
    if (e > b) {
      plan.tiles.push_back(tile);
      plan.bounds.push_back(e);
    }
  }
  return plan;
}

// Per-feature parameter [F] broadcast to the [M] = [B * F] neurons (a view, no copy).
poplar::Tensor perNeuron(const poplar::Tensor& param, std::size_t batch) {
  return param.flatten().expand({0}).broadcast(static_cast<unsigned>(batch), 0).flatten();
}

class LIFOpx : public popart::popx::Opx {
 public:
  LIFOpx(popart::Op* op, popart::popx::Devicex* devicex) : popart::popx::Opx(op, devicex) {
    verifyOp<LIFOp>(op);
    graph().addCodelets(codeletPath());
  }

  static std::string codeletPath();

  void grow(poplar::program::Sequence& prog) const final {
    auto& op = getOp<LIFOp>();
    const auto& a = op.attrs();
    const Layout l = op.layout();
    poplar::Graph& g = graph();
    poplar::Tensor x = getInTensor(l.x());
    const std::size_t T = x.dim(0), B = x.dim(1);
    const std::size_t M = x.numElements() / (T ? T : 1);
    const poplar::Type io = x.elementType();
    const TilePlan plan = planTiles(g, static_cast<std::int64_t>(M));
    auto local = [&](poplar::Type type, const std::string& name) {
      return tileContiguous(g, type, T, plan.bounds, plan.tiles, debugContext(name).getPathName());
    };
    auto localVec = [&](poplar::Type type, const std::string& name) {
      return tileContiguous(g, type, 1, plan.bounds, plan.tiles, debugContext(name).getPathName()).flatten();
    };
    // Bring inputs to the owning tiles (exchange), in tile-contiguous layout.
    poplar::Tensor xLocal = local(io, "x");
    prog.add(poplar::program::Copy(x.reshape({T, M}), xLocal));
    auto toTiles = [&](const poplar::Tensor& t, const std::string& name) {
      poplar::Tensor dst = localVec(poplar::FLOAT, name);
      prog.add(poplar::program::Copy(popops::cast(g, t.flatten(), poplar::FLOAT, prog), dst));
      return dst;
    };
    poplar::Tensor mem0 = toTiles(getInTensor(l.mem0()), "mem0");
    poplar::Tensor syn0 = l.synaptic ? toTiles(getInTensor(l.syn0()), "syn0") : poplar::Tensor();
    poplar::Tensor spk0 = l.recurrent ? toTiles(getInTensor(l.spk0()), "spk0") : poplar::Tensor();
    poplar::Tensor beta = toTiles(perNeuron(getInTensor(l.beta()), B), "beta");
    poplar::Tensor thr = toTiles(perNeuron(getInTensor(l.thr()), B), "thr");
    poplar::Tensor alpha = l.synaptic ? toTiles(perNeuron(getInTensor(l.alpha()), B), "alpha") : poplar::Tensor();
    poplar::Tensor v = l.recurrent ? toTiles(perNeuron(getInTensor(l.v()), B), "V") : poplar::Tensor();

    poplar::Tensor spk = local(io, "spk"), mem = local(io, "mem"), trace = local(poplar::FLOAT, "trace");
    poplar::Tensor syn = l.synaptic ? local(io, "syn") : poplar::Tensor();
    poplar::Tensor pre = l.immediate ? local(poplar::FLOAT, "pre") : poplar::Tensor();
    const bool half = io == poplar::HALF;
    poplar::Tensor state = half ? local(poplar::FLOAT, "state") : poplar::Tensor();

    poplar::ComputeSet cs = g.addComputeSet(debugContext("lifForward"));
    const std::string vertex = poputil::templateVertex("LIFForward", io, l.synaptic, l.recurrent ? 1 : 0);
    poplar::Tensor empty = g.addConstant(poplar::FLOAT, {0}, 0.f);
    poplar::Tensor emptyIo = g.addConstant(io, {0}, 0.f);
    for (std::size_t k = 0; k < plan.tiles.size(); ++k) {
      const auto b = plan.bounds[k], e = plan.bounds[k + 1];
      auto steps = [&](const poplar::Tensor& t) { return t.slice(b, e, 1).flatten(); };
      auto per = [&](const poplar::Tensor& t) { return t.valid() ? t.slice(b, e) : empty; };
      auto v_ = g.addVertex(cs, vertex);
      g.connect(v_["x"], steps(xLocal));
      g.connect(v_["rec"], emptyIo);
      g.connect(v_["mem0"], per(mem0));
      g.connect(v_["syn0"], per(syn0));
      g.connect(v_["spk0"], per(spk0));
      g.connect(v_["beta"], per(beta));
      g.connect(v_["thr"], per(thr));
      g.connect(v_["alpha"], per(alpha));
      g.connect(v_["v"], per(v));
      g.connect(v_["spk"], steps(spk));
      g.connect(v_["syn"], syn.valid() ? steps(syn) : emptyIo);
      g.connect(v_["mem"], steps(mem));
      g.connect(v_["trace"], steps(trace));
      g.connect(v_["state"], state.valid() ? steps(state) : empty);
      g.connect(v_["pre"], pre.valid() ? steps(pre) : empty);
      g.setInitialValue(v_["steps"], static_cast<unsigned>(T));
      g.setInitialValue(v_["reset"], static_cast<unsigned>(a.reset));
      g.setInitialValue(v_["immediateReset"], static_cast<unsigned>(l.immediate));
      g.setInitialValue(v_["surrogate"], static_cast<unsigned>(a.surrogate));
      g.setInitialValue(v_["c0"], a.c0);
      g.setInitialValue(v_["c1"], a.c1);
      g.setInitialValue(v_["gsf"], a.gsf);
      g.setTileMapping(v_, plan.tiles[k]);
    }
    prog.add(poplar::program::Execute(cs));
    const auto shape = x.shape();
    setOutTensor(l.spk(), spk.reshape(shape));
    setOutTensor(l.mem(), mem.reshape(shape));
    setOutTensor(l.trace(), trace.reshape(shape));
    if (l.synaptic) setOutTensor(l.syn(), syn.reshape(shape));
    if (l.immediate) setOutTensor(l.pre(), pre.reshape(shape));
    if (half) setOutTensor(l.state(true), state.reshape(shape));
  }
};

class LIFGradOpx : public popart::popx::Opx {
 public:
  LIFGradOpx(popart::Op* op, popart::popx::Devicex* devicex) : popart::popx::Opx(op, devicex) {
    verifyOp<LIFGradOp>(op);
    graph().addCodelets(LIFOpx::codeletPath());
  }

  void grow(poplar::program::Sequence& prog) const final {
    auto& op = getOp<LIFGradOp>();
    const auto& a = op.attrs();
    const Layout& l = op.layout();
    poplar::Graph& g = graph();
    poplar::Tensor trace = getInTensor(op.traceIn());
    const std::size_t T = trace.dim(0), B = trace.dim(1);
    const std::size_t M = trace.numElements() / (T ? T : 1);
    const std::size_t F = M / (B ? B : 1);
    const poplar::Type io = getInTensor(op.fwdInBase() + l.x()).elementType();
    const TilePlan plan = planTiles(g, static_cast<std::int64_t>(M));
    auto local = [&](poplar::Type type, std::size_t rows, const std::string& name) {
      return tileContiguous(g, type, rows, plan.bounds, plan.tiles, debugContext(name).getPathName());
    };
    auto stepsToTiles = [&](const poplar::Tensor& t, poplar::Type type, const std::string& name) {
      poplar::Tensor dst = local(type, T, name);
      prog.add(poplar::program::Copy(popops::cast(g, t.reshape({T, M}), type, prog), dst));
      return dst;
    };
    auto vecToTiles = [&](const poplar::Tensor& t, const std::string& name) {
      poplar::Tensor dst = local(poplar::FLOAT, 1, name).flatten();
      prog.add(poplar::program::Copy(popops::cast(g, t.flatten(), poplar::FLOAT, prog), dst));
      return dst;
    };
    const int base = op.fwdInBase();
    poplar::Tensor gSpk = stepsToTiles(getInTensor(LIFGradOp::kGradSpk), io, "gradSpk");
    poplar::Tensor gMem = stepsToTiles(getInTensor(LIFGradOp::kGradMem), io, "gradMem");
    poplar::Tensor gSyn = l.synaptic ? stepsToTiles(getInTensor(LIFGradOp::kGradSyn), io, "gradSyn") : poplar::Tensor();
    poplar::Tensor traceL = stepsToTiles(trace, poplar::FLOAT, "trace");
    poplar::Tensor memHist = stepsToTiles(op.isHalf() ? getInTensor(op.stateIn()) : getInTensor(op.memIn()),
                                          poplar::FLOAT, "memHist");
    poplar::Tensor synHist = l.synaptic ? stepsToTiles(getInTensor(op.synIn()), io, "synHist") : poplar::Tensor();
    poplar::Tensor spkHist = l.recurrent ? stepsToTiles(getInTensor(op.spkIn()), io, "spkHist") : poplar::Tensor();
    poplar::Tensor pre = l.immediate ? stepsToTiles(getInTensor(op.preIn()), poplar::FLOAT, "pre") : poplar::Tensor();
    poplar::Tensor mem0 = vecToTiles(getInTensor(base + l.mem0()), "mem0");
    poplar::Tensor syn0 = l.synaptic ? vecToTiles(getInTensor(base + l.syn0()), "syn0") : poplar::Tensor();
    poplar::Tensor spk0 = l.recurrent ? vecToTiles(getInTensor(base + l.spk0()), "spk0") : poplar::Tensor();
    poplar::Tensor beta = vecToTiles(perNeuron(getInTensor(base + l.beta()), B), "beta");
    poplar::Tensor thr = vecToTiles(perNeuron(getInTensor(base + l.thr()), B), "thr");
    poplar::Tensor alpha = l.synaptic ? vecToTiles(perNeuron(getInTensor(base + l.alpha()), B), "alpha") : poplar::Tensor();
    poplar::Tensor v = l.recurrent ? vecToTiles(perNeuron(getInTensor(base + l.v()), B), "V") : poplar::Tensor();

    poplar::Tensor gradX = local(io, T, "gradX");
    poplar::Tensor gradMem0 = local(poplar::FLOAT, 1, "gradMem0").flatten();
    poplar::Tensor gradSyn0 = l.synaptic ? local(poplar::FLOAT, 1, "gradSyn0").flatten() : poplar::Tensor();
    poplar::Tensor gradSpk0 = l.recurrent ? local(poplar::FLOAT, 1, "gradSpk0").flatten() : poplar::Tensor();
    poplar::Tensor partBeta = local(poplar::FLOAT, 1, "partBeta").flatten();
    poplar::Tensor partThr = local(poplar::FLOAT, 1, "partThr").flatten();
    poplar::Tensor partAlpha = l.synaptic ? local(poplar::FLOAT, 1, "partAlpha").flatten() : poplar::Tensor();
    poplar::Tensor partV = l.recurrent ? local(poplar::FLOAT, 1, "partV").flatten() : poplar::Tensor();

    poplar::ComputeSet cs = g.addComputeSet(debugContext("lifBackward"));
    const std::string vertex = poputil::templateVertex("LIFBackward", io, l.synaptic, l.recurrent ? 1 : 0);
    poplar::Tensor empty = g.addConstant(poplar::FLOAT, {0}, 0.f);
    poplar::Tensor emptyIo = g.addConstant(io, {0}, 0.f);
    for (std::size_t k = 0; k < plan.tiles.size(); ++k) {
      const auto b = plan.bounds[k], e = plan.bounds[k + 1];
      auto steps = [&](const poplar::Tensor& t, const poplar::Tensor& none) {
        return t.valid() ? t.slice(b, e, 1).flatten() : none;
      };
      auto per = [&](const poplar::Tensor& t) { return t.valid() ? t.slice(b, e) : empty; };
      auto v_ = g.addVertex(cs, vertex);
      g.connect(v_["gradSpk"], steps(gSpk, emptyIo));
      g.connect(v_["gradSyn"], steps(gSyn, emptyIo));
      g.connect(v_["gradMem"], steps(gMem, emptyIo));
      g.connect(v_["trace"], steps(traceL, empty));
      g.connect(v_["memHist"], steps(memHist, empty));
      g.connect(v_["synHist"], steps(synHist, emptyIo));
      g.connect(v_["spkHist"], steps(spkHist, emptyIo));
      g.connect(v_["pre"], steps(pre, empty));
      g.connect(v_["mem0"], per(mem0));
      g.connect(v_["syn0"], per(syn0));
      g.connect(v_["spk0"], per(spk0));
      g.connect(v_["beta"], per(beta));
      g.connect(v_["thr"], per(thr));
      g.connect(v_["alpha"], per(alpha));
      g.connect(v_["v"], per(v));
      g.connect(v_["gradX"], steps(gradX, emptyIo));
      g.connect(v_["gradMem0"], per(gradMem0));
      g.connect(v_["gradSyn0"], per(gradSyn0));
      g.connect(v_["gradSpk0"], per(gradSpk0));
      g.connect(v_["partBeta"], per(partBeta));
      g.connect(v_["partThr"], per(partThr));
      g.connect(v_["partAlpha"], per(partAlpha));
      g.connect(v_["partV"], per(partV));
      g.setInitialValue(v_["steps"], static_cast<unsigned>(T));
      g.setInitialValue(v_["reset"], static_cast<unsigned>(a.reset));
      g.setInitialValue(v_["immediateReset"], static_cast<unsigned>(l.immediate));
      g.setInitialValue(v_["needPrevMem"], 1u);  // every parameter gradient is produced
      g.setInitialValue(v_["gsf"], a.gsf);
      g.setTileMapping(v_, plan.tiles[k]);
    }
    prog.add(poplar::program::Execute(cs));

    // Per-neuron partial sums -> per-feature parameter gradients (sum over the batch).
    auto reduceToFeatures = [&](const poplar::Tensor& part, int fwdIndex) {
      poplar::Tensor summed = popops::reduce(g, part.reshape({B, F}), {0}, {popops::Operation::ADD}, prog,
                                             debugContext("paramGrad"));
      const auto& info = op.inInfo(base + fwdIndex);
      setOutTensor(fwdIndex, popops::cast(g, summed, popart::popx::popType(info), prog).reshape(info.shape_szt()));
    };
    const auto xShape = getInTensor(base + l.x()).shape();
    setOutTensor(l.x(), gradX.reshape(xShape));
    auto stateGrad = [&](const poplar::Tensor& t, int fwdIndex) {
      const auto& info = op.inInfo(base + fwdIndex);
      setOutTensor(fwdIndex, popops::cast(g, t, popart::popx::popType(info), prog).reshape(info.shape_szt()));
    };
    stateGrad(gradMem0, l.mem0());
    if (l.synaptic) stateGrad(gradSyn0, l.syn0());
    if (l.recurrent) stateGrad(gradSpk0, l.spk0());
    reduceToFeatures(partBeta, l.beta());
    reduceToFeatures(partThr, l.thr());
    if (l.synaptic) reduceToFeatures(partAlpha, l.alpha());
    if (l.recurrent) reduceToFeatures(partV, l.v());
  }
};

// The codelet object sits next to the op library; FUSEDSNN_CODELETS overrides the path.
std::string LIFOpx::codeletPath() {
  if (const char* env = std::getenv("FUSEDSNN_CODELETS")) return env;
  return "lif_codelets.gp";
}

// ------------------------------------------------------------------------------------------
// Registration
// ------------------------------------------------------------------------------------------

LIFAttributes readAttributes(const popart::OpCreatorInfo& info, const NeuronKind& kind) {
  LIFAttributes a;
  a.synaptic = kind.synaptic;
  a.recurrence = kind.recurrence;
  a.reset = info.attributes.getAttribute<popart::Attributes::Int>("reset", 0);
  a.immediateReset = info.attributes.getAttribute<popart::Attributes::Int>("immediate_reset", 0);
  a.surrogate = info.attributes.getAttribute<popart::Attributes::Int>("surrogate", 0);
  a.c0 = info.attributes.getAttribute<popart::Attributes::Float>("c0", 3.14159265f);
  a.c1 = info.attributes.getAttribute<popart::Attributes::Float>("c1", 1.f);
  a.gsf = info.attributes.getAttribute<popart::Attributes::Float>("gsf", 1.f);
  return a;
}

popart::OpDefinition::DataTypes kTypes = {popart::DataType::FLOAT16, popart::DataType::FLOAT};

popart::OpDefinition definition() {
  return popart::OpDefinition({popart::OpDefinition::Inputs({{"x", kTypes}}),
                               popart::OpDefinition::Outputs({{"spk", kTypes}}),
                               popart::OpDefinition::Attributes({{"reset", {"*"}},
                                                                  {"immediate_reset", {"*"}},
                                                                  {"surrogate", {"*"}},
                                                                  {"c0", {"*"}},
                                                                  {"c1", {"*"}},
                                                                  {"gsf", {"*"}}})});
}

#define FUSEDSNN_REGISTER(INDEX)                                                                          \
  static popart::OpCreator<LIFOp> opCreator##INDEX(                                                      \
      popart::OpDefinitions({{forwardId(kKinds[INDEX]), definition()}}),                                 \
      [](const popart::OpCreatorInfo& info) {                                                             \
        return std::make_unique<LIFOp>(info.opid, readAttributes(info, kKinds[INDEX]), info.settings);    \
      },                                                                                                  \
      true);                                                                                              \
  static popart::popx::OpxCreator<LIFOpx> opxCreator##INDEX(forwardId(kKinds[INDEX]));                   \
  static popart::popx::OpxCreator<LIFGradOpx> gradOpxCreator##INDEX(gradId(kKinds[INDEX]));

FUSEDSNN_REGISTER(0)
FUSEDSNN_REGISTER(1)
FUSEDSNN_REGISTER(2)
FUSEDSNN_REGISTER(3)

}  // namespace fusedsnn_popart
