"""A model state dict stored as its difference from another one (phase records, clbench.journal).

Within a task, most of a parameter-isolation model never changes: finished tasks' weights, pick
bits, BatchNorm copies and heads stay bit-identical, and a prune stage leaves the pick mask
alone. A phase record therefore stores each tensor of ``state`` against the same key of a
``base`` state as one of:

* the tensor itself, when the base has no tensor of that shape and dtype, or when more than
  about 3/4 of it changed (a sparse copy would not be smaller);
* ``{MARK: "same"}`` when it is bit-identical (compared as integers, so ``-0.0``/``0.0`` and
  NaN payloads count as different);
* ``{MARK: "sparse", "index": bits, "values": v}``: the changed positions as packed bits
  (:func:`clbench.nn.masked.pack_bits`, one bit per element) and their new values;
* ``{MARK: "sparse_zeros", "index": bits, "values": v, "zeros": bits}`` when some positions
  changed to zero (every bit 0: ``+0.0``, not ``-0.0``): those are left out of ``index`` and
  ``values`` and listed in ``zeros``. A prune stage zeroes most of what it changes (released
  weights, their owner entries), and a zero needs no value. A kind of its own, so that an older
  clbench, which does not know it, fails loudly on such a record instead of ignoring the zeros.

Entries that are not tensors (``_extra_state``) are stored as they are. :func:`apply` rebuilds
the state bit for bit. Sizes, for an N-element float32 tensor with k elements changed to a
nonzero value and z to zero: ``N/8 + 4k`` bytes (``N/4 + 4k`` when z > 0) instead of ``4N``.
Tensors of any memory format (``channels_last`` included) are rebuilt contiguous, with the same
values. Records written before ``"sparse_zeros"`` existed load as they are.
"""

from __future__ import annotations

from typing import Any

MARK = "__clbench_delta__"
_INT_VIEW = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def _bits(t: Any) -> Any:
    """``t`` (on the CPU) viewed as integers of its element size: bitwise comparison."""
    import torch

    flat = t.detach().reshape(-1)
    if flat.dtype == torch.bool:
        return flat.view(torch.uint8)
    return flat.view(getattr(torch, _INT_VIEW[flat.element_size()]))


def encode(state: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``state`` (tensors on any device) as a delta against ``base`` (CPU tensors); see the module
    docstring. The result holds CPU tensors only."""
    import torch

    from clbench.nn.masked import pack_bits

    out: dict[str, Any] = {}
    for key, value in state.items():
        ref = base.get(key)
        if not isinstance(value, torch.Tensor):
            out[key] = value
            continue
        cpu = value.detach().cpu()
        usable = (
            isinstance(ref, torch.Tensor)
            and ref.shape == cpu.shape
            and ref.dtype == cpu.dtype
            and cpu.element_size() in _INT_VIEW
            and cpu.numel() > 0
        )
        if not usable:
            out[key] = cpu
            continue
        bits = _bits(cpu)
        changed = bits != _bits(ref)
        if not bool(changed.any()):
            out[key] = {MARK: "same"}
            continue
        zeroed = changed & (bits == 0)
        valued = changed & ~zeroed
        has_zeros = bool(zeroed.any())
        size = int(valued.sum()) * cpu.element_size() + cpu.numel() / 8 * (2 if has_zeros else 1)
        if size < 0.75 * cpu.numel() * cpu.element_size():
            entry = {MARK: "sparse", "index": pack_bits(valued), "values": cpu.reshape(-1)[valued].clone()}
            if has_zeros:
                entry.update({MARK: "sparse_zeros", "zeros": pack_bits(zeroed)})
            out[key] = entry
        else:
            out[key] = cpu
    return out


def apply(delta: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The state :func:`encode` turned into ``delta``, rebuilt from the same ``base`` (whose
    tensors the result shares where nothing changed: treat both as read-only).

    Raises:
        KeyError: ``base`` lacks a key the delta refers to (a base from another record).
        ValueError: a delta that does not fit its base's shapes.
    """
    import torch

    out: dict[str, Any] = {}
    for key, value in delta.items():
        kind = value.get(MARK) if isinstance(value, dict) else None
        if kind == "same":
            out[key] = base[key]  # shared, not copied: loading a state dict copies it into the model
        elif kind in ("sparse", "sparse_zeros"):
            ref = base[key]
            # Contiguous, so that the flat view indexes in the order encode flattened (reshape) in:
            # a channels_last base (saved after a channels_last evaluation) has no flat view.
            rebuilt = ref.clone(memory_format=torch.contiguous_format)
            changed = _unpacked(value["index"], ref.numel(), key)
            if int(changed.sum()) != value["values"].numel():
                raise ValueError(f"delta of {key!r}: {int(changed.sum())} positions, {value['values'].numel()} values")
            rebuilt.view(-1)[changed] = value["values"]
            if kind == "sparse_zeros":
                rebuilt.view(-1)[_unpacked(value["zeros"], ref.numel(), key)] = 0
            out[key] = rebuilt
        else:
            out[key] = value
    return out


def _unpacked(packed: Any, numel: int, key: str) -> Any:
    """Packed bits as a flat bool mask of ``numel`` entries; ValueError when they were packed
    for another size (a base that is not the one the delta was made against)."""
    from clbench.nn.masked import unpack_bits

    if packed.numel() != (numel + 7) // 8:
        raise ValueError(f"delta of {key!r} holds {packed.numel()} bytes of bits for {numel} entries")
    return unpack_bits(packed, (numel,))


def reshaped(state: dict[str, Any], base: dict[str, Any]) -> bool:
    """True when a tensor of ``state`` has no tensor of the same shape in ``base`` (growth):
    then a delta against ``base`` holds those tensors whole, and ``state`` should become the
    next base."""
    import torch

    return any(
        isinstance(v, torch.Tensor) and (not isinstance(base.get(k), torch.Tensor) or base[k].shape != v.shape)
        for k, v in state.items()
    )


def cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A CPU copy of a state dict's tensors (other entries shared): the base kept in memory."""
    import torch

    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
