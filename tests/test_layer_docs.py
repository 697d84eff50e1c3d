"""help(fs.Leaky) and the other layers are the reference a user reads: every constructor argument,
the backend choices, what raises NotImplementedError, and a forward docstring giving shapes."""

from __future__ import annotations

import inspect

import pytest
from torch import nn

import fusedsnn as fs

LAYERS = [fs.Leaky, fs.Synaptic, fs.RLeaky, fs.RSynaptic]


def _args_section(doc: str) -> str:
    return doc.split("Args:", 1)[1].split("Raises:", 1)[0]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda c: c.__name__)
def test_every_constructor_argument_is_documented(layer):
    # One entry per argument, "name: ..." at the start of a line of the Args section.
    documented = "\n" + _args_section(inspect.getdoc(layer)).replace("\n    ", "\n")
    for name in inspect.signature(layer.__init__).parameters:
        if name != "self":
            assert f"\n{name}: " in documented, f"{layer.__name__}({name}=...) undocumented"


@pytest.mark.parametrize("layer", LAYERS, ids=lambda c: c.__name__)
def test_backends_and_unsupported_options_are_documented(layer):
    doc = inspect.getdoc(layer)
    for backend in ("auto", "triton", "host", "reference", "poplar"):
        assert f'"{backend}"' in doc, backend
    raises = doc.split("Raises:", 1)[1]
    assert "NotImplementedError" in raises
    for option in ("init_hidden", "inhibition", "state_quant"):
        assert option in raises, option


@pytest.mark.parametrize("layer", LAYERS, ids=lambda c: c.__name__)
def test_forward_has_its_own_docstring_with_shapes(layer):
    doc = inspect.getdoc(layer.forward)
    assert doc and doc != inspect.getdoc(nn.Module.forward)
    assert "[T, B, *features]" in doc and "[B, *features]" in doc
    for name in inspect.signature(layer.forward).parameters:
        if name != "self":
            assert f"{name}: " in doc, f"{layer.__name__}.forward({name}=...) undocumented"
