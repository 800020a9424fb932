-- The Lua conformance runner: runs every case of conformance/cases through
-- the Lua binding (conformance/README.md defines the format).
--
-- usage: lua5.4 run.lua CASES_DIR SKIP_FILE RESULTS_FILE [CASE_NAME...]
--
-- Calls go through the idiomatic layer (tensorbuf) where a call maps onto it
-- without changing its meaning: methods of a non-nil handle that take C's
-- arguments unchanged (t:ndim(), t:reshape{...}, b:size(), m:unmap(), ...),
-- tb.wrap for buffer_wrap and the map's own read/write for read_map and
-- write_map. Everything else goes through the low-level module
-- tensorbuf_core: NULL handles, 0-based indices and axes, raw dtype and
-- memory values. Pseudo-steps that need the operating system use the
-- runner's C helper tb_osutil.
local cjson = require "cjson"
local tb = require "tensorbuf"
local osutil = require "tb_osutil"
local core = tb.core

local RUNNER = "lua"

-- ---- decoding arguments ------------------------------------------------------

-- A step fails by raising a CaseError (the message says why).
local CaseError = {}
CaseError.__tostring = function(e) return e.why end
local function case_error(format, ...)
  error(setmetatable({why = string.format(format, ...)}, CaseError), 0)
end

-- A decimal string (beyond what JSON doubles hold) as a 64-bit integer; an
-- unsigned value above INT64_MAX wraps to its two's complement, as the
-- binding takes it.
local function parse_decimal(text)
  local negative, digits = text:match("^(%-?)(%d+)$")
  if digits == nil then
    return nil
  end
  local value = 0
  for digit in digits:gmatch("%d") do
    value = value * 10 + tonumber(digit)
  end
  return negative == "-" and -value or value
end

-- The unsigned decimal text of a 64-bit integer's bits.
local function unsigned_text(value)
  if value >= 0 then
    return tostring(value)
  end
  local quotient = (value >> 1) // 5
  return tostring(quotient) .. tostring(value - quotient * 10)
end

local function hex_decode(hex, what)
  if hex:find("[^0-9a-f]") or #hex % 2 ~= 0 then
    case_error("%s is not lower-case hex", what)
  end
  return (hex:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end))
end

