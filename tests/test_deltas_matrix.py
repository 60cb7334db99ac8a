"""The shared test matrix: every delta method on every backbone family.

Backbones: tiny randomly initialised T5 and BART (seq2seq) and GPT-2 (causal) built from configs with their real
tokenizers, the real 260K-parameter Llama (causal) and the real all-MiniLM-L6-v2 (encoder). Examples are real
shared-task examples: sentiment classification, multiple choice and (except for the encoder) open generation.
"""

from __future__ import annotations

import pytest
import torch

from taskspace.deltas import METHODS, build_method
from taskspace.errors import ConfigError, IncompatibleError
from taskspace.store import load_delta, save_delta
from taskspace.tasks import load_task
from taskspace.train import TrainConfig, train
from tiny import FAMILY_BACKBONES, SMALL, tiny_backbone

MATRIX = [(b, m) for b in FAMILY_BACKBONES for m in METHODS]
_cache: dict = {}


@pytest.fixture(scope="module")
def examples(data_dir):
    sst2 = load_task("glue-sst2", data_dir).train[:2]
    copa = load_task("superglue-copa", data_dir).train[:1]
    web = load_task("web_questions", data_dir).train[:1]
    return {"options": sst2 + copa, "all": sst2 + copa + web}


def get_backbone(kind, shared_dir):
    if kind not in _cache:
        _cache[kind] = tiny_backbone(kind, str(shared_dir))
    return _cache[kind]


def batch_examples(kind, examples):
    return examples["options"] if kind == "minilm" else examples["all"]


def perturbed(method, seed=0, scale=0.05):
    """An initial theta moved off its initialisation, so every slice influences the output."""
    g = torch.Generator().manual_seed(seed)
    theta = method.init(g)
    return theta + scale * torch.randn(theta.shape, generator=g)


