# Install script (component runtime, see install.cmake): makes the installed
# libtensorbuf.so.0 loadable by the programs linked against it.
#
# Into a directory the dynamic loader searches (`ldconfig -v` lists them:
# /usr/local/lib, /usr/lib/<multiarch>, ... on Debian) it runs ldconfig, so
# that the loader's cache knows the new library. Anywhere else it says what a
# program needs to find it. A staged install (DESTDIR, as packaging does) is
# not this system's: nothing to do, the package's trigger runs ldconfig.
#
# TB_INSTALL_LIBDIR (set by install(CODE) before this script) is the libdir
# relative to the prefix, which `cmake --install --prefix` may have changed.

if(NOT "$ENV{DESTDIR}" STREQUAL "")
  return()
endif()
if(IS_ABSOLUTE "${TB_INSTALL_LIBDIR}")
  set(libdir "${TB_INSTALL_LIBDIR}")
else()
  set(libdir "${CMAKE_INSTALL_PREFIX}/${TB_INSTALL_LIBDIR}")
endif()
file(REAL_PATH "${libdir}" libdir)

find_program(LDCONFIG ldconfig PATHS /sbin /usr/sbin)
set(searched FALSE)
if(LDCONFIG)
  # -N -X: only list the directories, change nothing (works unprivileged).
  execute_process(COMMAND "${LDCONFIG}" -v -N -X
    OUTPUT_VARIABLE listing ERROR_QUIET RESULT_VARIABLE ignored)
  string(REGEX MATCHALL "(^|\n)/[^:\n]*:" dirs "${listing}")
  foreach(dir IN LISTS dirs)
    string(REGEX REPLACE "^\n|:$" "" dir "${dir}")
    if(EXISTS "${dir}")
      file(REAL_PATH "${dir}" dir)
    endif()
    if(dir STREQUAL libdir)
      set(searched TRUE)
    endif()
  endforeach()
endif()

if(searched)
  execute_process(COMMAND "${LDCONFIG}" RESULT_VARIABLE result
    ERROR_VARIABLE errors)
  if(result EQUAL 0)
    message(STATUS "Ran ldconfig: ${libdir} is on the loader's path")
  else()
    message(WARNING "ldconfig failed (${errors}): run `ldconfig` as root "
      "before starting programs linked against ${libdir}/libtensorbuf.so.0")
  endif()
else()
  message(STATUS "${libdir} is not on the dynamic loader's path: programs "
    "linked against libtensorbuf.so.0 find it with -Wl,-rpath,${libdir} at "
    "link time, LD_LIBRARY_PATH=${libdir}, or after `echo ${libdir} > "
    "/etc/ld.so.conf.d/tensorbuf.conf && ldconfig` (as root)")
endif()
