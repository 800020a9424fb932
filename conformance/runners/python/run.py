"""The Python conformance runner: runs every case of conformance/cases
through the Python binding (conformance/README.md defines the format).

usage: python3 run.py CASES_DIR SKIP_FILE RESULTS_FILE [CASE_NAME...]

API calls go through tensorbuf.core, the SWIG module of the C API, whose
typemaps are the binding (C names and arguments, out-parameters returned,
errors raised as tensorbuf.Error classes). buffer_wrap wraps a bytearray,
which the binding keeps exported until the buffer's destroy-notify; the
raw-memory pseudo-steps (read_map, write_map) use ctypes at tb_map_data.
"""

import ctypes
import fcntl
import gc
import glob
import json
import math
import os
import sys

import tensorbuf
from tensorbuf import core

RUNNER = "python"

DTYPES = {name: value for value, name in enumerate(tensorbuf.DTYPES, 1)}
MEMORIES = {name: value for value, name in enumerate(tensorbuf.MEMORY_KINDS)}


def _pixel_formats():
    names, value = {}, 1
    while core.tb_pixel_format_name(value) is not None:
        names[core.tb_pixel_format_name(value)] = value
        value += 1
    return names


PIXEL_FORMATS = _pixel_formats()
# tb_pixel_layout has no name function: its names are data (README).
PIXEL_LAYOUTS = ["invalid", "packed", "planar", "semi_planar"]
MAP_FLAGS = {"read": core.TB_MAP_READ, "write": core.TB_MAP_WRITE}
BUFFER_FLAGS = {"read_only": core.TB_BUFFER_READ_ONLY}
SEND_FLAGS = {"read_only": core.TB_SEND_READ_ONLY}
ALLOC_FLAGS = {
    "huge_pages": core.TB_ALLOC_HUGE_PAGES,
    "uninitialized": core.TB_ALLOC_UNINITIALIZED,
}
SEALS = {
    "shrink": fcntl.F_SEAL_SHRINK,
    "grow": fcntl.F_SEAL_GROW,
    "write": fcntl.F_SEAL_WRITE,
    "future_write": 0x0010,  # F_SEAL_FUTURE_WRITE (Linux 5.1; not in fcntl)
    "seal": fcntl.F_SEAL_SEAL,
}
SPECIAL_NUMBERS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class CaseError(Exception):
    """A step that did not meet its expectation; the message says why."""


# ---- results ----------------------------------------------------------------


class Result:
    """A step's result: kind "none", "value", "handle", "fd", "fds" (a list
    of fds) or "object" (several out-parameters: a dict of Results, bound
    member by member)."""

    def __init__(self, kind, value=None):
        self.kind = kind
        self.value = value
        self.owned = kind in ("fd", "fds")


NONE = Result("none")


def value(v):
    return Result("value", v)


def handle(h):
    return Result("handle", h)


def fd(n):
    return Result("fd", n)


def fd_list(fds):
    return Result("fds", list(fds))


def members(**results):
    return Result("object", results)


def discard(result):
    """Closes the fds a result owns (handles go with the garbage)."""
    if result.kind == "fd" and result.owned:
        os.close(result.value)
    elif result.kind == "fds" and result.owned:
        for descriptor in result.value:
            os.close(descriptor)
    elif result.kind == "object":
        for member in result.value.values():
            discard(member)


def pointer(h):
    """The C pointer of a handle (None for NULL): handles compare by it."""
    return None if h is None else int(h.this)


# ---- arguments ----------------------------------------------------------------