@pytest.mark.parametrize("kind,name", MATRIX)
def test_layout_shapes(kind, name, shared_dir):
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    theta = method.init(torch.Generator().manual_seed(0))
    assert theta.shape == (method.size,)
    # Slices are consecutive and cover theta exactly once.
    offset = 0
    for s in method.layout.slices:
        assert s.offset == offset
        offset = s.end
    assert offset == method.size
    parts = method.layout.unflatten(theta)
    assert set(parts) == {s.name for s in method.layout.slices}
    assert torch.equal(method.layout.flatten(parts), theta)
    batched = torch.stack([theta, theta * 2])
    assert torch.equal(method.layout.flatten(method.layout.unflatten(batched)), batched)
    # The same seed gives the same initialisation.
    assert torch.equal(theta, method.init(torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("kind,name", MATRIX)
def test_neutral_theta_is_the_frozen_model(kind, name, shared_dir, examples):
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    batch = backbone.collate(batch_examples(kind, examples))
    with torch.no_grad():
        frozen_loss = backbone.loss(batch)
        frozen_pred = backbone.predict(batch)
    if not method.has_neutral:
        with pytest.raises(ConfigError, match="no neutral"):
            method.neutral()
        with torch.no_grad(), method.bind(method.init(torch.Generator().manual_seed(0))):
            assert not torch.equal(backbone.loss(batch), frozen_loss)
        return
    # The methods with a neutral value also start from one (LoRA B = 0, adapter W_up = 0, zero biases / deltas).
    for theta in (method.neutral(), method.init(torch.Generator().manual_seed(1))):
        with torch.no_grad(), method.bind(theta):
            assert torch.equal(backbone.loss(batch), frozen_loss)
            assert backbone.predict(batch) == frozen_pred
    # And binding leaves nothing behind.
    with torch.no_grad():
        assert torch.equal(backbone.loss(batch), frozen_loss)


@pytest.mark.parametrize("kind,name", MATRIX)
def test_gradients_reach_every_slice(kind, name, shared_dir, examples):
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    theta = torch.nn.Parameter(perturbed(method))
    batch = backbone.collate(batch_examples(kind, examples))
    with method.bind(theta):
        loss = backbone.loss(batch).mean()
    loss.backward()
    grads = method.layout.unflatten(theta.grad)
    dead = [n for n, g in grads.items() if not bool(g.abs().sum() > 0)]
    assert not dead, f"no gradient for {dead[:5]}"
    assert all(p.grad is None for p in backbone.parameters()), "the backbone must stay frozen"


@pytest.mark.parametrize("kind,name", [(b, m) for b, m in MATRIX if METHODS[m].supports_per_example])
def test_per_example_theta(kind, name, shared_dir, examples):
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    exs = batch_examples(kind, examples)
    batch = backbone.collate(exs)
    a, b = perturbed(method, seed=1, scale=0.2), perturbed(method, seed=2, scale=0.2)
    with torch.no_grad():
        # All rows equal: the same as one shared theta.
        with method.bind(a):
            shared_loss, shared_pred = backbone.loss(batch), backbone.predict(batch)
        with method.bind(a.expand(len(exs), -1).clone()):
            rows_loss, rows_pred = backbone.loss(batch), backbone.predict(batch)
        torch.testing.assert_close(rows_loss, shared_loss, rtol=1e-5, atol=1e-5)
        assert rows_pred == shared_pred
        # Different rows: each example computes as if alone with its own theta.
        per_row = torch.stack([a if i % 2 == 0 else b for i in range(len(exs))])
        with method.bind(per_row):
            mixed_loss, mixed_pred = backbone.loss(batch), backbone.predict(batch)
        for i, e in enumerate(exs):
            alone = backbone.collate([e])
            with method.bind(per_row[i]):
                torch.testing.assert_close(mixed_loss[i], backbone.loss(alone)[0], rtol=1e-4, atol=1e-4)
                assert mixed_pred[i] == backbone.predict(alone)[0]
    with pytest.raises(ConfigError, match="shape"):
        method.bind(torch.zeros(2, method.size + 1))


@pytest.mark.parametrize("kind,name", [(b, m) for b, m in MATRIX if METHODS[m].supports_per_example])
def test_distinct_theta_rows_bind_as_the_gathered_thetas(kind, name, shared_dir, examples):
    """bind(theta [K, D], rows=[B]) computes what bind(theta[rows]) computes: losses, answers and the gradient of
    theta (each row's gradient the sum over its examples)."""
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    exs = batch_examples(kind, examples)
    batch = backbone.collate(exs)
    rows = torch.tensor([1, 0, 1, 1][: len(exs)])
    distinct = torch.stack([perturbed(method, seed=1, scale=0.2), perturbed(method, seed=2, scale=0.2)])
    grads, losses = [], []
    for as_rows in (True, False):
        theta = distinct.clone().requires_grad_(True)
        with method.bind(theta, rows=rows) if as_rows else method.bind(theta[rows]):
            loss = backbone.loss(batch)
        (loss * torch.arange(1.0, len(exs) + 1)).sum().backward()
        grads.append(theta.grad)
        losses.append(loss.detach())
        with torch.no_grad(), (method.bind(distinct, rows=rows) if as_rows else method.bind(distinct[rows])):
            losses.append(backbone.predict(batch))
    torch.testing.assert_close(losses[0], losses[2], rtol=1e-5, atol=1e-6)
    assert losses[1] == losses[3]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4 * float(grads[1].abs().max()))
    assert grads[0][0].abs().sum() > 0 and grads[0][1].abs().sum() > 0


@pytest.mark.parametrize("order", [[0, 0, 1, 1, 1, 0], [0, 1, 0, 1, 0, 1]])
def test_lora_rows_in_runs_or_scattered_equal_the_gathered_thetas(order, shared_dir, data_dir):
    """LoRA computes a distinct theta over a slice of the batch when its examples come together (the first order)
    and over gathered indices when they are scattered (the second); both equal the per-example copies, in losses,
    ranked answers (the batch expanded per option) and gradients."""
    backbone = tiny_backbone("llama", str(shared_dir), decode="rank")
    method = build_method("lora", backbone, {"r": 2, "targets": ("q", "v", "ffn_out")})
    exs = load_task("glue-sst2", data_dir).train[:6]
    batch = backbone.collate(exs)
    rows = torch.tensor(order)
    distinct = torch.stack([perturbed(method, seed=1, scale=0.3), perturbed(method, seed=2, scale=0.3)])
    kind = method._parts((torch.arange(2), rows))[0]
    assert kind == ("runs" if order[1] == order[0] else "index")
    results = []
    computed = []
    parts = method._parts
    method._parts = lambda groups: computed.append(1) or parts(groups)  # instance attribute: this test's method
    for as_rows, bind in ((True, lambda t: method.bind(t, rows=rows)), (False, lambda t: method.bind(t[rows]))):
        theta = distinct.clone().requires_grad_(True)
        computed.clear()
        with bind(theta):
            loss = backbone.loss(batch)
        assert len(computed) == as_rows  # once for the whole forward, not once per adapted module; none gathered
        (g,) = torch.autograd.grad((loss * torch.arange(1.0, 7.0)).sum(), theta)
        with torch.no_grad(), bind(distinct):
            ranked = backbone.predict(batch)
        results.append((loss.detach(), g, ranked))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-4 * float(results[1][1].abs().max()))
    assert results[0][2] == results[1][2]


