-- tensorbuf: zero-copy tensor memory, for Lua 5.4.
--
-- The idiomatic layer over tensorbuf_core, the SWIG module of the C API (C
-- names, 0-based). Here tensors, buffers, maps and fences are objects with
-- methods; shapes and indices are tables; element indices, axes and slice
-- bounds are 1-based and inclusive, as Lua's own; dtypes and memory kinds are
-- names ("f32", "shm"); and every failure raises a table {code=, name=,
-- message=, errno=} whose metatable is tensorbuf.Error. The objects are
-- tensorbuf_core's own: this module gives their classes methods, so the two
-- layers mix freely. Messages from the C library name C's 0-based positions.
-- Timeouts are in seconds (nil: no limit); a call that times out returns
-- false or nil rather than raising.

local core = require "tensorbuf_core"

local tb = {
  core = core,
  version = core.tb_version_string(),
  version_number = core.tb_version_number(),
  Error = core.Error,
  -- {TB_OK = 0, TB_ERR_INVALID_ARGUMENT = -1, ...}, from TB_STATUS_MAP.
  errors = core.statuses,
  live_objects = core.tb_live_objects,
  buffer_alive = core.tb_buffer_alive,
  close_fd = core.close_fd,
  status_name = core.tb_status_name,
  status_message = core.tb_status_message,
}

local INVALID_ARGUMENT = core.TB_ERR_INVALID_ARGUMENT

local function fail(code, func, format, ...)
  core.raise(code, func .. ": " .. string.format(format, ...))
end

-- Calls fn(...); a TB_ERR_TIMEOUT becomes a nil result, any other error
-- propagates.
local function unless_timeout(fn, ...)
  local ok, result = pcall(fn, ...)
  if ok then
    return result
  end
  if getmetatable(result) == core.Error and result.name == "TB_ERR_TIMEOUT" then
    return nil
  end
  error(result, 0)
end

-- Seconds (nil: no limit) as the C API's milliseconds or nanoseconds.
local function milliseconds(seconds)
  return seconds and math.ceil(seconds * 1e3) or -1
end

local function nanoseconds(seconds)
  return seconds and math.ceil(seconds * 1e9) or -1
end

-- Refuses fields a spec table does not know, so a typo is an error.
local function check_spec(spec, func, known)
  if type(spec) ~= "table" then
    fail(INVALID_ARGUMENT, func, "expected a table, got a %s", type(spec))
  end
  for key in pairs(spec) do
    if not known[key] then
      fail(INVALID_ARGUMENT, func, "unknown field %s", tostring(key))
    end
  end
end

local function required(spec, key, func)
  local value = spec[key]
  if value == nil then
    fail(INVALID_ARGUMENT, func, "%s is missing", key)
  end
  return value
end

-- A 1-based position (axis, bound, plane) as the C API's 0-based one.
local function zero_based(position, func, what)
  if math.type(position) == nil or math.tointeger(position) == nil then
    fail(INVALID_ARGUMENT, func, "%s is %s; expected an integer", what, tostring(position))
  end
  return position - 1
end

local function dtype_value(name)
  return core.tb_dtype_from_name(name)
end

-- ---- names of dtypes and memory kinds --------------------------------------

