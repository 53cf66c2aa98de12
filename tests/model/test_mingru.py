"""minGRU and minLSTM (Feng et al. 2024): every parallel form against stepping, the paper's gates and g."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from native_kernels import cpu_methods, native_expected

from seqmnist.model.core import run_stepwise
from seqmnist.model.mingru import (
    MinGRU,
    MinLSTM,
    MinRNNCore,
    _Coefficients,
    build_mingru,
    build_minlstm,
    g,
    log_g,
)
from seqmnist.model.registry import LayerSpec


@pytest.fixture(autouse=True)
def one_thread():
    """Stepping runs thousands of tiny operations, and LayerNorm's backward
    splits even a (2, 4) tensor across OpenMP threads: with the other core
    busy each call waited ~20 ms (784 steps took 24 s on 2 threads, 0.6 s on 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BUILDS = {"mingru": build_mingru, "minlstm": build_minlstm}
METHODS = cpu_methods("sequential", "chunked", "log", "loop")  # "auto" is one of these on a CPU
# The gates as torch operations, and compiled (native/gates.cpp) where they build here.
GATES = (False, True) if native_expected() else (False,)


def _core(name, input_size, hidden_size, seed=0) -> MinRNNCore:
    torch.manual_seed(seed)
    return BUILDS[name](LayerSpec(input_size, hidden_size, False, 28, None))


def _forward_and_gradients(core, x, run):
    x = x.detach().clone().requires_grad_()
    y = run(core, x)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    return y, torch.autograd.grad((y * weights).sum(), [x, *core.parameters()])


def _assert_methods_equal_stepping(core, x):
    core.cell.compiled_gates = False  # the reference steps with the gates as torch operations
    expected, expected_grads = _forward_and_gradients(core, x, run_stepwise)
    for method, compiled in [(method, False) for method in METHODS] + [
        ("auto", True) for _ in GATES[1:]
    ]:
        core.cell.method, core.cell.compiled_gates = method, compiled
        y, grads = _forward_and_gradients(core, x, lambda c, v: c(v))
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-12, msg=method)
        for got, want in zip(grads, expected_grads):
            # The log-space scan sums exponentials of cumulative log-gates, so a
            # gradient element near zero inherits the error of its large
            # neighbours: hold it to the gradient's own scale (measured: about
            # 4e-11 of the largest element at 556 steps, where the other forms are 1e-14).
            atol = 1e-9 * want.abs().max().item() if method == "log" else 1e-11
            torch.testing.assert_close(got, want, rtol=1e-8, atol=atol, msg=method)


# Stepping 784 steps with gradients takes about a second here, so long examples are few.
@settings(max_examples=8, deadline=None)
@given(
    name=st.sampled_from(sorted(BUILDS)),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    steps=st.one_of(st.integers(1, 64), st.integers(1, 784)),
    input_size=st.sampled_from([1, 3, 5]),
    hidden_size=st.sampled_from([2, 5]),
)
def test_every_parallel_form_equals_stepping_in_values_and_gradients(
    name, seed, batch, steps, input_size, hidden_size
):
    core = _core(name, input_size, hidden_size, seed).double()
    generator = torch.Generator().manual_seed(seed)
    _assert_methods_equal_stepping(
        core, torch.rand(batch, steps, input_size, generator=generator, dtype=torch.float64)
    )


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_at_784_steps_every_parallel_form_equals_stepping(name):
    core = _core(name, 1, 4).double()
    _assert_methods_equal_stepping(core, torch.rand(2, 784, 1, dtype=torch.float64))


def test_g_is_the_papers_activation_and_log_g_its_logarithm():
    x = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    expected = torch.where(x >= 0, x + 0.5, torch.sigmoid(x))
    torch.testing.assert_close(g(x), expected)
    assert (g(x) > 0).all()
    torch.testing.assert_close(log_g(x), torch.log(expected))


def test_mingru_gates_are_the_papers():
    cell = MinGRU(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64) * 4
    k, h_tilde = cell.linear(x).chunk(2, dim=-1)
    z = torch.sigmoid(k)
    a, b = cell.coefficients(x)
    torch.testing.assert_close(a, 1 - z)
    torch.testing.assert_close(b, z * g(h_tilde))
    h = torch.rand(2, 4, dtype=torch.float64)
    torch.testing.assert_close(cell.step(x, h), (1 - z) * h + z * g(h_tilde))


