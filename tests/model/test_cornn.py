import io

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from native_kernels import (
    assert_compiled_loop_as_close_as_torch,
    compiled_loops,
    each_loop,
    loop,
    native_expected,
)
from torch.nn import functional as F

from seqmnist.model import cornn
from seqmnist.model.core import Bidirectional, run_stepwise
from seqmnist.model.options import CoRNNOptions
from seqmnist.model.registry import LayerSpec

PIXEL_STEPS = 784
SMNIST = CoRNNOptions(dt=0.042, gamma=2.7, epsilon=4.7)  # the paper's sMNIST setting
PSMNIST = CoRNNOptions(dt=0.076, gamma=0.4, epsilon=8.0)  # and its psMNIST one
LOOPS = compiled_loops()  # the loop in torch operations, and native/cornn.cpp's


def make(input_size, hidden_size, options=SMNIST, seed=0, dtype=torch.float32) -> cornn.CoRNN:
    torch.manual_seed(seed)
    core = cornn.CoRNN(input_size, hidden_size, options.dt, options.gamma, options.epsilon)
    return core.to(dtype)


def values_and_gradients(run, core, x, upstream):
    x = x.detach().requires_grad_()
    outputs = run(core, x)
    inputs = [x, *core.parameters()]
    return outputs, torch.autograd.grad(outputs, inputs, upstream)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 5),
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 8),
    steps=st.one_of(st.integers(1, 30), st.integers(31, PIXEL_STEPS)),
    dt=st.floats(0.01, 0.3),
    gamma=st.floats(0.1, 5.0),
    epsilon=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**16),
)
@example(
    batch=2,
    input_size=1,
    hidden_size=4,
    steps=PIXEL_STEPS,
    dt=0.042,
    gamma=2.7,
    epsilon=4.7,
    seed=1,
)
@example(batch=1, input_size=3, hidden_size=1, steps=1, dt=0.1, gamma=1.0, epsilon=1.0, seed=2)
def test_fast_forward_equals_the_stepwise_reference_in_values_and_gradients(
    batch, input_size, hidden_size, steps, dt, gamma, epsilon, seed
):
    options = CoRNNOptions(dt=dt, gamma=gamma, epsilon=epsilon)
    core = make(input_size, hidden_size, options, seed, torch.float64)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, input_size, dtype=torch.float64, generator=generator)
    upstream = torch.randn(batch, steps, hidden_size, dtype=torch.float64, generator=generator)
    slow, slow_grads = values_and_gradients(run_stepwise, core, x, upstream)
    for compiled, fast, fast_grads, inferred in each_loop(
        cornn, core, x, upstream, values_and_gradients
    ):
        torch.testing.assert_close(inferred, slow, rtol=1e-10, atol=1e-12, msg=str(compiled))
        assert fast.shape == (batch, steps, hidden_size)
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12, msg=str(compiled))
        for fast_grad, slow_grad in zip(fast_grads, slow_grads):
            # Absolute slack in proportion to the gradient: the two sum the same terms in
            # another order, and a gradient near zero is a difference of large terms.
            scale = float(slow_grad.abs().max()) + 1.0
            torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-9, atol=1e-10 * scale)


@pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja: no compiled loop")
def test_compiled_loop_equals_the_torch_operations_in_float32_at_784_steps():
    """float32, the training precision: the compiled loop's own tanh (vectorised.h)
    keeps it as close to float64 as torch's operations are."""
    core = make(1, 48, PSMNIST, seed=5)
    x = (torch.rand(16, PIXEL_STEPS, 1) - 0.5) * 20
    upstream = torch.randn(16, PIXEL_STEPS, 48)
    assert_compiled_loop_as_close_as_torch(cornn, core, x, upstream)


def test_gradients_reach_only_the_parameters_asked_for():
    core = make(3, 5, dtype=torch.float64)
    x = torch.rand(2, 9, 3, dtype=torch.float64)
    (grad_W,) = torch.autograd.grad(core(x)[:, -1].sum(), [core.W])
    (expected,) = torch.autograd.grad(run_stepwise(core, x)[:, -1].sum(), [core.W])
    torch.testing.assert_close(grad_W, expected, rtol=1e-10, atol=1e-12)


def test_stepping_from_a_state_continues_where_the_sequence_left_off():
    core = make(4, 6, dtype=torch.float64)
    x = torch.rand(3, 12, 4, dtype=torch.float64)
    state = core.initial_state(3, x)
    for t in range(7):
        _, state = core.step(x[:, t], state)
    eighth, _ = core.step(x[:, 7], state)  # (B, H)
    torch.testing.assert_close(eighth, core(x)[:, 7], rtol=1e-12, atol=1e-14)
    y, z = core.initial_state(5, x)
    assert y.shape == z.shape == (5, 6) and y.dtype == torch.float64
    assert not y.any() and not z.any()