local function list_names(name_of, first)
  local names = {}
  for value = first, math.maxinteger do
    local name = name_of(value)
    if name == nil then
      return names
    end
    names[#names + 1] = name
  end
end

tb.dtypes = list_names(core.tb_dtype_name, 1)
tb.memory_kinds = list_names(core.tb_memory_name, 0)

function tb.dtype_size(name)
  return core.tb_dtype_size(dtype_value(name))
end

function tb.memory_available(name)
  return core.tb_memory_available(core.tb_memory_from_name(name))
end

-- Why this thread's last AUTO allocation skipped kinds, or "".
function tb.memory_auto_skipped()
  return core.tb_memory_auto_skipped()
end

-- Gives cached freed heap blocks back to the system; returns the bytes.
function tb.memory_trim()
  return core.tb_memory_trim()
end

-- ---- construction ------------------------------------------------------------

local ALLOC_FIELDS = {memory = true, alignment = true, name = true,
                     huge_pages = true, uninitialized = true}

-- The alloc options of a spec table, or nil for the defaults.
local function alloc_options(spec)
  local flags = (spec.huge_pages and core.TB_ALLOC_HUGE_PAGES or 0)
      | (spec.uninitialized and core.TB_ALLOC_UNINITIALIZED or 0)
  if spec.memory == nil and spec.alignment == nil and spec.name == nil
      and flags == 0 then
    return nil
  end
  return {
    memory = spec.memory,
    alignment = spec.alignment,
    name = spec.name,
    flags = flags,
  }
end

local function with_alloc_fields(fields)
  for key in pairs(ALLOC_FIELDS) do
    fields[key] = true
  end
  return fields
end

local TENSOR_FIELDS = with_alloc_fields {dtype = true, shape = true}
local BUFFER_FIELDS = with_alloc_fields {size = true}

-- tb.tensor{dtype="f32", shape={2, 3} [, memory="shm"] [, name=] [,
-- alignment=] [, huge_pages=true] [, uninitialized=true]}: a new zero-filled
-- (or, uninitialized, holding anything: for outputs written in full before a
-- read) row-major tensor.
function tb.tensor(spec)
  local func = "tensorbuf.tensor"
  check_spec(spec, func, TENSOR_FIELDS)
  return core.tb_tensor_new(dtype_value(required(spec, "dtype", func)),
                            required(spec, "shape", func), alloc_options(spec))
end

-- tb.buffer{size=1024 [, memory=...]}: a new zero-filled buffer.
function tb.buffer(spec)
  local func = "tensorbuf.buffer"
  check_spec(spec, func, BUFFER_FIELDS)
  return core.tb_buffer_new(required(spec, "size", func), alloc_options(spec))
end

-- tb.wrap(bytes [, {read_only=true}]): a heap buffer holding a copy of the
-- string, freed through tb_buffer_wrap's destroy-notify.
function tb.wrap(bytes, options)
  options = options or {}
  check_spec(options, "tensorbuf.wrap", {read_only = true})
  return core.tb_buffer_wrap(bytes,
                             options.read_only and core.TB_BUFFER_READ_ONLY or 0)
end

-- tb.import_fd{fd=, dtype=, shape= [, offset=0]}: a tensor over a memfd or
-- dma-buf; the fd is dup'd, the caller still closes its own.
function tb.import_fd(spec)
  local func = "tensorbuf.import_fd"
  check_spec(spec, func, {fd = true, dtype = true, shape = true, offset = true})
  return core.tb_tensor_import_fd(required(spec, "fd", func),
                                  dtype_value(required(spec, "dtype", func)),
                                  required(spec, "shape", func), spec.offset or 0)
end

-- tb.fence([initial]) and tb.import_fence(fd): cross-process timelines.
function tb.fence(initial)
  return core.tb_fence_new(initial or 0)
end

tb.import_fence = core.tb_fence_import_fd

-- ---- tensors -------------------------------------------------------------------

local Tensor = {
  ndim = core.tb_tensor_ndim,
  numel = core.tb_tensor_numel,
  nbytes = core.tb_tensor_nbytes,
  offset = core.tb_tensor_offset,
  is_contiguous = core.tb_tensor_is_contiguous,
  read_only = core.tb_tensor_read_only,
  buffer_id = core.tb_tensor_buffer_id,
  buffer = core.tb_tensor_buffer,
  shares_memory = core.tb_tensor_shares_memory,
  name = core.tb_tensor_name,
  set_name = core.tb_tensor_set_name,
  export_fd = core.tb_tensor_export_fd,
  -- fd(): the buffer's own fd, borrowed, as buffer:fd() gives it.
  fd = core.tb_tensor_fd,
  -- get(index) / set(index, value): 1-based index table ({} for a scalar).
  -- Integer dtypes give Lua integers, bool gives booleans, floats numbers.
  get = core.get,
  set = core.set,
  -- read() / write(bytes): the elements' bytes in row-major order.
  read = core.read,
  write = core.write,
}

local tensor_ndim, tensor_dim = core.tb_tensor_ndim, core.tb_tensor_dim
local tensor_numel = core.tb_tensor_numel

function Tensor:dtype()
  return core.tb_dtype_name(core.tb_tensor_dtype(self))
end

function Tensor:memory()
  return core.tb_memory_name(core.tb_tensor_memory(self))
end

-- dim(axis): the size of a 1-based axis (0 beyond the last, as in C).
function Tensor:dim(axis)
  return tensor_dim(self, zero_based(axis, "tensor:dim", "axis"))
end

function Tensor:shape()
  local shape = {}
  for axis = 1, tensor_ndim(self) do
    shape[axis] = tensor_dim(self, axis - 1)
  end
  return shape
end

-- strides(): in elements, per axis.
function Tensor:strides()
  local strides = {}
  for axis = 1, tensor_ndim(self) do
    strides[axis] = core.tb_tensor_stride(self, axis - 1)
  end
  return strides
end

-- reshape{2, -1}: a view with a new shape (one dim may be -1).
function Tensor:reshape(shape)
  return core.tb_tensor_reshape(self, shape)
end

-- slice(axis, first [, last [, step]]): a view of elements first, first +
-- step, ... <= last of a 1-based axis (last defaults to the end), like
-- string.sub.
function Tensor:slice(axis, first, last, step)
  local func = "tensor:slice"
  local c_axis = zero_based(axis, func, "axis")
  return core.tb_tensor_slice(self, c_axis, zero_based(first, func, "first"),
                              last or tensor_dim(self, c_axis), step or 1)
end

local MAP_MODES = {
  r = core.TB_MAP_READ,
  w = core.TB_MAP_WRITE,
  rw = core.TB_MAP_READ | core.TB_MAP_WRITE,
}
local MAP_MODE_NAMES = {}
for mode, flags in pairs(MAP_MODES) do
  MAP_MODE_NAMES[flags] = mode
end

-- map(mode): a map for CPU access, mode "r", "w" or "rw".
function Tensor:map(mode)
  local flags = MAP_MODES[mode]
  if flags == nil then
    fail(INVALID_ARGUMENT, "tensor:map", "mode is %s; expected \"r\", \"w\" or \"rw\"",
         tostring(mode))
  end
  return core.tb_tensor_map(self, flags)
end

-- set_quantization{scale=, zero_point=} (per tensor), {axis=, scales=,
-- zero_points=} (per 1-based axis), or nil to remove it. zero points
-- default to 0.
function Tensor:set_quantization(q)
  local func = "tensor:set_quantization"
  if q == nil then
    return core.tb_tensor_set_quantization(self, -1, nil, nil)
  end
  if q.axis == nil then
    check_spec(q, func, {scale = true, zero_point = true})
    return core.tb_tensor_set_quantization(self, -1, {required(q, "scale", func)},
                                           q.zero_point and {q.zero_point})
  end
  check_spec(q, func, {axis = true, scales = true, zero_points = true})
  return core.tb_tensor_set_quantization(self, zero_based(q.axis, func, "axis"),
                                         required(q, "scales", func), q.zero_points)
end

-- quantization(): nil, or a table in set_quantization's form.
function Tensor:quantization()
  local count = core.tb_tensor_quantization_count(self)
  if count == 0 then
    return nil
  end
  local scales, zero_points = {}, {}
  for i = 1, count do
    scales[i], zero_points[i] = core.tb_tensor_quantization_get(self, i - 1)
  end
  local axis = core.tb_tensor_quantization_axis(self)
  if axis < 0 then
    return {scale = scales[1], zero_point = zero_points[1]}
  end
  return {axis = axis + 1, scales = scales, zero_points = zero_points}
end

-- export{read_only=} -> descriptor, fds: the tensor's description and new
-- fds (the caller closes them) for a transport of the caller's own;
-- tb.import(descriptor, fds) rebuilds the tensor.
function Tensor:export(options)
  options = options or {}
  check_spec(options, "tensor:export", {read_only = true})
  return core.tb_tensor_export(self, options.read_only and core.TB_SEND_READ_ONLY or 0)
end

tb.import = core.tb_tensor_import

-- ---- files -----------------------------------------------------------------------

-- tb.safetensors.load(path[, {sealed_copy = true}]) -> {name = tensor},
-- every tensor a read-only view of the file's one mapping (or of a sealed
-- memfd copy); tb.safetensors.save(path, {name = tensor}[, metadata]).
tb.safetensors = {}

