"""Pooling: hand-computed cases, the tiny ALBERT's real hidden states, and properties."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from transformers import AutoModel, AutoTokenizer

from indexer.errors import InvalidArgument, InvalidCollectionSpec
from indexer.pooling import check_layers, output_dimension, pool
from indexer.records import PoolingMode

# Two sequences of three positions, hidden size 2; the second holds one real token.
STATES = torch.tensor(
    [
        [[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]],
        [[-1.0, 5.0], [50.0, 50.0], [60.0, -60.0]],
    ]
)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (PoolingMode.MEAN, [[2.0, 1.0], [-1.0, 5.0]]),
        (PoolingMode.MAX, [[3.0, 4.0], [-1.0, 5.0]]),
        (PoolingMode.CLS, [[1.0, -2.0], [-1.0, 5.0]]),
        (PoolingMode.MEAN_MAX, [[2.0, 1.0, 3.0, 4.0], [-1.0, 5.0, -1.0, 5.0]]),
    ],
)
def test_each_mode_matches_a_hand_computation_and_ignores_padding(mode, expected):
    pooled = pool((STATES,), MASK, mode)
    torch.testing.assert_close(pooled, torch.tensor(expected))


def test_several_layers_are_averaged_before_pooling():
    embeddings = torch.zeros_like(STATES)
    middle = torch.full_like(STATES, 7.0)
    pooled = pool((embeddings, middle, STATES), MASK, PoolingMode.MEAN, layers=(0, -1))
    torch.testing.assert_close(pooled, torch.tensor([[1.0, 0.5], [-0.5, 2.5]]))


def test_second_to_last_layer_is_chosen_by_negative_index():
    middle = torch.full_like(STATES, 7.0)
    pooled = pool((torch.zeros_like(STATES), middle, STATES), MASK, PoolingMode.MEAN, layers=(-2,))
    torch.testing.assert_close(pooled, torch.full((2, 2), 7.0))


def test_a_row_without_tokens_pools_to_zeros_not_nan():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    for mode in PoolingMode:
        pooled = pool((STATES,), mask, mode)
        assert torch.isfinite(pooled).all(), mode
        if mode is not PoolingMode.CLS:
            assert torch.equal(pooled[1], torch.zeros_like(pooled[1])), mode


def test_half_precision_states_are_pooled_in_float32():
    pooled = pool((STATES.to(torch.bfloat16),), MASK, PoolingMode.MEAN)
    assert pooled.dtype == torch.float32


@pytest.mark.parametrize("mode", list(PoolingMode))
def test_output_dimension_matches_what_pool_returns(mode):
    assert pool((STATES,), MASK, mode).shape == (2, output_dimension(2, mode))
    assert output_dimension(768, mode) == (1536 if mode is PoolingMode.MEAN_MAX else 768)


def test_a_layer_the_encoder_does_not_have_is_a_spec_error():
    with pytest.raises(InvalidCollectionSpec, match="layer 3"):
        pool((STATES, STATES), MASK, PoolingMode.MEAN, layers=(3,))
    with pytest.raises(InvalidCollectionSpec):
        pool((STATES,), MASK, PoolingMode.MEAN, layers=())


def test_mismatched_shapes_and_unknown_modes_are_rejected():
    with pytest.raises(InvalidArgument, match="attention_mask"):
        pool((STATES,), MASK[:, :2], PoolingMode.MEAN)
    with pytest.raises(InvalidArgument, match="hidden states"):
        pool((STATES, STATES[:, :2]), MASK, PoolingMode.MEAN, layers=(0, 1))
    with pytest.raises(InvalidCollectionSpec, match="pooling mode"):
        pool((STATES,), MASK, "median")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        output_dimension(0, PoolingMode.MEAN)


@pytest.fixture(scope="module")
def tiny_states(tiny_albert_dir: Path):
    """Every hidden state of the tiny ALBERT for a right-padded batch of two texts."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_albert_dir, local_files_only=True)
    model = AutoModel.from_pretrained(tiny_albert_dir, local_files_only=True).eval()
    batch = tokenizer(
        ["The kettle clicked off as the rain started.", "Fresh bread."],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        output = model(**batch, output_hidden_states=True)
    return output.hidden_states, batch["attention_mask"]


def test_mean_and_max_match_a_loop_over_the_real_tokens_of_the_tiny_model(tiny_states):
    states, mask = tiny_states
    assert mask[1].sum() < mask[0].sum(), "the second text must be padded"
    for row in range(mask.shape[0]):
        real = [states[-1][row, position] for position in range(mask.shape[1]) if mask[row, position]]
        expected_mean = sum(real) / len(real)
        expected_max = torch.stack(real).max(dim=0).values
        torch.testing.assert_close(pool(states, mask, PoolingMode.MEAN)[row], expected_mean)
        torch.testing.assert_close(pool(states, mask, PoolingMode.MAX)[row], expected_max)
        torch.testing.assert_close(pool(states, mask, PoolingMode.CLS)[row], states[-1][row, 0])


def test_first_and_last_layer_average_on_the_tiny_model(tiny_states):
    states, mask = tiny_states
    averaged = (states[0] + states[-1]) / 2
    torch.testing.assert_close(
        pool(states, mask, PoolingMode.MEAN, layers=(0, -1)),
        pool((averaged,), mask, PoolingMode.MEAN),
    )


@st.composite
def padded_batches(draw):
    """Random states with real lengths >= 1, plus extra padding positions of arbitrary values."""
    batch = draw(st.integers(1, 3))
    hidden = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, 5), min_size=batch, max_size=batch))
    extra = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    return batch, hidden, lengths, extra, seed


