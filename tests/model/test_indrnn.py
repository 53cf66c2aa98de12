"""IndRNN: the fast recurrence against the plain loop, stepping, the bound on u, stability."""

import copy
import math
import warnings
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from native_kernels import native_expected
from torch import nn

from seqmnist.model import indrnn as indrnn_module
from seqmnist.model.core import Bidirectional, CoreError, run_stepwise
from seqmnist.model.indrnn import (
    IndRNN,
    ResidualBidirectional,
    batch_norm_residual,
    build,
    indrnn_loop,
    indrnn_recurrence,
    recurrent_max_for,
)
from seqmnist.model.options import IndRNNOptions
from seqmnist.model.registry import LayerSpec

COMPILED = (False, True) if native_expected() else (False,)  # the Python loops, the compiled ones
LENGTHS = st.one_of(st.integers(1, 40), st.integers(41, 784))


def spec(input_size, hidden_size, steps=28, bidirectional=False, **options) -> LayerSpec:
    return LayerSpec(input_size, hidden_size, bidirectional, steps, IndRNNOptions(**options))


def gradients(output: torch.Tensor, inputs, weights: torch.Tensor) -> list[torch.Tensor]:
    # One step never reads u, so the loop leaves it out of the graph: its gradient is zero.
    found = torch.autograd.grad((output * weights).sum(), inputs, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, found)]


@settings(max_examples=12, deadline=None)
@given(
    steps=LENGTHS,
    batch=st.integers(1, 5),
    hidden=st.integers(1, 6),
    bound=st.floats(0.5, 1.5),
    seed=st.integers(0, 2**16),
)
@example(steps=784, batch=3, hidden=4, bound=2 ** (1 / 784), seed=0)  # the pixel view's length
@pytest.mark.parametrize("compiled", COMPILED)
def test_fast_recurrence_equals_the_loop_in_values_and_gradients(
    compiled, steps, batch, hidden, bound, seed
):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(steps, batch, hidden, generator=generator, dtype=torch.float64)  # (T, B, H)
    a.requires_grad_()
    # Both signs, up to the bound: negative u makes a unit alternate.
    u = (2 * torch.rand(hidden, generator=generator, dtype=torch.float64) - 1) * bound
    u.requires_grad_()
    weights = torch.randn(steps, batch, hidden, generator=generator, dtype=torch.float64)
    fast = indrnn_recurrence(a, u, compiled)
    slow = indrnn_loop(a, u)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(gradients(fast, (a, u), weights), gradients(slow, (a, u), weights)):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("compiled", COMPILED)
def test_gradients_decaying_into_subnormal_floats_are_flushed_to_zero(compiled):
    # With u = 0.5 the gradient reaching step t from the last is 0.5**(T - t):
    # subnormal after 126 steps in float32, where the loop keeps computing with it.
    a = torch.ones(200, 2, 3, requires_grad=True)  # (T, B, H), every unit active
    u = torch.full((3,), 0.5, requires_grad=True)
    weights = torch.zeros(200, 2, 3)
    weights[-1] = 1.0  # the loss reads the last step only
    fast, _ = gradients(indrnn_recurrence(a, u, compiled), (a, u), weights)
    slow, _ = gradients(indrnn_loop(a, u), (a, u), weights)
    tiny = torch.finfo(torch.float32).tiny
    assert bool(((slow != 0) & (slow.abs() < tiny)).any())  # the loop's are subnormal
    assert not bool(((fast != 0) & (fast.abs() < tiny)).any())  # ours are flushed
    torch.testing.assert_close(fast, slow, rtol=0, atol=tiny)