class Args:
    """One step's arguments, decoded against its case."""

    def __init__(self, args, case):
        self.args = args or {}
        self.case = case

    def has(self, name):
        return name in self.args

    def is_null(self, name):
        return name in self.args and self.args[name] is None

    def required(self, name):
        if name not in self.args:
            raise CaseError(f"argument {name} is missing")
        return self.args[name]

    def bound(self, ref):
        var = self.case.vars.get(ref[1:])
        if var is None:
            raise CaseError(f"{ref} is not bound")
        return var

    def integer_value(self, v, what):
        if is_ref(v):
            v = self.bound(v).value
        if isinstance(v, str):
            try:
                return int(v, 10)
            except ValueError:
                raise CaseError(f"{what} is not an integer") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise CaseError(f"{what} is not an integer")
        return int(v)

    def integer(self, name):
        return self.integer_value(self.required(name), name)

    def number_value(self, v, what):
        if v in SPECIAL_NUMBERS:
            return SPECIAL_NUMBERS[v]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CaseError(f"{what} is not a number")
        return float(v)

    def number(self, name):
        return self.number_value(self.required(name), name)

    def string(self, name):
        v = self.args.get(name)
        if is_ref(v):
            v = self.bound(v).value
        if v is not None and not isinstance(v, str):
            raise CaseError(f"{name} is not a string")
        return v

    def boolean(self, name, fallback):
        v = self.args.get(name, fallback)
        if not isinstance(v, bool):
            raise CaseError(f"{name} is not a boolean")
        return v

    def array(self, name, length_name, convert):
        """A list (None for null or omitted). The binding takes the C length
        from the list, so an explicit length must agree with it."""
        v = self.args.get(name)
        if v is not None and not isinstance(v, list):
            raise CaseError(f"{name} is not an array")
        length = len(v) if v is not None else 0
        if length_name and self.has(length_name) and self.integer(length_name) != length:
            raise CaseError(f"an explicit {length_name} that differs from the "
                            f"length of {name} cannot be expressed in Python")
        return None if v is None else [convert(entry, name) for entry in v]

    def integers(self, name, length_name=None):
        return self.array(name, length_name, self.integer_value)

    def fds(self, name, length_name=None):
        """An array of fds, or a "$var" naming a bound fd list."""
        v = self.args.get(name)
        if not is_ref(v):
            return self.integers(name, length_name)
        var = self.bound(v)
        if var.kind != "fds":
            raise CaseError(f"{name} does not name a list of fds")
        if length_name and self.has(length_name) and \
                self.integer(length_name) != len(var.value):
            raise CaseError(f"an explicit {length_name} that differs from the "
                            f"length of {name} cannot be expressed in Python")
        return list(var.value)

    def numbers(self, name, length_name=None):
        return self.array(name, length_name, self.number_value)

    def bytes(self, name, length_name=None):
        text = self.string(name)
        data = None if text is None else hex_decode(text, name)
        if length_name and self.has(length_name) and \
                self.integer(length_name) != (len(data) if data else 0):
            raise CaseError(f"an explicit {length_name} that differs from the "
                            f"length of {name} cannot be expressed in Python")
        return data

    def enum(self, name, names):
        v = self.required(name)
        if isinstance(v, str) and not is_ref(v):
            if v not in names:
                raise CaseError(f'{name} "{v}" is not a known name')
            return names[v]
        return self.integer_value(v, name)

    def dtype(self, name):
        return self.enum(name, DTYPES)

    def memory(self, name):
        return self.enum(name, MEMORIES)

    def pixel_format(self, name):
        return self.enum(name, PIXEL_FORMATS)

    def flags_value(self, v, what, names):
        if not isinstance(v, str) or is_ref(v):
            return self.integer_value(v, what)
        flags = 0
        for word in v.split("|"):
            if word not in names:
                raise CaseError(f'{what}: unknown flag "{word}"')
            flags |= names[word]
        return flags

    def flags(self, name, names):
        return self.flags_value(self.required(name), name, names)

    def handle(self, name):
        """The bound handle, or None for null / omitted."""
        v = self.args.get(name)
        if v is None:
            return None
        if not is_ref(v):
            raise CaseError(f'{name} is not a "$name" reference')
        var = self.bound(v)
        if var.kind != "handle":
            raise CaseError(f"{name} does not name a handle")
        return var.value

    def release(self, name):
        """Drops the case's reference to the handle `name`: the SWIG
        destructor then drops the C reference."""
        if self.handle(name) is not None:
            del self.case.vars[self.args[name][1:]]
        gc.collect()

    def object(self, name):
        """The options object `name` as Args over its fields; None where
        it is absent or null."""
        v = self.args.get(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise CaseError(f"{name} is not an object")
        return Args(v, self.case)

    def opts(self, name):
        fields = self.object(name)
        if fields is None:
            return None
        opts = {}
        if fields.has("version"):
            opts["version"] = fields.integer("version")
        if fields.has("memory"):
            opts["memory"] = fields.memory("memory")
        if fields.has("alignment"):
            opts["alignment"] = fields.integer("alignment")
        if fields.has("name"):
            opts["name"] = fields.string("name")
        if fields.has("flags"):
            opts["flags"] = fields.flags("flags", ALLOC_FLAGS)
        return opts

    def channel_opts(self, name):
        fields = self.object(name)
        if fields is None:
            return None
        return {field: fields.integer(field)
                for field in ("version", "max_buffers", "max_mapped_bytes")
                if fields.has(field)}

    def listener_opts(self, name):
        fields = self.object(name)
        if fields is None:
            return None
        opts = {field: fields.integer(field)
                for field in ("version", "mode", "flags", "hello_timeout_ms")
                if fields.has(field)}
        if fields.has("uids"):
            opts["uids"] = [int(uid) for uid in fields.args["uids"]]
        if fields.has("channel_options"):
            opts["channel_options"] = fields.channel_opts("channel_options")
        return opts


def is_ref(v):
    return isinstance(v, str) and v.startswith("$")


def hex_decode(text, what):
    if len(text) % 2 or text != text.lower():
        raise CaseError(f"{what} is not lower-case hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CaseError(f"{what} is not lower-case hex") from None


def dtype_result(dtype):
    return value("invalid" if dtype == 0 else core.tb_dtype_name(dtype))


def memory_result(memory):
    return value(core.tb_memory_name(memory))


def pixel_format_result(pixel_format):
    return value("invalid" if pixel_format == 0 else core.tb_pixel_format_name(pixel_format))


def map_bytes(map_handle):
    """The map's bytes (cases only read maps of contiguous tensors)."""
    tensor = core.tb_map_tensor(map_handle)
    return ctypes.string_at(core.tb_map_data(map_handle), core.tb_tensor_nbytes(tensor))


# ---- the calls ------------------------------------------------------------------
# Each takes (args, case) and returns a Result.


def _buffer_wrap(a, case):
    data = a.bytes("data", "size")
    flags = a.flags("flags", BUFFER_FLAGS) if a.has("flags") else 0
    if data is None:
        return handle(core.tb_buffer_wrap(None, flags))
    # The binding holds an export of the bytearray until the buffer's
    # destroy-notify runs: the end of the case checks that it has run.
    memory = bytearray(data)
    case.wrapped.append(memory)
    return handle(core.tb_buffer_wrap(memory, flags))


def _tensor_from_buffer(a, case):
    shape = a.integers("shape", "ndim")
    strides = a.integers("strides")
    if strides is not None and len(strides) != len(shape or []):
        raise CaseError("strides and shape differ in length")
    return handle(core.tb_tensor_from_buffer(
        a.handle("buffer"), a.integer("byte_offset"), a.dtype("dtype"), shape, strides))


def _tensor_set_quantization(a, case):
    scales = a.numbers("scales", "count")
    zero_points = a.integers("zero_points")
    if zero_points is not None and len(zero_points) != len(scales or []):
        raise CaseError("zero_points and scales differ in length")
    core.tb_tensor_set_quantization(a.handle("tensor"), a.integer("axis"), scales,
                                    zero_points)
    return NONE


def _tensor_quantization_get(a, case):
    scale, zero_point = core.tb_tensor_quantization_get(a.handle("tensor"),
                                                        a.integer("index"))
    return value({"scale_out": scale, "zero_point_out": zero_point})


def _channel_peer_credentials(a, case):
    pid, uid, gid = core.tb_channel_peer_credentials(a.handle("channel"))
    return value({"pid": pid, "uid": uid, "gid": gid})


def _tensor_read_bytes(a, case):
    tensor = a.handle("tensor")
    if a.has("size") and a.integer("size") != core.tb_tensor_nbytes(tensor):
        raise CaseError("a size other than the tensor's nbytes cannot be "
                        "expressed in Python")
    return value(core.tb_tensor_read_bytes(tensor).hex())


def _image_new_with_layout(a, case):
    offsets, strides = a.integers("offsets", "nplanes"), a.integers("strides")
    if strides is not None and len(strides) != len(offsets or []):
        raise CaseError("offsets and strides differ in length")
    return handle(core.tb_image_new_with_layout(
        a.integer("width"), a.integer("height"), a.pixel_format("format"), offsets,
        strides, a.dtype("dtype"), a.opts("opts")))


def _image_import(a, case):
    fds = a.integers("fds", "nplanes")
    offsets, strides = a.integers("offsets"), a.integers("strides")
    for array in (offsets or [], strides or []):
        if array and len(array) != len(fds or []):
            raise CaseError("fds, offsets and strides differ in length")
    return handle(core.tb_image_import(a.integer("width"), a.integer("height"),
                                       a.pixel_format("format"), fds, offsets, strides))


def _channel_pair(a, case):
    out_a, out_b = core.tb_channel_pair()
    return members(out_a=handle(out_a), out_b=handle(out_b))


def _channel_pair_with(a, case):
    out_a, out_b = core.tb_channel_pair_with(a.channel_opts("opts"))
    return members(out_a=handle(out_a), out_b=handle(out_b))


def _channel_limits(a, case):
    own_buffers, own_bytes, peer_buffers, peer_bytes = core.tb_channel_limits(
        a.handle("channel"))
    return value({"own_max_buffers": own_buffers, "own_max_mapped_bytes": own_bytes,
                  "peer_max_buffers": peer_buffers,
                  "peer_max_mapped_bytes": peer_bytes})


def _tensor_export(a, case):
    if a.has("capacity"):
        raise CaseError("the binding sizes the descriptor itself: a capacity "
                        "cannot be passed in Python")
    descriptor, fds = core.tb_tensor_export(a.handle("tensor"),
                                            a.flags("flags", SEND_FLAGS))
    return members(descriptor=value(descriptor.hex()), fds=fd_list(fds))


def _socket_name_counter():
    count = 0

    def make_socket_name(a, case):
        nonlocal count
        count += 1
        return value(f"@tensorbuf-conf-{os.getpid()}-{count}")
    return make_socket_name


def _write_map(a, case):
    map_handle = a.handle("map")
    data = a.bytes("data")
    ctypes.memmove(core.tb_map_data(map_handle), data, len(data))
    return NONE


def _make_memfd(a, case):
    sealing = a.boolean("allow_sealing", True)
    descriptor = os.memfd_create("conformance", os.MFD_CLOEXEC |
                                 (os.MFD_ALLOW_SEALING if sealing else 0))
    try:
        os.ftruncate(descriptor, a.integer("size"))
        data = a.bytes("data")
        if data:
            os.pwrite(descriptor, data, 0)
        seals = a.string("seals")
        if seals:
            fcntl.fcntl(descriptor, fcntl.F_ADD_SEALS,
                        a.flags_value(seals, "seals", SEALS))
        if a.boolean("read_only", False):
            reopened = os.open(f"/proc/self/fd/{descriptor}",
                               os.O_RDONLY | os.O_CLOEXEC)
            os.close(descriptor)
            descriptor = reopened
    except BaseException:
        os.close(descriptor)
        raise
    return fd(descriptor)


def _make_pipe(a, case):
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.close(write_end)
    return fd(read_end)


def _make_tmpfile(a, case):
    directory = os.environ.get("TMPDIR") or "/tmp"
    descriptor = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(descriptor, a.integer("size"))
        data = a.bytes("data")
        if data:
            os.pwrite(descriptor, data, 0)
    except BaseException:
        os.close(descriptor)
        raise
    return fd(descriptor)


def _close_fd(a, case):
    ref = a.required("fd")
    os.close(a.integer("fd"))
    if is_ref(ref):
        a.bound(ref).owned = False
    return NONE


def _set_env(a, case):
    name = a.string("name")
    if name is None:
        raise CaseError("argument name is missing")
    case.env.setdefault(name, os.environ.get(name))
    set_environment(name, a.string("value"))
    return NONE


def set_environment(name, text):
    if text is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = text


def _live_objects(a, case):
    gc.collect()
    return value(tensorbuf.live_objects() - case.live_at_start)


def _status_only(run):
    """A call whose only result is its status (raised on failure)."""
    def call(a, case):
        run(a)
        return NONE
    return call


def _getter(argument, function, convert=value):
    return lambda a, case: convert(function(a.handle(argument)))


def _plane_getter(function):
    return lambda a, case: value(function(a.handle("tensor"), a.integer("plane")))


CALLS = {
    "version_number": lambda a, case: value(core.tb_version_number()),
    "version_string": lambda a, case: value(core.tb_version_string()),
    "live_objects": _live_objects,
    "status_name": lambda a, case: value(core.tb_status_name(a.integer("status"))),
    "status_message": lambda a, case: value(core.tb_status_message(a.integer("status"))),
    "dtype_size": lambda a, case: value(core.tb_dtype_size(a.dtype("dtype"))),
    "dtype_name": lambda a, case: value(core.tb_dtype_name(a.dtype("dtype"))),
    "dtype_from_name": lambda a, case: dtype_result(
        core.tb_dtype_from_name(a.string("name"))),
    "memory_name": lambda a, case: value(core.tb_memory_name(a.memory("memory"))),
    "memory_from_name": lambda a, case: memory_result(
        core.tb_memory_from_name(a.string("name"))),
    "memory_available": lambda a, case: value(core.tb_memory_available(a.memory("memory"))),
    "memory_auto_skipped": lambda a, case: value(tensorbuf.memory_auto_skipped()),
    "alloc_options_init": lambda a, case: value(
        core.tb_alloc_options_init(a.integer("version"))),
    # buffers
    "buffer_new": lambda a, case: handle(
        core.tb_buffer_new(a.integer("size"), a.opts("opts"))),
    "buffer_wrap": _buffer_wrap,
    "buffer_ref": lambda a, case: handle(core.tb_buffer_ref(a.handle("buffer"))),
    "buffer_unref": _status_only(lambda a: a.release("buffer")),
    "buffer_size": _getter("buffer", core.tb_buffer_size),
    "buffer_memory": _getter("buffer", core.tb_buffer_memory, memory_result),
    "buffer_id": _getter("buffer", core.tb_buffer_id),
    "buffer_key": _getter("buffer", core.tb_buffer_key),
    "buffer_fd": _getter("buffer", core.tb_buffer_fd),
    "buffer_read_only": _getter("buffer", core.tb_buffer_read_only),
    "buffer_alive": lambda a, case: value(core.tb_buffer_alive(a.integer("id"))),
    # tensors
    "tensor_new": lambda a, case: handle(core.tb_tensor_new(
        a.dtype("dtype"), a.integers("shape", "ndim"), a.opts("opts"))),
    "tensor_from_buffer": _tensor_from_buffer,
    "tensor_import_fd": lambda a, case: handle(
        core.tb_tensor_import_fd(a.integer("fd"), a.dtype("dtype"),
                                 a.integers("shape", "ndim"), a.integer("byte_offset"))),
    "tensor_export_fd": lambda a, case: fd(
        core.tb_tensor_export_fd(a.handle("tensor"))),
    "tensor_ref": lambda a, case: handle(core.tb_tensor_ref(a.handle("tensor"))),
    "tensor_unref": _status_only(lambda a: a.release("tensor")),
    "tensor_dtype": _getter("tensor", core.tb_tensor_dtype, dtype_result),
    "tensor_ndim": _getter("tensor", core.tb_tensor_ndim),
    "tensor_numel": _getter("tensor", core.tb_tensor_numel),
    "tensor_nbytes": _getter("tensor", core.tb_tensor_nbytes),
    "tensor_offset": _getter("tensor", core.tb_tensor_offset),
    "tensor_is_contiguous": _getter("tensor", core.tb_tensor_is_contiguous),
    "tensor_memory": _getter("tensor", core.tb_tensor_memory, memory_result),
    "tensor_read_only": _getter("tensor", core.tb_tensor_read_only),
    "tensor_buffer_id": _getter("tensor", core.tb_tensor_buffer_id),
    "tensor_buffer": _getter("tensor", core.tb_tensor_buffer, handle),
    "tensor_name": _getter("tensor", core.tb_tensor_name),
    "tensor_fd": _getter("tensor", core.tb_tensor_fd),
    "tensor_dim": lambda a, case: value(
        core.tb_tensor_dim(a.handle("tensor"), a.integer("axis"))),
    "tensor_stride": lambda a, case: value(
        core.tb_tensor_stride(a.handle("tensor"), a.integer("axis"))),
    "tensor_shares_memory": lambda a, case: value(
        core.tb_tensor_shares_memory(a.handle("a"), a.handle("b"))),
    "tensor_set_name": _status_only(lambda a: core.tb_tensor_set_name(
        a.handle("tensor"), a.string("name"))),
    "tensor_reshape": lambda a, case: handle(
        core.tb_tensor_reshape(a.handle("tensor"), a.integers("shape", "ndim"))),
    "tensor_slice": lambda a, case: handle(core.tb_tensor_slice(
        a.handle("tensor"), a.integer("axis"), a.integer("start"), a.integer("stop"),
        a.integer("step"))),
    "tensor_set_quantization": _tensor_set_quantization,
    "tensor_quantization_count": _getter("tensor", core.tb_tensor_quantization_count),
    "tensor_quantization_axis": _getter("tensor", core.tb_tensor_quantization_axis),
    "tensor_quantization_get": _tensor_quantization_get,
    "tensor_get_f64": lambda a, case: value(core.tb_tensor_get_f64(
        a.handle("tensor"), a.integers("index", "nindex"))),
    "tensor_get_i64": lambda a, case: value(core.tb_tensor_get_i64(
        a.handle("tensor"), a.integers("index", "nindex"))),
    "tensor_set_f64": _status_only(lambda a: core.tb_tensor_set_f64(
        a.handle("tensor"), a.integers("index", "nindex"), a.number("value"))),
    "tensor_set_i64": _status_only(lambda a: core.tb_tensor_set_i64(
        a.handle("tensor"), a.integers("index", "nindex"), a.integer("value"))),
    "tensor_read_bytes": _tensor_read_bytes,
    "tensor_write_bytes": _status_only(lambda a: core.tb_tensor_write_bytes(
        a.handle("tensor"), a.bytes("src", "size"))),
    # maps
    "tensor_map": lambda a, case: handle(core.tb_tensor_map(
        a.handle("tensor"), a.flags("flags", MAP_FLAGS))),
    "map_flags": _getter("map", core.tb_map_flags),
    "map_tensor": _getter("map", core.tb_map_tensor, handle),
    "map_unmap": _status_only(lambda a: core.tb_map_unmap(a.handle("map"))),
    "map_free": _status_only(lambda a: a.release("map")),
    "read_map": lambda a, case: value(map_bytes(a.handle("map")).hex()),
    "write_map": _write_map,
    # pixel formats and images
    "pixel_format_name": lambda a, case: value(
        core.tb_pixel_format_name(a.pixel_format("format"))),
    "pixel_format_from_name": lambda a, case: pixel_format_result(
        core.tb_pixel_format_from_name(a.string("name"))),
    "pixel_format_to_fourcc": lambda a, case: value(
        core.tb_pixel_format_to_fourcc(a.pixel_format("format"))),
    "pixel_format_from_fourcc": lambda a, case: pixel_format_result(
        core.tb_pixel_format_from_fourcc(a.integer("fourcc"))),
    "pixel_format_layout": lambda a, case: value(
        PIXEL_LAYOUTS[core.tb_pixel_format_layout(a.pixel_format("format"))]),
    "pixel_format_channels": lambda a, case: value(
        core.tb_pixel_format_channels(a.pixel_format("format"))),
    "pixel_format_is_yuv": lambda a, case: value(
        core.tb_pixel_format_is_yuv(a.pixel_format("format"))),
    "pixel_format_has_alpha": lambda a, case: value(
        core.tb_pixel_format_has_alpha(a.pixel_format("format"))),
    "pixel_format_plane_count": lambda a, case: value(
        core.tb_pixel_format_plane_count(a.pixel_format("format"))),
    "pixel_format_bits": lambda a, case: value(
        core.tb_pixel_format_bits(a.pixel_format("format"))),
    "pixel_format_plane_hsub": lambda a, case: value(core.tb_pixel_format_plane_hsub(
        a.pixel_format("format"), a.integer("plane"))),
    "pixel_format_plane_vsub": lambda a, case: value(core.tb_pixel_format_plane_vsub(
        a.pixel_format("format"), a.integer("plane"))),
    "pixel_format_supports_dtype": lambda a, case: value(
        core.tb_pixel_format_supports_dtype(a.pixel_format("format"), a.dtype("dtype"))),
    "image_new": lambda a, case: handle(core.tb_image_new(
        a.integer("width"), a.integer("height"), a.pixel_format("format"),
        a.dtype("dtype"), a.opts("opts"))),
    "image_new_with_layout": _image_new_with_layout,
    "image_import": _image_import,
    "image_set_format": _status_only(lambda a: core.tb_image_set_format(
        a.handle("tensor"), a.pixel_format("format"))),
    "image_format": _getter("tensor", core.tb_image_format, pixel_format_result),
    "image_width": _getter("tensor", core.tb_image_width),
    "image_height": _getter("tensor", core.tb_image_height),
    "image_plane_count": _getter("tensor", core.tb_image_plane_count),
    "image_plane_offset": _plane_getter(core.tb_image_plane_offset),
    "image_plane_stride": _plane_getter(core.tb_image_plane_stride),
    "image_plane_buffer_id": _plane_getter(core.tb_image_plane_buffer_id),
    "image_plane": lambda a, case: handle(
        core.tb_image_plane(a.handle("image"), a.integer("plane"))),
    "image_export_plane_fd": lambda a, case: fd(
        core.tb_image_export_plane_fd(a.handle("image"), a.integer("plane"))),
    # channels and listeners
    "channel_pair": _channel_pair,
    "listener_listen": lambda a, case: handle(core.tb_listener_listen(a.string("path"))),
    "listener_listen_with": lambda a, case: handle(core.tb_listener_listen_with(
        a.string("path"), a.listener_opts("opts"))),
    "channel_peer_credentials": _channel_peer_credentials,
    "listener_accept": lambda a, case: handle(core.tb_listener_accept(
        a.handle("listener"), a.integer("timeout_ms"))),
    "listener_fd": _getter("listener", core.tb_listener_fd),
    "listener_free": _status_only(lambda a: a.release("listener")),
    "channel_connect": lambda a, case: handle(core.tb_channel_connect(
        a.string("path"), a.integer("timeout_ms"))),
    "channel_connect_with": lambda a, case: handle(core.tb_channel_connect_with(
        a.string("path"), a.integer("timeout_ms"), a.channel_opts("opts"))),
    "channel_pair_with": _channel_pair_with,
    "channel_version": lambda a, case: value(core.tb_channel_version(
        a.handle("channel"))),
    "channel_limits": _channel_limits,
    "channel_from_fd": lambda a, case: handle(core.tb_channel_from_fd(a.integer("fd"))),
    "channel_fd": _getter("channel", core.tb_channel_fd),
    "channel_ref": lambda a, case: handle(core.tb_channel_ref(a.handle("channel"))),
    "channel_unref": _status_only(lambda a: a.release("channel")),
    "channel_send": _status_only(lambda a: core.tb_channel_send(
        a.handle("channel"), a.handle("tensor"), a.flags("flags", SEND_FLAGS))),
    "channel_recv": lambda a, case: handle(core.tb_channel_recv(
        a.handle("channel"), a.integer("timeout_ms"))),
    "channel_send_fence": _status_only(lambda a: core.tb_channel_send_fence(
        a.handle("channel"), a.handle("fence"))),
    "channel_recv_fence": lambda a, case: handle(core.tb_channel_recv_fence(
        a.handle("channel"), a.integer("timeout_ms"))),
    # descriptors
    "tensor_export": _tensor_export,
    "tensor_import": lambda a, case: handle(core.tb_tensor_import(
        a.bytes("descriptor", "length"), a.fds("fds", "nfds"))),
    # fences
    "fence_new": lambda a, case: handle(core.tb_fence_new(a.integer("initial"))),
    "fence_import_fd": lambda a, case: handle(core.tb_fence_import_fd(a.integer("fd"))),
    "fence_export_fd": lambda a, case: fd(core.tb_fence_export_fd(a.handle("fence"))),
    "fence_ref": lambda a, case: handle(core.tb_fence_ref(a.handle("fence"))),
    "fence_unref": _status_only(lambda a: a.release("fence")),
    "fence_value": _getter("fence", core.tb_fence_value),
    "fence_signal": _status_only(lambda a: core.tb_fence_signal(
        a.handle("fence"), a.integer("value"))),
    "fence_wait": _status_only(lambda a: core.tb_fence_wait(
        a.handle("fence"), a.integer("value"), a.integer("timeout_ns"))),
    "fence_cuda_signal": _status_only(lambda a: core.tb_fence_cuda_signal(
        a.handle("fence"), a.integer("value"), a.integer("device"), a.integer("stream"))),
    "fence_cuda_wait": _status_only(lambda a: core.tb_fence_cuda_wait(
        a.handle("fence"), a.integer("value"), a.integer("device"), a.integer("stream"))),
    # CUDA and copies
    "tensor_copy": _status_only(lambda a: core.tb_tensor_copy(
        a.handle("dst"), a.handle("src"), a.integer("stream"))),
    "tensor_cuda_wait": _status_only(lambda a: core.tb_tensor_cuda_wait(
        a.handle("tensor"), a.integer("stream"))),
    "tensor_import_cuda_fd": lambda a, case: handle(core.tb_tensor_import_cuda_fd(
        a.integer("fd"), a.memory("memory"), a.integer("device"), a.dtype("dtype"),
        a.integers("shape", "ndim"), a.integer("byte_offset"))),
    # pools
    "pool_new": lambda a, case: handle(core.tb_pool_new(
        a.handle("prototype"), a.integer("count"))),
    "pool_acquire": lambda a, case: handle(core.tb_pool_acquire(
        a.handle("pool"), a.integer("timeout_ms"))),
    "pool_available": _getter("pool", core.tb_pool_available),
    "pool_size": _getter("pool", core.tb_pool_size),
    "pool_ref": lambda a, case: handle(core.tb_pool_ref(a.handle("pool"))),
    "pool_unref": _status_only(lambda a: a.release("pool")),
    "buffer_map_file": lambda a, case: handle(core.tb_buffer_map_file(
        a.string("path"), a.integer("fd"), a.integer("flags"))),
    "safetensors_open": lambda a, case: handle(core.tb_safetensors_open(
        a.string("path"), a.integer("flags"))),
    "safetensors_close": _status_only(lambda a: a.release("file")),
    "safetensors_count": _getter("file", core.tb_safetensors_count),
    "safetensors_name": lambda a, case: value(core.tb_safetensors_name(
        a.handle("file"), a.integer("index"))),
    "safetensors_tensor": lambda a, case: handle(core.tb_safetensors_tensor(
        a.handle("file"), a.string("name"))),
    "safetensors_metadata_count": _getter("file", core.tb_safetensors_metadata_count),
    "safetensors_metadata_key": lambda a, case: value(core.tb_safetensors_metadata_key(
        a.handle("file"), a.integer("index"))),
    "safetensors_metadata_value": lambda a, case: value(
        core.tb_safetensors_metadata_value(a.handle("file"), a.string("key"))),
    # pseudo-steps
    "make_memfd": _make_memfd,
    "make_pipe": _make_pipe,
    "make_tmpfile": _make_tmpfile,
    "open_devnull": lambda a, case: fd(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)),
    "open_directory": lambda a, case: fd(
        os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)),
    "reopen_read_only": lambda a, case: fd(os.open(
        f"/proc/self/fd/{a.integer('fd')}", os.O_RDONLY | os.O_CLOEXEC)),
    "fd_path": lambda a, case: value(f"/proc/self/fd/{a.integer('fd')}"),
    "make_socket_name": _socket_name_counter(),
    "close_fd": _close_fd,
    "set_env": _set_env,
}