def test_theta_rows_are_checked(shared_dir):
    method = build_method("lora", get_backbone("llama", shared_dir), SMALL["lora"])
    theta = torch.zeros(2, method.size)
    with pytest.raises(ConfigError, match=r"rows must lie in \[0, 2\)"):
        method.bind(theta, rows=torch.tensor([0, 2]))
    with pytest.raises(ConfigError, match="1-d integer"):
        method.bind(theta, rows=torch.tensor([0.0, 1.0]))
    with pytest.raises(ConfigError, match=r"\[K, D\] theta"):
        method.bind(theta[0], rows=torch.tensor([0]))


def test_lora_keeps_no_copy_of_a_and_b_per_example_for_distinct_rows(shared_dir, examples):
    """Trained in one pass, several tasks' LoRA thetas bound as distinct rows: autograd keeps no [B, r, in] copy of
    A (nor [B, out, r] of B) per example, as it does when the thetas are gathered per example."""
    backbone = get_backbone("llama", shared_dir)
    method = build_method("lora", backbone, SMALL["lora"])
    batch = backbone.collate(examples["all"])
    n = len(examples["all"])
    r = method.config.r
    per_example_copy = {(n, r, s.in_features) for s in method.target_sites()}
    per_example_copy |= {(n, s.out_features, r) for s in method.target_sites()}
    distinct = torch.stack([perturbed(method, seed=1), perturbed(method, seed=2)]).requires_grad_(True)
    rows = torch.tensor([0, 1] * n)[:n]

    def saved_shapes(bind):
        shapes = []

        def pack(t):
            shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), bind():
            loss = backbone.loss(batch).sum()
        loss.backward()
        return shapes

    gathered = saved_shapes(lambda: method.bind(distinct[rows]))
    assert per_example_copy & set(gathered)  # the check sees the copies where they are made
    grouped = saved_shapes(lambda: method.bind(distinct, rows=rows))
    assert not per_example_copy & set(grouped)


def test_finetune_refuses_per_example_theta(shared_dir):
    method = build_method("finetune", get_backbone("llama", shared_dir))
    with pytest.raises(ConfigError, match="per-example"):
        method.bind(torch.zeros(2, method.size))


