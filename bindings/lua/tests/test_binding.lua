-- The Lua binding: the idiomatic layer and the low-level module, happy and
-- error paths. Every status of TB_STATUS_MAP is raised here by a real
-- failure (the last test checks it).
local globals_before = {}
for name in pairs(_G) do
  globals_before[name] = true
end

local tb = require "tensorbuf"
local h = require "harness"
local osutil = require "tb_osutil"
local core = tb.core
local test, eq, check, raises, integer = h.test, h.eq, h.check, h.raises, h.integer

local SHM = tb.memory_available("shm")

-- A test that needs shared memory, skipped loudly where there is none.
local function test_shm(name, fn)
  if SHM then
    test(name, fn)
  else
    h.skip(name, "shared memory (memfd) is not available here")
  end
end

-- ---- the module ------------------------------------------------------------

test("require defines no globals", function()
  for name in pairs(_G) do
    check(globals_before[name], "new global " .. tostring(name))
  end
end)

test("version matches the headers the binding was built with", function()
  eq(tb.version, core.TB_VERSION_STRING, "version")
  eq(integer(tb.version_number, "version_number"), core.TB_VERSION_NUMBER, "version_number")
end)

test("errors table comes from TB_STATUS_MAP", function()
  eq(tb.errors.TB_OK, 0, "TB_OK")
  local count = 0
  for name, code in pairs(tb.errors) do
    count = count + 1
    integer(code, name)
    eq(tb.status_name(code), name, "status_name of " .. code)
    eq(core[name], code, "the enum constant " .. name)
    check(#tb.status_message(code) > 0, "no message for " .. name)
  end
  -- The codes are 0, -1, -2, ... with no gap.
  for code = 0, 1 - count, -1 do
    check(tb.errors[tb.status_name(code)] == code, "code " .. code .. " is missing")
  end
end)

test("dtype and memory names", function()
  eq(table.concat(tb.dtypes, " "), "bool u8 i8 u16 i16 u32 i32 u64 i64 f16 bf16 f32 f64", "dtypes")
  eq(table.concat(tb.memory_kinds, " "), "auto heap shm dma cuda cuda_host file", "memory kinds")
  eq(integer(tb.dtype_size("bf16"), "dtype_size"), 2, "dtype_size bf16")
  eq(tb.dtype_size("f64"), 8, "dtype_size f64")
  eq(tb.memory_available("heap"), true, "heap is always available")
  raises("TB_ERR_DTYPE", "tb_dtype_from_name: ", tb.dtype_size, "f99")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_memory_from_name: ", tb.memory_available, "nowhere")
end)

-- ---- tensors ---------------------------------------------------------------

test("a new tensor describes itself with Lua integers", function()
  local t = tb.tensor{dtype = "f32", shape = {2, 3}, memory = "heap"}
  eq(t:dtype(), "f32", "dtype")
  eq(t:memory(), "heap", "memory")
  h.same_list(t:shape(), {2, 3}, "shape")
  h.same_list(t:strides(), {3, 1}, "strides")
  for _, getter in ipairs {"ndim", "numel", "nbytes", "offset", "buffer_id"} do
    integer(t[getter](t), getter)
  end
  integer(t:dim(1), "dim")
  for _, n in ipairs(t:shape()) do
    integer(n, "a shape entry")
  end
  eq(t:ndim(), 2, "ndim")
  eq(t:dim(2), 3, "dim(2)")
  eq(t:dim(3), 0, "dim beyond the last")
  eq(t:numel(), 6, "numel")
  eq(#t, 6, "#t")
  eq(t:nbytes(), 24, "nbytes")
  eq(t:offset(), 0, "offset")
  eq(t:is_contiguous(), true, "is_contiguous")
  eq(t:read_only(), false, "read_only")
  eq(t:name(), nil, "name")
  check(t:buffer_id() > 0, "buffer id")
  eq(tostring(t), "tensor(f32, {2, 3}, heap)", "tostring")
end)

test_shm("shared-memory tensors with a name", function()
  local t = tb.tensor{dtype = "u8", shape = {4}, memory = "shm", name = "frame"}
  eq(t:memory(), "shm", "memory")
  eq(t:name(), "frame", "name")
  eq(tostring(t), 'tensor(u8, {4}, shm, "frame")', "tostring")
  t:set_name("other")
  eq(t:name(), "other", "renamed")
  t:set_name(nil)
  eq(t:name(), nil, "name cleared")
end)

test("scalars and zero-size tensors", function()
  local s = tb.tensor{dtype = "f64", shape = {}}
  eq(s:ndim(), 0, "ndim")
  eq(s:numel(), 1, "numel")
  s:set({}, 2.5)
  eq(s:get{}, 2.5, "scalar element")
  local z = tb.tensor{dtype = "i32", shape = {3, 0}}
  eq(z:numel(), 0, "numel")
  eq(z:read(), "", "no bytes")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_get_i64: ", z.get, z, {1, 1})
end)

test("element access is 1-based", function()
  local t = tb.tensor{dtype = "f32", shape = {2, 3}}
  t:set({1, 1}, 1.5)
  t:set({2, 3}, 7)
  eq(t:get{1, 1}, 1.5, "first element")
  eq(t:get{2, 3}, 7.0, "last element")
  -- {2, 3} is the last element in memory: bytes 20..23.
  eq(string.unpack("<f", t:read(), 21), 7.0, "bytes of the last element")
  eq(string.unpack("<f", t:read(), 1), 1.5, "bytes of the first element")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_get_f64: ", t.get, t, {0, 1})
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_get_f64: ", t.get, t, {3, 1})
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_f64: ", t.set, t, {2, 4}, 1.0)
  raises("TB_ERR_SHAPE", "tb_tensor_get_f64: ", t.get, t, {1})
  raises("TB_ERR_INVALID_ARGUMENT", "get: ", t.get, t, {1.5, 1})
  raises("TB_ERR_INVALID_ARGUMENT", "set: ", t.set, t, {1, 1}, "7")
end)

test("integer dtypes give Lua integers, floats give floats", function()
  for _, dtype in ipairs {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"} do
    local t = tb.tensor{dtype = dtype, shape = {1}}
    t:set({1}, 100)
    eq(integer(t:get{1}, dtype .. " element"), 100, dtype)
  end
  for _, dtype in ipairs {"f16", "bf16", "f32", "f64"} do
    local t = tb.tensor{dtype = dtype, shape = {1}}
    t:set({1}, 3)
    eq(math.type(t:get{1}), "float", dtype .. " element")
    eq(t:get{1}, 3.0, dtype)
  end
  local b = tb.tensor{dtype = "bool", shape = {2}}
  b:set({1}, true)
  eq(b:get{1}, true, "bool true")
  eq(b:get{2}, false, "bool false")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_i64: ", b.set, b, {1}, 2)
end)

test("integer ranges are checked exactly", function()
  local u8 = tb.tensor{dtype = "u8", shape = {1}}
  u8:set({1}, 255)
  eq(u8:get{1}, 255, "u8 max")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_i64: ", u8.set, u8, {1}, 256)
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_f64: ", u8.set, u8, {1}, 1.5)
  u8:set({1}, 2.0)
  eq(integer(u8:get{1}, "u8 set from 2.0"), 2, "whole float")
  local i64 = tb.tensor{dtype = "i64", shape = {1}}
  i64:set({1}, math.maxinteger)
  eq(i64:get{1}, math.maxinteger, "i64 max survives exactly")
  local u64 = tb.tensor{dtype = "u64", shape = {1}}
  u64:write(string.rep("\xff", 8))
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_get_i64: ", u64.get, u64, {1})
  local f16 = tb.tensor{dtype = "f16", shape = {1}}
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_f64: ", f16.set, f16, {1}, 1e6)
end)

test("bytes as strings", function()
  local t = tb.tensor{dtype = "u16", shape = {2}}
  t:write(string.pack("<I2I2", 513, 7))
  eq(t:get{1}, 513, "first element")
  eq(t:read(), string.pack("<I2I2", 513, 7), "read")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_write_bytes: ", t.write, t, "abc")
  raises("TB_ERR_INVALID_ARGUMENT", "write: ", t.write, t, 42)
end)

-- ---- views ------------------------------------------------------------------

local function counting(dtype, shape)
  local t = tb.tensor{dtype = dtype, shape = shape}
  for i = 0, t:numel() - 1 do
    core.tb_tensor_set_i64(t, t:ndim() == 1 and {i} or {i // shape[2], i % shape[2]}, i)
  end
  return t
end

test("reshape shares the buffer", function()
  local t = counting("i32", {2, 3})
  local r = t:reshape{3, 2}
  h.same_list(r:shape(), {3, 2}, "shape")
  eq(r:buffer_id(), t:buffer_id(), "buffer id")
  eq(r:get{3, 2}, 5, "last element")
  h.same_list(t:reshape{-1}:shape(), {6}, "inferred dim")
  check(r:shares_memory(t), "shares memory")
  raises("TB_ERR_SHAPE", "tb_tensor_reshape: ", t.reshape, t, {4})
  raises("TB_ERR_SHAPE", "tb_tensor_reshape: ", t.reshape, t, {-1, -1})
end)

test("slice takes a 1-based axis and inclusive bounds", function()
  local t = counting("i32", {4, 3})
  local rows = t:slice(1, 2, 3)
  h.same_list(rows:shape(), {2, 3}, "rows shape")
  eq(rows:get{1, 1}, 3, "first element of row 2")
  local every_other = t:slice(1, 1, 4, 2)
  h.same_list(every_other:shape(), {2, 3}, "stepped shape")
  h.same_list(every_other:strides(), {6, 1}, "stepped strides")
  eq(every_other:get{2, 1}, 6, "row 3")
  eq(every_other:is_contiguous(), false, "stepped view is not contiguous")
  local column = t:slice(2, 3)
  h.same_list(column:shape(), {4, 1}, "to the end")
  eq(column:get{4, 1}, 11, "last element")
  eq(t:slice(1, 3, 2):numel(), 0, "empty slice")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_slice: ", t.slice, t, 1, 0, 2)
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_slice: ", t.slice, t, 3, 1, 1)
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_slice: ", t.slice, t, 1, 1, 5)
  raises("TB_ERR_LAYOUT", "tb_tensor_reshape: ", every_other.reshape, every_other, {6})
  eq(every_other:read(), string.pack("<i4i4i4i4i4i4", 0, 1, 2, 6, 7, 8), "row-major read")
end)

test("quantization round-trips per tensor and per axis", function()
  local t = tb.tensor{dtype = "u8", shape = {2, 3}}
  eq(t:quantization(), nil, "none")
  t:set_quantization{scale = 0.5, zero_point = 3}
  local q = t:quantization()
  eq(q.scale, 0.5, "scale")
  eq(integer(q.zero_point, "zero point"), 3, "zero point")
  eq(q.axis, nil, "per tensor")
  t:set_quantization{axis = 2, scales = {1, 2, 4}, zero_points = {0, 1, 2}}
  q = t:quantization()
  eq(q.axis, 2, "axis")
  h.same_list(q.scales, {1, 2, 4}, "scales")
  h.same_list(q.zero_points, {0, 1, 2}, "zero points")
  eq(t:slice(2, 2, 3):quantization().scales[1], 2, "sliced with its axis")
  t:set_quantization(nil)
  eq(t:quantization(), nil, "removed")
  local f = tb.tensor{dtype = "f32", shape = {1}}
  raises("TB_ERR_DTYPE", "tb_tensor_set_quantization: ", f.set_quantization, f, {scale = 1})
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_quantization: ", t.set_quantization, t,
         {scale = 1, zero_point = 300})
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_set_quantization: ", t.set_quantization, t,
         {axis = 1, scales = {1, 2, 3}})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_set_quantization: ", t.set_quantization, t,
         {axis = 2, scales = {1, 2, 3}, zero_points = {0}})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_set_quantization: ", t.set_quantization, t,
         {scale = -1})
  raises("TB_ERR_INVALID_ARGUMENT", "tensor:set_quantization: ", t.set_quantization, t,
         {scale = 1, axis_of = 2})
end)

-- ---- maps -------------------------------------------------------------------

test("maps read and write through their mode", function()
  local t = tb.tensor{dtype = "i16", shape = {2, 2}}
  local m = t:map("rw")
  eq(m:mode(), "rw", "mode")
  check(m:tensor() == t, "the map's tensor is the tensor")
  m:set({2, 2}, -7)
  eq(integer(m:get{2, 2}, "element through the map"), -7, "element")
  m:write(string.pack("<i2i2i2i2", 1, 2, 3, 4))
  eq(t:get{2, 1}, 3, "write through the map")
  eq(m:read(), t:read(), "read through the map")
  check(m:data() ~= nil, "address of element 0")
  eq(tostring(m), "map(rw, tensor(i16, {2, 2}, " .. t:memory() .. "))", "tostring")
  m:unmap()
  m:unmap()
  eq(m:mode(), nil, "mode after unmap")
  eq(m:tensor(), nil, "tensor after unmap")
  eq(m:data(), nil, "address after unmap")
  eq(tostring(m), "map(unmapped)", "tostring after unmap")
  raises("TB_ERR_INVALID_ARGUMENT", "get: ", m.get, m, {1, 1})
  raises("TB_ERR_INVALID_ARGUMENT", "read: ", m.read, m)

  local r = t:map("r")
  raises("TB_ERR_READ_ONLY", "set: ", r.set, r, {1, 1}, 1)
  raises("TB_ERR_READ_ONLY", "write: ", r.write, r, t:read())
  local w = t:map("w")
  raises("TB_ERR_INVALID_ARGUMENT", "get: ", w.get, w, {1, 1})
  raises("TB_ERR_INVALID_ARGUMENT", "tensor:map: ", t.map, t, "x")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_map: ", core.tb_tensor_map, t, 0)
end)

test("a <close> map unmaps at the end of its scope", function()
  local t = tb.tensor{dtype = "u8", shape = {1}}
  local outside
  do
    local m <close> = t:map("w")
    m:set({1}, 9)
    outside = m
  end
  eq(outside:mode(), nil, "unmapped")
  eq(t:get{1}, 9, "written")
end)

test("a map keeps its tensor alive", function()
  local m = tb.tensor{dtype = "u8", shape = {3}}:map("rw")
  collectgarbage()
  collectgarbage()
  m:set({3}, 5)
  eq(m:get{3}, 5, "element of a tensor only the map holds")
end)

-- ---- buffers -------------------------------------------------------------------

test("buffers, views and identities", function()
  local b = tb.buffer{size = 64, memory = "heap"}
  eq(integer(b:size(), "size"), 64, "size")
  eq(#b, 64, "#b")
  eq(b:memory(), "heap", "memory")
  eq(b:read_only(), false, "read_only")
  local id = integer(b:id(), "id")
  eq(tb.buffer_alive(id), true, "alive")
  eq(tostring(b), string.format("buffer(64 bytes, heap, id %d)", id), "tostring")
  local v = b:view{dtype = "u32", shape = {4}, offset = 16}
  eq(v:offset(), 16, "offset")
  eq(v:buffer_id(), id, "same buffer")
  eq(v:buffer():id(), id, "buffer of the view")
  check(v:buffer() == b, "the same buffer object")
  local strided = b:view{dtype = "u8", shape = {2, 2}, strides = {8, 2}}
  h.same_list(strided:strides(), {8, 2}, "strides")
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_from_buffer: ", b.view, b,
         {dtype = "u32", shape = {4}, offset = 60})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_from_buffer: ", b.view, b,
         {dtype = "u8", shape = {2, 2}, strides = {1}})
  raises("TB_ERR_INVALID_ARGUMENT", "buffer:view: ", b.view, b, {dtype = "u8"})
  b, v, strided = nil, nil, nil
  collectgarbage()
  collectgarbage()
  eq(tb.buffer_alive(id), false, "dead once dropped")
end)