# The calls that return a tb_status: an error one of them raises is compared
# with the expected status.
FALLIBLE = {
    "dtype_from_name", "memory_from_name", "alloc_options_init", "buffer_new",
    "buffer_wrap", "tensor_new", "tensor_from_buffer", "tensor_import_fd",
    "tensor_export_fd", "tensor_set_name", "tensor_reshape", "tensor_slice",
    "tensor_set_quantization", "tensor_quantization_get", "tensor_get_f64",
    "tensor_get_i64", "tensor_set_f64", "tensor_set_i64", "tensor_read_bytes",
    "tensor_write_bytes", "tensor_map", "pixel_format_from_name",
    "pixel_format_from_fourcc", "image_new", "image_new_with_layout", "image_import",
    "image_set_format",
    "image_plane", "image_export_plane_fd", "channel_pair", "listener_listen",
    "listener_listen_with", "channel_peer_credentials", "listener_accept",
    "channel_pair_with", "channel_connect_with", "channel_version",
    "channel_limits",
    "channel_connect", "channel_from_fd", "channel_send",
    "channel_recv", "channel_send_fence", "channel_recv_fence", "tensor_export",
    "tensor_import", "fence_new", "fence_import_fd", "fence_export_fd",
    "fence_signal", "fence_wait", "pool_new", "pool_acquire", "buffer_map_file",
    "safetensors_open", "safetensors_tensor",
    "fence_cuda_signal", "fence_cuda_wait", "tensor_copy", "tensor_cuda_wait",
    "tensor_import_cuda_fd",
}

