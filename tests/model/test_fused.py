"""model/fused.py: a Linear's bias and the activation after it (GELU; a GLU with a residual)
in one compiled pass, against torch."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from native_kernels import native_expected

from seqmnist.model import fused
from seqmnist.model.fused import (
    GELUMLP,
    compiled_pass_takes,
    gelu_of_scaled_sum,
    linear_gelu,
    linear_glu_residual,
)

needs_kernels = pytest.mark.skipif(
    not native_expected(), reason="no C++ compiler or ninja: no compiled GELU"
)


# Each fused layer as (linear, x, residual) -> output; the residual has the output's shape.
LAYERS = {
    "gelu": (lambda linear, x, residual: linear_gelu(linear, x), 1),
    "glu": (linear_glu_residual, 2),  # the Linear's width is twice the output's
}


def _values_and_gradients(layer, linear, x, residual, upstream, compiled):
    x = x.detach().clone().requires_grad_()
    residual = residual.detach().clone().requires_grad_()
    with mock.patch.object(fused, "compiled_pass_takes", lambda x, linear: compiled):
        y = LAYERS[layer][0](linear, x, residual)
    wrt = [x, *linear.parameters()] + ([residual] if layer == "glu" else [])
    return [y, *torch.autograd.grad(y, wrt, upstream)]


@needs_kernels
@settings(max_examples=20, deadline=None)
@given(
    layer=st.sampled_from(sorted(LAYERS)),
    seed=st.integers(0, 2**31 - 1),
    leading=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    features=st.integers(1, 9),
    width=st.integers(1, 40),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_compiled_pass_equals_torch_in_values_and_gradients(
    layer, seed, leading, features, width, scale
):
    """float64: the compiled pass (library erfc) is torch's gelu(linear(x)), or
    residual + glu(linear(x)), to rounding, in the output and in the gradients of x,
    the weight, the bias and the residual."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    linear = torch.nn.Linear(features, LAYERS[layer][1] * width).double()
    x = torch.randn(*leading, features, generator=generator, dtype=torch.float64) * scale
    residual, upstream = torch.randn(2, *leading, width, generator=generator, dtype=torch.float64)
    want = _values_and_gradients(layer, linear, x, residual, upstream, compiled=False)
    got = _values_and_gradients(layer, linear, x, residual, upstream, compiled=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-13)


def _column_error(approximation, reference):
    """The largest absolute error per column (last dimension), NaNs of the reference left out."""
    error = (approximation.double() - reference).abs().nan_to_num(0.0)
    error = error.masked_fill(reference.isnan(), 0.0)
    return error.reshape(-1, error.shape[-1]).amax(0)


def _assert_float32_as_close_as_torchs(got, torch_own, reference, infinities=True):
    """Each float32 tensor in ``got`` is NaN where the float64 ``reference`` is, and
    elsewhere as close to it as torch's own float32 operations (``torch_own``), to a
    factor of 2 and an ulp: column by column for outputs and input gradients (the tests
    scale inputs by column, so small columns are held to their own scale), over the
    whole tensor for a parameter's gradient (one sum over thousands of rows per
    element, whose rounding differs from torch's by chance, element by element);
    with ``infinities`` False, ``got`` has none."""
    for g, t, w in zip(got, torch_own, reference, strict=True):
        assert g.dtype == torch.float32
        assert torch.equal(g.isnan(), w.isnan())
        assert infinities or not g.isinf().any()
        if g.dim() == 1:  # a parameter's gradient: one scale for the whole
            g, t, w = g.reshape(-1, 1), t.reshape(-1, 1), w.reshape(-1, 1)
        size = w.nan_to_num(0.0).abs().reshape(-1, w.shape[-1]).amax(0)
        ulp = size * 2.0**-23
        assert (_column_error(g, w) <= 2 * _column_error(t, w) + ulp).all()


def _skip_values_and_gradients(x, d, u, upstream, compiled):
    x, d, u = (t.detach().clone().requires_grad_() for t in (x, d, u))
    with mock.patch.object(fused.native, "takes", lambda tensor: compiled):
        y = gelu_of_scaled_sum(x, d, u)
    return [y, *torch.autograd.grad(y, [x, d, u], upstream)]


@needs_kernels
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    leading=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    width=st.integers(1, 40),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_lrus_readout_gelu_equals_torch_in_values_and_gradients(seed, leading, width, scale):
    """float64: gelu(x + d * u) compiled is torch's to rounding, with dL/dx, dL/du and
    dL/dd (summed over up to 64,000 rows in the kernel's chunks)."""
    generator = torch.Generator().manual_seed(seed)
    x, u, upstream = torch.randn(3, *leading, width, generator=generator, dtype=torch.float64)
    d = torch.randn(width, generator=generator, dtype=torch.float64) * scale
    want = _skip_values_and_gradients(x * scale, d, u, upstream, compiled=False)
    got = _skip_values_and_gradients(x * scale, d, u, upstream, compiled=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-11)