test("wrap copies a string into a heap buffer", function()
  local b = tb.wrap("abcd")
  eq(b:memory(), "heap", "memory")
  local v = b:view{dtype = "u8", shape = {4}}
  eq(v:read(), "abcd", "bytes")
  v:set({1}, 65)
  eq(v:read(), "Abcd", "writable by default")
  local ro = tb.wrap("xy", {read_only = true})
  eq(ro:read_only(), true, "read-only")
  local rv = ro:view{dtype = "u8", shape = {2}}
  raises("TB_ERR_READ_ONLY", "tb_tensor_set_i64: ", rv.set, rv, {1}, 1)
  raises("TB_ERR_READ_ONLY", "tb_tensor_map: ", rv.map, rv, "w")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_buffer_wrap: ", core.tb_buffer_wrap, "z", 8)
  eq(tb.wrap(""):size(), 0, "empty")
end)

-- ---- sharing by fd ------------------------------------------------------------

test_shm("export_fd and import_fd share the bytes", function()
  local t = tb.tensor{dtype = "f32", shape = {2, 3}, memory = "shm"}
  t:set({2, 3}, 4.5)
  local fd = integer(t:export_fd(), "fd")
  local u = tb.import_fd{fd = fd, dtype = "f32", shape = {2, 3}}
  tb.close_fd(fd)
  eq(u:get{2, 3}, 4.5, "imported element")
  u:set({1, 1}, -1)
  eq(t:get{1, 1}, -1.0, "written through the import")
  check(u:shares_memory(u:reshape{6}), "views of the import share")
  local fd2 = t:export_fd()
  raises("TB_ERR_OUT_OF_RANGE", "tb_tensor_import_fd: ", tb.import_fd,
         {fd = fd2, dtype = "f32", shape = {2, 3}, offset = 4})
  tb.close_fd(fd2)
  raises("TB_ERR_BAD_FD", "tb_tensor_import_fd: ", tb.import_fd,
         {fd = fd2, dtype = "f32", shape = {1}})
  local e = raises("TB_ERR_SYSTEM", "close_fd: ", tb.close_fd, fd2)
  eq(e.errno, 9, "EBADF")
  local pipe = osutil.pipe()
  raises("TB_ERR_BAD_FD", "tb_tensor_import_fd: ", tb.import_fd,
         {fd = pipe, dtype = "u8", shape = {1}})
  osutil.close(pipe)
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_import_fd: ", tb.import_fd,
         {fd = -1, dtype = "u8", shape = {1}})
