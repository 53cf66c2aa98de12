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

from seqmnist.model import lem
from seqmnist.model.core import Bidirectional, run_stepwise
from seqmnist.model.options import LEMOptions
from seqmnist.model.registry import LayerSpec

PIXEL_STEPS = 784
GATES = ("1", "2", "_z", "_y")
LOOPS = compiled_loops()  # the loop in torch operations, and native/lem.cpp's


def make(input_size, hidden_size, dt=0.21, seed=0, dtype=torch.float32) -> lem.LEM:
    torch.manual_seed(seed)  # dt 0.21: the paper's sMNIST setting
    return lem.LEM(input_size, hidden_size, dt).to(dtype)


def values_and_gradients(run, core, x, upstream):
    x = x.detach().requires_grad_()
    outputs = run(core, x)
    return outputs, torch.autograd.grad(outputs, [x, *core.parameters()], upstream)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 5),
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 8),
    steps=st.one_of(st.integers(1, 30), st.integers(31, PIXEL_STEPS)),
    dt=st.one_of(st.just(1.0), st.floats(0.01, 2.0)),
    seed=st.integers(0, 2**16),
)
@example(batch=2, input_size=1, hidden_size=4, steps=PIXEL_STEPS, dt=0.21, seed=1)
@example(batch=1, input_size=3, hidden_size=1, steps=1, dt=1.0, seed=2)
def test_fast_forward_equals_the_stepwise_reference_in_values_and_gradients(
    batch, input_size, hidden_size, steps, dt, seed
):
    core = make(input_size, hidden_size, dt, seed, torch.float64)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, input_size, dtype=torch.float64, generator=generator)
    upstream = torch.randn(batch, steps, hidden_size, dtype=torch.float64, generator=generator)
    slow, slow_grads = values_and_gradients(run_stepwise, core, x, upstream)
    for compiled, fast, fast_grads, inferred in each_loop(
        lem, core, x, upstream, values_and_gradients
    ):
        torch.testing.assert_close(inferred, slow, rtol=1e-10, atol=1e-12, msg=str(compiled))
        assert fast.shape == (batch, steps, hidden_size)
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12, msg=str(compiled))
        for fast_grad, slow_grad in zip(fast_grads, slow_grads):
            torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-9, atol=1e-11)


@pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja: no compiled loop")
def test_compiled_loop_equals_the_torch_operations_in_float32_at_784_steps():
    """float32, the training precision: the compiled loop's own exp and tanh
    (vectorised.h) keep it as close to float64 as torch's operations are."""
    core = make(1, 48, dt=0.21, seed=5)
    x = (torch.rand(16, PIXEL_STEPS, 1) - 0.5) * 20
    upstream = torch.randn(16, PIXEL_STEPS, 48)
    assert_compiled_loop_as_close_as_torch(lem, core, x, upstream)


def test_gradients_reach_only_the_parameters_asked_for():
    core = make(3, 5, dtype=torch.float64)
    x = torch.rand(2, 9, 3, dtype=torch.float64)
    wanted = [core.W_y, core.V1, core.b_z]
    fast = torch.autograd.grad(core(x)[:, -1].sum(), wanted)
    slow = torch.autograd.grad(run_stepwise(core, x)[:, -1].sum(), wanted)
    for fast_grad, slow_grad in zip(fast, slow):
        torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-10, atol=1e-12)


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


@pytest.mark.parametrize("dt", [0.21, 1.0])
@pytest.mark.parametrize("scale", [100.0, -1e4])
def test_both_states_stay_inside_minus_1_1_whatever_the_input_when_dt_is_at_most_1(dt, scale):
    # Each update is a convex combination of the old state and a tanh when dt <= 1.
    core = make(1, 16, dt, seed=3)
    with torch.no_grad():
        for gate in GATES:
            getattr(core, f"W{gate}").mul_(20)  # strong recurrences too
    x = torch.rand(2, PIXEL_STEPS, 1) * scale
    with torch.no_grad():
        y = core(x)  # (B, T, H)
        state = core.initial_state(2, x)
        for t in range(PIXEL_STEPS):
            _, state = core.step(x[:, t], state)
            assert all(part.abs().max() <= 1 for part in state), t
    assert torch.isfinite(y).all() and y.abs().max() <= 1


@pytest.mark.parametrize(
    "compiled", LOOPS, ids=lambda compiled: "compiled" if compiled else "torch"
)
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_784_steps_of_inputs_far_outside_0_1_stay_finite_forward_and_backward(autocast, compiled):
    core = make(1, 64, dt=1.0, seed=4)
    x = (torch.rand(8, PIXEL_STEPS, 1) - 0.5) * 200  # pixels are in [0, 1]; these reach +-100
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), loop(lem, compiled):
        y = core(x)
        loss = y[:, -1].square().sum() + y.mean()
    loss.backward()
    assert y.dtype == torch.float32  # the recurrence runs in the weights' dtype
    assert torch.isfinite(y).all()
    for name, parameter in core.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    if autocast:  # only the input projection ran in bf16: close to the fp32 run
        with torch.no_grad():
            assert (core(x) - y).abs().max() < 0.05


def test_a_few_optimizer_steps_reduce_the_loss_on_random_data():
    core = make(5, 16, dt=1.0)
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
    assert losses[-1] < 0.7 * losses[0]


def test_parameters_carry_the_papers_names_and_the_reference_initialisation():
    core = make(28, 128)
    names = {name for name, _ in core.named_parameters()}
    assert names == {f"{kind}{gate}" for kind in "WVb" for gate in GATES}
    assert core.W_y.shape == (128, 128) and core.V1.shape == (128, 28) and core.b2.shape == (128,)
    assert sum(p.numel() for p in core.parameters()) == 80_384  # ~ nn.LSTM-128 on rows
    bound = 1 / 128**0.5  # tk-rusch/LEM: U(-1/sqrt(H), 1/sqrt(H)) for everything
    for name, parameter in core.named_parameters():
        # biases are the sum of the reference's two, so reach twice as far
        limit = 2 * bound if name.startswith("b") else bound
        assert parameter.abs().max() <= limit, name
        assert parameter.abs().max() > 0.5 * limit, name
    biases = torch.cat([getattr(core, f"b{gate}") for gate in GATES])
    assert biases.abs().max() > bound  # not a single uniform draw


def test_build_follows_the_spec():
    core = lem.build(LayerSpec(28, 12, False, 28, LEMOptions(dt=0.31)))
    assert (core.input_size, core.output_size, core.dt) == (28, 12, 0.31)
    both = lem.build(LayerSpec(28, 12, True, 28, LEMOptions()))
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