# Out-parameters by C name, where they are not "out" / "out_fd": the binding
# returns them, so a step that passes NULL for one cannot be expressed.
OUT_PARAMETERS = {
    "alloc_options_init": ("opts",),
    "tensor_quantization_get": ("scale_out", "zero_point_out"),
    "tensor_read_bytes": ("dst",),
    "channel_pair": ("out_a", "out_b"),
    "channel_pair_with": ("out_a", "out_b"),
    "channel_version": ("version",),
    "channel_limits": ("own_max_buffers", "own_max_mapped_bytes",
                       "peer_max_buffers", "peer_max_mapped_bytes"),
    "tensor_export": ("descriptor", "length", "fds", "nfds"),
}

# ---- comparing ------------------------------------------------------------------


def json_matches(expected, got, approx):
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, dict):
        return (isinstance(got, dict) and expected.keys() == got.keys()
                and all(json_matches(expected[k], got[k], approx) for k in expected))
    if isinstance(expected, list):
        return (isinstance(got, (list, tuple)) and len(expected) == len(got)
                and all(json_matches(e, g, approx) for e, g in zip(expected, got)))
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, str) and isinstance(got, (int, float)):
        if expected == "nan":
            return isinstance(got, float) and math.isnan(got)
        if expected in SPECIAL_NUMBERS:
            return got == SPECIAL_NUMBERS[expected]
        try:
            return isinstance(got, int) and got == int(expected, 10)
        except ValueError:
            return False
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return expected == got or abs(expected - got) <= approx
    return expected == got