@needs_kernels
def test_the_float32_readout_gelu_is_as_close_to_float64_as_torchs_own():
    """Sums from 1e-3 to 1e4 in size, a NaN: float32 output and gradients as close to
    torch's float64 as torch's float32 is (dL/dd a sum over 20,000 rows), NaN where it is."""
    generator = torch.Generator().manual_seed(0)
    x, u, upstream = torch.randn(3, 20000, 24, generator=generator, dtype=torch.float64)
    x = x * torch.logspace(-3, 4, 24, dtype=torch.float64)
    x[3, 5] = float("nan")
    d = torch.randn(24, generator=generator, dtype=torch.float64)
    reference = _skip_values_and_gradients(x, d, u, upstream, compiled=False)
    as_float = [t.float() for t in (x, d, u, upstream)]
    torch_own = _skip_values_and_gradients(*as_float, compiled=False)
    got = _skip_values_and_gradients(*as_float, compiled=True)
    _assert_float32_as_close_as_torchs(got, torch_own, reference)


@needs_kernels
def test_gradcheck():
    x = (torch.randn(3, 4, 5, dtype=torch.float64) * 3).requires_grad_()
    bias = torch.randn(5, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(fused._BiasGELU.apply, (x, bias))
    bias = torch.randn(10, dtype=torch.float64).requires_grad_()
    residual = torch.randn(3, 4, 5, dtype=torch.float64).requires_grad_()
    x = (torch.randn(3, 4, 10, dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(fused._BiasGLUResidual.apply, (x, bias, residual))
    x, u = (torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3).requires_grad_()
    d = torch.randn(5, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(fused._SkipGELU.apply, (x, d, u))


@needs_kernels
def test_float32_is_as_close_to_float64_as_torchs_own_far_outside_the_usual_range():
    """Pre-activations from 1e-3 to 1e4 in size, both signs (the normal tail that
    torch's 1 + erf cancels in, GELU's linear part), a NaN: the float32 pass (A&S
    7.1.26 for erfc, its own exp) is as close to torch's float64 GELU as torch's
    float32 GELU is, to a factor of 2, and NaN stays NaN."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 48, generator=generator, dtype=torch.float64)
    x = x * torch.logspace(-3, 4, 48, dtype=torch.float64)
    x[3, 5] = float("nan")
    bias = torch.randn(48, generator=generator, dtype=torch.float64)
    upstream = torch.randn(256, 48, generator=generator, dtype=torch.float64)

    def gelu_and_gradient(x, bias, upstream, compiled):
        x = x.detach().clone().requires_grad_()
        y = fused._BiasGELU.apply(x, bias) if compiled else F.gelu(x + bias)
        (grad,) = torch.autograd.grad(y, x, upstream)
        return y, grad

    reference = gelu_and_gradient(x, bias, upstream, False)
    torch_own = gelu_and_gradient(x.float(), bias.float(), upstream.float(), False)
    got = gelu_and_gradient(x.float(), bias.float(), upstream.float(), True)
    _assert_float32_as_close_as_torchs(got, torch_own, reference, infinities=False)


@needs_kernels
def test_the_float32_glu_is_as_close_to_float64_as_torchs_own_far_outside_the_usual_range():
    """Gates and values from 1e-3 to 1e4 in size (saturated sigmoids), a NaN in a value and
    in a gate: as close to torch's float64 GLU as torch's float32 is, NaN where it is."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 48, generator=generator, dtype=torch.float64)
    x = x * torch.logspace(-3, 4, 24, dtype=torch.float64).repeat(2)
    x[3, 5], x[4, 24 + 7] = float("nan"), float("nan")
    bias = torch.randn(48, generator=generator, dtype=torch.float64)
    residual, upstream = torch.randn(2, 256, 24, generator=generator, dtype=torch.float64)

    def glu_and_gradient(x, bias, residual, upstream, compiled):
        x = x.detach().clone().requires_grad_()
        if compiled:
            y = fused._BiasGLUResidual.apply(x, bias, residual)
        else:
            y = residual + F.glu(x + bias, dim=-1)
        (grad,) = torch.autograd.grad(y, x, upstream)
        return y, grad

    reference = glu_and_gradient(x, bias, residual, upstream, False)
    as_float = [t.float() for t in (x, bias, residual, upstream)]
    torch_own = glu_and_gradient(*as_float, False)
    got = glu_and_gradient(*as_float, True)
    _assert_float32_as_close_as_torchs(got, torch_own, reference, infinities=False)


def test_the_compiled_pass_is_taken_only_where_it_computes_what_torch_would():
    linear = torch.nn.Linear(3, 4)
    x = torch.rand(2, 3)
    assert compiled_pass_takes(x, linear) == native_expected()
    assert not compiled_pass_takes(x.double(), linear)  # x and the weights in two dtypes
    assert not compiled_pass_takes(x, torch.nn.Linear(3, 4, bias=False))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 products: torch's path
        assert not compiled_pass_takes(x, linear)


def test_the_mlp_keeps_a_sequentials_parameter_names_and_computes_the_same():
    """Checkpoints of the blocks from before the fusion still load (0.* and 2.*), and the
    MLP computes Linear -> GELU -> Linear whichever path it takes."""
    torch.manual_seed(0)
    mlp = GELUMLP(4, 8)
    assert sorted(mlp.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    x = torch.randn(2, 3, 4)
    first, _, last = mlp
    torch.testing.assert_close(mlp(x), last(F.gelu(first(x))))
