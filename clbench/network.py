"""The interface a strategy's network offers: :class:`TaskAwareNetwork`, checked when it is built.

Both built-in networks satisfy it (``MultiHeadNet``: one shared backbone and a head per task;
``MaskedNet``: the masked layers of the packing strategies), and so must a network a plugin
strategy returns from ``build_model``. The runner, the evaluators and checkpoints rely on
nothing else. Importing this module is cheap (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from clbench.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor, nn


@runtime_checkable
class TaskAwareNetwork(Protocol):
    """A ``torch.nn.Module`` that computes one task at a time.

    Lifecycle, driven by ``Strategy.before_task`` / ``after_task``: ``begin_task`` opens task
    ``task`` (1-based, increasing) with a fresh head of ``num_classes`` outputs (``head``: the
    kind of :func:`clbench.nn.heads.make_head`; other keyword options, such as ``MaskedNet``'s
    ``pick``, may be ignored), ``finish_task`` closes it. ``activate(k)`` makes ``forward`` and
    ``features`` compute task k; evaluation activates each task in turn. ``forward(x)`` maps a
    batch ``(B, C, H, W)`` to the active head's outputs ``(B, num_classes)``; ``features(x)`` to
    the backbone's ``(B, D)`` (the embedding verification tasks score).

    Checkpoints: ``state_dict()`` must hold everything, and ``get_extra_state()`` /
    ``set_extra_state()`` (torch's hooks, called before the tensors load) must rebuild the
    per-task structure (heads, masks, widths) of a freshly built network, so that a resume from
    any task loads into ``build_model()``'s output.
    """

    active_task: int | None
    training_task: int | None  # the open task; None or 0 between tasks

    def begin_task(self, task: int, num_classes: int, *, head: str = "linear", **options: Any) -> None: ...

    def finish_task(self) -> None: ...

    def activate(self, task: int) -> None: ...

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters the open task may train (what the default optimizer gets)."""
        ...

    def features(self, x: Tensor) -> Tensor: ...

    def forward(self, x: Tensor) -> Tensor: ...

    def get_extra_state(self) -> Any: ...

    def set_extra_state(self, state: Any) -> None: ...


#: What :func:`check_network` looks for (the members of :class:`TaskAwareNetwork`).
REQUIRED = ("begin_task", "finish_task", "activate", "trainable_parameters", "features", "forward",
            "get_extra_state", "set_extra_state", "state_dict", "load_state_dict", "active_task",
            "training_task")  # fmt: skip


def check_network(model: object, strategy: str) -> None:
    """Raise a one-line UsageError when ``model`` (built by ``strategy``) lacks a member of
    :class:`TaskAwareNetwork` (the error lists them all)."""
    missing = [name for name in REQUIRED if not hasattr(model, name)]
    if missing:
        raise UsageError(
            f"strategy {strategy!r} built a {type(model).__name__} that lacks {', '.join(missing)}: its "
            'build_model() must return a clbench.api.TaskAwareNetwork (docs/plugins.md, "Networks")'
        )