def result_matches(a, expected, result, approx):
    if is_ref(expected):
        var = a.bound(expected)
        if var.kind != result.kind:
            return False
        if var.kind == "handle":
            return pointer(var.value) == pointer(result.value)
        return json_matches(var.value, result.value, approx)
    if result.kind == "handle":
        return expected is None and result.value is None
    return json_matches(expected, result.value, approx)


def describe(result):
    if result.kind == "none":
        return "nothing"
    if result.kind == "handle":
        return "NULL" if result.value is None else f"handle {pointer(result.value):#x}"
    return json.dumps(result.value)


# ---- running a case -------------------------------------------------------------


class Case:
    def __init__(self, live_at_start):
        self.vars = {}
        self.env = {}
        self.wrapped = []
        self.live_at_start = live_at_start


def check_error(call, error, want):
    if not isinstance(error, tensorbuf.Error):
        raise CaseError(f"raised {type(error).__name__}: {error}")
    message = error.args[-1] if error.args else ""
    if error.name != want:
        raise CaseError(f"returned {error.name} ({message}), expected {want}")
    prefix = f"tb_{call}: "
    if not message.startswith(prefix):
        raise CaseError(f'the error message is "{message}"; it should start "{prefix}"')
    errno = getattr(error, "errno", None)
    if error.name != "TB_ERR_SYSTEM" and (errno or core.tb_last_errno() != 0):
        raise CaseError(f"errno is {core.tb_last_errno()} after {error.name}")