def bound_on_positions(options: CoRNNOptions) -> float:
    """sup |y_n| for one oscillator driven from rest by any forcing in [-1, 1].

    Each unit is a linear system s_n = A s_{n-1} + c f_n in s = (y, z) with |f_n| <= 1
    (a tanh), so |y_n| <= sum_k |(A^k c)_y|: the l1 norm of its impulse response,
    finite when A's spectral radius is below 1. This is the bounded energy the
    paper proves, in the form this discretisation gives it.
    """
    dt, gamma, epsilon = options.dt, options.gamma, options.epsilon
    A = np.array([[1 - dt * dt * gamma, dt * (1 - dt * epsilon)], [-dt * gamma, 1 - dt * epsilon]])
    assert max(abs(np.linalg.eigvals(A))) < 1
    response, total = np.array([dt * dt, dt]), 0.0
    for _ in range(200_000):
        total += abs(response[0])
        response = A @ response
        if abs(response).sum() < 1e-15:
            return total
    raise AssertionError("impulse response did not decay")


@pytest.mark.parametrize("options", [SMNIST, PSMNIST], ids=["smnist", "psmnist"])
@pytest.mark.parametrize("scale", [100.0, -1e4])
def test_positions_stay_within_the_oscillators_bound_whatever_the_input(options, scale):
    core = make(1, 32, options, seed=3)
    with torch.no_grad():
        core.W.mul_(20)  # strong couplings too: the bound holds for any weights
        core.W_z.mul_(20)
        x = torch.rand(4, PIXEL_STEPS, 1) * scale
        y = core(x)  # (B, T, H)
    assert torch.isfinite(y).all()
    assert y.abs().max() <= bound_on_positions(options) * (1 + 1e-5)


def test_the_bound_is_reached_by_a_saturating_force():
    # With the force pinned at +1, y settles at 1/gamma: the bound is the real
    # envelope, not a loose one.
    core = make(1, 3, SMNIST, dtype=torch.float64)
    with torch.no_grad():
        core.W.zero_(), core.W_z.zero_(), core.b.zero_(), core.V.fill_(100.0)
        y = core(torch.ones(1, PIXEL_STEPS, 1, dtype=torch.float64))
    bound = bound_on_positions(SMNIST)
    assert bound == pytest.approx(1 / SMNIST.gamma, rel=1e-6)
    assert y[0, -1].min() > 0.999 * bound


@pytest.mark.parametrize(
    "compiled", LOOPS, ids=lambda compiled: "compiled" if compiled else "torch"
)
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_784_steps_of_inputs_far_outside_0_1_stay_finite_forward_and_backward(autocast, compiled):
    core = make(1, 64, PSMNIST, seed=4)
    x = (torch.rand(8, PIXEL_STEPS, 1) - 0.5) * 200  # pixels are in [0, 1]; these reach +-100
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), loop(cornn, compiled):
        y = core(x)
        loss = y[:, -1].square().sum() + y.mean()
    loss.backward()
    assert y.dtype == torch.float32  # the oscillator runs in the weights' dtype
    assert torch.isfinite(y).all()
    for name, parameter in core.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    if autocast:  # only the input projection ran in bf16: close to the fp32 run
        with torch.no_grad():
            assert (core(x) - y).abs().max() < 0.05 * bound_on_positions(PSMNIST)


def test_a_few_optimizer_steps_reduce_the_loss_on_random_data():
    core = make(5, 16, CoRNNOptions(dt=0.1, gamma=1.0, epsilon=1.0))
    head = torch.nn.Linear(16, 3)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(32, 20, 5, generator=generator)
    labels = x[:, :, :3].mean(dim=1).argmax(dim=1)  # learnable from the sequence
    optimizer = torch.optim.Adam([*core.parameters(), *head.parameters()], lr=3e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.cross_entropy(head(core(x)[:, -1]), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_parameters_carry_the_papers_names_and_the_reference_initialisation():
    core = make(28, 193)
    shapes = {name: tuple(p.shape) for name, p in core.named_parameters()}
    assert shapes == {"W": (193, 193), "W_z": (193, 193), "V": (193, 28), "b": (193,)}
    assert sum(p.numel() for p in core.parameters()) == 80_095  # ~ nn.LSTM-128 on rows
    bound = 1 / (28 + 2 * 193) ** 0.5  # nn.Linear over cat(u, z, y), as in tk-rusch/coRNN
    for name, parameter in core.named_parameters():
        assert parameter.abs().max() <= bound, name
        assert parameter.abs().max() > 0.9 * bound, name


def test_build_follows_the_spec():
    core = cornn.build(LayerSpec(28, 12, False, 28, PSMNIST))
    assert (core.input_size, core.output_size) == (28, 12)
    assert (core.dt, core.gamma, core.epsilon) == (0.076, 0.4, 8.0)
    both = cornn.build(LayerSpec(28, 12, True, 28, SMNIST))
    assert isinstance(both, Bidirectional) and both.output_size == 24
    assert both(torch.rand(2, 5, 28)).shape == (2, 5, 24)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
def test_exports_to_onnx_with_a_free_batch_axis():
    onnxruntime = pytest.importorskip("onnxruntime")
    core = make(3, 5).eval()
    assert core.exportable
    buffer = io.BytesIO()
    torch.onnx.export(
        core, (torch.rand(2, 6, 3),), buffer, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    session = onnxruntime.InferenceSession(buffer.getvalue())
    for batch in (1, 4):
        x = torch.rand(batch, 6, 3) * 100
        (exported,) = session.run(None, {"x": x.numpy()})
        np.testing.assert_allclose(exported, core(x).detach().numpy(), atol=1e-5)
