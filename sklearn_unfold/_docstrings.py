"""One substitution helper for docstrings shared between estimators.

A line of a docstring that holds only ``%(name)s`` is replaced by the entry
``name`` of the given dictionary, re-indented to that line's indentation.
Nothing else of the docstring is touched (a literal ``%`` needs no escape).
"""

import re
import textwrap

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(entries):
    """Class or function decorator filling ``%(name)s`` lines of its docstring from ``entries``.

    Parameters
    ----------
    entries : dict of str to str
        Docstring fragments, written without indentation.
    """

    def decorate(obj):
        def substitute(match):
            name = match.group("name")
            if name not in entries:
                raise KeyError(f"{obj.__qualname__}: no shared docstring entry {name!r}")
            return textwrap.indent(textwrap.dedent(entries[name]).strip("\n"), match.group("indent"))

        obj.__doc__ = _PLACEHOLDER.sub(substitute, obj.__doc__)
        return obj

    return decorate