local function file_flags(options, func)
  options = options or {}
  check_spec(options, func, {sealed_copy = true})
  return options.sealed_copy and core.TB_FILE_SEALED_COPY or 0
end

function tb.safetensors.load(path, options)
  local file = core.tb_safetensors_open(path,
                                        file_flags(options, "tensorbuf.safetensors.load"))
  local tensors = {}
  for i = 0, core.tb_safetensors_count(file) - 1 do
    local name = core.tb_safetensors_name(file, i)
    tensors[name] = core.tb_safetensors_tensor(file, name)
  end
  return tensors
end

function tb.safetensors.metadata(path)
  local file = core.tb_safetensors_open(path, 0)
  local metadata = {}
  for i = 0, core.tb_safetensors_metadata_count(file) - 1 do
    local key = core.tb_safetensors_metadata_key(file, i)
    metadata[key] = core.tb_safetensors_metadata_value(file, key)
  end
  return metadata
end

function tb.safetensors.save(path, tensors, metadata)
  local writer = core.tb_safetensors_writer_new()
  for name, tensor in pairs(tensors) do
    core.tb_safetensors_writer_add(writer, name, tensor)
  end
  for key, value in pairs(metadata or {}) do
    core.tb_safetensors_writer_set_metadata(writer, key, value)
  end
  core.tb_safetensors_writer_save(writer, path)