end)

test("heap memory has no fd", function()
  local t = tb.tensor{dtype = "u8", shape = {1}, memory = "heap"}
  raises("TB_ERR_UNSUPPORTED", "tb_tensor_export_fd: ", t.export_fd, t)
end)

-- ---- heap cache, AUTO fallback, borrowed fds and buffer keys -------------------

test("heap cache, uninitialized tensors and AUTO's reasons", function()
  tb.memory_trim()
  local t = tb.tensor{dtype = "u8", shape = {1024, 1024}, memory = "heap"}
  t = nil
  collectgarbage()
  collectgarbage()
  eq(tb.memory_trim(), 1 << 20, "a freed 1 MiB block is cached, then trimmed")
  eq(tb.memory_trim(), 0, "trimmed twice")
  local u = tb.tensor{dtype = "u8", shape = {4}, uninitialized = true}
  check(type(tb.memory_auto_skipped()) == "string", "auto_skipped is a string")
  local heap = tb.tensor{dtype = "u8", shape = {4}, memory = "heap"}
  eq(core.tb_tensor_fd(heap), -1, "heap memory has no fd")
  check(u ~= nil, "an uninitialized tensor")
end)

test_shm("borrowed fd and buffer key", function()
  local t = tb.tensor{dtype = "u8", shape = {16}, memory = "shm"}
  local fd = t:fd()
  check(fd >= 0, "an SHM tensor has an fd")
  eq(t:fd(), fd, "the same fd, not a dup")
  local buffer = t:buffer()
  eq(buffer:fd(), fd, "the buffer's fd is the tensor's")
  check(buffer:key() ~= 0, "an fd's file has a key")
  local again = tb.import_fd{fd = fd, dtype = "u8", shape = {16}}
  eq(again:buffer():key(), buffer:key(), "a second import has the same key")
  check(again:buffer():id() ~= buffer:id(), "and another id")
  local heap = tb.tensor{dtype = "u8", shape = {4}, memory = "heap"}
  eq(heap:fd(), -1, "heap memory has no fd")
  eq(heap:buffer():key(), 0, "nor a key")
end)