def bind_members(case, result, names):
    """"bind": {member: name, ...}: each member of an object result becomes
    a variable of its own (taken out of the result). The problem, or None."""
    for member, name in names.items():
        if result.kind == "object":
            part = result.value.pop(member, None)
        elif result.kind == "value" and isinstance(result.value, dict) \
                and member in result.value:
            part = value(result.value[member])
        else:
            part = None
        if part is None:
            return f"binds member {member}, which the result lacks"
        if not isinstance(name, str) or name in case.vars:
            discard(part)
            return f"cannot bind member {member} to {name}"
        case.vars[name] = part
    return None


def run_step(case, step):
    call = step.get("call")
    function = CALLS.get(call)
    if function is None:
        raise CaseError(f'unknown call "{call}"')
    a = Args(step.get("args"), case)
    for name in OUT_PARAMETERS.get(call, ("out", "out_fd")):
        if a.is_null(name):
            raise CaseError(f"out-parameters are Python results: a NULL {name} "
                            "cannot be passed")
    expect = step.get("expect") or {}
    want = expect.get("status", "TB_OK")
    if "status" in expect and call not in FALLIBLE:
        raise CaseError("expects a status, but the call returns none")
    try:
        result = function(a, case)
    except CaseError:
        raise
    except Exception as error:  # the binding's error for a failed call
        if want == "TB_OK" or call not in FALLIBLE:
            raise CaseError(f"raised {type(error).__name__}: {error}") from None
        check_error(call, error, want)
        return  # a failed call has no result to compare and binds nothing
    if want != "TB_OK":
        discard(result)
        raise CaseError(f"returned TB_OK, expected {want}")

    approx = expect.get("approx", 0)
    if ("value" in expect or "not" in expect) and result.kind == "none":
        raise CaseError("expects a value, but the call gives none")
    problem = None
    if ("value" in expect or "not" in expect) and result.kind in ("object", "fds"):
        problem = "a result that owns handles or fds is bound, not compared"
    elif "value" in expect and not result_matches(a, expect["value"], result, approx):
        problem = f"gave {describe(result)}, expected {json.dumps(expect['value'])}"
    elif "not" in expect and result_matches(a, expect["not"], result, approx):
        problem = f"gave {describe(result)}, which it must not"
    bind = step.get("bind")
    if bind is not None and problem is None:
        if isinstance(bind, dict):
            problem = bind_members(case, result, bind)
        elif result.kind == "object":
            problem = "the result owns several things: bind its members"
        elif result.kind == "none":
            problem = f"binds {bind}, but the call gives no result"
        elif bind in case.vars:
            problem = f"{bind} is already bound"
        else:
            case.vars[bind] = result
            return
    discard(result)  # what is left unbound is released at once
    if problem:
        raise CaseError(problem)