def _batch(batch, hidden, lengths, extra, seed, layers=2):
    generator = torch.Generator().manual_seed(seed)
    seq = max(lengths)
    states = tuple(torch.randn(batch, seq + extra, hidden, generator=generator) for _ in range(layers))
    mask = torch.zeros(batch, seq + extra, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return states, mask


@settings(max_examples=40, deadline=None)
@given(padded_batches(), st.sampled_from(list(PoolingMode)), st.sampled_from([(-1,), (0, -1)]))
def test_extra_padding_does_not_change_the_vector(case, mode, layers):
    batch, hidden, lengths, extra, seed = case
    states, mask = _batch(batch, hidden, lengths, extra, seed)
    trimmed = tuple(s[:, : max(lengths)] for s in states)
    torch.testing.assert_close(
        pool(states, mask, mode, layers), pool(trimmed, mask[:, : max(lengths)], mode, layers)
    )


@settings(max_examples=30, deadline=None)
@given(padded_batches(), st.sampled_from(list(PoolingMode)))
def test_inputs_are_not_modified(case, mode):
    states, mask = _batch(*case)
    before = [s.clone() for s in states], mask.clone()
    pooled = pool(states, mask, mode, (0, 1))
    pooled.add_(1.0)  # writing to the result must not reach the inputs either
    for state, original in zip(states, before[0], strict=True):
        assert torch.equal(state, original)
    assert torch.equal(mask, before[1])


@settings(max_examples=30, deadline=None)
@given(padded_batches())
def test_mean_max_is_mean_then_max_and_doubles_the_dimension(case):
    states, mask = _batch(*case)
    both = pool(states, mask, PoolingMode.MEAN_MAX)
    hidden = states[0].shape[-1]
    assert both.shape[-1] == 2 * hidden == output_dimension(hidden, PoolingMode.MEAN_MAX)
    torch.testing.assert_close(both[:, :hidden], pool(states, mask, PoolingMode.MEAN))
    torch.testing.assert_close(both[:, hidden:], pool(states, mask, PoolingMode.MAX))


@pytest.mark.parametrize(
    ("layers", "message"),
    [((), "layers must name at least one layer"), ((2,), r"layer 2 does not exist.*-2\.\.1"), ((-3,), "layer -3")],
)
def test_the_one_layers_check_names_what_is_wrong(layers: tuple[int, ...], message: str) -> None:
    """The check the encoder makes of a spec before loading weights, and pooling of each call."""
    with pytest.raises(InvalidCollectionSpec, match=message) as raised:
        check_layers(layers, states=2)
    assert raised.value.field == "layers"
    check_layers((0, -1, -2, 1), states=2)