-- ---- options and argument errors ---------------------------------------------

test("allocation options", function()
  local defaults = core.tb_alloc_options_init(core.TB_ALLOC_OPTIONS_VERSION)
  eq(defaults.memory, "auto", "default memory")
  eq(integer(defaults.alignment, "alignment"), 0, "default alignment")
  raises("TB_ERR_VERSION", "tb_alloc_options_init: ", core.tb_alloc_options_init, core.TB_ALLOC_OPTIONS_VERSION + 1)
  raises("TB_ERR_VERSION", "tb_tensor_new: ", core.tb_tensor_new, core.TB_DTYPE_U8, {1},
         {version = core.TB_ALLOC_OPTIONS_VERSION + 1})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_new: ", core.tb_tensor_new, core.TB_DTYPE_U8,
         {1}, {memroy = "heap"})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_new: ", core.tb_tensor_new, core.TB_DTYPE_U8,
         {1}, {memory = "nowhere"})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_new: ", tb.tensor,
         {dtype = "u8", shape = {1}, alignment = 3})
  local t = tb.tensor{dtype = "u8", shape = {1}, memory = "heap", alignment = 4096,
                      huge_pages = true}
  eq(t:memory(), "heap", "aligned huge-page tensor")
  raises("TB_ERR_UNSUPPORTED", "tb_tensor_new: ", tb.tensor,
         {dtype = "u8", shape = {1}, memory = "cuda"})
