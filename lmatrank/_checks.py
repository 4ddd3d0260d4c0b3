"""One set of argument checks for every public entry point (a leaf module).

Every option a user passes is checked here, so that a bad value fails the same
way wherever it is passed:

- a wrong **type** raises ``TypeError`` (``n_chains="8"``, ``eta=[0.1]``,
  ``n_chains=True``: booleans are not numbers here);
- a wrong **value** raises ``ValueError`` (``n_chains=0``, ``eta=nan``,
  ``scheme="rk4"``, ``n_steps=4.5``);
- the message always starts with the option's name, e.g.
  ``"n_chains must be a positive integer, got 0"``.

Each check returns the normalised value (a Python ``int``/``float``/``bool``,
a ``numpy.random.Generator``, a native-byte-order ``numpy.dtype``), so callers
use what the check returns, never the raw argument.

API
---
``check_int(name, value, *, minimum=None, maximum=None, allow_none=False)``
    An integer (Python or numpy; a float with an integral value such as ``2e6``
    is accepted and converted). ``check_positive_int`` is ``minimum=1``.
``check_float(name, value, *, minimum=None, maximum=None, strict_minimum=False,
strict_maximum=False, allow_none=False, allow_inf=False)``
    A finite real number (Python or numpy) in the given range.
    ``check_positive_float`` is ``> 0`` and finite; ``check_nonnegative_float``
    is ``>= 0`` and finite.
``check_bool(name, value, *, allow_none=False)``
    ``True``/``False`` (numpy booleans accepted; ``0``/``1`` are not).
``check_choice(name, value, choices, *, allow_none=False)``
    One of the strings in `choices`.
``check_rng(rng, *, name="rng")``
    Anything :func:`numpy.random.default_rng` accepts, plus a legacy
    ``numpy.random.RandomState`` (a Generator is derived from it
    deterministically, consuming 128 bits of its stream, as scikit-learn-style
    code would), returned as a ``numpy.random.Generator``.
``spawn_rngs(rng, k, *, name="rng")``
    ``k`` independent child Generators of ``check_rng(rng)``; works also for
    Generators whose bit generator cannot spawn.
``check_dtype(name, value, *, allowed=("float32", "float64"), allow_none=True)``
    A native-byte-order numpy dtype among `allowed` (``">f4"`` is float32).
``validate_options(options, table)``
    Apply ``table[name](name, value)`` to every ``options[name]`` that is in
    the table; returns a new dict (unknown names are passed through).

Examples
--------
>>> from lmatrank._checks import check_positive_int, check_float, check_choice
>>> check_positive_int("n_chains", 8), check_positive_int("max_matvecs", 2e6)
(8, 2000000)
>>> check_float("eta", 0.5, minimum=0, strict_minimum=True)
0.5
>>> check_positive_int("n_chains", True)
Traceback (most recent call last):
...
TypeError: n_chains must be an integer, got bool
>>> check_choice("scheme", "rk4", ("em", "baoab"))
Traceback (most recent call last):
...
ValueError: scheme must be one of 'em', 'baoab'; got 'rk4'
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_bool", "check_choice", "check_dtype", "check_float", "check_int",
           "check_nonnegative_float", "check_positive_float", "check_positive_int",
           "check_rng", "spawn_rngs", "validate_options"]


def _type_name(value):
    return type(value).__name__


def check_int(name, value, *, minimum=None, maximum=None, allow_none=False):
    """An integer option, returned as a Python ``int``.

    Accepts Python and numpy integers and floats with an integral value
    (``1e4``). Booleans, strings and other types raise ``TypeError``;
    non-integral, non-finite or out-of-range values raise ``ValueError``.

    Examples
    --------
    >>> check_int("degree", 10, minimum=1), check_int("degree", None, allow_none=True)
    (10, None)
    >>> check_int("shape[0]", 4.5)
    Traceback (most recent call last):
    ...
    ValueError: shape[0] must be an integer, got 4.5
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    if isinstance(value, numbers.Integral):
        result = int(value)
    elif isinstance(value, numbers.Real):
        fvalue = float(value)
        if not math.isfinite(fvalue) or not fvalue.is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        result = int(fvalue)
    else:
        none = " or None" if allow_none else ""
        raise TypeError(f"{name} must be an integer{none}, got {_type_name(value)}")
    if minimum is not None and result < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {result}")
    return result


def check_positive_int(name, value, *, maximum=None, allow_none=False):
    """``check_int(name, value, minimum=1, ...)``.

    >>> check_positive_int("n_probes", 0)
    Traceback (most recent call last):
    ...
    ValueError: n_probes must be a positive integer, got 0
    """
    return check_int(name, value, minimum=1, maximum=maximum, allow_none=allow_none)


