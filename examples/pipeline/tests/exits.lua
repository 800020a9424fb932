-- A Lua consumer that exits before it connects: pipeline_demo must notice,
-- say so and exit 1 rather than wait for it.
io.stderr:write("exits.lua: exiting on purpose before connecting\n")
os.exit(3)
