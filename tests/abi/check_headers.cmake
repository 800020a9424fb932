# Header hygiene: every public header
#   - includes nothing but <stddef.h>, <stdint.h>, <stdbool.h> and other
#     tensorbuf headers (users must not need GLib or anything else),
#   - compiles alone, included twice (include guard), as C99 and as C++11
#     under -Wall -Wextra -pedantic -Werror, plus -Wundef (an #if on an
#     undefined macro) and, in C, -Wstrict-prototypes (f() instead of
#     f(void), which FFIs cannot call safely);
# and header_link.c, which includes the umbrella header, compiles, links
# against the shared library and runs in both languages (extern "C").
#
# cmake -DC_COMPILER=<cc> -DCXX_COMPILER=<c++> -DINCLUDE_DIR=<dir>
#       -DLIBRARY_DIR=<dir of libtensorbuf.so> -DLINK_SOURCE=<header_link.c>
#       -DWORK_DIR=<scratch dir> -P check_headers.cmake

cmake_minimum_required(VERSION 3.25)

set(strict -Wall -Wextra -pedantic -Werror -Wundef)
set(c_flags -x c -std=c99 ${strict} -Wstrict-prototypes)
set(cxx_flags -x c++ -std=c++11 ${strict})
set(allowed_system_headers stddef.h stdint.h stdbool.h)

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(failures "")

# Runs a compiler command; records its output as a failure named `what`.
function(compile what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result
    OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    set(failures "${failures}\n--- ${what}:\n${output}" PARENT_SCOPE)
  endif()
endfunction()

file(GLOB headers "${INCLUDE_DIR}/tensorbuf/*.h")
foreach(header IN LISTS headers)
  cmake_path(GET header FILENAME name)
  file(STRINGS "${header}" includes REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS includes)
    if(line MATCHES "[<\"]tensorbuf/[a-z0-9_]+\\.h[>\"]")
      continue()
    endif()
    string(REGEX MATCH "<([^>]+)>" _ "${line}")
    if(NOT CMAKE_MATCH_1 IN_LIST allowed_system_headers)
      string(APPEND failures "\n--- ${name}: '${line}': public headers may include only <stddef.h>, <stdint.h>, <stdbool.h> and tensorbuf headers\n")
    endif()
  endforeach()

  set(source "${WORK_DIR}/${name}.c")
  file(WRITE "${source}"
    "#include <tensorbuf/${name}>\n#include <tensorbuf/${name}>\n")
  compile("${name} alone as C99" "${C_COMPILER}" ${c_flags} -fsyntax-only
    -I "${INCLUDE_DIR}" "${source}")
  compile("${name} alone as C++11" "${CXX_COMPILER}" ${cxx_flags}
    -fsyntax-only -I "${INCLUDE_DIR}" "${source}")
endforeach()

set(link_flags -L "${LIBRARY_DIR}" "-Wl,-rpath,${LIBRARY_DIR}" -ltensorbuf)
compile("header_link.c as C99" "${C_COMPILER}" ${c_flags} -I "${INCLUDE_DIR}"
  "${LINK_SOURCE}" -x none -o "${WORK_DIR}/link_c" ${link_flags})
compile("header_link.c as C++11" "${CXX_COMPILER}" ${cxx_flags}
  -I "${INCLUDE_DIR}" "${LINK_SOURCE}" -x none -o "${WORK_DIR}/link_cxx"
  ${link_flags})
foreach(program link_c link_cxx)
  if(EXISTS "${WORK_DIR}/${program}")
    compile("running ${program}" "${WORK_DIR}/${program}")
  endif()
endforeach()

if(NOT failures STREQUAL "")
  message(NOTICE "${failures}")
  message(FATAL_ERROR "public header check failed (details above)")
endif()
list(LENGTH headers count)
list(JOIN strict " " strict_text)
message(STATUS "${count} public headers: self-contained, guarded, C99 and C++11 clean with ${strict_text}; the umbrella header links and runs in both")
