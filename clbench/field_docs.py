"""Help text for config fields: the comment written beside each field, which by house style
cites its source (``epochs: int = 100  # script: 100 epochs``). ``--help`` shows it.

Read from the source with :mod:`inspect` and :mod:`tokenize`; fields of base classes come from
the base that declares them last (a subclass's comment wins). Cheap: no torch.
"""

from __future__ import annotations

import functools
import inspect
import io
import tokenize


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` for the dataclass ``cls`` and its bases; fields without a comment,
    or whose source cannot be read (a class built at run time), are left out."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__dataclass_fields__" in vars(klass) and "__annotations__" in vars(klass):
            comments.update(_own_comments(klass))
    return comments


def _own_comments(klass: type) -> dict[str, str]:
    try:
        source = inspect.getsource(klass)
    except (OSError, TypeError):
        return {}
    names = set(vars(klass)["__annotations__"])
    found: dict[str, str] = {}
    depth, line_field = 0, None  # brackets open, and the field whose line we are on
    try:
        for token in tokenize.generate_tokens(io.StringIO(inspect.cleandoc("\n" + source) + "\n").readline):
            if token.type == tokenize.OP and token.string in "([{":
                depth += 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth -= 1
            elif token.type == tokenize.NAME and depth == 0 and token.start[1] == 4 and token.string in names:
                line_field = token.string  # a field at class-body indentation
            elif token.type == tokenize.COMMENT and line_field is not None and line_field not in found:
                found[line_field] = token.string.lstrip("#").strip()
            elif token.type in (tokenize.NEWLINE, tokenize.NL) and depth == 0:
                line_field = None
    except (tokenize.TokenError, SyntaxError):
        return found
    return found