end

-- tb.map_file(path[, {sealed_copy = true}]): the whole file as one
-- read-only buffer (memory "file", or "shm" for a sealed copy).
function tb.map_file(path, options)
  return core.tb_buffer_map_file(path, -1, file_flags(options, "tensorbuf.map_file"))
end

-- ---- images ----------------------------------------------------------------------

-- Names generated from the C constants: TB_PIXEL_LAYOUT_SEMI_PLANAR is
-- "semi_planar".
local LAYOUT_NAMES = {}
for key, value in pairs(core) do
  local layout = type(key) == "string" and key:match("^TB_PIXEL_LAYOUT_(.+)$")
  if layout and layout ~= "INVALID" then
    LAYOUT_NAMES[value] = layout:lower()
  end
end

tb.pixel_formats = list_names(core.tb_pixel_format_name, 1)

local function format_value(name)
  return core.tb_pixel_format_from_name(name)
end

-- pixel_format("nv12"): what the format is, as a table: name, fourcc,
-- layout, channels, bits, and planes = {{hsub=, vsub=}, ...}.
function tb.pixel_format(name)
  local format = format_value(name)
  local planes = {}
  for plane = 1, core.tb_pixel_format_plane_count(format) do
    planes[plane] = {hsub = core.tb_pixel_format_plane_hsub(format, plane - 1),
                     vsub = core.tb_pixel_format_plane_vsub(format, plane - 1)}
  end
  return {
    name = core.tb_pixel_format_name(format),
    fourcc = core.tb_pixel_format_to_fourcc(format),
    layout = LAYOUT_NAMES[core.tb_pixel_format_layout(format)],
    channels = core.tb_pixel_format_channels(format),
    bits = core.tb_pixel_format_bits(format),
    planes = planes,
  }
end

-- pixel_format_of_fourcc(fourcc): the format's name.
function tb.pixel_format_of_fourcc(fourcc)
  return core.tb_pixel_format_name(core.tb_pixel_format_from_fourcc(fourcc))
end

function tb.pixel_format_supports(format, dtype)
  return core.tb_pixel_format_supports_dtype(format_value(format), dtype_value(dtype))
end

local IMAGE_FIELDS = with_alloc_fields {width = true, height = true, format = true,
                                        dtype = true, planes = true}

