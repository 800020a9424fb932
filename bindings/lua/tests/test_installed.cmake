# Installs libtensorbuf (component runtime) and the Lua modules (component
# lua) under a scratch DESTDIR, then loads them with Lua paths that name only
# that tree: `require "tensorbuf"` must work, and the module must find the
# installed libtensorbuf.so.0 through its RPATH, not the build tree's.
#   cmake -DBUILD_DIR= -DDESTDIR= -DINSTALL_PREFIX= -DLUA= -DCMOD_DIR=
#         -DLMOD_DIR= -P test_installed.cmake
file(REMOVE_RECURSE ${DESTDIR})
foreach(component runtime lua)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env DESTDIR=${DESTDIR}
            ${CMAKE_COMMAND} --install ${BUILD_DIR} --component ${component}
    RESULT_VARIABLE status OUTPUT_QUIET)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "installing component ${component} failed")
  endif()
endforeach()

# Relative install dirs are under the prefix; absolute ones stand alone.
foreach(dir CMOD_DIR LMOD_DIR)
  if(IS_ABSOLUTE ${${dir}})
    set(${dir} ${DESTDIR}${${dir}})
  else()
    set(${dir} ${DESTDIR}${INSTALL_PREFIX}/${${dir}})
  endif()
endforeach()

set(check [=[
local tb = require "tensorbuf"
local t = tb.tensor{dtype = "u8", shape = {2}}
t:set({2}, 7)
assert(t:get{2} == 7, "element")
local maps = io.open("/proc/self/maps"):read("a")
local library = maps:match("(%S*libtensorbuf%.so%.0%S*)")
assert(library, "libtensorbuf.so.0 is not loaded")
local root = os.getenv("TB_INSTALLED_ROOT")
assert(library:sub(1, #root) == root, "loaded " .. library .. ", not the installed one")
print("tensorbuf " .. tb.version .. " from " .. package.searchpath("tensorbuf_core", package.cpath)
      .. " with " .. library)
]=])
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH
          LUA_PATH=${LMOD_DIR}/?.lua LUA_CPATH=${CMOD_DIR}/?.so
          TB_INSTALLED_ROOT=${DESTDIR}
          ${LUA} -e "${check}"
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "require \"tensorbuf\" from the installed tree failed")
endif()
