"""How large a value is, or would be once formatted, measured without building it.

The expression evaluator checks these before it builds a string or a list, so that no
operator (`'a' * n`, `[x] * n`, `'%0999999999d' % 1`, `[big, big, ...]`) can make a value
larger than its limit. Walks stop as soon as they pass the limit: measuring a huge value, or
a list holding the same list a million times, costs at most about the limit in steps.
"""

from __future__ import annotations

from typing import Any, Final

# Escapes make repr() longer than the text: `\U0001f600` is ten characters for one.
_REPR_FACTOR: Final = 10
# repr() of a float is at most 24 characters; of a complex, two floats and `(+j)`.
_FLOAT_CHARS: Final = 24
_COMPLEX_CHARS: Final = 2 * _FLOAT_CHARS + 4
# `%d` or `%f` of a float spells every digit of its integral part: 1.8e308 has 309.
_FLOAT_DIGITS: Final = 312
_DEFAULT_PRECISION: Final = 6
# Width or precision digits beyond this are more than any limit we use (and than CPython's).
_MAX_NUMBER_DIGITS: Final = 9


def _int_chars(value: int) -> int:
    """Decimal digits and sign of an int, a little over (octal or hex are shorter)."""
    return value.bit_length() // 3 + 2


def _repr_chars(text: str, ascii_only: bool) -> int:
    """Characters of repr(text) (of ascii(text) with `ascii_only`), a little over, without
    building it."""
    if text.isprintable() and (text.isascii() or not ascii_only):  # quotes, backslashes
        return len(text) + text.count("\\") + text.count("'") + 2
    widest = max(text)  # the longest escape: \xff, \uffff or \U0010ffff
    factor = 4 if widest < "\u0100" else 6 if widest < "\U00010000" else _REPR_FACTOR
    return factor * len(text) + 2


def value_size(value: Any, limit: int) -> int:
    """The size of a value, as its limit counts it: a string's length, one per number (a big
    integer one per 30 bits), a list's or object's items counted all the way down (an empty
    one inside another counts one). Its text is at most a few dozen characters per unit. A
    number greater than `limit` means "over the limit" (counting stopped there)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple | dict):
            total += len(item)  # at least one per element: `[[]] * n`
            stack.extend(item)
            if isinstance(item, dict):
                stack.extend(item.values())
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 30
        elif not isinstance(item, float | bool | complex) and item is not None:
            return limit + 1  # nothing else reaches an expression; refuse, do not guess
    return total


def _repr_size(value: Any, limit: int, *, ascii_only: bool = False) -> int:
    """Characters of str() of a non-string value, or of repr() of a string (Python spells
    the strings inside containers as repr; ascii() with `ascii_only`), a little over; stops
    once past `limit`."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += _repr_chars(item, ascii_only)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += _int_chars(item)
        elif isinstance(item, float):
            total += _FLOAT_CHARS
        elif isinstance(item, complex):
            total += _COMPLEX_CHARS
        elif isinstance(item, list | tuple | dict):
            total += 2 + 4 * len(item)  # brackets, `, ` and `: `
            stack.extend(item)
            if isinstance(item, dict):
                stack.extend(item.values())
        else:
            return limit + 1
    return total


class FormatRefused(ValueError):
    """A `%` format the estimate cannot follow (so neither could Python, or not safely)."""


class _Arguments:
    """The right side of `format % arguments`, read as CPython reads it."""

    def __init__(self, arguments: Any) -> None:
        self.positional = arguments if isinstance(arguments, tuple) else (arguments,)
        self.mapping = arguments if isinstance(arguments, dict) else None
        self.used = 0

    def next(self) -> Any:
        if self.used >= len(self.positional):
            raise FormatRefused("not enough arguments for the format")
        self.used += 1
        return self.positional[self.used - 1]

    def keyed(self, key: str) -> Any:
        if self.mapping is None or key not in self.mapping:
            raise FormatRefused(f"the format needs a mapping with the key {key!r}")
        return self.mapping[key]


def _number(text: str, position: int) -> tuple[int, int]:
    end = position
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[position:end]
    if len(digits) > _MAX_NUMBER_DIGITS:
        return 10**_MAX_NUMBER_DIGITS, end
    return (int(digits) if digits else 0), end


def _star(arguments: _Arguments) -> int:
    value = arguments.next()
    if not isinstance(value, int):
        raise FormatRefused("* wants an int")
    return min(abs(value), 10**_MAX_NUMBER_DIGITS)


def _body(conversion: str, value: Any, precision: int | None, limit: int, flags: str) -> int:
    """Characters one conversion writes before padding to its width."""
    if conversion == "c":
        return 1
    if conversion in "sra":
        if conversion == "s" and isinstance(value, str):
            size = len(value)
        else:
            size = _repr_size(value, limit, ascii_only=conversion == "a")
        return size if precision is None else min(size, precision)
    if conversion in "diuoxX":
        digits = _int_chars(value) if isinstance(value, int) else _FLOAT_DIGITS
        return max(digits, precision or 0) + 1 + (2 if "#" in flags else 0)
    # e E f F g G: the float's integral digits at most, then the precision and an exponent.
    return _FLOAT_DIGITS + (_DEFAULT_PRECISION if precision is None else precision) + 8


def percent_format_size(fmt: str, arguments: Any, limit: int) -> int:
    """Characters `fmt % arguments` would have, a little over; a number greater than `limit`
    means "over the limit". FormatRefused for a format this does not follow (CPython would
    refuse it too: an unknown conversion, missing arguments, a `*` that is not an int).

    Follows CPython's `PyUnicode_Format`: `%[(key)][flags][width][.precision][hlL]type`,
    widths and precisions written as digits or taken from the arguments by `*`."""
    args = _Arguments(arguments)
    total, position, end = 0, 0, len(fmt)
    while position < end and total <= limit:
        percent = fmt.find("%", position)
        if percent < 0:
            total += end - position
            break
        total += percent - position
        position = percent + 1
        value: Any = None
        keyed = False
        if position < end and fmt[position] == "(":
            depth, start = 1, position + 1
            position += 1
            while position < end and depth:
                depth += {"(": 1, ")": -1}.get(fmt[position], 0)
                position += 1
            if depth:
                raise FormatRefused("incomplete format key")
            value, keyed = args.keyed(fmt[start : position - 1]), True
        flags_start = position
        while position < end and fmt[position] in "-+ #0":
            position += 1
        flags = fmt[flags_start:position]
        if position < end and fmt[position] == "*":
            width, position = _star(args), position + 1
        else:
            width, position = _number(fmt, position)
        precision: int | None = None
        if position < end and fmt[position] == ".":
            if position + 1 < end and fmt[position + 1] == "*":
                precision, position = _star(args), position + 2
            else:
                precision, position = _number(fmt, position + 1)
        if position < end and fmt[position] in "hlL":
            position += 1
        if position >= end:
            raise FormatRefused("incomplete format")
        conversion = fmt[position]
        position += 1
        if conversion == "%":
            total += max(width, 1)
            continue
        if conversion not in "sradiuoxXeEfFgGc":
            raise FormatRefused(f"unsupported format character {conversion!r}")
        if not keyed:
            value = args.next()
        total += max(width, _body(conversion, value, precision, limit, flags))
    return total