end)

test("shape errors", function()
  raises("TB_ERR_SHAPE", "tb_tensor_new: ", tb.tensor, {dtype = "f32", shape = {-1}})
  local dims = {}
  for i = 1, 17 do
    dims[i] = 1
  end
  raises("TB_ERR_SHAPE", "tb_tensor_new: ", tb.tensor, {dtype = "u8", shape = dims})
  raises("TB_ERR_SHAPE", "tb_tensor_new: ", tb.tensor,
         {dtype = "u8", shape = {math.maxinteger, math.maxinteger}})
  raises("TB_ERR_DTYPE", "tb_tensor_new: ", core.tb_tensor_new, 99, {1})
  raises("TB_ERR_DTYPE", "tb_tensor_get_i64: ", core.tb_tensor_get_i64,
         tb.tensor{dtype = "f32", shape = {1}}, {0})
  raises("TB_ERR_NO_MEMORY", "tb_buffer_new: ", tb.buffer, {size = 1 << 60, memory = "heap"})
end)

test("arguments of the wrong type raise error objects", function()
  local e = raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_new: ", tb.tensor,
                   {dtype = "f32", shape = {2, 1.5}})
  check(e.message:find("shape%[2%]"), "the message names the entry: " .. e.message)
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_new: ", tb.tensor, {dtype = "f32", shape = 3})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_ndim: ", core.tb_tensor_ndim, "x")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_ndim: ", core.tb_tensor_ndim, io.stdout)
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_ndim: ", core.tb_tensor_ndim,
         tb.buffer{size = 1})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_ndim: ", core.tb_tensor_ndim)
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_ndim: ", core.tb_tensor_ndim,
         tb.tensor{dtype = "u8", shape = {1}}, 2)
  raises("TB_ERR_INVALID_ARGUMENT", "tb_buffer_alive: ", core.tb_buffer_alive, "1")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_map: ", core.tb_tensor_map,
         tb.tensor{dtype = "u8", shape = {1}}, 1 << 40)
  raises("TB_ERR_INVALID_ARGUMENT", "tensorbuf.tensor: ", tb.tensor, {dtype = "u8"})
  raises("TB_ERR_INVALID_ARGUMENT", "tensorbuf.tensor: ", tb.tensor,
         {dtype = "u8", shape = {1}, shpae = {2}})
  raises("TB_ERR_INVALID_ARGUMENT", "tensorbuf.tensor: ", tb.tensor, "f32")
  local t = tb.tensor{dtype = "u8", shape = {2, 2}}
  raises("TB_ERR_INVALID_ARGUMENT", "tensor:slice: ", t.slice, t, 1)
  raises("TB_ERR_INVALID_ARGUMENT", "tensor:dim: ", t.dim, t, "1")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor: ", function() t.shape = {4} end)
  raises("TB_ERR_DTYPE", "tb_dtype_from_name: ", tb.tensor, {dtype = "f99", shape = {1}})
end)

test("NULL handles reach the C API as nil", function()
  eq(core.tb_tensor_ndim(nil), 0, "getter of NULL")
  eq(core.tb_buffer_memory(nil), core.TB_MEMORY_AUTO, "memory of NULL")
  eq(core.tb_tensor_ref(nil), nil, "ref of NULL")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_map: ", core.tb_tensor_map, nil, 1)
  raises("TB_ERR_INVALID_ARGUMENT", "tb_tensor_read_bytes: ", core.tb_tensor_read_bytes, nil)
end)

test("errors are tables with a name, a code and a message", function()
  local ok, err = pcall(tb.tensor, {dtype = "f32", shape = {-2}})
  eq(ok, false, "failed")
  eq(getmetatable(err), tb.Error, "metatable")
  eq(err.name, "TB_ERR_SHAPE", "name")
  eq(integer(err.code, "code"), tb.errors.TB_ERR_SHAPE, "code")
  eq(integer(err.errno, "errno"), 0, "errno")
  eq(err.message, core.tb_last_error(), "message is tb_last_error()")
  eq(tostring(err), "TB_ERR_SHAPE: " .. err.message, "tostring")
  -- error() keeps the table, so callers can rethrow it.
  local ok2, again = pcall(error, err)
  eq(ok2, false, "rethrown")
  eq(again, err, "the same error object")
end)

