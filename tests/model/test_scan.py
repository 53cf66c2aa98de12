"""Every method in model/scan.py against the plain loop, in values and gradients."""

import math
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from native_kernels import cpu_methods, native_expected

from seqmnist.model import native
from seqmnist.model.scan import (
    _sequential,
    choose_method,
    linear_recurrence,
    log_linear_recurrence,
)

FAST_METHODS = cpu_methods("sequential", "chunked")
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _problem(seed, batch, steps, state, complex_, varying, with_h0):
    """a with |a| <= 1 (some exactly 0 and 1), b and h0 in float64 or complex128."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, steps, *state) if varying else state

    def draw(shape):
        values = torch.randn(shape, generator=generator, dtype=torch.float64)
        if complex_:
            values = torch.complex(
                values, torch.randn(shape, generator=generator, dtype=torch.float64)
            )
        return values

    modulus = torch.rand(shape, generator=generator, dtype=torch.float64)
    modulus.view(-1)[::7] = 0.0  # exact zeros and ones: the edges of |a| <= 1
    modulus.view(-1)[3::11] = 1.0
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    a = modulus * sign
    if complex_:
        phase = 2 * math.pi * torch.rand(shape, generator=generator, dtype=torch.float64)
        a = torch.polar(modulus, phase)
    b = draw((batch, steps, *state))
    h0 = draw((batch, *state)) if with_h0 else None
    return a, b, h0


def _values_and_gradients(method, a, b, h0):
    inputs = [
        t.detach().clone().requires_grad_() for t in (a, b) + ((h0,) if h0 is not None else ())
    ]
    h = linear_recurrence(*inputs[:2], inputs[2] if h0 is not None else None, method=method)
    weights = torch.linspace(-1, 1, h.numel(), dtype=torch.float64).reshape(h.shape)
    loss = (h * weights).real.sum() + (h.abs() ** 2).sum()  # complex h: a real loss of both parts
    return (h, *torch.autograd.grad(loss, inputs))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 4),
    steps=st.one_of(st.integers(1, 40), st.integers(41, 784)),
    state=st.sampled_from([(1,), (3,), (2, 3)]),
    complex_=st.booleans(),
    varying=st.booleans(),
    with_h0=st.booleans(),
)
def test_fast_methods_equal_the_loop_in_values_and_gradients(
    seed, batch, steps, state, complex_, varying, with_h0
):
    a, b, h0 = _problem(seed, batch, steps, state, complex_, varying, with_h0)
    expected = _values_and_gradients("loop", a, b, h0)
    for method in FAST_METHODS:
        for got, want in zip(_values_and_gradients(method, a, b, h0), expected):
            torch.testing.assert_close(got, want, **TIGHT, msg=method)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 28, 97, 784])
@pytest.mark.parametrize("varying", [False, True])
def test_chunked_equals_the_loop_at_lengths_with_and_without_padding(steps, varying):
    a, b, h0 = _problem(steps, 2, steps, (3,), True, varying, True)
    for got, want in zip(
        _values_and_gradients("chunked", a, b, h0), _values_and_gradients("loop", a, b, h0)
    ):
        torch.testing.assert_close(got, want, **TIGHT)


def test_without_gradients_every_method_gives_the_loop_values():
    a, b, h0 = _problem(0, 3, 50, (4,), False, True, True)
    expected = linear_recurrence(a, b, h0, method="loop")
    with torch.no_grad():
        for method in ("auto", *FAST_METHODS):
            torch.testing.assert_close(
                linear_recurrence(a, b, h0, method=method), expected, **TIGHT
            )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 784), with_h0=st.booleans())
def test_log_space_scan_equals_the_loop_for_positive_coefficients(seed, steps, with_h0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(2, steps, 3, generator=generator, dtype=torch.float64) * 0.98 + 0.01
    b = torch.rand(2, steps, 3, generator=generator, dtype=torch.float64) + 0.01
    h0 = torch.rand(2, 3, generator=generator, dtype=torch.float64) + 0.01 if with_h0 else None
    log_a, log_b = a.log().requires_grad_(), b.log().requires_grad_()
    log_h0 = None if h0 is None else h0.log()
    got = log_linear_recurrence(log_a, log_b, log_h0)
    expected = linear_recurrence(a.requires_grad_(), b.requires_grad_(), h0, method="loop")
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    # Gradients agree through the change of variables d/dlog x = x d/dx.
    got_a, got_b = torch.autograd.grad(got.sum(), (log_a, log_b))
    want_a, want_b = torch.autograd.grad(expected.sum(), (a, b))
    torch.testing.assert_close(got_a, want_a * a, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(got_b, want_b * b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_float32_stays_finite_at_784_steps_with_large_inputs_and_unit_coefficients(method):
    a = torch.ones(4, 784, 8)  # no decay at all: the state sums every input
    a[:, ::5] = 0.0
    b = (torch.rand(4, 784, 8) * 2 - 1).mul_(1e4).requires_grad_()
    h = linear_recurrence(a.requires_grad_(), b, method=method)
    h.square().mean().backward()
    assert torch.isfinite(h).all()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_auto_is_the_native_kernel_on_a_cpu_where_it_builds_and_chunked_elsewhere():
    on_cpu = "native" if native.available() else "sequential"
    assert choose_method(784, torch.device("cpu")) == on_cpu
    assert choose_method(28, torch.device("cuda")) == "chunked"


def test_the_native_kernel_builds_where_a_compiler_and_ninja_are():
    if not native_expected():
        pytest.skip("no C++ compiler or ninja here (or SEQMNIST_NATIVE=0): the Python loop runs")
    assert native.available(), native.unavailable_reason()


def test_turned_off_the_native_kernel_is_not_loaded_and_auto_takes_the_python_loop():
    probe = (
        "import torch; from seqmnist.model import native, scan; "
        "print(native.available(), scan.choose_method(784, torch.device('cpu')))"
    )
    env = {**os.environ, native.DISABLE_ENV: "0"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "sequential"]
    assert result.stderr == ""  # turned off on purpose: no warning


@pytest.mark.parametrize(
    "env",
    [{"XDG_CACHE_HOME": "/proc/seqmnist-test"}, {"CXX": "/nonexistent/c++"}],
    ids=["no build folder", "no compiler"],
)
def test_a_kernel_that_cannot_be_built_is_one_warning_and_the_python_loop_runs(env):
    probe = (
        "import torch; from seqmnist.model import native, scan; "
        "print(native.available(), scan.choose_method(784, torch.device('cpu'))); "
        "b = torch.ones(1, 3, 2); print(scan.linear_recurrence(torch.full((2,), 0.5), b).sum().item())"
    )
    env = {**os.environ, **env}
    env.pop(native.DISABLE_ENV, None)
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "sequential", str(2 * (1 + 1.5 + 1.75))]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "native CPU kernels are not available" in lines[0], result.stderr


def test_the_native_kernel_refuses_other_devices_in_one_line():
    with pytest.raises(ValueError, match="runs on the CPU"):
        linear_recurrence(
            torch.zeros(3, device="meta"), torch.zeros(1, 2, 3, device="meta"), method="native"
        )


@pytest.mark.parametrize(
    "a_shape, h0_shape",
    [((2, 5, 4), None), ((5,), None), ((3,), (2, 4, 1))],
)
def test_mismatched_shapes_are_refused(a_shape, h0_shape):
    b = torch.zeros(2, 5, 3)
    h0 = None if h0_shape is None else torch.zeros(h0_shape)
    with pytest.raises(ValueError, match="must"):
        linear_recurrence(torch.zeros(a_shape), b, h0)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        linear_recurrence(torch.zeros(3), torch.zeros(1, 2, 3), method="fft")


native_only = pytest.mark.skipif(not native_expected(), reason="no C++ compiler or ninja here")


@native_only
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 5),
    steps=st.one_of(st.integers(1, 40), st.integers(41, 784)),
    state=st.sampled_from([(1,), (7,), (17,), (64,), (2, 33)]),  # vector widths and their tails
    complex_=st.booleans(),
    varying=st.booleans(),
    with_h0=st.booleans(),
)
def test_the_float32_kernel_is_float64s_loop_to_float32_rounding(
    seed, batch, steps, state, complex_, varying, with_h0
):
    # float32 runs the kernel's multiversioned (AVX-512, AVX2 or baseline) loops,
    # float64 the plain ones the test above holds to the loop
    a, b, h0 = _problem(seed, batch, steps, state, complex_, varying, with_h0)
    expected = _values_and_gradients("loop", a, b, h0)
    single = [t.to(torch.complex64 if complex_ else torch.float32) for t in (a, b)]
    single.append(None if h0 is None else h0.to(single[1].dtype))
    got = _values_and_gradients("native", *single)
    for got_one, want in zip(got, expected):
        # Each state element recurs on its own, so each is held to its own scale
        # (over batch and time): one |a| = 1 column growing large must not loosen
        # the others, the vector tails among them. a's gradient when one a serves
        # every step is a sum over batch and time, held to its largest element.
        leading = tuple(range(want.dim() - len(state)))
        scale = want.abs().amax(dim=leading, keepdim=True) if leading else want.abs().max()
        # a step's rounding (2^-24 of the state) can add up over every later step
        tolerance = 1e-6 * steps * (scale + 1.0)
        error = (got_one.to(want.dtype) - want).abs()
        assert bool((error <= tolerance).all()), (error / tolerance).max().item()


@native_only
@pytest.mark.parametrize("complex_", [False, True])
def test_the_native_reverse_scan_equals_the_python_one(complex_):
    a, b, _ = _problem(3, 2, 30, (3,), complex_, varying=True, with_h0=False)
    got = native.linear_recurrence(a, b, None, True)
    torch.testing.assert_close(got, _sequential(a, b, None, reverse=True), **TIGHT)


@native_only
def test_the_native_scan_takes_an_empty_batch_and_lazily_conjugated_inputs():
    a = torch.polar(torch.full((4,), 0.5, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    empty = torch.zeros(0, 5, 4, dtype=torch.complex128)
    assert linear_recurrence(a, empty, method="native").shape == (0, 5, 4)
    b = torch.randn(2, 5, 4, dtype=torch.complex128)
    expected = linear_recurrence(a.conj().resolve_conj(), b, method="loop")
    torch.testing.assert_close(linear_recurrence(a.conj(), b, method="native"), expected, **TIGHT)


@native_only
def test_mixed_dtypes_take_the_python_loop_which_promotes():
    a, b = torch.full((2, 6, 3), 0.5), torch.randn(2, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(
        linear_recurrence(a, b, method="native"), linear_recurrence(a, b, method="loop"), **TIGHT
    )