local function hex_encode(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local DTYPES = {}
for value, name in ipairs(tb.dtypes) do
  DTYPES[name] = value
end
local MEMORIES = {}
for index, name in ipairs(tb.memory_kinds) do
  MEMORIES[name] = index - 1
end
local PIXEL_FORMATS = {}
for value, name in ipairs(tb.pixel_formats) do
  PIXEL_FORMATS[name] = value
end
-- tb_pixel_layout has no name function: its names are data (README).
local PIXEL_LAYOUTS = {[0] = "invalid", "packed", "planar", "semi_planar"}
local MAP_FLAGS = {read = core.TB_MAP_READ, write = core.TB_MAP_WRITE}
local BUFFER_FLAGS = {read_only = core.TB_BUFFER_READ_ONLY}
local SEND_FLAGS = {read_only = core.TB_SEND_READ_ONLY}
local ALLOC_FLAGS = {huge_pages = core.TB_ALLOC_HUGE_PAGES,
                     uninitialized = core.TB_ALLOC_UNINITIALIZED}

-- Argument accessors over one step's args, bound to its case.
local Args = {}
Args.__index = Args

local function new_args(args, case)
  return setmetatable({args = args or {}, case = case}, Args)
end

function Args:has(name)
  return self.args[name] ~= nil
end

function Args:is_null(name)
  return self.args[name] == cjson.null
end

function Args:raw(name)
  local value = self.args[name]
  if value == cjson.null then
    return nil
  end
  return value
end

function Args:required(name)
  local value = self.args[name]
  if value == nil then
    case_error("argument %s is missing", name)
  end
  return value
end

-- A "$var": the bound value.
function Args:bound(ref)
  local var = self.case.vars[ref:sub(2)]
  if var == nil then
    case_error("%s is not bound", ref)
  end
  return var
end

local function is_ref(value)
  return type(value) == "string" and value:sub(1, 1) == "$"
end

function Args:integer_value(value, what)
  if is_ref(value) then
    value = self:bound(value).value
  end
  if type(value) == "string" then
    local parsed = parse_decimal(value)
    if parsed == nil then
      case_error("%s is not an integer", what)
    end
    return parsed
  end
  local integer = math.tointeger(value)
  if integer == nil then
    case_error("%s is not an integer", what)
  end
  return integer
end

function Args:integer(name)
  return self:integer_value(self:required(name), name)
end

local SPECIAL_NUMBERS = {nan = 0 / 0, inf = math.huge, ["-inf"] = -math.huge}

function Args:number_value(value, what)
  if SPECIAL_NUMBERS[value] then
    return SPECIAL_NUMBERS[value]
  end
  if type(value) ~= "number" then
    case_error("%s is not a number", what)
  end
  return value
end

function Args:number(name)
  return self:number_value(self:required(name), name)
end

function Args:string(name)
  local value = self:raw(name)
  if is_ref(value) then
    value = self:bound(value).value
  end
  if value ~= nil and type(value) ~= "string" then
    case_error("%s is not a string", name)
  end
  return value
end

function Args:boolean(name, fallback)
  local value = self.args[name]
  if value == nil then
    return fallback
  end
  if type(value) ~= "boolean" then
    case_error("%s is not a boolean", name)
  end
  return value
end

-- An array (nil for null or omitted); `length_name` is the C length
-- parameter, which the binding derives from the array and so cannot take
-- on its own.
function Args:array(name, length_name, convert)
  local value = self:raw(name)
  if value ~= nil and type(value) ~= "table" then
    case_error("%s is not an array", name)
  end
  local length = value and #value or 0
  if length_name and self:has(length_name)
      and self:integer(length_name) ~= length then
    case_error("an explicit %s that differs from the length of %s cannot be "
               .. "expressed in Lua", length_name, name)
  end
  if value == nil then
    return nil
  end
  local array = {}
  for i, entry in ipairs(value) do
    array[i] = convert(self, entry, name)
  end
  return array
end

function Args:integers(name, length_name)
  return self:array(name, length_name, Args.integer_value)
end

-- fds: an array, or a "$var" naming a bound fd list.
function Args:fds(name, length_name)
  local value = self:raw(name)
  if not is_ref(value) then
    return self:integers(name, length_name)
  end
  local var = self:bound(value)
  if var.kind ~= "fds" then
    case_error("%s does not name a list of fds", name)
  end
  if length_name and self:has(length_name) and self:integer(length_name) ~= #var.value then
    case_error("an explicit %s that differs from the length of %s cannot be "
               .. "expressed in Lua", length_name, name)
  end
  return table.move(var.value, 1, #var.value, 1, {})
end

function Args:numbers(name, length_name)
  return self:array(name, length_name, Args.number_value)
end

function Args:bytes(name, length_name)
  local hex = self:string(name)
  local bytes = hex and hex_decode(hex, name)
  if length_name and self:has(length_name)
      and self:integer(length_name) ~= (bytes and #bytes or 0) then
    case_error("an explicit %s that differs from the length of %s cannot be "
               .. "expressed in Lua", length_name, name)
  end
  return bytes
end

local function enum_value(self, name, names)
  local value = self:required(name)
  if type(value) == "string" and not is_ref(value) then
    if names[value] == nil then
      case_error("%s \"%s\" is not a known name", name, value)
    end
    return names[value]
  end
  return self:integer_value(value, name)
end

function Args:dtype(name)
  return enum_value(self, name, DTYPES)
end

function Args:memory(name)
  return enum_value(self, name, MEMORIES)
end

function Args:pixel_format(name)
  return enum_value(self, name, PIXEL_FORMATS)
end

function Args:flags_value(value, what, names)
  if type(value) ~= "string" or is_ref(value) then
    return self:integer_value(value, what)
  end
  local flags = 0
  for word in value:gmatch("[^|]+") do
    if names[word] == nil then
      case_error("%s: unknown flag \"%s\"", what, word)
    end
    flags = flags | names[word]
  end
  return flags
end

function Args:flags(name, names)
  return self:flags_value(self:required(name), name, names)
end

-- A handle argument: the bound object, or nil for null / omitted.
function Args:handle(name)
  local value = self:raw(name)
  if value == nil then
    return nil
  end
  if not is_ref(value) then
    case_error("%s is not a \"$name\" reference", name)
  end
  local var = self:bound(value)
  if var.kind ~= "handle" then
    case_error("%s does not name a handle", name)
  end
  return var.value
end

-- The handle argument `name`, whose variable this step releases.
function Args:release(name)
  local handle = self:handle(name)
  if handle ~= nil then
    self.case.vars[self.args[name]:sub(2)] = nil
  end
  return handle
end

function Args:fd(name)
  return self:integer(name)
end

-- The options object `name` as Args over its fields; nil where it is
-- absent or null.
function Args:object(name)
  local value = self:raw(name)
  if value == nil then
    return nil
  end
  if type(value) ~= "table" then
    case_error("%s is not an object", name)
  end
  return new_args(value, self.case)
end

-- tb_alloc_options as the binding's table (memory by name or value).
function Args:opts(name)
  local fields = self:object(name)
  if fields == nil then
    return nil
  end
  return {
    version = fields:has("version") and fields:integer("version") or nil,
    memory = fields:has("memory") and fields:memory("memory") or nil,
    alignment = fields:has("alignment") and fields:integer("alignment") or nil,
    name = fields:string("name"),
    flags = fields:has("flags") and fields:flags("flags", ALLOC_FLAGS) or nil,
  }
end

-- tb_channel_options as the binding's table.
function Args:channel_opts(name)
  local fields = self:object(name)
  if fields == nil then
    return nil
  end
  local opts = {}
  for _, field in ipairs {"version", "max_buffers", "max_mapped_bytes"} do
    if fields:has(field) then
      opts[field] = fields:integer(field)
    end
  end
  return opts
end

-- tb_listener_options as the binding's table (uids a sequence).
function Args:listener_opts(name)
  local fields = self:object(name)
  if fields == nil then
    return nil
  end
  local opts = {}
  for _, field in ipairs {"version", "mode", "flags", "hello_timeout_ms"} do
    if fields:has(field) then
      opts[field] = fields:integer(field)
    end
  end
  local uids = fields:raw("uids")
  if uids ~= nil then
    opts.uids = {}
    for i, uid in ipairs(uids) do
      opts.uids[i] = math.tointeger(uid) or case_error("a uid is not an integer")
    end
  end
  opts.channel_options = fields:channel_opts("channel_options")
  return opts
end

-- Out-parameters are results in Lua: passing NULL for one cannot be
-- expressed.
function Args:no_null_out(...)
  for _, name in ipairs {...} do
    if self:is_null(name) then
      case_error("a NULL %s cannot be expressed in Lua", name)
    end
  end
end

-- ---- results --------------------------------------------------------------------

-- A result: {kind = "none" | "value" | "handle" | "fd" | "fds" | "object",
-- value = ...}. An "object" is several out-parameters, each a result of its
-- own, bound member by member.
local NONE = {kind = "none"}
local function value(v) return {kind = "value", value = v} end
local function handle(h) return {kind = "handle", value = h} end
local function fd(n) return {kind = "fd", value = n, owned = true} end
local function fd_list(list) return {kind = "fds", value = list, owned = true} end
local function members(results) return {kind = "object", value = results} end

-- Closes the fds a result owns (handles go with the garbage).
local function discard(result)
  if result.kind == "fd" and result.owned then
    tb.close_fd(result.value)
  elseif result.kind == "fds" and result.owned then
    for _, n in ipairs(result.value) do
      tb.close_fd(n)
    end
  elseif result.kind == "object" then
    for _, member in pairs(result.value) do
      discard(member)
    end
  end
end

local function dtype_result(dtype)
  return value(core.tb_dtype_name(dtype) or (dtype == 0 and "invalid" or nil))
end

-- A getter: the idiomatic method for a handle, the low-level function for
-- NULL (methods need an object).
local function getter(argument, method, low_level, convert)
  convert = convert or value
  return function(a)
    local object = a:handle(argument)
    if object == nil then
      return convert(low_level(nil))
    end
    return convert(object[method](object))
  end
end

-- A call that releases its handle argument: the case drops it and collects.
local function releasing(argument)
  return function(a)
    a:release(argument)
    collectgarbage()
    return NONE
  end
end

local function memory_name(m)
  return value(core.tb_memory_name(m))
end

local function pixel_format_result(format)
  return value(format == 0 and "invalid" or core.tb_pixel_format_name(format))
end

-- ---- the calls -------------------------------------------------------------------

local calls = {}

calls.version_number = function() return value(core.tb_version_number()) end
calls.version_string = function() return value(tb.version) end
calls.live_objects = function(_, case)
  collectgarbage()
  collectgarbage()
  return value(tb.live_objects() - case.live_at_start)
end
calls.status_name = function(a) return value(tb.status_name(a:integer("status"))) end
calls.status_message = function(a) return value(tb.status_message(a:integer("status"))) end

calls.dtype_size = function(a) return value(core.tb_dtype_size(a:dtype("dtype"))) end
calls.dtype_name = function(a) return value(core.tb_dtype_name(a:dtype("dtype"))) end
calls.dtype_from_name = function(a)
  a:no_null_out("out")
  return dtype_result(core.tb_dtype_from_name(a:string("name")))
end
calls.memory_name = function(a) return value(core.tb_memory_name(a:memory("memory"))) end
calls.memory_from_name = function(a)
  a:no_null_out("out")
  return memory_name(core.tb_memory_from_name(a:string("name")))
end
calls.memory_auto_skipped = function() return value(tb.memory_auto_skipped()) end
calls.memory_available = function(a)
  return value(core.tb_memory_available(a:memory("memory")))
end
calls.alloc_options_init = function(a)
  a:no_null_out("opts")
  return value(core.tb_alloc_options_init(a:integer("version")))
end

calls.buffer_new = function(a)
  a:no_null_out("out")
  return handle(core.tb_buffer_new(a:integer("size"), a:opts("opts")))
end
calls.buffer_wrap = function(a)
  a:no_null_out("out")
  local data = a:bytes("data", "size")
  local flags = a:has("flags") and a:flags("flags", BUFFER_FLAGS) or 0
  if data == nil then
    -- tb.wrap takes a string: NULL data goes through the low-level call.
    return handle(core.tb_buffer_wrap(nil, flags))
  end
  return handle(core.tb_buffer_wrap(data, flags))
end
calls.buffer_ref = function(a) return handle(core.tb_buffer_ref(a:handle("buffer"))) end
calls.buffer_unref = releasing("buffer")
calls.buffer_size = getter("buffer", "size", core.tb_buffer_size)
calls.buffer_memory = getter("buffer", "memory", core.tb_buffer_memory, function(m)
  return type(m) == "string" and value(m) or memory_name(m)
end)
calls.buffer_id = getter("buffer", "id", core.tb_buffer_id)
calls.buffer_key = getter("buffer", "key", core.tb_buffer_key)
calls.buffer_fd = getter("buffer", "fd", core.tb_buffer_fd)
calls.buffer_read_only = getter("buffer", "read_only", core.tb_buffer_read_only)
calls.buffer_alive = function(a) return value(tb.buffer_alive(a:integer("id"))) end

calls.tensor_new = function(a)
  a:no_null_out("out")
  return handle(core.tb_tensor_new(a:dtype("dtype"), a:integers("shape", "ndim"),
                                   a:opts("opts")))
end
calls.tensor_from_buffer = function(a)
  a:no_null_out("out")
  local shape = a:integers("shape", "ndim")
  local strides = a:integers("strides")
  if strides and #strides ~= #(shape or {}) then
    case_error("strides and shape differ in length")
  end
  return handle(core.tb_tensor_from_buffer(a:handle("buffer"), a:integer("byte_offset"),
                                           a:dtype("dtype"), shape, strides))
end
calls.tensor_import_fd = function(a)
  a:no_null_out("out")
  return handle(core.tb_tensor_import_fd(a:fd("fd"), a:dtype("dtype"),
                                         a:integers("shape", "ndim"),
                                         a:integer("byte_offset")))
end
calls.tensor_export_fd = function(a)
  a:no_null_out("out_fd")
  local tensor = a:handle("tensor")
  return fd(tensor and tensor:export_fd() or core.tb_tensor_export_fd(nil))
end
calls.tensor_ref = function(a) return handle(core.tb_tensor_ref(a:handle("tensor"))) end
calls.tensor_unref = releasing("tensor")

calls.tensor_dtype = function(a)
  return dtype_result(core.tb_tensor_dtype(a:handle("tensor")))
end
calls.tensor_ndim = getter("tensor", "ndim", core.tb_tensor_ndim)
calls.tensor_numel = getter("tensor", "numel", core.tb_tensor_numel)
calls.tensor_nbytes = getter("tensor", "nbytes", core.tb_tensor_nbytes)
calls.tensor_offset = getter("tensor", "offset", core.tb_tensor_offset)
calls.tensor_is_contiguous = getter("tensor", "is_contiguous", core.tb_tensor_is_contiguous)
calls.tensor_memory = getter("tensor", "memory", core.tb_tensor_memory, function(m)
  return type(m) == "string" and value(m) or memory_name(m)
end)
calls.tensor_read_only = getter("tensor", "read_only", core.tb_tensor_read_only)
calls.tensor_buffer_id = getter("tensor", "buffer_id", core.tb_tensor_buffer_id)
calls.tensor_buffer = getter("tensor", "buffer", core.tb_tensor_buffer, handle)
calls.tensor_name = getter("tensor", "name", core.tb_tensor_name)
calls.tensor_fd = getter("tensor", "fd", core.tb_tensor_fd)
calls.tensor_dim = function(a)
  return value(core.tb_tensor_dim(a:handle("tensor"), a:integer("axis")))
end
calls.tensor_stride = function(a)
  return value(core.tb_tensor_stride(a:handle("tensor"), a:integer("axis")))
end
calls.tensor_shares_memory = function(a)
  return value(core.tb_tensor_shares_memory(a:handle("a"), a:handle("b")))
end
calls.tensor_set_name = function(a)
  local tensor = a:handle("tensor")
  local name = a:string("name")
  if tensor == nil then
    core.tb_tensor_set_name(nil, name)
  else
    tensor:set_name(name)
  end
  return NONE
end

calls.tensor_reshape = function(a)
  a:no_null_out("out")
  local tensor = a:handle("tensor")
  local shape = a:integers("shape", "ndim")
  if tensor == nil then
    return handle(core.tb_tensor_reshape(nil, shape))
  end
  return handle(tensor:reshape(shape))
end
calls.tensor_slice = function(a)
  a:no_null_out("out")
  return handle(core.tb_tensor_slice(a:handle("tensor"), a:integer("axis"), a:integer("start"),
                                     a:integer("stop"), a:integer("step")))
end
calls.tensor_set_quantization = function(a)
  local scales = a:numbers("scales", "count")
  local zero_points = a:integers("zero_points")
  if zero_points and #zero_points ~= #(scales or {}) then
    case_error("zero_points and scales differ in length")
  end
  core.tb_tensor_set_quantization(a:handle("tensor"), a:integer("axis"), scales, zero_points)
  return NONE
end
calls.tensor_quantization_count = function(a)
  return value(core.tb_tensor_quantization_count(a:handle("tensor")))
end
calls.tensor_quantization_axis = function(a)
  return value(core.tb_tensor_quantization_axis(a:handle("tensor")))
end
calls.tensor_quantization_get = function(a)
  a:no_null_out("scale_out", "zero_point_out")
  local scale, zero_point = core.tb_tensor_quantization_get(a:handle("tensor"),
                                                            a:integer("index"))
  return value {scale_out = scale, zero_point_out = zero_point}
end

calls.tensor_get_f64 = function(a)
  a:no_null_out("out")
  return value(core.tb_tensor_get_f64(a:handle("tensor"), a:integers("index", "nindex")))
end
calls.tensor_get_i64 = function(a)
  a:no_null_out("out")
  return value(core.tb_tensor_get_i64(a:handle("tensor"), a:integers("index", "nindex")))
end
calls.tensor_set_f64 = function(a)
  core.tb_tensor_set_f64(a:handle("tensor"), a:integers("index", "nindex"), a:number("value"))
  return NONE
end
calls.tensor_set_i64 = function(a)
  core.tb_tensor_set_i64(a:handle("tensor"), a:integers("index", "nindex"), a:integer("value"))
  return NONE
end
calls.tensor_read_bytes = function(a)
  a:no_null_out("dst")
  local tensor = a:handle("tensor")
  if a:has("size") and a:integer("size") ~= core.tb_tensor_nbytes(tensor) then
    case_error("a size other than the tensor's nbytes cannot be expressed in Lua")
  end
  return value(hex_encode(tensor and tensor:read() or core.tb_tensor_read_bytes(nil)))
end
calls.tensor_write_bytes = function(a)
  local tensor = a:handle("tensor")
  local bytes = a:bytes("src", "size")
  if tensor == nil then
    core.tb_tensor_write_bytes(nil, bytes)
  else
    tensor:write(bytes)
  end
  return NONE
end

calls.tensor_map = function(a)
  a:no_null_out("out")
  return handle(core.tb_tensor_map(a:handle("tensor"), a:flags("flags", MAP_FLAGS)))
end
calls.map_flags = function(a) return value(core.tb_map_flags(a:handle("map"))) end
calls.map_tensor = getter("map", "tensor", core.tb_map_tensor, handle)
calls.map_unmap = function(a)
  local map = a:handle("map")
  if map == nil then
    core.tb_map_unmap(nil)
  else
    map:unmap()
  end
  return NONE
end
calls.map_free = releasing("map")
calls.read_map = function(a) return value(hex_encode(a:handle("map"):read())) end
calls.write_map = function(a)
  local map = a:handle("map")
  local data = a:bytes("data")
  -- The map's write replaces all of its elements; a shorter data keeps the
  -- rest as it is.
  local nbytes = map:tensor():nbytes()
  if #data < nbytes then
    data = data .. map:read():sub(#data + 1)
  end
  map:write(data)
  return NONE
end

-- ---- pixel formats and images ----------------------------------------------------

calls.pixel_format_name = function(a)
  return value(core.tb_pixel_format_name(a:pixel_format("format")))
end
calls.pixel_format_from_name = function(a)
  a:no_null_out("out")
  return pixel_format_result(core.tb_pixel_format_from_name(a:string("name")))
end
calls.pixel_format_to_fourcc = function(a)
  return value(core.tb_pixel_format_to_fourcc(a:pixel_format("format")))
end
calls.pixel_format_from_fourcc = function(a)
  a:no_null_out("out")
  return pixel_format_result(core.tb_pixel_format_from_fourcc(a:integer("fourcc")))
end
calls.pixel_format_layout = function(a)
  return value(PIXEL_LAYOUTS[core.tb_pixel_format_layout(a:pixel_format("format"))])
end
for _, fact in ipairs {"channels", "plane_count", "bits", "is_yuv", "has_alpha"} do
  calls["pixel_format_" .. fact] = function(a)
    return value(core["tb_pixel_format_" .. fact](a:pixel_format("format")))
  end
end
for _, fact in ipairs {"plane_hsub", "plane_vsub"} do
  calls["pixel_format_" .. fact] = function(a)
    return value(core["tb_pixel_format_" .. fact](a:pixel_format("format"), a:integer("plane")))
  end
end
calls.pixel_format_supports_dtype = function(a)
  return value(core.tb_pixel_format_supports_dtype(a:pixel_format("format"), a:dtype("dtype")))
end

calls.image_new = function(a)
  a:no_null_out("out")
  return handle(core.tb_image_new(a:integer("width"), a:integer("height"),
                                  a:pixel_format("format"), a:dtype("dtype"), a:opts("opts")))
end
calls.image_new_with_layout = function(a)
  a:no_null_out("out")
  local offsets, strides = a:integers("offsets", "nplanes"), a:integers("strides")
  if strides and #strides ~= #(offsets or {}) then
    case_error("offsets and strides differ in length")
  end
  return handle(core.tb_image_new_with_layout(a:integer("width"), a:integer("height"),
                                              a:pixel_format("format"), offsets, strides,
                                              a:dtype("dtype"), a:opts("opts")))
end
calls.image_import = function(a)
  a:no_null_out("out")
  local fds = a:integers("fds", "nplanes")
  local offsets, strides = a:integers("offsets"), a:integers("strides")
  for _, array in ipairs {offsets or {}, strides or {}} do
    if #array > 0 and #array ~= #(fds or {}) then
      case_error("fds, offsets and strides differ in length")
    end
  end
  return handle(core.tb_image_import(a:integer("width"), a:integer("height"),
                                     a:pixel_format("format"), fds, offsets, strides))
end
calls.image_set_format = function(a)
  core.tb_image_set_format(a:handle("tensor"), a:pixel_format("format"))
  return NONE
end
calls.image_format = function(a)
  return pixel_format_result(core.tb_image_format(a:handle("tensor")))
end
for _, fact in ipairs {"width", "height", "plane_count"} do
  calls["image_" .. fact] = function(a)
    return value(core["tb_image_" .. fact](a:handle("tensor")))
  end
end
for _, fact in ipairs {"plane_offset", "plane_stride", "plane_buffer_id"} do
  calls["image_" .. fact] = function(a)
    return value(core["tb_image_" .. fact](a:handle("tensor"), a:integer("plane")))
  end
end
calls.image_plane = function(a)
  a:no_null_out("out")
  return handle(core.tb_image_plane(a:handle("image"), a:integer("plane")))
end
calls.image_export_plane_fd = function(a)
  a:no_null_out("out_fd")
  return fd(core.tb_image_export_plane_fd(a:handle("image"), a:integer("plane")))
end

-- ---- channels, listeners, descriptors, fences, pools -----------------------------

calls.channel_pair = function(a)
  a:no_null_out("out_a", "out_b")
  local out_a, out_b = tb.channel_pair()
  return members {out_a = handle(out_a), out_b = handle(out_b)}
end
calls.channel_pair_with = function(a)
  a:no_null_out("out_a", "out_b")
  local out_a, out_b = tb.channel_pair(a:channel_opts("opts") or {})
  return members {out_a = handle(out_a), out_b = handle(out_b)}
end
calls.channel_connect_with = function(a)
  a:no_null_out("out")
  return handle(core.tb_channel_connect_with(a:string("path"), a:integer("timeout_ms"),
                                             a:channel_opts("opts")))
end
calls.channel_version = function(a)
  a:no_null_out("version")
  return value(core.tb_channel_version(a:handle("channel")))
end
calls.channel_limits = function(a)
  local own_buffers, own_bytes, peer_buffers, peer_bytes =
    core.tb_channel_limits(a:handle("channel"))
  return value {own_max_buffers = own_buffers, own_max_mapped_bytes = own_bytes,
                peer_max_buffers = peer_buffers, peer_max_mapped_bytes = peer_bytes}
end
calls.listener_listen = function(a)
  a:no_null_out("out")
  return handle(tb.listen(a:string("path")))
end
calls.listener_listen_with = function(a)
  a:no_null_out("out")
  return handle(core.tb_listener_listen_with(a:string("path"), a:listener_opts("opts")))
end
calls.channel_peer_credentials = function(a)
  local pid, uid, gid = core.tb_channel_peer_credentials(a:handle("channel"))
  return value {pid = pid, uid = uid, gid = gid}
end
calls.listener_accept = function(a)
  a:no_null_out("out")
  return handle(core.tb_listener_accept(a:handle("listener"), a:integer("timeout_ms")))
end
calls.listener_fd = getter("listener", "fd", core.tb_listener_fd)
calls.listener_free = releasing("listener")
calls.channel_connect = function(a)
  a:no_null_out("out")
  return handle(core.tb_channel_connect(a:string("path"), a:integer("timeout_ms")))
end
calls.channel_from_fd = function(a)
  a:no_null_out("out")
  return handle(tb.channel_from_fd(a:fd("fd")))
end
calls.channel_fd = getter("channel", "fd", core.tb_channel_fd)
calls.channel_ref = function(a) return handle(core.tb_channel_ref(a:handle("channel"))) end
calls.channel_unref = releasing("channel")
calls.channel_send = function(a)
  core.tb_channel_send(a:handle("channel"), a:handle("tensor"), a:flags("flags", SEND_FLAGS))
  return NONE
end
calls.channel_recv = function(a)
  a:no_null_out("out")
  return handle(core.tb_channel_recv(a:handle("channel"), a:integer("timeout_ms")))
end
calls.channel_send_fence = function(a)
  core.tb_channel_send_fence(a:handle("channel"), a:handle("fence"))
  return NONE
end
calls.channel_recv_fence = function(a)
  a:no_null_out("out")
  return handle(core.tb_channel_recv_fence(a:handle("channel"), a:integer("timeout_ms")))
end

calls.tensor_export = function(a)
  a:no_null_out("descriptor", "length", "fds", "nfds")
  if a:has("capacity") then
    case_error("the binding sizes the descriptor itself: a capacity cannot be passed in Lua")
  end
  local descriptor, fds = core.tb_tensor_export(a:handle("tensor"), a:flags("flags", SEND_FLAGS))
  return members {descriptor = value(hex_encode(descriptor)), fds = fd_list(fds)}
end
calls.tensor_import = function(a)
  a:no_null_out("out")
  return handle(tb.import(a:bytes("descriptor", "length"), a:fds("fds", "nfds")))
end

calls.fence_new = function(a)
  a:no_null_out("out")
  return handle(tb.fence(a:integer("initial")))
end
calls.fence_import_fd = function(a)
  a:no_null_out("out")
  return handle(tb.import_fence(a:fd("fd")))
end
calls.fence_export_fd = function(a)
  a:no_null_out("out_fd")
  local fence = a:handle("fence")
  return fd(fence and fence:export_fd() or core.tb_fence_export_fd(nil))
end
calls.fence_ref = function(a) return handle(core.tb_fence_ref(a:handle("fence"))) end
calls.fence_unref = releasing("fence")
calls.fence_value = getter("fence", "value", core.tb_fence_value)
calls.fence_signal = function(a)
  local fence, target = a:handle("fence"), a:integer("value")
  if fence == nil then
    core.tb_fence_signal(nil, target)
  else
    fence:signal(target)
  end
  return NONE
end
calls.fence_wait = function(a)
  core.tb_fence_wait(a:handle("fence"), a:integer("value"), a:integer("timeout_ns"))
  return NONE
end
calls.fence_cuda_signal = function(a)
  core.tb_fence_cuda_signal(a:handle("fence"), a:integer("value"), a:integer("device"),
                            a:integer("stream"))
  return NONE
end
calls.fence_cuda_wait = function(a)
  core.tb_fence_cuda_wait(a:handle("fence"), a:integer("value"), a:integer("device"),
                          a:integer("stream"))
  return NONE
end

calls.tensor_copy = function(a)
  core.tb_tensor_copy(a:handle("dst"), a:handle("src"), a:integer("stream"))
  return NONE
end
calls.tensor_cuda_wait = function(a)
  core.tb_tensor_cuda_wait(a:handle("tensor"), a:integer("stream"))
  return NONE
end
calls.tensor_import_cuda_fd = function(a)
  a:no_null_out("out")
  return handle(core.tb_tensor_import_cuda_fd(a:fd("fd"), a:memory("memory"),
                                              a:integer("device"), a:dtype("dtype"),
                                              a:integers("shape", "ndim"),
                                              a:integer("byte_offset")))
end

calls.pool_new = function(a)
  a:no_null_out("out")
  return handle(tb.pool(a:handle("prototype"), a:integer("count")))
end
calls.pool_acquire = function(a)
  a:no_null_out("out")
  return handle(core.tb_pool_acquire(a:handle("pool"), a:integer("timeout_ms")))
end
calls.pool_available = getter("pool", "available", core.tb_pool_available)
calls.pool_size = getter("pool", "size", core.tb_pool_size)
calls.pool_ref = function(a) return handle(core.tb_pool_ref(a:handle("pool"))) end
calls.pool_unref = releasing("pool")

calls.buffer_map_file = function(a)
  a:no_null_out("out")
  return handle(core.tb_buffer_map_file(a:string("path"), a:integer("fd"), a:integer("flags")))
end
calls.safetensors_open = function(a)
  a:no_null_out("out")
  return handle(core.tb_safetensors_open(a:string("path"), a:integer("flags")))
end
calls.safetensors_close = releasing("file")
calls.safetensors_count = function(a)
  return value(core.tb_safetensors_count(a:handle("file")))
end
calls.safetensors_name = function(a)
  return value(core.tb_safetensors_name(a:handle("file"), a:integer("index")))
end
calls.safetensors_tensor = function(a)
  a:no_null_out("out")
  return handle(core.tb_safetensors_tensor(a:handle("file"), a:string("name")))
end
calls.safetensors_metadata_count = function(a)
  return value(core.tb_safetensors_metadata_count(a:handle("file")))
end
calls.safetensors_metadata_key = function(a)
  return value(core.tb_safetensors_metadata_key(a:handle("file"), a:integer("index")))
end
calls.safetensors_metadata_value = function(a)
  return value(core.tb_safetensors_metadata_value(a:handle("file"), a:string("key")))
end

-- ---- pseudo-steps -------------------------------------------------------------

calls.make_memfd = function(a)
  return fd(osutil.memfd(a:integer("size"), a:bytes("data"), a:boolean("allow_sealing", true),
                         a:string("seals"), a:boolean("read_only", false)))
end
calls.make_pipe = function() return fd(osutil.pipe()) end
calls.make_tmpfile = function(a) return fd(osutil.tmpfile(a:integer("size"), a:bytes("data"))) end
calls.fd_path = function(a) return value("/proc/self/fd/" .. a:fd("fd")) end
calls.open_devnull = function() return fd(osutil.open("/dev/null", "rw")) end
calls.open_directory = function() return fd(osutil.open("/", "directory")) end
calls.reopen_read_only = function(a)
  return fd(osutil.open("/proc/self/fd/" .. a:fd("fd"), "r"))
end
local socket_names = 0
calls.make_socket_name = function()
  socket_names = socket_names + 1
  return value(string.format("@tensorbuf-conf-%d-%d", osutil.pid(), socket_names))
end
calls.close_fd = function(a)
  local ref = a:required("fd")
  tb.close_fd(a:fd("fd"))
  if is_ref(ref) then
    a:bound(ref).owned = false
  end
  return NONE
end
calls.set_env = function(a, case)
  local name = a:string("name") or case_error("argument name is missing")
  if case.env[name] == nil then
    case.env[name] = {value = os.getenv(name)}
  end
  osutil.setenv(name, a:string("value"))
  return NONE
end

-- The calls whose status the binding reports (every tb_status call):
-- an error raised by one of them is compared with the expected status.
local FALLIBLE = {}
for name in pairs {
  dtype_from_name = 1, memory_from_name = 1, alloc_options_init = 1, buffer_new = 1,
  buffer_wrap = 1, tensor_new = 1, tensor_from_buffer = 1, tensor_import_fd = 1,
  tensor_export_fd = 1, tensor_set_name = 1, tensor_reshape = 1, tensor_slice = 1,
  tensor_set_quantization = 1, tensor_quantization_get = 1, tensor_get_f64 = 1,
  tensor_get_i64 = 1, tensor_set_f64 = 1, tensor_set_i64 = 1, tensor_read_bytes = 1,
  tensor_write_bytes = 1, tensor_map = 1, pixel_format_from_name = 1,
  pixel_format_from_fourcc = 1, image_new = 1, image_new_with_layout = 1,
  image_import = 1, image_set_format = 1,
  image_plane = 1, image_export_plane_fd = 1, channel_pair = 1, listener_listen = 1,
  listener_listen_with = 1, channel_peer_credentials = 1, channel_pair_with = 1,
  channel_connect_with = 1, channel_version = 1, channel_limits = 1,
  listener_accept = 1, channel_connect = 1, channel_from_fd = 1, channel_send = 1,
  channel_recv = 1, channel_send_fence = 1, channel_recv_fence = 1, tensor_export = 1,
  tensor_import = 1, fence_new = 1, fence_import_fd = 1, fence_export_fd = 1,
  fence_signal = 1, fence_wait = 1, pool_new = 1, pool_acquire = 1, buffer_map_file = 1,
  safetensors_open = 1, safetensors_tensor = 1,
  fence_cuda_signal = 1, fence_cuda_wait = 1, tensor_copy = 1, tensor_cuda_wait = 1,
  tensor_import_cuda_fd = 1,
} do
  FALLIBLE[name] = true
end

-- ---- comparing ------------------------------------------------------------------

local function describe(result)
  if result.kind == "none" then
    return "nothing"
  end
  if type(result.value) == "table" then
    return cjson.encode(result.value)
  end
  return tostring(result.value)
end

local function json_matches(expected, got, approx)
  if expected == cjson.null or got == nil then
    return expected == cjson.null and got == nil
  end
  if type(expected) == "table" then
    -- Objects key by key; a null member matches an absent (nil) field.
    if type(got) ~= "table" then
      return false
    end
    for key, expected_value in pairs(expected) do
      if not json_matches(expected_value, got[key], approx) then
        return false
      end
    end
    for key in pairs(got) do
      if expected[key] == nil then
        return false
      end
    end
    return true
  end
  if type(expected) == "string" and type(got) == "number" then
    if expected == "nan" then
      return got ~= got
    end
    if SPECIAL_NUMBERS[expected] then
      return got == SPECIAL_NUMBERS[expected]
    end
    if math.type(got) ~= "integer" then
      return false
    end
    return expected == (expected:sub(1, 1) == "-" and tostring(got) or unsigned_text(got))
  end
  if type(expected) == "number" and type(got) == "number" then
    if math.type(expected) == "integer" or math.type(got) == "integer"
        or approx == 0 then
      return expected == got or math.abs(expected - got) <= approx
    end
    return math.abs(expected - got) <= approx
  end
  return expected == got
end

local function result_matches(a, expected, result, approx)
  if is_ref(expected) then
    local var = a:bound(expected)
    if var.kind ~= result.kind then
      return false
    end
    if var.kind == "value" then
      return json_matches(var.value, result.value, approx)
    end
    return var.value == result.value
  end
  if result.kind == "handle" then
    return expected == cjson.null and result.value == nil
  end
  return json_matches(expected, result.value, approx)
end

-- ---- running a case -------------------------------------------------------------

-- "bind": {member = name, ...}: each member of an object result becomes a
-- variable of its own (taken out of the result). The problem, or nil.
local function bind_members(case, result, names)
  for member, name in pairs(names) do
    local part
    if result.kind == "object" then
      part = result.value[member]
      result.value[member] = nil
    elseif result.kind == "value" and type(result.value) == "table"
        and result.value[member] ~= nil then
      part = value(result.value[member])
    end
    if part == nil then
      return string.format("binds member %s, which the result lacks", member)
    end
    if type(name) ~= "string" or case.vars[name] ~= nil then
      discard(part)
      return string.format("cannot bind member %s to %s", member, tostring(name))
    end
    case.vars[name] = part
  end
end

local function run_step(case, step)
  local call = step.call
  local fn = calls[call]
  if fn == nil then
    case_error("unknown call \"%s\"", tostring(call))
  end
  local a = new_args(step.args ~= cjson.null and step.args or nil, case)
  local expect = step.expect ~= cjson.null and step.expect or {}
  local want = expect.status or "TB_OK"
  if expect.status and not FALLIBLE[call] then
    case_error("expects a status, but the call returns none")
  end

  local ok, result = pcall(fn, a, case)
  if not ok then
    if getmetatable(result) == CaseError then
      error(result, 0)
    end
    if getmetatable(result) ~= tb.Error then
      case_error("raised %s", tostring(result))
    end
    if result.name ~= want then
      case_error("returned %s (%s), expected %s", result.name, result.message, want)
    end
    local prefix = "tb_" .. call .. ": "
    if result.message:sub(1, #prefix) ~= prefix then
      case_error("the error message is \"%s\"; it should start \"%s\"", result.message,
                 prefix)
    end
    if result.name ~= "TB_ERR_SYSTEM" and (result.errno ~= 0 or core.tb_last_errno() ~= 0) then
      case_error("errno is %d after %s", core.tb_last_errno(), result.name)
    end
    return -- a failed call has no result to compare and binds nothing
  end
  if want ~= "TB_OK" then
    discard(result)
    case_error("returned TB_OK, expected %s", want)
  end

  local approx = expect.approx or 0
  if (expect.value ~= nil or expect["not"] ~= nil) and result.kind == "none" then
    case_error("expects a value, but the call gives none")
  end
  local problem
  if (expect.value ~= nil or expect["not"] ~= nil)
      and (result.kind == "object" or result.kind == "fds") then
    problem = "a result that owns handles or fds is bound, not compared"
  elseif expect.value ~= nil and not result_matches(a, expect.value, result, approx) then
    problem = string.format("gave %s, expected %s", describe(result), cjson.encode(expect.value))
  elseif expect["not"] ~= nil and result_matches(a, expect["not"], result, approx) then
    problem = string.format("gave %s, which it must not", describe(result))
  end
  if step.bind ~= nil and problem == nil then
    if type(step.bind) == "table" then
      problem = bind_members(case, result, step.bind)
    elseif result.kind == "object" then
      problem = "the result owns several things: bind its members"
    elseif result.kind == "none" then
      problem = string.format("binds %s, but the call gives no result", step.bind)
    elseif case.vars[step.bind] ~= nil then
      problem = string.format("%s is already bound", step.bind)
    else
      case.vars[step.bind] = result
      return
    end
  end
  discard(result) -- what is left unbound is released at once
  if problem then
    case_error("%s", problem)
  end
end

-- The first requirement of the case not met here, or nil.
local function unmet_requirement(case)
  for _, term in ipairs(case.requires ~= cjson.null and case.requires or {}) do
    local negated = term:sub(1, 1) == "!"
    local name = negated and term:sub(2) or term
    if MEMORIES[name] == nil or tb.memory_available(name) == negated then
      return term
    end
  end
end

local function run_case(case_data)
  local unmet = unmet_requirement(case_data)
  if unmet then
    return "skipped", "requires " .. unmet
  end
  collectgarbage()
  collectgarbage()
  local live_at_start = tb.live_objects()
  local fds_at_start = osutil.fd_count()
  local wrapped_at_start = core.wrapped_alive()
  local case = {vars = {}, env = {}, live_at_start = live_at_start}

  local why
  for i, step in ipairs(case_data.steps) do
    local ok, err = pcall(run_step, case, step)
    if not ok then
      why = string.format("step %d (%s): %s", i, tostring(step.call), tostring(err))
      break
    end
  end

  -- Release what the case holds: drop the handles (their finalisers drop
  -- the C references), close the fds, restore the environment, collect.
  for _, var in pairs(case.vars) do
    discard(var)
  end
  for name, saved in pairs(case.env) do
    osutil.setenv(name, saved.value)
  end
  case = nil
  collectgarbage()
  collectgarbage()

  local leaks = {}
  local live = tb.live_objects() - live_at_start
  if live ~= 0 then
    leaks[#leaks + 1] = string.format("%d live objects leaked", live)
  end
  local fds = osutil.fd_count() - fds_at_start
  if fds ~= 0 then
    leaks[#leaks + 1] = string.format("%d fds leaked", fds)
  end
  local wrapped = core.wrapped_alive() - wrapped_at_start
  if wrapped ~= 0 then
    leaks[#leaks + 1] = string.format("%d wrapped copies not destroyed", wrapped)
  end
  if #leaks > 0 then
    why = (why or "after the last step") .. "; " .. table.concat(leaks, "; ")
  end
  if why then
    return "failed", why
  end
  return "passed"
end

-- ---- files ----------------------------------------------------------------------

local function read_file(path)
  local file, err = io.open(path, "rb")
  if file == nil then
    io.stderr:write(string.format("conformance[%s]: %s\n", RUNNER, err))
    os.exit(2)
  end
  local text = file:read("a")
  file:close()
  return text
end

-- The skip file: case name -> reason.
local function read_skip_file(path)
  local skips = {}
  for line in read_file(path):gmatch("[^\n]+") do
    local name, reason = line:match("^%s*([^#%s]%S*)%s+(.-)%s*$")
    if name then
      skips[name] = reason
    end
  end
  return skips
end

-- Every *.json of the folder, sorted by name.
local function case_files(dir)
  local listing = io.popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "'")
  local files = {}
  for name in listing:lines() do
    if name:match("%.json$") then
      files[#files + 1] = dir .. "/" .. name
    end
  end
  listing:close()
  table.sort(files)
  return files
end

local function main(cases_dir, skip_file, results_file, ...)
  if results_file == nil then
    io.stderr:write("usage: lua5.4 run.lua CASES_DIR SKIP_FILE RESULTS_FILE [CASE...]\n")
    os.exit(2)
  end
  local skips = read_skip_file(skip_file)
  local only = {}
  for _, name in ipairs {...} do
    only[name] = true
  end
  local results = assert(io.open(results_file, "w"))
  local counts = {passed = 0, failed = 0, skipped = 0}
  for _, path in ipairs(case_files(cases_dir)) do
    for _, case_data in ipairs(cjson.decode(read_file(path)).cases) do
      local name = case_data.name
      if next(only) == nil or only[name] then
        local outcome, why
        if skips[name] then
          outcome, why = "skipped", skips[name]
        else
          outcome, why = run_case(case_data)
        end
        counts[outcome] = counts[outcome] + 1
        results:write(name, "\t", outcome, "\n")
        if outcome == "passed" then
          print("PASS " .. name)
        elseif outcome == "failed" then
          print(string.format("FAIL %s: %s", name, why))
        else
          print(string.format("SKIP %s: %s", name, why))
        end
      end
    end
  end
  results:close()
  print(string.format("conformance[%s]: %d passed, %d failed, %d skipped", RUNNER,
                      counts.passed, counts.failed, counts.skipped))
  -- 77 when every case selected skipped: ctest reports the run as skipped.
  if counts.failed > 0 then
    os.exit(1)
  end
  os.exit((counts.passed == 0 and counts.skipped > 0) and 77 or 0)
end

main(...)