def test_minlstm_gates_are_the_papers_normalised_forget_and_input():
    cell = MinLSTM(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64) * 4
    f, i, h_tilde = (
        torch.sigmoid(v) if n < 2 else v for n, v in enumerate(cell.linear(x).chunk(3, -1))
    )
    a, b = cell.coefficients(x)
    torch.testing.assert_close(a, f / (f + i))
    torch.testing.assert_close(b, i / (f + i) * g(h_tilde))


@pytest.mark.parametrize("compiled", GATES)
@pytest.mark.parametrize("cell_class", [MinGRU, MinLSTM])
def test_hand_written_gate_gradients_pass_gradcheck(cell_class, compiled):
    logits = (torch.randn(3, 4, cell_class.gates * 5, dtype=torch.float64) * 3).requires_grad_()
    bias = torch.randn(cell_class.gates * 5, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, b: _Coefficients.apply(v, b, cell_class.gates, compiled), (logits, bias)
    )


@pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja: no compiled gates")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell_class", [MinGRU, MinLSTM])
def test_compiled_gates_equal_the_torch_operations_far_outside_the_usual_range(cell_class, dtype):
    """Logits up to +-1e4 (saturated gates, exponents far past float32's range), a NaN
    and an infinity in every slot (a gate's, the candidate's): the compiled pass (own
    exp, minLSTM without logarithms) gives what the torch operations give in float64,
    NaN and infinity where they give them and nowhere else."""
    generator = torch.Generator().manual_seed(0)
    width = 7
    logits = torch.randn(64, 5, cell_class.gates * width, generator=generator, dtype=dtype)
    logits = logits * torch.logspace(-2, 4, logits.shape[1], dtype=dtype)[None, :, None]
    # one special value per (sample, step), so no element meets two (torch's minLSTM
    # gives NaN for f = i = -inf, a case with no right answer)
    specials = [float(value) for value in ("nan", "inf", "-inf")]
    for slot in range(cell_class.gates):
        for number, value in enumerate(specials):
            logits[1 + slot, number, slot * width + number] = value
    grad_a, grad_b = torch.randn(2, 64, 5, width, generator=generator, dtype=dtype)
    # the kernel adds the Linear's bias itself; its gradient is then the logits' summed
    bias = torch.randn(cell_class.gates * width, generator=generator, dtype=dtype) * 3

    def outputs(logits, bias, compiled):
        logits = logits.detach().clone().requires_grad_()
        bias = bias.detach().clone().requires_grad_()
        a, b = _Coefficients.apply(logits, bias, cell_class.gates, compiled)
        weights_a, weights_b = grad_a.to(logits.dtype), grad_b.to(logits.dtype)
        grads = torch.autograd.grad((a * weights_a + b * weights_b).sum(), [logits, bias])
        return a, b, *grads

    reference = outputs(logits.double(), bias.double(), False)
    torch_own = outputs(logits, bias, False)  # torch's operations in the same dtype
    for want, got, torch_got in zip(reference, outputs(logits, bias, True), torch_own):
        assert got.dtype == dtype
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
        # In float32 torch's own operations are off the float64 values too (1 - z of
        # a saturated z cancels; minLSTM's softplus difference loses digits): the
        # compiled pass must be as close, to a factor of 2.
        finite = want.isfinite()
        torch_error = (torch_got.double() - want)[finite].abs().max().item()
        tolerance = {"rtol": 1e-5, "atol": 2 * torch_error + 1e-6} if dtype == torch.float32 else {}
        torch.testing.assert_close(got.double(), want, equal_nan=True, **tolerance)


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_block_shapes_with_and_without_the_encoder(name):
    with_encoder, without = _core(name, 3, 6), _core(name, 6, 6)
    assert with_encoder.encoder is not None and without.encoder is None
    for core, features in ((with_encoder, 3), (without, 6)):
        assert core(torch.rand(2, 5, features)).shape == (2, 5, 6)
        assert (core.input_size, core.output_size) == (features, 6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_onnx_export_matches_with_a_free_batch_axis(name):
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    stack = torch.nn.Sequential(
        BUILDS[name](LayerSpec(5, 6, False, 20, None)),
        BUILDS[name](LayerSpec(6, 6, False, 20, None)),
    ).eval()
    assert all(core.exportable for core in stack)
    buffer = io.BytesIO()
    torch.onnx.export(
        stack, (torch.rand(2, 20, 5),), buffer, dynamo=False, input_names=["x"],
        output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )  # fmt: skip
    session = onnxruntime.InferenceSession(buffer.getvalue())
    x = torch.rand(7, 20, 5)
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, stack(x).numpy(), rtol=1e-4, atol=1e-5)