-- tb.image{width=, height=, format="rgba" [, dtype="u8"] [, memory=...]
-- [, planes={{offset=, stride=}, ...}]}: a new zero-filled image, every plane
-- in one buffer; planes gives each plane's byte offset and row pitch
-- instead of the aligned defaults (alignment then aligns only the buffer).
function tb.image(spec)
  local func = "tensorbuf.image"
  check_spec(spec, func, IMAGE_FIELDS)
  local width, height = required(spec, "width", func), required(spec, "height", func)
  local format, dtype = format_value(required(spec, "format", func)), dtype_value(spec.dtype or "u8")
  if spec.planes == nil then
    return core.tb_image_new(width, height, format, dtype, alloc_options(spec))
  end
  local offsets, strides = {}, {}
  for i, plane in ipairs(spec.planes) do
    check_spec(plane, func, {offset = true, stride = true})
    offsets[i] = plane.offset or 0
    strides[i] = required(plane, "stride", func)
  end
  return core.tb_image_new_with_layout(width, height, format, offsets, strides, dtype,
                                       alloc_options(spec))
end

-- tb.import_image{width=, height=, format=, planes={{fd=, offset=,
-- stride=}, ...}}: an image over the planes of fds (dup'd).
function tb.import_image(spec)
  local func = "tensorbuf.import_image"
  check_spec(spec, func, {width = true, height = true, format = true, planes = true})
  local fds, offsets, strides = {}, {}, {}
  for i, plane in ipairs(required(spec, "planes", func)) do
    check_spec(plane, func, {fd = true, offset = true, stride = true})
    fds[i] = required(plane, "fd", func)
    offsets[i] = plane.offset or 0
    strides[i] = required(plane, "stride", func)
  end
  return core.tb_image_import(required(spec, "width", func), required(spec, "height", func),
                              format_value(required(spec, "format", func)), fds, offsets,
                              strides)
end

-- image(): nil for a plain tensor, else {format=, width=, height=, planes=
-- {{offset=, stride=, buffer_id=}, ...}}.
function Tensor:image()
  local format = core.tb_image_format(self)
  if format == core.TB_PIXEL_FORMAT_INVALID then
    return nil
  end
  local planes = {}
  for plane = 1, core.tb_image_plane_count(self) do
    planes[plane] = {offset = core.tb_image_plane_offset(self, plane - 1),
                     stride = core.tb_image_plane_stride(self, plane - 1),
                     buffer_id = core.tb_image_plane_buffer_id(self, plane - 1)}
  end
  return {format = core.tb_pixel_format_name(format), width = core.tb_image_width(self),
          height = core.tb_image_height(self), planes = planes}
end

-- set_format("rgba") makes the tensor an image; set_format(nil) a plain
-- tensor again.
function Tensor:set_format(name)
  core.tb_image_set_format(self, name and format_value(name) or core.TB_PIXEL_FORMAT_INVALID)
end

-- plane(i) / export_plane_fd(i): 1-based plane of an image.
function Tensor:plane(i)
  return core.tb_image_plane(self, zero_based(i, "tensor:plane", "plane"))
end

function Tensor:export_plane_fd(i)
  return core.tb_image_export_plane_fd(self, zero_based(i, "tensor:export_plane_fd", "plane"))
end

local function describe_tensor(t)
  local name = core.tb_tensor_name(t)
  return string.format("tensor(%s, {%s}, %s%s)", Tensor.dtype(t),
                       table.concat(Tensor.shape(t), ", "), Tensor.memory(t),
                       name and string.format(", %q", name) or "")
end

-- ---- buffers -------------------------------------------------------------------

local Buffer = {
  size = core.tb_buffer_size,
  id = core.tb_buffer_id,
  read_only = core.tb_buffer_read_only,
  -- key(): equal for buffers over the same memfd or dma-buf, even from two
  -- imports (0 without an fd): a key for per-memory caches.
  key = core.tb_buffer_key,
  -- fd(): the buffer's own fd, borrowed (-1 without one): valid while the
  -- buffer lives; never close it (a tensor's export_fd gives one to keep).
  fd = core.tb_buffer_fd,
}

function Buffer:memory()
  return core.tb_memory_name(core.tb_buffer_memory(self))
end

-- view{dtype=, shape= [, offset=0 (bytes)] [, strides= (elements)]}: a
-- tensor over this buffer's bytes.
function Buffer:view(spec)
  local func = "buffer:view"
  check_spec(spec, func, {dtype = true, shape = true, offset = true, strides = true})
  return core.tb_tensor_from_buffer(self, spec.offset or 0,
                                    dtype_value(required(spec, "dtype", func)),
                                    required(spec, "shape", func), spec.strides)
end

-- ---- maps --------------------------------------------------------------------------

-- get/set/read/write as on a tensor, through the map: reading needs "r",
-- writing "w", and an unmapped map refuses both.
local Map = {
  get = core.get,
  set = core.set,
  read = core.read,
  write = core.write,
  -- tensor(): the mapped tensor (nil once unmapped).
  tensor = core.tb_map_tensor,
  -- unmap(): ends CPU access; idempotent. A map is also unmapped when it is
  -- collected or leaves the scope of a `local m <close>` variable.
  unmap = core.tb_map_unmap,
  -- data(): the address of element 0, for other C modules.
  data = core.tb_map_data,
}

-- mode(): "r", "w" or "rw"; nil once unmapped.
function Map:mode()
  return MAP_MODE_NAMES[core.tb_map_flags(self)]
end

local function describe_map(m)
  local tensor = core.tb_map_tensor(m)
  if tensor == nil then
    return "map(unmapped)"
  end
  return string.format("map(%s, %s)", Map.mode(m), describe_tensor(tensor))
end

-- ---- fences ----------------------------------------------------------------------

local Fence = {
  value = core.tb_fence_value,
  signal = core.tb_fence_signal,
  export_fd = core.tb_fence_export_fd,
}

local function fence_wait(fence, value, timeout_ns)
  core.tb_fence_wait(fence, value, timeout_ns)
  return true
end

-- wait(value [, timeout]): true once the fence reaches value, false if the
-- timeout passes first.
function Fence:wait(value, timeout)
  return unless_timeout(fence_wait, self, value, nanoseconds(timeout)) or false
end

-- cuda_signal(value [, stream [, device]]) / cuda_wait(...): queue a signal
-- or a wait on a CUDA stream (an integer CUstream; 0 the legacy default
-- stream) of device (default 0); both return at once.
function Fence:cuda_signal(value, stream, device)
  core.tb_fence_cuda_signal(self, value, device or 0, stream or 0)
end

function Fence:cuda_wait(value, stream, device)
  core.tb_fence_cuda_wait(self, value, device or 0, stream or 0)
end

-- ---- pools -----------------------------------------------------------------------

-- tb.pool(prototype, count): count tensors laid out like prototype,
-- recycled when their last user drops them.
function tb.pool(prototype, count)
  return core.tb_pool_new(prototype, count)
end

local Pool = {
  available = core.tb_pool_available,
  size = core.tb_pool_size,
}

-- acquire([timeout]): a free tensor, or nil if none comes back in time.
function Pool:acquire(timeout)
  return unless_timeout(core.tb_pool_acquire, self, milliseconds(timeout))
end

-- ---- channels ---------------------------------------------------------------------

-- Channel options (tb_channel_options' fields, each optional): max_buffers
-- and max_mapped_bytes, what a channel keeps of the buffers its peer sent
-- (defaults core.TB_CHANNEL_DEFAULT_MAX_BUFFERS and
-- core.TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES); stated to the peer at connect.

-- tb.channel_pair([opts]) -> a, b: two connected channels in this process.
function tb.channel_pair(opts)
  if opts == nil then
    return core.tb_channel_pair()
  end
  return core.tb_channel_pair_with(opts)
end

-- tb.channel_from_fd(fd [, opts]): a channel over a connected socket (dup'd).
function tb.channel_from_fd(fd, opts)
  if opts == nil then
    return core.tb_channel_from_fd(fd)
  end
  return core.tb_channel_from_fd_with(fd, opts)
end

-- tb.listen(path [, opts]): a listener; a path starting with "@" is abstract.
-- opts (tb_listener_options' fields): mode (a path socket's file, default
-- 0600), uids (those allowed to connect; default this process's euid alone),
-- flags (core.TB_LISTENER_ANY_UID: anyone), hello_timeout_ms,
-- channel_options (the accepted channels' options, as above).
function tb.listen(path, opts)
  if opts == nil then
    return core.tb_listener_listen(path)
  end
  return core.tb_listener_listen_with(path, opts)
end

-- tb.connect(path [, timeout [, opts]]): a channel, or nil if nothing
-- listened in time.
function tb.connect(path, timeout, opts)
  if opts == nil then
    return unless_timeout(core.tb_channel_connect, path, milliseconds(timeout))
  end
  return unless_timeout(core.tb_channel_connect_with, path,
                        milliseconds(timeout), opts)
end

local Listener = {fd = core.tb_listener_fd}

-- accept([timeout]): a channel, or nil if no connection came in time.
function Listener:accept(timeout)
  return unless_timeout(core.tb_listener_accept, self, milliseconds(timeout))
end

local Channel = {
  fd = core.tb_channel_fd,
  send_fence = core.tb_channel_send_fence,
  -- peer_credentials() -> pid, uid, gid of the peer (SO_PEERCRED at connect).
  peer_credentials = core.tb_channel_peer_credentials,
  -- version() -> the protocol version agreed at connect.
  version = core.tb_channel_version,
}

-- limits() -> {own = {max_buffers=, max_mapped_bytes=}, peer = {...}}: what
-- each side said at connect it keeps of the other's buffers (the peer's 0:
-- none stated).
function Channel:limits()
  local own_buffers, own_bytes, peer_buffers, peer_bytes =
    core.tb_channel_limits(self)
  return {own = {max_buffers = own_buffers, max_mapped_bytes = own_bytes},
          peer = {max_buffers = peer_buffers, max_mapped_bytes = peer_bytes}}
end

-- send(tensor [, {read_only=true}]): hands the tensor's memory to the peer.
function Channel:send(tensor, options)
  options = options or {}
  check_spec(options, "channel:send", {read_only = true})
  core.tb_channel_send(self, tensor, options.read_only and core.TB_SEND_READ_ONLY or 0)
end

-- recv([timeout]) / recv_fence([timeout]): the next tensor or fence, or nil
-- if none came in time.
function Channel:recv(timeout)
  return unless_timeout(core.tb_channel_recv, self, milliseconds(timeout))
end

function Channel:recv_fence(timeout)
  return unless_timeout(core.tb_channel_recv_fence, self, milliseconds(timeout))
end

-- ---- classes -------------------------------------------------------------------

local function install(class, methods, metamethods)
  local metatable = core.metatable(class)
  metatable.__index = methods
  metatable.__newindex = function(_, key)
    fail(INVALID_ARGUMENT, class, "objects have no field %s to set", tostring(key))
  end
  for name, fn in pairs(metamethods) do
    metatable[name] = fn
  end
end

-- Lua passes __len the operand twice and __close an error too: adapt them
-- to the one-argument C functions.
install("tb_tensor", Tensor, {
  __tostring = describe_tensor,
  __len = function(t)
    return tensor_numel(t)
  end,
})
install("tb_buffer", Buffer, {
  __tostring = function(b)
    return string.format("buffer(%d bytes, %s, id %d)", b:size(), b:memory(), b:id())
  end,
  __len = function(b)
    return core.tb_buffer_size(b)
  end,
})
install("tb_map", Map, {
  __tostring = describe_map,
  __close = function(m)
    core.tb_map_unmap(m)
  end,
})
install("tb_fence", Fence, {
  __tostring = function(f)
    return string.format("fence(%d)", f:value())
  end,
})
install("tb_pool", Pool, {
  __tostring = function(p)
    return string.format("pool(%d of %d free)", p:available(), p:size())
  end,
  __len = function(p)
    return core.tb_pool_size(p)
  end,
})
install("tb_channel", Channel, {
  __tostring = function(c)
    return string.format("channel(fd %d)", c:fd())
  end,
})
install("tb_listener", Listener, {
  __tostring = function(l)
    return string.format("listener(fd %d)", l:fd())
  end,
})

return tb
