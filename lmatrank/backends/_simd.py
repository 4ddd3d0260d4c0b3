"""Explicit SIMD vectors for the Numba kernels.

Numba leaves LLVM's SLP vectoriser switched off (numba PR #8852), and its
loop vectoriser cannot help the kernels' inner loops over a block row: their
length ``b`` (the number of chains) is only known at run time and is
typically 8 or 32, which the vectoriser's unrolled main loop (4 x 4 or 4 x 8
lanes) skips, so those rows ran scalar. This module adds a Numba type for an
LLVM vector of ``LANES`` values and a few operations on it, so a kernel can
say "these 8 consecutive entries of a row" directly and keep running sums in
registers:

- :func:`load` / :func:`store`: ``LANES`` consecutive entries ``arr[i, j:j + LANES]``
  of a C-contiguous 2-D array (no bounds checks: the caller guarantees
  ``j + LANES <= arr.shape[1]``); :func:`load_first` / :func:`store_first` touch
  only the first ``count`` of them (LLVM masked loads and stores);
- ``+``, ``-``, ``*`` between vectors of the same element type, and between a
  vector and a scalar (broadcast after conversion to the vector's element type);
- :func:`muladd` (a fused multiply-add where the CPU has one);
- :func:`zeros`, :func:`astype`, :func:`signs` (``+-magnitude`` from the bits of a
  64-bit word, for Rademacher noise).

``LANES = 8`` fits the common block widths (8 and 32 chains) exactly: one
256-bit register of float32 or two of float64 (one 512-bit register on
AVX-512 targets); LLVM splits the vector into whatever the CPU has. The
arithmetic is IEEE arithmetic in each lane; :func:`muladd` rounds once on CPUs with
fused multiply-add and twice elsewhere, so results are reproducible on one machine
(the kernels promise no more).
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

__all__ = ["LANES", "Vector", "load", "store", "load_first", "store_first", "zeros", "astype",
           "signs", "muladd"]

#: Entries per vector.
LANES = 8


class Vector(types.Type):
    """Numba type of an LLVM ``<LANES x dtype>`` value."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vector({dtype}, {LANES})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, LANES))


def _entry_pointer(context, builder, arrty, arr, indices):
    array = context.make_array(arrty)(context, builder, value=arr)
    shape = cgutils.unpack_tuple(builder, array.shape, arrty.ndim)
    strides = cgutils.unpack_tuple(builder, array.strides, arrty.ndim)
    return cgutils.get_item_pointer2(context, builder, data=array.data, shape=shape,
                                     strides=strides, layout=arrty.layout, inds=indices,
                                     wraparound=False, boundscheck=False)


def _index_args(context, builder, sig, args, first):
    return [context.cast(builder, value, ty, types.intp)
            for value, ty in zip(args[first:first + 2], sig.args[first:first + 2])]


def _check_array(arr):
    if not (isinstance(arr, types.Array) and arr.layout == "C" and arr.ndim == 2
            and isinstance(arr.dtype, types.Float)):
        raise TypeError(f"simd needs a C-contiguous 2-D float array, got {arr}")


@intrinsic
def load(typingctx, arr, i, j):
    """``arr[i, j:j + LANES]``."""
    _check_array(arr)
    vec = Vector(arr.dtype)
    sig = vec(arr, i, j)

    def codegen(context, builder, sig, args):
        ptr = _entry_pointer(context, builder, sig.args[0], args[0],
                             _index_args(context, builder, sig, args, 1))
        vty = context.get_value_type(sig.return_type)
        return builder.load(builder.bitcast(ptr, vty.as_pointer()),
                            align=context.get_abi_sizeof(vty.element))

    return sig, codegen


@intrinsic
def store(typingctx, arr, value, i, j):
    """``arr[i, j:j + LANES] = value``."""
    _check_array(arr)
    if not (isinstance(value, Vector) and value.dtype == arr.dtype):
        raise TypeError(f"cannot store {value} into {arr}")
    sig = types.void(arr, value, i, j)

    def codegen(context, builder, sig, args):
        ptr = _entry_pointer(context, builder, sig.args[0], args[0],
                             _index_args(context, builder, sig, args, 2))
        vty = context.get_value_type(sig.args[1])
        builder.store(args[1], builder.bitcast(ptr, vty.as_pointer()),
                      align=context.get_abi_sizeof(vty.element))
        return context.get_dummy_value()

    return sig, codegen