def check_float(name, value, *, minimum=None, maximum=None, strict_minimum=False,
                strict_maximum=False, allow_none=False, allow_inf=False):
    """A real option, returned as a Python ``float``.

    Accepts Python and numpy reals (ints too); booleans, strings, arrays and
    complex numbers raise ``TypeError``. NaN (and Inf unless `allow_inf`) and
    out-of-range values raise ``ValueError``.

    Examples
    --------
    >>> check_float("sigma2", 2)
    2.0
    >>> check_float("eta", "x")
    Traceback (most recent call last):
    ...
    TypeError: eta must be a real number, got str
    >>> check_float("rtol", -1.0, minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: rtol must be >= 0, got -1.0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        none = " or None" if allow_none else ""
        raise TypeError(f"{name} must be a real number{none}, got {_type_name(value)}")
    result = float(value)
    if math.isnan(result) or (math.isinf(result) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {result}")
    if minimum is not None:
        if strict_minimum and not result > minimum:
            raise ValueError(f"{name} must be > {minimum:g}, got {result}")
        if not strict_minimum and not result >= minimum:
            raise ValueError(f"{name} must be >= {minimum:g}, got {result}")
    if maximum is not None:
        if strict_maximum and not result < maximum:
            raise ValueError(f"{name} must be < {maximum:g}, got {result}")
        if not strict_maximum and not result <= maximum:
            raise ValueError(f"{name} must be <= {maximum:g}, got {result}")
    return result


def check_positive_float(name, value, *, allow_none=False):
    """A finite real ``> 0``.

    >>> check_positive_float("eta", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: eta must be > 0, got 0.0
    """
    return check_float(name, value, minimum=0.0, strict_minimum=True, allow_none=allow_none)


def check_nonnegative_float(name, value, *, allow_none=False):
    """A finite real ``>= 0``.

    >>> check_nonnegative_float("atol", 0)
    0.0
    """
    return check_float(name, value, minimum=0.0, allow_none=allow_none)


def check_bool(name, value, *, allow_none=False):
    """``True`` or ``False`` (numpy booleans accepted).

    >>> check_bool("corrected", 1)
    Traceback (most recent call last):
    ...
    TypeError: corrected must be True or False, got int
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_type_name(value)}")


def check_choice(name, value, choices, *, allow_none=False):
    """One of the strings `choices`, returned unchanged.

    >>> check_choice("scheme", "em", ("em", "baoab"))
    'em'
    >>> check_choice("scheme", 1, ("em", "baoab"))
    Traceback (most recent call last):
    ...
    TypeError: scheme must be a string, got int
    """
    if value is None and allow_none:
        return None
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {_type_name(value)}")
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def check_rng(rng, *, name="rng"):
    """A ``numpy.random.Generator`` from any SPEC 7 seed or a legacy RandomState.

    ``None``, a non-negative int, a sequence of such ints, a ``SeedSequence``, a
    ``BitGenerator`` or a ``Generator`` (returned as is) are passed to
    :func:`numpy.random.default_rng`. A ``numpy.random.RandomState`` is
    accepted: the Generator is seeded with 128 bits drawn from it, so the same
    RandomState state gives the same result (and the RandomState advances).

    Examples
    --------
    >>> import numpy as np
    >>> a = check_rng(np.random.RandomState(3)).integers(1000)
    >>> b = check_rng(np.random.RandomState(3)).integers(1000)
    >>> bool(a == b)
    True
    >>> check_rng("seed")
    Traceback (most recent call last):
    ...
    TypeError: rng must be None, an int >= 0, a sequence of ints, a SeedSequence, a BitGenerator, a Generator or a RandomState; got str
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.RandomState):
        words = rng.randint(0, 2**32, size=4, dtype=np.uint64)
        return np.random.default_rng([int(w) for w in words])
    if isinstance(rng, (bool, np.bool_)) or isinstance(rng, (str, bytes, float, complex)) \
            or isinstance(rng, (np.floating, np.complexfloating)):
        raise TypeError(_RNG_TYPES + f"; got {_type_name(rng)}")
    if isinstance(rng, numbers.Integral) and int(rng) < 0:
        raise ValueError(f"{name} must be a non-negative integer seed, got {int(rng)}")
    try:
        return np.random.default_rng(rng)
    except TypeError:
        raise TypeError(_RNG_TYPES.replace("rng", name, 1) + f"; got {_type_name(rng)}") from None
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid seed: {exc}") from None


_RNG_TYPES = ("rng must be None, an int >= 0, a sequence of ints, a SeedSequence, a "
              "BitGenerator, a Generator or a RandomState")


def spawn_rngs(rng, k, *, name="rng"):
    """``k`` independent child Generators of ``check_rng(rng)``.

    Uses ``Generator.spawn`` where the bit generator has a SeedSequence, and
    otherwise seeds the children from 128-bit words drawn from the Generator
    (deterministic either way).

    >>> import numpy as np
    >>> [g.integers(10) for g in spawn_rngs(0, 2)] == [g.integers(10) for g in spawn_rngs(0, 2)]
    True
    """
    gen = check_rng(rng, name=name)
    try:
        return gen.spawn(k)
    except (TypeError, ValueError, AttributeError):
        words = gen.integers(0, 2**32, size=(k, 4), dtype=np.uint64)
        return [np.random.default_rng([int(w) for w in row]) for row in words]


def check_dtype(name, value, *, allowed=("float32", "float64"), allow_none=True):
    """A native-byte-order numpy dtype among `allowed` (``None`` passes through).

    Byte order never changes the meaning: ``">f4"`` is float32.

    >>> check_dtype("dtype", ">f4")
    dtype('float32')
    >>> check_dtype("dtype", int)
    Traceback (most recent call last):
    ...
    TypeError: dtype must be one of float32, float64 (or None), got int64
    """
    if value is None and allow_none:
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{name} must be a numpy dtype, got {value!r}") from None
    dtype = dtype.newbyteorder("=")
    if dtype.name not in allowed:
        none = " (or None)" if allow_none else ""
        raise TypeError(f"{name} must be one of {', '.join(allowed)}{none}, got {dtype}")
    return dtype


def validate_options(options, table):
    """Check each option that has an entry in `table`; return the checked dict.

    ``table`` maps an option name to ``check(name, value) -> value``.

    >>> table = {"n_chains": check_positive_int}
    >>> validate_options({"n_chains": 4.0, "other": "x"}, table)
    {'n_chains': 4, 'other': 'x'}
    """
    checked = dict(options)
    for key, value in options.items():
        check = table.get(key)
        if check is not None:
            checked[key] = check(key, value)
    return checked