def unmet_requirement(case_data):
    for term in case_data.get("requires") or []:
        negated = term.startswith("!")
        name = term[1:] if negated else term
        if name not in MEMORIES or tensorbuf.memory_available(name) == negated:
            return term
    return None


def open_fd_count():
    return len(os.listdir("/proc/self/fd"))


def still_exported(memory):
    """Whether the binding still holds an export of a wrapped bytearray
    (its buffer's destroy-notify has not run): a resize is then refused."""
    try:
        memory.append(0)
    except BufferError:
        return True
    memory.pop()
    return False


def release(case):
    """Releases what the case holds: drops the handles (their destructors
    drop the C references), closes the fds, restores the environment and
    collects. (A function, so that no loop variable outlives it.)"""
    for var in case.vars.values():
        discard(var)
    for name, saved in case.env.items():
        set_environment(name, saved)
    case.vars.clear()
    gc.collect()


def run_case(case_data):
    unmet = unmet_requirement(case_data)
    if unmet:
        return "skipped", f"requires {unmet}"
    gc.collect()
    fds_at_start = open_fd_count()
    case = Case(tensorbuf.live_objects())
    why = None
    for i, step in enumerate(case_data["steps"], 1):
        try:
            run_step(case, step)
        except CaseError as error:
            why = f"step {i} ({step.get('call')}): {error}"
            break

    release(case)
    leaks = []
    live = tensorbuf.live_objects() - case.live_at_start
    if live:
        leaks.append(f"{live} live objects leaked")
    fds = open_fd_count() - fds_at_start
    if fds:
        leaks.append(f"{fds} fds leaked")
    wrapped = sum(still_exported(memory) for memory in case.wrapped)
    if wrapped:
        leaks.append(f"{wrapped} wrapped bytearrays not released")
    if leaks:
        why = (why or "after the last step") + "; " + "; ".join(leaks)
    return ("failed", why) if why else ("passed", None)