test("low-level and idiomatic objects are the same objects", function()
  local t = core.tb_tensor_new(core.TB_DTYPE_U8, {2}, {memory = "heap"})
  eq(t:dtype(), "u8", "method on a low-level result")
  local second = core.tb_tensor_ref(t)
  check(second == t, "a second reference compares equal")
  eq(h.live_delta(function() second = nil end), 0, "dropping one reference frees nothing")
end)

-- ---- fences, pools, channels, images -------------------------------------------

test_shm("fences", function()
  local f = tb.fence(1)
  eq(integer(f:value(), "value"), 1, "initial")
  f:signal(5)
  eq(f:value(), 5, "signalled")
  eq(f:wait(5, 0), true, "reached")
  eq(f:wait(6, 0.01), false, "times out")
  raises("TB_ERR_OUT_OF_RANGE", "tb_fence_signal: ", f.signal, f, 5)
  raises("TB_ERR_TIMEOUT", "tb_fence_wait: ", core.tb_fence_wait, f, 6, 0)
  local fd = f:export_fd()
  local g = tb.import_fence(fd)
  tb.close_fd(fd)
  g:signal(9)
  eq(f:value(), 9, "shared")
  eq(tostring(f), "fence(9)", "tostring")
  local ro = osutil.memfd(4096)
  raises("TB_ERR_BAD_FD", "tb_fence_import_fd: ", tb.import_fence, ro)
  osutil.close(ro)
  raises("TB_ERR_OUT_OF_RANGE", "tb_fence_cuda_signal: ", f.cuda_signal, f, 9)
  if not tb.memory_available("cuda") then
    raises("TB_ERR_UNSUPPORTED", "tb_fence_cuda_signal: ", f.cuda_signal, f, 10)
    raises("TB_ERR_UNSUPPORTED", "tb_fence_cuda_wait: ", f.cuda_wait, f, 10, 0, 0)
    eq(f:value(), 9, "unchanged by refused GPU calls")
  end
end)

test_shm("read-only fds give tensors that refuse writes", function()
  local fd = osutil.memfd(4, "abcd", true, "shrink", true)
  local t = tb.import_fd{fd = fd, dtype = "u8", shape = {4}}
  osutil.close(fd)
  eq(t:read_only(), true, "read-only")
  eq(t:read(), "abcd", "bytes")
  raises("TB_ERR_READ_ONLY", "tb_tensor_write_bytes: ", t.write, t, "wxyz")
end)

test_shm("pools recycle their tensors", function()
  local prototype = tb.tensor{dtype = "u8", shape = {8}, memory = "shm"}
  local p = tb.pool(prototype, 2)
  eq(#p, 2, "size")
  local a = p:acquire(0)
  local b = p:acquire(0)
  eq(p:available(), 0, "all out")
  eq(p:acquire(0), nil, "none free")
  raises("TB_ERR_TIMEOUT", "tb_pool_acquire: ", core.tb_pool_acquire, p, 0)
  local id = a:buffer_id()
  a = nil
  collectgarbage()
  collectgarbage()
  eq(p:available(), 1, "back in the pool")
  eq(p:acquire(0):buffer_id(), id, "the same buffer again")
  check(b ~= nil, "b is still out")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_pool_new: ", tb.pool, prototype, 0)
end)

test_shm("channels carry tensors and fences", function()
  local a, b = tb.channel_pair()
  local t = tb.tensor{dtype = "i32", shape = {2}, memory = "shm", name = "sent"}
  t:set({2}, 42)
  a:send(t)
  local r = b:recv(1)
  eq(r:get{2}, 42, "element")
  eq(r:name(), "sent", "name")
  r:set({1}, 7)
  eq(t:get{1}, 7, "the same memory")
  a:send(t, {read_only = true})
  eq(b:recv(1):read_only(), true, "read-only send")
  eq(b:recv(0), nil, "nothing waiting")
  local f = tb.fence(3)
  a:send_fence(f)
  eq(b:recv_fence(1):value(), 3, "fence")
  raises("TB_ERR_UNSUPPORTED", "tb_channel_send: ", a.send, a,
         tb.tensor{dtype = "u8", shape = {1}, memory = "heap"})
  a:send_fence(f)
  eq(b:recv(0.05), nil, "a fence is left for recv_fence")
  eq(b:recv_fence(1):value(), 3, "and taken there")
  raises("TB_ERR_PROTOCOL", "tb_tensor_import: ", tb.import,
         "not a descriptor", {})
  b = nil
  collectgarbage()
  collectgarbage()
  raises("TB_ERR_CLOSED", "tb_channel_send: ", a.send, a, t)
end)

test_shm("listeners and connections", function()
  local path = string.format("@tensorbuf-lua-test-%d-%d", os.time(), math.random(1 << 30))
  local listener = tb.listen(path)
  integer(listener:fd(), "listener fd")
  eq(listener:accept(0), nil, "nobody connecting")
  local client = tb.connect(path, 1)
  local server = listener:accept(1)
  local t = tb.tensor{dtype = "u8", shape = {3}, memory = "shm"}
  t:write("xyz")
  client:send(t)
  eq(server:recv(1):read(), "xyz", "received")
  eq(tb.connect("@tensorbuf-lua-test-nobody", 0.01), nil, "nothing listens")
  raises("TB_ERR_SYSTEM", "tb_listener_listen: ", tb.listen, path)
end)

test_shm("peer credentials and allowed uids", function()
  local a, b = tb.channel_pair()
  local pid, uid, gid = a:peer_credentials()
  integer(pid, "pid")
  local pid_b, uid_b, gid_b = b:peer_credentials()
  eq(pid_b, pid, "one process: the same pid")
  eq(uid_b, uid, "uid")
  eq(gid_b, gid, "gid")
  local path = string.format("@tensorbuf-lua-uids-%d-%d", os.time(), math.random(1 << 30))
  -- Only another uid may connect: ours is closed unread.
  local refusing = tb.listen(path, {uids = {uid + 1}})
  local client = tb.connect(path, 1)
  eq(refusing:accept(0.2), nil, "refused")
  raises("TB_ERR_CLOSED", "tb_channel_recv: ", client.recv, client, 1)
  refusing, client = nil, nil
  collectgarbage()
  local listener = tb.listen(path, {uids = {uid + 1, uid}})
  client = tb.connect(path, 1)
  local server = listener:accept(1)
  eq(select(2, server:peer_credentials()), uid, "server sees our uid")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_listener_listen_with: ", tb.listen,
         path .. "-bad", {mode = 4095})
end)

