local tb = require "tensorbuf"

-- A 2x3 float tensor in shared memory. Indices are 1-based, as in Lua.
local t = tb.tensor{dtype = "f32", shape = {2, 3}, memory = "shm", name = "frame"}
t:set({2, 3}, 1.5)
print(t, t:get{2, 3})                 --> tensor(f32, {2, 3}, shm, "frame")	1.5

-- Views share the bytes: reshape, and slice(axis, first, last).
local tail = t:reshape{6}:slice(1, 4, 6)
print(#tail, tail:get{3})             --> 3	1.5

-- Integer dtypes give Lua integers.
local counts = tb.tensor{dtype = "u16", shape = {4}}
counts:set({1}, 7)
print(math.type(counts:get{1}))       --> integer

-- A map gives CPU access; with <close> it ends with the scope.
do
  local m <close> = counts:map("rw")
  m:write(string.pack("<I2I2I2I2", 1, 2, 3, 4))
end
print(counts:get{4})                  --> 4

-- Another process would import the fd; here we import it ourselves.
local fd = t:export_fd()
local same = tb.import_fd{fd = fd, dtype = "f32", shape = {2, 3}}
tb.close_fd(fd)
print(same:get{2, 3})                 --> 1.5

-- Errors are tables with a stable name.
local ok, err = pcall(t.reshape, t, {4})
print(ok, err.name)                   --> false	TB_ERR_SHAPE