@pytest.mark.parametrize("kind,name", MATRIX)
def test_save_load_round_trip(kind, name, shared_dir, examples, tmp_path):
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    theta = perturbed(method, seed=3)
    init = method.init(torch.Generator().manual_seed(0))
    save_delta(tmp_path / "theta", method, theta, init)
    loaded, loaded_init, record = load_delta(tmp_path / "theta", method)
    assert torch.equal(loaded, theta)
    assert torch.equal(loaded_init, init)  # an all-zero init is not stored and reads back as zeros
    batch = backbone.collate(batch_examples(kind, examples))
    with torch.no_grad():
        with method.bind(theta):
            before = backbone.loss(batch)
        with method.bind(loaded):
            assert torch.equal(backbone.loss(batch), before)
    # Another configuration of the method is refused with a message that says what differs.
    other_options = {**SMALL[name]}
    if name == "bitfit":
        other_options["norms"] = False
    elif name == "finetune":
        other_options = None
    else:
        key = next(iter(SMALL[name]))
        other_options[key] = SMALL[name][key] + 1
    if other_options is not None:
        with pytest.raises(IncompatibleError, match="config"):
            load_delta(tmp_path / "theta", build_method(name, backbone, other_options))


@pytest.mark.parametrize("name", list(METHODS))
def test_loading_into_another_backbone_is_refused(name, shared_dir, tmp_path):
    first = get_backbone("gpt2", shared_dir)
    method = build_method(name, first, SMALL[name])
    save_delta(tmp_path / "theta", method, method.init(torch.Generator().manual_seed(0)))
    # Same architecture and sizes, different weights: only the fingerprint tells them apart.
    other = tiny_backbone("gpt2", str(shared_dir), seed=7)
    with pytest.raises(IncompatibleError, match="backbone"):
        load_delta(tmp_path / "theta", build_method(name, other, SMALL[name]))


LOSS_FALLS_LR = {"prompt": 0.3, "prefix": 0.03, "lora": 0.01, "adapter": 0.01, "bitfit": 0.05, "finetune": 1e-3}


@pytest.mark.parametrize("kind,name", MATRIX)
def test_loss_falls_on_a_real_task(kind, name, shared_dir, data_dir):
    backbone = get_backbone(kind, shared_dir)
    method = build_method(name, backbone, SMALL[name])
    task = load_task("glue-sst2", data_dir)
    data = task.train[:8]
    params = torch.nn.Module()
    params.theta = torch.nn.Parameter(method.init(torch.Generator().manual_seed(0)))

    def mean_loss() -> float:
        with torch.no_grad(), method.bind(params.theta):
            return float(backbone.loss(backbone.collate(data)).mean())

    def loss_fn(exs, targets):
        with method.bind(params.theta):
            return backbone.loss(backbone.collate(exs, targets)).mean()

    before = mean_loss()
    lr = LOSS_FALLS_LR[name] if kind != "minilm" else LOSS_FALLS_LR[name] / 5
    train(params, loss_fn, data, TrainConfig(steps=10, batch_size=8, lr=lr, eval_every=10, progress=False),
          backbone=backbone)
    after = mean_loss()
    assert after < 0.995 * before, f"loss {before:.4f} -> {after:.4f}"