def _lane_mask(builder, count):
    """``<LANES x i1>``: lane ``l`` is on when ``l < count`` (``0 <= count <= LANES``)."""
    vi64 = ir.VectorType(ir.IntType(64), LANES)
    counts = builder.insert_element(ir.Constant(vi64, ir.Undefined), count,
                                    ir.Constant(ir.IntType(32), 0))
    counts = builder.shuffle_vector(counts, ir.Constant(vi64, ir.Undefined),
                                    ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return builder.icmp_unsigned("<", ir.Constant(vi64, list(range(LANES))), counts)


def _vector_suffix(vty):
    """LLVM's intrinsic-name suffix of a float vector type, e.g. ``v8f64``."""
    return f"v{LANES}{'f64' if isinstance(vty.element, ir.DoubleType) else 'f32'}"


def _masked_intrinsic(builder, name, vty, arg_types):
    ret = vty if name == "load" else ir.VoidType()
    fnty = ir.FunctionType(ret, arg_types)
    return cgutils.get_or_insert_function(builder.module, fnty,
                                          f"llvm.masked.{name}.{_vector_suffix(vty)}.p0")


@intrinsic
def load_first(typingctx, arr, count, i, j):
    """Like :func:`load` but only the first `count` lanes are read (the rest are zero):
    the last, partial chunk of a row."""
    _check_array(arr)
    vec = Vector(arr.dtype)
    sig = vec(arr, count, i, j)

    def codegen(context, builder, sig, args):
        ptr = _entry_pointer(context, builder, sig.args[0], args[0],
                             _index_args(context, builder, sig, args, 2))
        vty = context.get_value_type(sig.return_type)
        mask = _lane_mask(builder, context.cast(builder, args[1], sig.args[1], types.int64))
        i32 = ir.IntType(32)
        fn = _masked_intrinsic(builder, "load", vty,
                               [vty.as_pointer(), i32, mask.type, vty])
        align = ir.Constant(i32, context.get_abi_sizeof(vty.element))
        return builder.call(fn, [builder.bitcast(ptr, vty.as_pointer()), align, mask,
                                 ir.Constant(vty, None)])

    return sig, codegen


@intrinsic
def store_first(typingctx, arr, value, count, i, j):
    """Like :func:`store` but only the first `count` lanes are written."""
    _check_array(arr)
    if not (isinstance(value, Vector) and value.dtype == arr.dtype):
        raise TypeError(f"cannot store {value} into {arr}")
    sig = types.void(arr, value, count, i, j)

    def codegen(context, builder, sig, args):
        ptr = _entry_pointer(context, builder, sig.args[0], args[0],
                             _index_args(context, builder, sig, args, 3))
        vty = context.get_value_type(sig.args[1])
        mask = _lane_mask(builder, context.cast(builder, args[2], sig.args[2], types.int64))
        i32 = ir.IntType(32)
        fn = _masked_intrinsic(builder, "store", vty,
                               [vty, vty.as_pointer(), i32, mask.type])
        align = ir.Constant(i32, context.get_abi_sizeof(vty.element))
        builder.call(fn, [args[1], builder.bitcast(ptr, vty.as_pointer()), align, mask])
        return context.get_dummy_value()

    return sig, codegen


def _splat(context, builder, value, fromty, vecty):
    element = context.cast(builder, value, fromty, vecty.dtype)
    vty = context.get_value_type(vecty)
    undef = ir.Constant(vty, ir.Undefined)
    first = builder.insert_element(undef, element, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    return builder.shuffle_vector(first, undef, mask)


@intrinsic
def zeros(typingctx, like):
    """A vector of zeros with the element type of the array or scalar type `like`."""
    dtype = like.dtype if isinstance(like, (types.Array, Vector)) else like
    if isinstance(dtype, types.NumberClass):
        dtype = dtype.instance_type
    vec = Vector(dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vec), None)

    return vec(like), codegen


@intrinsic
def astype(typingctx, value, like):
    """Lane-wise conversion of a float vector to the element type of `like` (an array or
    a vector; float32 -> float64 is exact, float64 -> float32 rounds to nearest)."""
    if not isinstance(value, Vector) or not isinstance(like, (types.Array, Vector)):
        raise TypeError(f"expected a Vector and an array or Vector, got {value}, {like}")
    out = Vector(like.dtype)

    def codegen(context, builder, sig, args):
        source, target = sig.args[0].dtype.bitwidth, out.dtype.bitwidth
        if source == target:
            return args[0]
        convert = builder.fpext if target > source else builder.fptrunc
        return convert(args[0], context.get_value_type(out))

    return out(value, like), codegen


@intrinsic
def signs(typingctx, word, first, magnitude):
    """float64 ``magnitude * (1 - 2 * ((word >> (first + l)) & 1))`` for lanes
    ``l = 0 .. LANES - 1`` (``first + LANES <= 64``): Rademacher noise of scale
    `magnitude` from the bits of one hash word, without a multiply."""
    out = Vector(types.float64)

    def codegen(context, builder, sig, args):
        word_value = context.cast(builder, args[0], sig.args[0], types.uint64)
        start = context.cast(builder, args[1], sig.args[1], types.uint64)
        size = context.cast(builder, args[2], sig.args[2], types.float64)
        # shift once in a scalar register, then test one bit per lane
        shifted = _splat(context, builder, builder.lshr(word_value, start), types.uint64,
                         Vector(types.uint64))
        vi64 = ir.VectorType(ir.IntType(64), LANES)
        bits = builder.and_(shifted, ir.Constant(vi64, [1 << lane for lane in range(LANES)]))
        negative = builder.icmp_unsigned("!=", bits, ir.Constant(vi64, None))
        plus = _splat(context, builder, size, types.float64, out)
        return builder.select(negative, builder.fneg(plus), plus)

    return out(word, first, magnitude), codegen


@intrinsic
def muladd(typingctx, a, b, c):
    """``a * b + c`` lane-wise (any of them may be a scalar, broadcast), as one fused
    multiply-add where the CPU has one (LLVM ``fmuladd``), else a multiply and an add."""
    vec = next((t for t in (a, b, c) if isinstance(t, Vector)), None)
    if vec is None:
        raise TypeError("muladd needs at least one Vector argument")

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vec)
        values = [value if isinstance(ty, Vector) else _splat(context, builder, value, ty, vec)
                  for value, ty in zip(args, sig.args)]
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                            f"llvm.fmuladd.{_vector_suffix(vty)}")
        return builder.call(fn, values)

    return vec(a, b, c), codegen


def _make_arithmetic(ops, builder_method):
    @intrinsic
    def vector_op(typingctx, lhs, rhs):
        vec = lhs if isinstance(lhs, Vector) else rhs

        def codegen(context, builder, sig, args):
            values = []
            for value, ty in zip(args, sig.args):
                values.append(value if isinstance(ty, Vector)
                              else _splat(context, builder, value, ty, vec))
            return getattr(builder, builder_method)(*values)

        return vec(lhs, rhs), codegen

    def vector_overload(lhs, rhs):
        lvec, rvec = isinstance(lhs, Vector), isinstance(rhs, Vector)
        if lvec and rvec and lhs.dtype != rhs.dtype:
            raise TypeError(f"mixed vector element types {lhs.dtype} and {rhs.dtype}")
        if (lvec and (rvec or isinstance(rhs, types.Number))) or (
                rvec and isinstance(lhs, types.Number)):
            return lambda lhs, rhs: vector_op(lhs, rhs)
        return None

    for op in ops:
        overload(op)(vector_overload)
    return vector_op


add = _make_arithmetic((operator.add, operator.iadd), "fadd")
sub = _make_arithmetic((operator.sub, operator.isub), "fsub")
mul = _make_arithmetic((operator.mul, operator.imul), "fmul")