def read_skip_file(path):
    skips = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split(None, 1)
            if fields and not fields[0].startswith("#"):
                if len(fields) < 2 or not fields[1].strip():
                    sys.exit(f"conformance[{RUNNER}]: {path}: {fields[0]} has no reason")
                skips[fields[0]] = fields[1].strip()
    return skips


def main(argv):
    if len(argv) < 4:
        sys.exit("usage: python3 run.py CASES_DIR SKIP_FILE RESULTS_FILE [CASE...]")
    cases_dir, skip_file, results_file, only = argv[1], argv[2], argv[3], set(argv[4:])
    skips = read_skip_file(skip_file)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    with open(results_file, "w", encoding="utf-8") as results:
        for path in sorted(glob.glob(os.path.join(cases_dir, "*.json"))):
            with open(path, encoding="utf-8") as file:
                cases = json.load(file)["cases"]
            for case_data in cases:
                name = case_data["name"]
                if only and name not in only:
                    continue
                if name in skips:
                    outcome, why = "skipped", skips[name]
                else:
                    outcome, why = run_case(case_data)
                counts[outcome] += 1
                results.write(f"{name}\t{outcome}\n")
                if outcome == "passed":
                    print(f"PASS {name}")
                elif outcome == "failed":
                    print(f"FAIL {name}: {why}")
                else:
                    print(f"SKIP {name}: {why}")
    print(f"conformance[{RUNNER}]: {counts['passed']} passed, {counts['failed']} "
          f"failed, {counts['skipped']} skipped")
    if counts["failed"]:
        return 1
    # 77 when every case selected skipped: ctest reports the run as skipped.
    return 77 if counts["passed"] == 0 and counts["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