def test_lora_groups_repeated_theta_rows_without_changing_a_result(shared_dir):
    """An evaluation batch of a few thetas (rows repeated, each example expanded per option when ranking) is
    computed once per distinct theta; the logits and the ranked answers are those of binding each theta alone."""
    from taskspace.deltas.lora import distinct_rows
    from taskspace.tasks import Example
    from tiny import tiny_backbone

    backbone = tiny_backbone("llama", str(shared_dir), decode="rank")
    method = build_method("lora", backbone, {"r": 2, "targets": ("q", "v", "ffn_out")})
    g = torch.Generator().manual_seed(0)
    distinct = [torch.randn(method.size, generator=g) * 0.3 for _ in range(2)]
    order = [0, 1, 1, 0, 1]
    theta = torch.stack([distinct[i] for i in order])
    first, inverse = distinct_rows(method.layout.unflatten(theta))
    assert first.tolist() == [0, 1] or first.tolist() == [1, 0]
    assert [order[int(first[int(i)])] for i in inverse] == order
    tok = backbone.tokenizer
    batch = tok([f"example {i} says something" for i in range(5)], return_tensors="pt", padding=True)
    with torch.no_grad():
        with method.bind(theta):
            grouped = backbone.model(**batch).logits
        for row, i in enumerate(order):
            with method.bind(distinct[i]):
                alone = backbone.model(**{k: v[row:row + 1] for k, v in batch.items()}).logits
            torch.testing.assert_close(grouped[row:row + 1], alone, rtol=1e-5, atol=1e-5)
    examples = [Example(f"review {i}: fine", ("yes",), ("yes", "no", "maybe"), task="t") for i in range(5)]
    with torch.no_grad(), method.bind(theta):
        ranked = backbone.predict(backbone.collate(examples))
    for row, i in enumerate(order):
        with torch.no_grad(), method.bind(distinct[i]):
            assert backbone.predict(backbone.collate(examples[row:row + 1])) == ranked[row:row + 1]
    trainable = theta.clone().requires_grad_(True)  # a gradient must flow: never grouped by value
    assert distinct_rows(method.layout.unflatten(trainable)) is None


def test_prompt_initialisations_from_the_vocabulary(shared_dir):
    """init=text starts the prompt at the embeddings of a text's tokens, repeated then cut to n_tokens (peft's
    TEXT initialisation); init=vocab at embeddings of drawn non-special tokens; misuse is refused by name."""
    backbone = get_backbone("llama", shared_dir)
    table = backbone.model.get_input_embeddings().weight.detach().float()
    ids = backbone.tokenizer("great movie", add_special_tokens=False)["input_ids"]
    method = build_method("prompt", backbone, {"n_tokens": 5, "init": "text", "init_text": "great movie"})
    rows = method.init(torch.Generator().manual_seed(0)).view(5, -1)
    expected = [(ids * 5)[i] for i in range(5)]
    assert torch.equal(rows, table[expected])
    vocab = build_method("prompt", backbone, {"n_tokens": 4, "init": "vocab"}).init(torch.Generator().manual_seed(1))
    special = set(backbone.tokenizer.all_special_ids)
    for row in vocab.view(4, -1):
        match = (table == row).all(-1).nonzero().flatten().tolist()
        assert match and not set(match) & special
    for options, message in (({"init_text": "hi"}, "give it with init=text"),
                             ({"init": "text"}, "give it with init=text")):
        with pytest.raises(ConfigError, match=message):
            build_method("prompt", backbone, {"n_tokens": 2, **options})


def test_a_delta_saved_before_an_option_existed_still_loads(tmp_path, shared_dir):
    """Method options added in a later version (prompt's init_text) are left out of a saved delta's record at
    their defaults, so a delta saved before them loads, and one saved with them set records them."""
    import json

    backbone = get_backbone("llama", shared_dir)
    method = build_method("prompt", backbone, {"n_tokens": 2})
    theta = method.init(torch.Generator().manual_seed(0))
    save_delta(tmp_path / "theta", method, theta)
    record = json.loads((tmp_path / "theta.json").read_text())
    assert "init_text" not in record["config"]  # as a delta saved by taskspace 0.1 looks
    assert torch.equal(load_delta(tmp_path / "theta", method)[0], theta)
    texted = build_method("prompt", backbone, {"n_tokens": 2, "init": "text", "init_text": "hello"})
    save_delta(tmp_path / "texted", texted, texted.init(torch.Generator()))
    assert json.loads((tmp_path / "texted.json").read_text())["config"]["init_text"] == "hello"
    with pytest.raises(IncompatibleError, match="method config"):
        load_delta(tmp_path / "texted", method)
