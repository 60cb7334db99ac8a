"""Projections: shapes, config round trips, the Walsh–Hadamard transform, Fastfood against explicit matrices, its
gradients and normalisation, SAID, the cache and argument checks.

Fastfood speed on all-MiniLM-L6-v2's 103 weight tensors (D = 22,713,216), d = 1000, one z, float32, on the
development machine's 2 CPU cores (shared with other work: the ranges are over repeated runs, each the best of 4
calls after a warm-up), measured with ``python tests/test_projections.py``:

==========================  ============  ==================  ==================  ==================  ==================
mode                        construction  forward (no grad)   forward + backward  forward, THP        fwd + bwd, THP
==========================  ============  ==================  ==================  ==================  ==================
per_tensor (5 groups of L)  1.6-3.2 s     0.41-0.46 s         0.88-0.90 s         0.28-0.31 s         0.61-0.67 s
global (L = 2^25)           1.9-2.6 s     0.45-0.55 s         0.97-1.27 s         0.20-0.28 s         0.45-0.60 s
==========================  ============  ==================  ==================  ==================  ==================

"THP" = ``THP_MEM_ALLOC_ENABLE=1`` in the environment before Python starts: PyTorch then backs large CPU tensors
with transparent huge pages, and the page faults of every fresh 100 MB intermediate, a third to a half of the time
without it, mostly disappear.
"""

from __future__ import annotations

import json
import math
import sys
import time

import pytest
import torch

from taskspace.errors import ConfigError
from taskspace.projections import (
    PROJECTIONS,
    Fastfood,
    IPTDecoder,
    IPTEncoder,
    LinearProjection,
    Projection,
    UDTDown,
    UDTUp,
    build_projection,
    fwht,
)

SHAPES = [(3, 5), (7,), (2, 2, 2)]  # D = 30; per-tensor L = 16, 8 (or 16), 8 (or 16)
SIZES = [15, 7, 8]


def sylvester(n: int, dtype=torch.float64) -> torch.Tensor:
    """The n x n Hadamard matrix by Kronecker products, built independently of the module's own helper."""
    h = torch.ones(1, 1, dtype=dtype)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=dtype)
    while h.shape[0] < n:
        h = torch.kron(h2, h)
    return h


def explicit_matrix(f: Fastfood, t: int) -> torch.Tensor:
    """Transform t as the explicit [n, d_eff] matrix H G Π H B (truncated, normalised), in float64."""
    p = f.transform(t)
    L, n = p["L"], p["n"]
    h = sylvester(L)
    b = torch.zeros(L, dtype=torch.float64)
    b[: f.d_eff] = p["B"].double()
    perm = torch.zeros(L, L, dtype=torch.float64)
    perm[torch.arange(L), p["perm"].long()] = 1.0  # (Π v)[k] = v[perm[k]]
    g = p["G"].detach().double()
    m = h @ torch.diag(g) @ perm @ h @ torch.diag(b)
    return m[:n, : f.d_eff] / (math.sqrt(L * float((g * g).sum())) * math.sqrt(n / L))


def explicit_dense(f: Fastfood) -> torch.Tensor:
    """The [d_eff, D] matrix with theta = z @ M (all SAID scales 1)."""
    return torch.cat([explicit_matrix(f, t) for t in range(f.num_transforms)], dim=0).T


