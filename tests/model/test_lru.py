"""LRU (Orvieto et al. 2023): scan against steps, ring initialisation, eigenvalues inside the unit circle."""

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from native_kernels import cpu_methods

from seqmnist.model.core import run_stepwise
from seqmnist.model.lru import LRU, LRUCore, build
from seqmnist.model.options import LRUOptions
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


METHODS = cpu_methods("sequential", "chunked", "loop")  # "auto" is one of these on a CPU


def _core(input_size, hidden_size, state_size=None, seed=0, **options) -> LRUCore:
    torch.manual_seed(seed)
    spec = LayerSpec(
        input_size, hidden_size, False, 28, LRUOptions(state_size=state_size, **options)
    )
    return build(spec)


def _forward_and_gradients(core, x, run):
    x = x.detach().clone().requires_grad_()
    y = run(core, x)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    grads = torch.autograd.grad((y * weights).sum(), [x, *core.parameters()])
    return y, grads


# Stepping 784 steps with gradients takes ~2 s here, so long examples are few.
@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    steps=st.one_of(st.integers(1, 64), st.integers(1, 784)),
    input_size=st.sampled_from([1, 3, 6]),
    hidden_size=st.sampled_from([3, 6]),
    state_size=st.sampled_from([None, 2, 5]),
)
def test_every_scan_method_equals_stepping_in_values_and_gradients(
    seed, batch, steps, input_size, hidden_size, state_size
):
    core = _core(input_size, hidden_size, state_size, seed).double()
    x = torch.rand(
        batch, steps, input_size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    expected, expected_grads = _forward_and_gradients(core, x, run_stepwise)
    for method in METHODS:
        core.lru.method = method
        y, grads = _forward_and_gradients(core, x, lambda c, v: c(v))
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12, msg=method)
        for got, want in zip(grads, expected_grads):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=method)


def test_at_784_steps_the_scan_equals_stepping():
    core = _core(1, 4, 3).double()
    x = torch.rand(2, 784, 1, dtype=torch.float64)
    expected, expected_grads = _forward_and_gradients(core, x, run_stepwise)
    for method in ("sequential", "chunked"):
        core.lru.method = method
        y, grads = _forward_and_gradients(core, x, lambda c, v: c(v))
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12)
        for got, want in zip(grads, expected_grads):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_the_real_arithmetic_path_that_export_traces_equals_the_complex_scan():
    layer = _core(4, 4, 3).double().lru
    u = torch.randn(2, 40, 4, dtype=torch.float64)
    torch.testing.assert_close(layer.forward_real(u), layer(u), rtol=1e-10, atol=1e-12)


def test_ring_initialisation_follows_the_paper():
    layer = LRU(width=8, state_size=2000, r_min=0.4, r_max=0.9, max_phase=math.pi / 3)
    with torch.no_grad():
        eigenvalues = layer.eigenvalues()
        modulus = eigenvalues.abs()
    assert modulus.min() >= 0.4 - 1e-6 and modulus.max() <= 0.9 + 1e-6
    # Uniform on the ring: |lambda|^2 is uniform on [r_min^2, r_max^2].
    assert abs(modulus.square().mean().item() - (0.4**2 + 0.9**2) / 2) < 0.02
    phase = torch.exp(layer.theta_log.detach())
    assert phase.min() >= 0 and phase.max() <= math.pi / 3 + 1e-6
    # gamma normalises the input so the state keeps unit scale: gamma = sqrt(1 - |lambda|^2).
    torch.testing.assert_close(
        torch.exp(layer.gamma_log.detach()), torch.sqrt(1 - modulus.square())
    )
    assert layer.B_re.shape == layer.B_im.shape == (2000, 8)
    assert layer.C_re.shape == layer.C_im.shape == (8, 2000)
    assert layer.D.shape == (8,)


def test_state_size_defaults_to_the_width_and_can_be_set():
    assert _core(3, 6).lru.state_size == 6
    assert _core(3, 6, state_size=11).lru.state_size == 11


def _train_at_a_huge_learning_rate(optimizer_class, clip, steps=20):
    core = _core(5, 6, state_size=16, seed=3, r_min=0.99, r_max=0.999999)
    head = torch.nn.Linear(6, 3)
    parameters = [*core.parameters(), *head.parameters()]
    optimizer = optimizer_class(parameters, lr=1.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(8, 30, 5, generator=generator) * 10
        labels = torch.randint(0, 3, (8,), generator=generator)
        loss = torch.nn.functional.cross_entropy(head(core(x)[:, -1]), labels)
        optimizer.zero_grad()
        loss.backward()
        if clip:  # as seqmnist trains by default (grad_clip 1.0)
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
    return core


# Unclipped SGD at lr 1 takes the whole network to inf and then NaN within a
# few steps (gamma_log's and theta_log's gradients grow exponentially with
# them), and no parametrisation survives NaN weights; clipped, or with Adam,
# whose steps are bounded by lr, the weights stay finite and so must |lambda| < 1.
@pytest.mark.parametrize(
    "optimizer_class, clip",
    [(torch.optim.SGD, 1.0), (torch.optim.Adam, 1.0), (torch.optim.Adam, 0.0)],
)
def test_eigenvalues_stay_strictly_inside_the_unit_circle_after_training_at_lr_1(
    optimizer_class, clip
):
    core = _train_at_a_huge_learning_rate(optimizer_class, clip)
    with torch.no_grad():
        modulus = core.lru.eigenvalues().abs()
    assert torch.isfinite(modulus).all()
    assert modulus.max() < 1.0


def test_eigenvalues_stay_inside_the_unit_circle_whatever_the_parameters_hold():
    layer = LRU(width=2, state_size=4, r_min=0.9, r_max=0.999, max_phase=2 * math.pi)
    with torch.no_grad():
        layer.nu_log.copy_(torch.tensor([-1e4, -50.0, 100.0, 1e4]))  # exp(nu_log) from 0 to inf
        layer.theta_log.copy_(torch.tensor([-1e4, 0.0, 100.0, 1e4]))  # phase from 0 to inf
    eigenvalues = layer.eigenvalues()
    assert torch.isfinite(torch.view_as_real(eigenvalues)).all()
    assert eigenvalues.abs().max() < 1.0
    eigenvalues.abs().sum().backward()
    assert torch.isfinite(layer.nu_log.grad).all() and torch.isfinite(layer.theta_log.grad).all()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_onnx_export_matches_with_a_free_batch_axis():
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    stack = torch.nn.Sequential(
        build(LayerSpec(5, 6, False, 20, LRUOptions())),
        build(LayerSpec(6, 6, False, 20, LRUOptions(state_size=3))),
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