test_shm("limits stated and kept", function()
  local a, b = tb.channel_pair{max_buffers = 2, max_mapped_bytes = 1 << 20}
  eq(a:version(), 3, "version")
  local limits = a:limits()
  eq(limits.own.max_buffers, 2, "own buffers")
  eq(limits.own.max_mapped_bytes, 1 << 20, "own bytes")
  eq(limits.peer.max_buffers, 2, "peer buffers")
  -- The sender keeps within the receiver's 2 buffers.
  local sent, received = {}, {}
  for i = 1, 5 do
    sent[i] = tb.tensor{dtype = "u8", shape = {4}, memory = "shm"}
    sent[i]:set({1}, i)
    a:send(sent[i])
    received[i] = b:recv(5)
  end
  for i = 1, 5 do
    eq(received[i]:get({1}), i, "tensor " .. i)
  end
  local default = tb.channel_pair()
  eq(default:limits().own.max_buffers, core.TB_CHANNEL_DEFAULT_MAX_BUFFERS, "default")
  raises("TB_ERR_INVALID_ARGUMENT", "tb_channel_pair_with: ", tb.channel_pair,
         {max_buffers = 0})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_channel_pair_with: ", tb.channel_pair,
         {max_mapped_bytes = 4095})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_channel_pair_with: ", tb.channel_pair,
         {max_buffers = -1})
  local path = string.format("@tensorbuf-lua-limits-%d-%d", os.time(), math.random(1 << 30))
  local listener = tb.listen(path, {channel_options = {max_buffers = 7}})
  local client = tb.connect(path, 1, {max_mapped_bytes = 1 << 16})
  local server = listener:accept(1)
  eq(server:limits().own.max_buffers, 7, "accepted: the listener's options")
  eq(server:limits().peer.max_mapped_bytes, 1 << 16, "accepted: the peer's")
  eq(client:limits().peer.max_buffers, 7, "dialed: the listener's")
end)

