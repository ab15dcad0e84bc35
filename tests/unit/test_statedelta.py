"""State deltas of phase records (clbench.statedelta): exact round trips and the zero encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from clbench import statedelta  # noqa: E402

SPECIALS = [0.0, -0.0, float("nan"), float("inf"), 1.5]


def _same_bits(a, b) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    changed=st.floats(0, 1),
    zero_share=st.floats(0, 1),
    dtype=st.sampled_from(["float32", "uint8", "bool", "float16"]),
)
def test_apply_rebuilds_every_state_bit_for_bit(n, seed, changed, zero_share, dtype):
    """Any mix of unchanged, changed-to-zero, changed-to-value (-0.0 and NaN included) round-trips."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n).astype(np.float32)
    base[rng.random(n) < 0.2] = 0.0
    new = base.copy()
    moved = rng.random(n) < changed
    new[moved] = rng.normal(size=int(moved.sum()))
    new[moved & (rng.random(n) < zero_share)] = 0.0
    new[moved & (rng.random(n) < 0.1)] = rng.choice(SPECIALS)
    if dtype == "float32":
        a, b = torch.from_numpy(base), torch.from_numpy(new)
    elif dtype == "float16":
        a, b = torch.from_numpy(base).half(), torch.from_numpy(new).half()
    else:
        a, b = torch.from_numpy(np.nan_to_num(base) > 0), torch.from_numpy(np.nan_to_num(new) > 0)
        if dtype == "uint8":
            a, b = a.to(torch.uint8) * 3, b.to(torch.uint8) * 3
    delta = statedelta.encode({"w": b, "extra": {"k": 1}}, {"w": a})
    rebuilt = statedelta.apply(delta, {"w": a})
    assert _same_bits(rebuilt["w"], b) and rebuilt["extra"] == {"k": 1}


def test_weights_a_prune_zeroes_are_stored_as_bits_without_values():
    """Issue 13 (records ≤ 3× the model): a prune stage zeroes most of what it changes."""
    base = torch.randn(80_000)
    new = base.clone()
    new[:40_000] = 0.0  # released by the prune
    new[40_000:44_000] += 1.0  # the kept weights, retrained
    entry = statedelta.encode({"w": new}, {"w": base})["w"]
    assert entry[statedelta.MARK] == "sparse_zeros"  # a kind older readers refuse, not misread
    assert entry["values"].numel() == 4_000  # was 44,000: every changed position carried a value
    assert _same_bits(statedelta.apply({"w": entry}, {"w": base})["w"], new)


def test_minus_zero_keeps_its_sign():
    base = torch.ones(64)
    new = base.clone()
    new[:3] = -0.0
    new[3:6] = 0.0
    entry = statedelta.encode({"w": new}, {"w": base})["w"]
    rebuilt = statedelta.apply({"w": entry}, {"w": base})["w"]
    assert _same_bits(rebuilt, new) and torch.signbit(rebuilt[:3]).all() and not torch.signbit(rebuilt[3:6]).any()


def test_records_written_before_the_zero_encoding_still_load():
    """An entry without "zeros" (older records) lists every changed position in index/values."""
    from clbench.nn.masked import pack_bits

    base = torch.arange(16, dtype=torch.float32)
    changed = torch.zeros(16, dtype=torch.bool)
    changed[[2, 5]] = True
    old = {statedelta.MARK: "sparse", "index": pack_bits(changed), "values": torch.tensor([0.0, 9.0])}
    rebuilt = statedelta.apply({"w": old}, {"w": base})["w"]
    assert rebuilt[2] == 0.0 and rebuilt[5] == 9.0 and rebuilt[3] == 3.0


def test_a_channels_last_base_rebuilds_with_the_same_values():
    """A task checkpoint saved after a channels_last evaluation keeps its strides; a flat view of
    a clone of it does not exist, so apply must not depend on the base's memory format."""
    base = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    new = base.clone()
    new[0, 1, 2, 3], new[1, 0, 0, 0] = 7.0, 0.0
    delta = statedelta.encode({"w": new}, {"w": base})
    assert delta["w"][statedelta.MARK] == "sparse_zeros"
    rebuilt = statedelta.apply(delta, {"w": base})["w"]
    assert torch.equal(rebuilt, new)