@pytest.mark.parametrize("compiled", COMPILED)
def test_nan_passes_through_as_the_loop_passes_it(compiled):
    a = torch.randn(6, 2, 3, dtype=torch.float64)
    a[2, 0, 1] = float("nan")
    a.requires_grad_()
    u = torch.tensor([0.5, 0.9, -0.7], dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 2, 3, dtype=torch.float64)
    fast, slow = indrnn_recurrence(a, u, compiled), indrnn_loop(a, u)
    assert torch.equal(fast.isnan(), slow.isnan()) and fast.isnan().any()
    for ours, theirs in zip(gradients(fast, (a, u), weights), gradients(slow, (a, u), weights)):
        assert torch.equal(ours.isnan(), theirs.isnan())


@pytest.mark.parametrize("compiled", COMPILED)
def test_a_time_major_view_is_taken_as_it_is(compiled):
    x = torch.randn(2, 7, 3, dtype=torch.float64)  # (B, T, H)
    a = x.transpose(0, 1)  # (T, B, H), not contiguous
    u = torch.tensor([0.5, 0.9, -0.7], dtype=torch.float64)
    torch.testing.assert_close(indrnn_recurrence(a, u, compiled), indrnn_loop(a, u))


@pytest.mark.parametrize("compiled", COMPILED)
def test_fast_recurrence_passes_gradcheck(compiled):
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(9, 2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    u = torch.tensor([-0.9, 0.5, 1.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, u: indrnn_recurrence(a, u, compiled), (a, u))


@settings(max_examples=12, deadline=None)
@given(
    steps=LENGTHS,
    batch=st.integers(1, 4),
    input_size=st.integers(1, 5),
    hidden=st.integers(1, 5),
    residual=st.booleans(),
    batch_norm=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(steps=784, batch=2, input_size=1, hidden=3, residual=True, batch_norm=True, seed=0)
@example(steps=784, batch=2, input_size=3, hidden=3, residual=True, batch_norm=False, seed=1)
@example(steps=28, batch=3, input_size=4, hidden=4, residual=True, batch_norm=True, seed=2)
def test_forward_equals_stepping_in_values_and_gradients(
    steps, batch, input_size, hidden, residual, batch_norm, seed
):
    torch.manual_seed(seed)
    core = IndRNN(input_size, hidden, 2 ** (1 / steps), residual, batch_norm).double()
    if batch_norm:  # running statistics as training would leave them
        core.norm.running_mean.uniform_(-1, 1)
        core.norm.running_var.uniform_(0.5, 2)
        nn.init.uniform_(core.norm.weight, 0.5, 2)
        nn.init.uniform_(core.norm.bias, -1, 1)
    core.eval()  # batch norm steps by its running statistics, as forward does in eval
    x = torch.randn(batch, steps, input_size, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(batch, steps, hidden, dtype=torch.float64)
    inputs = (x, *core.parameters())
    whole = core(x)  # (B, T, H)
    stepped = run_stepwise(core, x)  # (B, T, H)
    assert whole.shape == (batch, steps, hidden)
    torch.testing.assert_close(whole, stepped, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(gradients(whole, inputs, weights), gradients(stepped, inputs, weights)):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def _graph_nodes(tensor: torch.Tensor) -> set[str]:
    seen, pending = set(), [tensor.grad_fn]
    while pending:
        node = pending.pop()
        if node is not None and node not in seen:
            seen.add(node)
            pending.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


def test_forward_takes_the_fast_path_and_tracing_the_loop():
    core = build(spec(3, 4)).eval()
    x = torch.rand(2, 6, 3)
    assert "_RecurrenceBackward" in _graph_nodes(core(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's deprecation and constant-shape notes
        traced = torch.jit.trace(core, (x,), check_trace=False)
    assert "_Recurrence" not in str(traced.graph)  # the ONNX exporter sees plain ops
    torch.testing.assert_close(traced(x), core(x))


def test_batch_norm_in_training_normalises_over_batch_and_time():
    torch.manual_seed(0)
    core = IndRNN(3, 5, 2 ** (1 / 20), residual=False, batch_norm=True)
    with torch.no_grad():
        core.W.abs_()  # every unit active on positive inputs
    outputs = core(torch.rand(6, 20, 3) * 10)  # (B, T, H), batch statistics
    torch.testing.assert_close(outputs.mean((0, 1)), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        outputs.var((0, 1), unbiased=False), torch.ones(5), atol=1e-3, rtol=0
    )
    assert core.norm.num_batches_tracked == 1


def _norm_steps(norm, inputs, residuals, upstream, compiled):
    """Outputs, gradients (h, residual, weight, bias) and running statistics after a
    training step of batch_norm_residual per input, on the compiled or the torch path."""
    results = []
    with mock.patch.object(indrnn_module, "compiled_norm_takes", lambda h, norm: compiled):
        for h, residual in zip(inputs, residuals):
            h = h.detach().clone().requires_grad_()
            residual = None if residual is None else residual.detach().clone().requires_grad_()
            y = batch_norm_residual(norm, h, residual)
            wrt = [h, norm.weight, norm.bias] + ([] if residual is None else [residual])
            results += [y, *torch.autograd.grad(y, wrt, upstream)]
    stats = [norm.running_mean, norm.running_var, norm.num_batches_tracked]
    return results + [s.clone() for s in stats if s is not None]


@pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja: no compiled norm")
@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(2, 3000),
    columns=st.integers(1, 20),
    residual=st.booleans(),
    momentum=st.sampled_from([0.1, 0.5, None]),
    track=st.booleans(),
    offset=st.sampled_from([0.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_compiled_batch_norm_equals_torchs_in_training(
    rows, columns, residual, momentum, track, offset, seed
):
    """float64, three training steps: the compiled norm (and shortcut) gives nn.BatchNorm1d's
    outputs, gradients and running statistics (momentum or the cumulative average)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    norm = nn.BatchNorm1d(columns, momentum=momentum, track_running_stats=track).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    shape = (3, rows, columns)
    inputs = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + offset
    residuals = (
        torch.randn(shape, generator=generator, dtype=torch.float64) if residual else [None] * 3
    )
    upstream = torch.randn(rows, columns, generator=generator, dtype=torch.float64)
    want = _norm_steps(copy.deepcopy(norm), inputs, residuals, upstream, compiled=False)
    got = _norm_steps(copy.deepcopy(norm), inputs, residuals, upstream, compiled=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja: no compiled norm")
def test_compiled_batch_norm_in_float32_is_as_close_to_float64_as_torchs():
    """A mean of 1e4 and a spread of 1 over 20,000 rows (a unit holding a large state): the
    float32 norm is as close to float64 as torch's float32 one, in outputs, gradients and
    running statistics, to a factor of 2."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, 20000, 12, generator=generator, dtype=torch.float64) + 1e4
    residuals = torch.randn(1, 20000, 12, generator=generator, dtype=torch.float64)
    upstream = torch.randn(20000, 12, generator=generator, dtype=torch.float64)
    norm = nn.BatchNorm1d(12).double()

    def run(dtype, compiled):
        cast = copy.deepcopy(norm).to(dtype)
        return _norm_steps(
            cast, inputs.to(dtype), residuals.to(dtype), upstream.to(dtype), compiled
        )

    reference = run(torch.float64, False)
    torch_own, got = run(torch.float32, False), run(torch.float32, True)
    for g, t, w in zip(got, torch_own, reference, strict=True):
        torch_error = (t.double() - w.double()).abs().max().item()
        error = (g.double() - w.double()).abs().max().item()
        assert error <= 2 * torch_error + 1e-6 * w.double().abs().max().item()


@pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja: no compiled norm")
@pytest.mark.parametrize("time_major", [False, True], ids=["batch-major", "time-major"])
def test_a_layer_with_batch_norm_and_its_shortcut_trains_as_torchs_operations(time_major):
    """Training mode, equal widths: the layer's compiled norm and shortcut give x + BN(h)
    as torch computes it, in outputs, gradients (x and every parameter) and running
    statistics, whether x is laid out batch-major or time-major (a layer's output)."""
    torch.manual_seed(0)
    core = IndRNN(4, 4, 2 ** (1 / 28), residual=True, batch_norm=True).double()
    x = torch.randn(28, 3, 4, dtype=torch.float64).transpose(0, 1)  # (B, T, F)
    x = x if time_major else x.contiguous()
    weights = torch.randn(3, 28, 4, dtype=torch.float64)
    results = []
    for compiled in (False, True):
        layer = copy.deepcopy(core)
        inputs = x.detach().clone().requires_grad_()
        with mock.patch.object(indrnn_module, "compiled_norm_takes", lambda h, n, c=compiled: c):
            outputs = layer(inputs)
        wrt = [inputs, *layer.parameters()]
        results.append([outputs, *gradients(outputs, wrt, weights), *layer.norm.buffers()])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_batch_norm_outside_training_or_over_one_row_is_torchs():
    """Eval normalises by the running statistics (torch's path); one row in training is
    torch's error, not a silent zero variance."""
    norm = nn.BatchNorm1d(3)
    h = torch.randn(4, 3)
    assert indrnn_module.compiled_norm_takes(h, norm) == native_expected()
    norm.eval()
    assert not indrnn_module.compiled_norm_takes(h, norm)
    torch.testing.assert_close(batch_norm_residual(norm, h, None), norm(h))
    norm.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_residual(norm, h[:1], None)


def test_residual_only_where_the_widths_match():
    x = torch.rand(2, 5, 6)
    same = build(spec(6, 6)).eval()
    assert same.residual
    with_shortcut = same(x)
    same.residual = False
    torch.testing.assert_close(with_shortcut, x + same(x))
    assert not build(spec(6, 6, residual=False)).residual
    assert not build(spec(6, 4)).residual
    assert build(spec(6, 4))(x).shape == (2, 5, 4)


def test_bidirectional_reads_both_ways_and_keeps_the_shortcut_around_the_pair():
    x = torch.rand(3, 7, 8)
    pair = build(spec(8, 4, bidirectional=True))
    assert isinstance(pair, ResidualBidirectional) and pair.output_size == 8
    plain = Bidirectional(pair.forward_core, pair.backward_core)
    torch.testing.assert_close(pair(x), x + plain(x))
    assert type(build(spec(8, 4, bidirectional=True, residual=False))) is Bidirectional
    assert type(build(spec(5, 4, bidirectional=True))) is Bidirectional
    with pytest.raises(CoreError, match="step by step"):
        pair.initial_state(3, x)


def test_initialisation_follows_the_paper():
    for steps in (28, 784):
        bound = 2 ** (1 / steps)
        core = build(LayerSpec(28, 64, False, steps, None))  # no options: the defaults
        assert core.recurrent_max == pytest.approx(bound)
        assert bool(((core.u > 0) & (core.u < bound)).all())
        assert bool((core.b == 0).all())
        assert core.W.shape == (64, 28)
    assert recurrent_max_for(IndRNNOptions(recurrent_max=0.7), 784) == 0.7
    assert build(spec(4, 4, recurrent_max=0.7)).u.max() <= 0.7


def _train(core: IndRNN, optimizer, loss_sign: float, steps: int) -> None:
    x = torch.rand(4, 30, core.input_size)
    for _ in range(steps):
        optimizer.zero_grad()
        (loss_sign * core(x)[:, -1].sum()).backward()
        optimizer.step()


@pytest.mark.parametrize("optimizer_class, lr", [(torch.optim.SGD, 10.0), (torch.optim.Adam, 1.0)])
def test_the_bound_holds_after_training_steps_at_a_large_learning_rate(optimizer_class, lr):
    torch.manual_seed(0)
    core = build(spec(3, 16, steps=30))
    bound = core.recurrent_max
    # Rewarding a large last output drives every u toward and past the bound.
    _train(core, optimizer_class(core.parameters(), lr=lr), loss_sign=-1.0, steps=20)
    u = core.recurrent_weight().detach()
    assert bool((u.abs() <= bound).all())
    # Pressed against the bound, where the paper's clip after each step would hold it.
    assert u.max().item() == pytest.approx(bound)
    # Memory grows at most by bound**T, so a held value cannot explode.
    x = torch.ones(1, 30, 3)
    assert torch.isfinite(core(x)).all()


def test_a_unit_pressed_against_the_bound_is_not_frozen():
    core = build(spec(2, 3, steps=30))
    with torch.no_grad():
        core.u.copy_(torch.tensor([5.0, -5.0, 0.5]))  # two beyond the bound, one inside
        core.W.abs_()  # every unit active on positive inputs, so every u has a gradient
    x = torch.rand(2, 30, 2)
    core(x)[:, -1].sum().neg().backward()  # wants u larger: no push past the bound
    outward = core.u.grad.clone()
    assert outward[0] == 0 and outward[2] < 0
    core.u.grad = None
    core(x)[:, -1].sum().backward()  # wants u smaller: the gradient pulls it back
    assert core.u.grad[0] > 0 and core.u.grad[2] > 0


def _stack(steps: int, batch_norm: bool) -> torch.nn.Sequential:
    torch.manual_seed(0)
    bound = 2 ** (1 / steps)
    return torch.nn.Sequential(
        IndRNN(1, 16, bound, residual=True, batch_norm=batch_norm),
        IndRNN(16, 16, bound, residual=True, batch_norm=batch_norm),
    )


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch_norm"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_no_overflow_at_784_steps_with_inputs_far_outside_the_unit_interval(autocast, batch_norm):
    stack = _stack(784, batch_norm)
    with torch.no_grad():  # the worst case the bound allows: every unit holds all it reads
        for core in stack:
            core.u.fill_(core.recurrent_max)
    x = (torch.rand(8, 784, 1) * 100).requires_grad_()  # pixels x 100
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs = stack(x)  # (B, T, H)
        loss = outputs[:, -1].square().mean()
    loss.backward()
    assert torch.isfinite(outputs).all() and torch.isfinite(loss)
    assert torch.isfinite(x.grad).all()
    for name, parameter in stack.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
    # The recurrence keeps float32 under autocast: small inputs are not lost.
    assert outputs.dtype == torch.float32


def test_a_few_optimizer_steps_reduce_the_loss_on_random_data():
    torch.manual_seed(0)
    cores = torch.nn.Sequential(build(spec(5, 12)), build(spec(12, 12)))
    head = torch.nn.Linear(12, 3)
    x, labels = torch.rand(32, 28, 5), torch.randint(0, 3, (32,))
    parameters = [*cores.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-2)

    def loss() -> torch.Tensor:
        return F.cross_entropy(head(cores(x)[:, -1]), labels)

    before = loss().item()
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < before


def test_onnx_export_has_a_free_batch_axis(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    normed = IndRNN(8, 8, 2 ** (1 / 28), residual=True, batch_norm=True)
    model = torch.nn.Sequential(build(spec(3, 8)), normed, build(spec(8, 4, bidirectional=True)))
    with torch.no_grad():
        model(torch.rand(16, 28, 3))  # running statistics away from their initial values
    model.eval()
    assert all(core.exportable for core in model)
    path = tmp_path / "indrnn.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(2, 28, 3),), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = torch.rand(batch, 28, 3)
        (ours,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(ours), model(x), rtol=1e-5, atol=1e-5)


def test_bound_is_finite_and_above_one_for_every_length():
    for steps in (1, 28, 784, 10**6):
        bound = recurrent_max_for(None, steps)
        assert math.isfinite(bound) and 1 < bound <= 2