def all_projections() -> list[Projection]:
    return [
        LinearProjection(6, 20, seed=1),
        LinearProjection(6, 20, bias=False, init="normal", std=0.5, seed=2),
        IPTDecoder(6, 20, hidden=9, seed=3),
        IPTEncoder(20, 6, seed=4),
        UDTDown(20, 6, seed=5),
        UDTUp(6, 20, seed=6),
        Fastfood(6, SHAPES, mode="per_tensor", seed=7),
        Fastfood(6, SHAPES, mode="global", seed=8, trainable_G=True),
        Fastfood(6, SHAPES, mode="per_tensor", seed=9, said=True),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Interface


@pytest.mark.parametrize("proj", all_projections(), ids=lambda p: p.config()["kind"])
def test_shapes_single_and_batch(proj):
    x = torch.randn(proj.d_in)
    assert proj(x).shape == (proj.d_out,)
    xb = torch.randn(3, proj.d_in)
    out = proj(xb)
    assert out.shape == (3, proj.d_out)
    # a batch row equals the single-vector call
    torch.testing.assert_close(out[1], proj(xb[1]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match=str(proj.d_in)):
        proj(torch.randn(proj.d_in + 1))


@pytest.mark.parametrize("proj", all_projections(), ids=lambda p: p.config()["kind"])
def test_config_rebuilds_seeded_module(proj):
    config = json.loads(json.dumps(proj.config()))  # JSON-serialisable
    assert config["kind"] in PROJECTIONS
    rebuilt = build_projection(config)
    assert type(rebuilt) is type(proj) and rebuilt.config() == proj.config()
    x = torch.randn(2, proj.d_in)
    torch.testing.assert_close(rebuilt(x), proj(x), atol=0, rtol=0)
    for (k, a), (k2, b) in zip(proj.named_buffers(), rebuilt.named_buffers()):
        assert k == k2 and torch.equal(a, b)


@pytest.mark.parametrize("proj", all_projections(), ids=lambda p: p.config()["kind"])
def test_config_and_state_dict_restore_trained_module(proj):
    params = list(proj.parameters())
    if not params:
        assert proj.state_dict() == {}  # everything random is rebuilt from the config
        return
    x = torch.randn(2, proj.d_in)
    opt = torch.optim.SGD(params, lr=0.5)
    proj(x).pow(2).sum().backward()
    opt.step()
    rebuilt = build_projection(proj.config())
    assert not torch.equal(rebuilt(x), proj(x))
    rebuilt.load_state_dict(proj.state_dict())
    torch.testing.assert_close(rebuilt(x), proj(x), atol=0, rtol=0)


def test_freeze():
    p = IPTDecoder(4, 10, hidden=5, seed=0)
    assert p.freeze() is p
    assert all(not q.requires_grad for q in p.parameters())
    f = Fastfood(4, SHAPES, trainable_G=True).freeze()
    assert all(not q.requires_grad for q in f.parameters())


def test_seeded_layers_follow_nn_linear_default_init():
    gen = torch.Generator().manual_seed(11)
    p = IPTDecoder(4, 10, hidden=5, seed=11)
    bound = 1 / math.sqrt(4)
    w1 = torch.empty(5, 4).uniform_(-bound, bound, generator=gen)
    b1 = torch.empty(5).uniform_(-bound, bound, generator=gen)
    w2 = torch.empty(10, 5).uniform_(-1 / math.sqrt(5), 1 / math.sqrt(5), generator=gen)
    assert torch.equal(p.layers[0].weight, w1) and torch.equal(p.layers[0].bias, b1) and torch.equal(p.layers[1].weight, w2)
    assert UDTDown(10, 3, seed=0).layers[0].bias is None and UDTUp(3, 10, seed=0).layers[0].bias is None
    assert not torch.equal(UDTUp(3, 10, seed=0).layers[0].weight, UDTUp(3, 10, seed=1).layers[0].weight)


def test_linear_inits():
    assert LinearProjection(3, 5, init="zeros")(torch.randn(3)).abs().max() == 0
    w = LinearProjection(100, 200, init="normal", std=0.02, seed=0).linear.weight
    assert abs(w.std().item() - 0.02) < 0.001
    assert not LinearProjection(3, 5, bias=False).linear.bias


# ---------------------------------------------------------------------------------------------------------------
# Walsh–Hadamard transform


@pytest.mark.parametrize("L", [1, 2, 8, 256, 4096])
def test_fwht_matches_sylvester_matrix(L):
    x = torch.randn(2, 3, L, dtype=torch.float64)
    torch.testing.assert_close(fwht(x), x @ sylvester(L))
    torch.testing.assert_close(fwht(x[0, 0]), x[0, 0] @ sylvester(L))
    torch.testing.assert_close(fwht(fwht(x)), L * x)


def test_fwht_large_and_float32():
    x = torch.randn(2, 1 << 16)
    torch.testing.assert_close(fwht(fwht(x)) / (1 << 16), x, rtol=0, atol=1e-5)
    # a 2^16 x 2^16 matrix is too big to build: check the Sylvester recursion H_2L = [[H, H], [H, -H]] instead
    half = 1 << 15
    y = fwht(x)
    torch.testing.assert_close(y[:, :half], fwht(x[:, :half] + x[:, half:]), rtol=0, atol=1e-3)  # |y| ~ 256
    torch.testing.assert_close(y[:, half:], fwht(x[:, :half] - x[:, half:]), rtol=0, atol=1e-3)


def test_fwht_gradient_is_the_transform_of_the_gradient():
    x = torch.randn(3, 512, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 512, dtype=torch.float64)
    (g,) = torch.autograd.grad((fwht(x) * c).sum(), x)
    torch.testing.assert_close(g, c @ sylvester(512))  # H is symmetric


def dense_kernel(calls: list, min_length: int, max_length: int):
    """A stand-in for the fast-hadamard-transform kernel (its contract: rows of a contiguous input of a length it
    takes, times the Hadamard matrix, times scale), refusing lengths outside [min_length, max_length]."""
    def hadamard_transform(x, scale=1.0):
        L = x.shape[-1]
        assert min_length <= L <= max_length and x.is_contiguous(), (L, x.is_contiguous())
        calls.append(L)
        return (x @ sylvester(L, x.dtype)) * scale

    return hadamard_transform


@pytest.mark.parametrize("L", [8, 16, 32, 128, 2048])
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_transforms_longer_than_the_kernel_takes_are_composed_of_its_calls(L, lead):
    """kernel_fwht with a kernel that takes lengths 4..16 equals the transform, values and gradients."""
    from taskspace.projections import kernel_fwht

    calls = []
    x = torch.randn(*lead, L, dtype=torch.float64, requires_grad=True)
    c = torch.randn(*lead, L, dtype=torch.float64)
    out = kernel_fwht(x, dense_kernel(calls, 4, 16), max_length=16, min_length=4)
    torch.testing.assert_close(out, x @ sylvester(L))
    (g,) = torch.autograd.grad((out * c).sum(), x)
    torch.testing.assert_close(g, c @ sylvester(L))
    assert math.prod(calls) == L  # one call per factor of H_L = H_a ⊗ H_b ⊗ ...
    assert len(calls) == (1 if L <= 16 else 2 if L <= 256 else 3)


def test_fwht_backend_choice(monkeypatch):
    """auto: the kernel where it applies (here: a stand-in module, and every tensor long enough taken as a CUDA
    one), taskspace's transform elsewhere; torch: never the kernel; kernel: refused where it cannot run, and
    without the package, with what to install."""
    import types

    from taskspace.projections import fastfood, set_fwht_backend

    calls = []
    fastfood._import_kernel.cache_clear()
    monkeypatch.setitem(sys.modules, "fast_hadamard_transform",
                        types.SimpleNamespace(hadamard_transform=dense_kernel(calls, 8, 1 << 15)))
    monkeypatch.setattr(fastfood, "_kernel_applies", lambda x: x.shape[-1] >= 8)
    x = torch.randn(2, 64, dtype=torch.float64)
    assert fastfood.kernel_available()
    assert set_fwht_backend("auto") == "auto"
    torch.testing.assert_close(fwht(x), x @ sylvester(64))
    assert calls == [64]
    ours = Fastfood(10, [(40,)], mode="global", seed=0)
    with_kernel = ours(torch.ones(10, dtype=torch.float32))
    assert len(calls) == 3  # both transforms of the Fastfood
    try:
        assert set_fwht_backend("torch") == "auto"
        torch.testing.assert_close(fwht(x), x @ sylvester(64))
        torch.testing.assert_close(ours(torch.ones(10)), with_kernel)
        assert len(calls) == 3
        set_fwht_backend("kernel")
        with pytest.raises(ConfigError, match="length >= 8"):
            fwht(torch.randn(4))
    finally:
        set_fwht_backend("auto")
    with pytest.raises(ConfigError, match="expected one of auto, torch, kernel"):
        set_fwht_backend("fast")
    monkeypatch.setitem(sys.modules, "fast_hadamard_transform", None)  # not installed
    fastfood._import_kernel.cache_clear()
    assert not fastfood.kernel_available()
    with pytest.raises(ConfigError, match="pip install fast-hadamard-transform"):
        set_fwht_backend("kernel")
    monkeypatch.undo()
    fastfood._import_kernel.cache_clear()
    assert not fastfood._kernel_applies(torch.randn(64))  # a CPU tensor: auto keeps taskspace's transform


def test_fwht_rejects_other_lengths():
    with pytest.raises(ConfigError, match="power of two"):
        fwht(torch.randn(12))


# ---------------------------------------------------------------------------------------------------------------
# Fastfood


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
@pytest.mark.parametrize("d", [4, 11])  # 11 exceeds the numel of (7,) and (2, 2, 2): L is set by d there
def test_fastfood_matches_explicit_matrix(mode, d):
    f = Fastfood(d, SHAPES, mode=mode, seed=3)
    assert f.d_out == 30
    if mode == "per_tensor":
        assert list(f.lengths) == ([16, 8, 8] if d == 4 else [16, 16, 16])
    m = explicit_dense(f)
    z = torch.randn(5, d)
    torch.testing.assert_close(f(z), (z.double() @ m).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f.dense(), m.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
def test_fastfood_gradient_wrt_z_matches_dense(mode):
    f = Fastfood(6, SHAPES, mode=mode, seed=4).double()
    m = explicit_dense(f)
    z = torch.randn(6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(30, dtype=torch.float64)
    (g,) = torch.autograd.grad((f(z) * c).sum(), z)
    torch.testing.assert_close(g, m @ c)
    zb = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    cb = torch.randn(3, 30, dtype=torch.float64)
    (gb,) = torch.autograd.grad((f(zb) * cb).sum(), zb)
    torch.testing.assert_close(gb, cb @ m.T)


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
@pytest.mark.parametrize("said", [False, True])
def test_fastfood_gradcheck_trainable_G(mode, said):
    f = Fastfood(5, [(3,), (2, 2)], mode=mode, seed=5, trainable_G=True, said=said).double()
    names = [k for k, _ in f.named_parameters()]
    assert names and all(k.startswith("G_") for k in names)

    def fn(z, *gs):
        return torch.func.functional_call(f, dict(zip(names, gs)), (z,))

    z = torch.randn(5, dtype=torch.float64, requires_grad=True)
    gs = tuple(p.detach().clone().requires_grad_(True) for p in f.parameters())
    assert torch.autograd.gradcheck(fn, (z, *gs))


def test_fastfood_trainable_G_keeps_its_initial_normaliser():
    """As the original code does: the normaliser is fixed at initialisation, so a trained G's scale matters (with
    the normaliser recomputed from G, scaling G changed nothing and G's gradient was orthogonal to G)."""
    f = Fastfood(4, SHAPES, seed=6, trainable_G=True)
    z = torch.randn(4)
    before = f(z)
    (before * torch.randn_like(before)).sum().backward()
    along = sum(float((p.grad * p).sum()) for p in f.parameters())
    assert abs(along) > 1e-4  # the gradient has a component along G
    with torch.no_grad():
        for p in f.parameters():
            p.mul_(3.0)  # H (3G) Π H B z / sqrt(n · sum(G0²)) = 3 x the output
    torch.testing.assert_close(f(z), 3 * before, atol=1e-5, rtol=1e-5)
    # The normaliser is rebuilt from the seed: a reloaded projection with the trained G computes the same.
    g = {k: v.clone() for k, v in f.state_dict().items()}
    again = build_projection(f.config())
    again.load_state_dict(g)
    torch.testing.assert_close(again(z), f(z))
    assert set(f.state_dict()) == {k for k, _ in f.named_parameters()}


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
def test_fastfood_normalisation(mode):
    """E|out_t|² = |z|² for every transform t.

    With b, perm and g random: H B [z; 0] has squared norm L |z|², so each entry has mean square |z|²; Π keeps
    that; the second H gives entry i = sum_k H_ik g_k u_k with E[(.)² | g] = |z|² sum(g²) + c · ((sum_k H_ik g_k)²
    - sum(g²)) (c: the correlation of two distinct entries of u), whose second term vanishes in expectation over
    the signs of g even after dividing by sum(g²). Dividing by sqrt(L sum(g²)) · sqrt(n / L) = sqrt(n sum(g²))
    leaves E[out_i²] = |z|² / n, so E|out_t|² = n · |z|² / n = |z|², whatever n, L and d.
    """
    d = 5
    z = torch.randn(d, generator=torch.Generator().manual_seed(0))
    z = 2.0 * z / z.norm()  # |z|² = 4
    norms = []
    for seed in range(200):
        out = Fastfood(d, SHAPES, mode=mode, seed=seed)(z)
        parts = out.split(SIZES) if mode == "per_tensor" else [out]
        norms.append(torch.stack([p.pow(2).sum() for p in parts]))
    mean = torch.stack(norms).mean(0) / 4.0
    torch.testing.assert_close(mean, torch.ones_like(mean), atol=0.1, rtol=0)
    # a large transform concentrates: every seed is close
    z = torch.randn(64, generator=torch.Generator().manual_seed(1))
    for seed in range(3):
        ratio = Fastfood(64, [(5000,)], seed=seed)(z).pow(2).sum() / z.pow(2).sum()
        assert 0.8 < ratio < 1.2


def test_fastfood_draw_order_and_seeds():
    d = 4
    f = Fastfood(d, SHAPES, seed=13)
    gen = torch.Generator().manual_seed(13)
    for t, L in enumerate([16, 8, 8]):  # documented order: b, perm, g for each transform in turn
        b = torch.randint(0, 2, (L,), generator=gen) * 2 - 1
        perm = torch.randperm(L, generator=gen)
        g = torch.randn(L, generator=gen)
        p = f.transform(t)
        assert p["L"] == L and p["n"] == SIZES[t]
        assert torch.equal(p["B"], b[:d].float()) and torch.equal(p["perm"].long(), perm) and torch.equal(p["G"], g)
    same = Fastfood(d, SHAPES, seed=13)
    other = Fastfood(d, SHAPES, seed=14)
    for t in range(3):
        a, s, o = f.transform(t), same.transform(t), other.transform(t)
        assert all(torch.equal(a[k], s[k]) for k in ("B", "perm", "G"))
        assert not torch.equal(a["G"], o["G"]) and not torch.equal(a["perm"], o["perm"])


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
def test_said_scales_multiply_each_block(mode):
    T = 3 if mode == "per_tensor" else 1
    d = 4 + T
    said = Fastfood(d, SHAPES, mode=mode, seed=2, said=True)
    plain = Fastfood(4, SHAPES, mode=mode, seed=2)  # same d_eff, so the same L and the same draws
    z = torch.randn(4)
    tail = torch.tensor([2.0, -0.5, 3.0][:T])  # scales 1 + tail = 3, 0.5, 4
    out = said(torch.cat([z, tail]))
    ref = plain(z)
    blocks = SIZES if mode == "per_tensor" else [30]
    for got, want, s in zip(out.split(blocks), ref.split(blocks), 1 + tail):
        torch.testing.assert_close(got, s * want)
    # z = 0 on the scale entries means unit scales: the plain transform.
    torch.testing.assert_close(said(torch.cat([z, torch.zeros(T)])), ref)
    assert said.dense().shape == (4, 30)
    torch.testing.assert_close(said.dense(), plain.dense())


def test_fastfood_state_dict_holds_only_trained_G():
    assert Fastfood(4, SHAPES).state_dict() == {}
    assert list(Fastfood(4, SHAPES, trainable_G=True).state_dict()) == ["G_0", "G_1"]  # groups L = 16 and L = 8


def test_fastfood_dense_refuses_large():
    with pytest.raises(ConfigError, match="dense"):
        Fastfood(64, [(1 << 15,)]).dense()


# ---------------------------------------------------------------------------------------------------------------
# Argument checks


@pytest.mark.parametrize(
    "make, option",
    [
        (lambda: Fastfood(0, SHAPES), "d=0"),
        (lambda: Fastfood(-3, SHAPES), "d=-3"),
        (lambda: Fastfood(4, SHAPES, mode="blockwise"), "mode="),
        (lambda: Fastfood(3, SHAPES, said=True), "said"),
        (lambda: Fastfood(1, SHAPES, mode="global", said=True), "said"),
        (lambda: Fastfood(4, []), "shapes"),
        (lambda: Fastfood(4, [(3, 0)]), "shapes"),
        (lambda: Fastfood(4, SHAPES, seed=None), "seed"),
        (lambda: LinearProjection(0, 3), "d_in"),
        (lambda: LinearProjection(3, 4, init="xavier"), "init"),
        (lambda: IPTDecoder(4, 10, hidden=0), "hidden"),
        (lambda: IPTEncoder(10, 0), "d=0"),
        (lambda: UDTDown(10, -1), "y=-1"),
        (lambda: UDTUp(2, 0), "D=0"),
        (lambda: build_projection({"kind": "nope"}), "unknown projection kind"),
        (lambda: build_projection({"kind": "linear", "d_in": 2, "d_out": 3, "width": 4}), "width"),
        (lambda: build_projection({"d_in": 2}), "kind"),
    ],
)
def test_bad_arguments(make, option):
    with pytest.raises(ConfigError, match=option):
        make()


def test_said_accepts_d_just_above_T():
    f = Fastfood(4, SHAPES, said=True)  # d_eff = 1
    assert f.d_eff == 1 and f(torch.randn(4)).shape == (30,)


# ---------------------------------------------------------------------------------------------------------------
# The speed figures in the module docstring: ``python tests/test_projections.py`` (not part of the test run).


def minilm_shapes() -> list[tuple[int, ...]]:
    """all-MiniLM-L6-v2's weight shapes (BERT, 6 layers, hidden 384, FFN 1536, with pooler): D = 22,713,216."""
    shapes = [(30522, 384), (512, 384), (2, 384), (384,), (384,)]
    for _ in range(6):
        for _ in range(4):
            shapes += [(384, 384), (384,)]
        shapes += [(384,), (384,), (1536, 384), (1536,), (384, 1536), (384,), (384,), (384,)]
    return shapes + [(384, 384), (384,)]


def _benchmark(d: int = 1000, repeats: int = 4) -> None:
    shapes = minilm_shapes()
    print(f"D = {sum(math.prod(s) for s in shapes):,}, d = {d}, threads = {torch.get_num_threads()}")
    for mode in ("per_tensor", "global"):
        start = time.perf_counter()
        f = Fastfood(d, shapes, mode=mode, seed=0)
        built = time.perf_counter() - start
        z = torch.randn(d, requires_grad=True)
        forward, both = [], []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            with torch.no_grad():
                f(z)
            forward.append(time.perf_counter() - start)
            start = time.perf_counter()
            f(z).sum().backward()
            both.append(time.perf_counter() - start)
        print(f"{mode:>10}: construction {built:.2f} s, forward {min(forward[1:]):.3f} s, "
              f"forward + backward {min(both[1:]):.3f} s")
        del f


if __name__ == "__main__":
    _benchmark(*(int(a) for a in sys.argv[1:]))