test_shm("descriptors for a transport of one's own", function()
  local t = tb.tensor{dtype = "u8", shape = {2}, memory = "shm"}
  t:write("hi")
  local descriptor, fds = t:export()
  check(type(descriptor) == "string" and #descriptor > 0, "descriptor")
  local u = tb.import(descriptor, fds)
  for _, fd in ipairs(fds) do
    tb.close_fd(fd)
  end
  eq(u:read(), "hi", "bytes")
  raises("TB_ERR_PROTOCOL", "tb_tensor_import: ", tb.import, "garbage", {})
  -- A description longer than the binding's first buffer (a long name).
  t:set_name(string.rep("n", 2000))
  descriptor, fds = t:export{read_only = true}
  check(#descriptor > 2000, "long descriptor")
  local v = tb.import(descriptor, fds)
  for _, fd in ipairs(fds) do
    tb.close_fd(fd)
  end
  eq(#v:name(), 2000, "name carried")
  eq(v:read_only(), true, "read-only export")
end)

test_shm("images", function()
  local img = tb.image{width = 8, height = 4, format = "nv12", memory = "shm"}
  local info = img:image()
  eq(info.format, "nv12", "format")
  eq(integer(info.width, "width"), 8, "width")
  eq(#info.planes, 2, "planes")
  h.same_list(img:shape(), {6, 8}, "shape")
  h.same_list(img:plane(2):shape(), {2, 4, 2}, "chroma plane")
  local format = tb.pixel_format("nv12")
  eq(format.layout, "semi_planar", "layout")
  eq(format.planes[2].hsub, 2, "chroma subsampling")
  eq(tb.pixel_format_of_fourcc(format.fourcc), "nv12", "fourcc round trip")
  eq(tb.pixel_format_supports("grey", "f32"), true, "grey f32")
  local fd = img:export_plane_fd(1)
  local planes = {}
  for i, plane in ipairs(info.planes) do
    planes[i] = {fd = fd, offset = plane.offset, stride = plane.stride}
  end
  local again = tb.import_image{width = 8, height = 4, format = "nv12", planes = planes}
  tb.close_fd(fd)
  eq(again:image().height, 4, "imported height")
  planes[2].stride = nil
  raises("TB_ERR_INVALID_ARGUMENT", "tensorbuf.import_image: ", tb.import_image,
         {width = 8, height = 4, format = "nv12", planes = planes})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_image_import: ", core.tb_image_import, 8, 4,
         core.TB_PIXEL_FORMAT_NV12, {fd, fd}, {0}, {8, 8})
  local plain = tb.tensor{dtype = "u8", shape = {2, 2, 4}}
  eq(plain:image(), nil, "not an image")
  plain:set_format("rgba")
  eq(plain:image().format, "rgba", "made an image")
  plain:set_format(nil)
  eq(plain:image(), nil, "plain again")
  raises("TB_ERR_SHAPE", "tb_image_new: ", tb.image, {width = 0, height = 4, format = "rgba"})
  raises("TB_ERR_DTYPE", "tb_image_new: ", tb.image,
         {width = 2, height = 2, format = "nv12", dtype = "f32"})
  raises("TB_ERR_UNSUPPORTED", "tb_pixel_format_from_fourcc: ", tb.pixel_format_of_fourcc, 0)
  raises("TB_ERR_LAYOUT", "tb_image_set_format: ", plain.set_format, plain:slice(2, 1, 2, 2),
         "rgba")
end)

test("image with planes at given offsets and pitches", function()
  local img = tb.image{width = 100, height = 10, format = "nv12", memory = "heap",
                       planes = {{offset = 0, stride = 128}, {offset = 4096, stride = 128}}}
  local info = img:image()
  eq(info.planes[2].offset, 4096, "chroma offset")
  eq(info.planes[2].stride, 128, "chroma pitch")
  eq(img:shape()[1], 10, "plane 0 alone: luma rows")
  eq(img:strides()[1], 128, "luma pitch")
  local wide = tb.image{width = 1000, height = 3, format = "rgba",
                        planes = {{stride = 4096}}}
  eq(wide:strides()[1], 4096, "a 4 KiB pitch")
  raises("TB_ERR_LAYOUT", "tb_image_new_with_layout: strides[1]", tb.image,
         {width = 100, height = 10, format = "nv12",
          planes = {{offset = 0, stride = 128}, {offset = 4096, stride = 99}}})
  raises("TB_ERR_LAYOUT", "tb_image_new_with_layout: offsets[1]", tb.image,
         {width = 100, height = 10, format = "nv12",
          planes = {{offset = 0, stride = 128}, {offset = 512, stride = 128}}})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_image_new_with_layout: nplanes", tb.image,
         {width = 100, height = 10, format = "nv12", planes = {{stride = 128}}})
  raises("TB_ERR_INVALID_ARGUMENT", "tb_image_new_with_layout: ",
         core.tb_image_new_with_layout, 100, 10, core.TB_PIXEL_FORMAT_NV12, {0, 4096},
         {128}, core.TB_DTYPE_U8)
end)

-- ---- safetensors -----------------------------------------------------------------

test("safetensors save and load: read-only views of the file", function()
  local path = os.tmpname()
  local w = tb.tensor {shape = {2, 3}, dtype = "f32", memory = "heap"}
  w:set({1, 2}, 2.5)
  local b = tb.tensor {shape = {4}, dtype = "i16", memory = "heap"}
  b:set({3}, -7)
  tb.safetensors.save(path, {w = w, b = b}, {format = "pt"})
  local loaded = tb.safetensors.load(path)
  eq(loaded.w:memory(), "file", "a view of the file")
  eq(loaded.w:get({1, 2}), 2.5, "w[1][2]")
  eq(loaded.b:get({3}), -7, "b[3]")
  eq(loaded.b:dtype(), "i16", "dtype")
  eq(tb.safetensors.metadata(path).format, "pt", "metadata")
  eq(tb.safetensors.load(path, {sealed_copy = true}).w:memory(), "shm", "sealed copy")
  eq(tb.map_file(path):memory(), "file", "map_file")
  raises("TB_ERR_READ_ONLY", "tb_tensor_set_i64: ", loaded.w.set, loaded.w, {1, 1}, 1)
  local f = io.open(path, "wb")
  local header = '{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}'
  f:write(string.pack("<I8", #header), header, "\0")
  f:close()
  raises("TB_ERR_DTYPE", "tb_safetensors_open: ", tb.safetensors.load, path)
  os.remove(path)
end)

-- ---- every status ----------------------------------------------------------------

test("every error status was raised by a real failure above", function()
  for name in pairs(tb.errors) do
    check(name == "TB_OK" or h.raised[name], name .. " was never raised")
  end
end)

h.finish()
