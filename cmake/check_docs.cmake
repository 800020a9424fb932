# The ctest docs.comments: every public function (a TB_API declaration in
# capi/include/tensorbuf/*.h) has a documentation comment, which the API
# reference (`./run docs`, Doxygen) shows. Documented means one of:
#   - a comment ends on the line just above it, or just above a run of
#     declarations it belongs to (no blank line between: one comment for the
#     group, as for tb_x_ref / tb_x_unref);
#   - a comment follows it on its last line (`...; /* NULL-safe */`).
# cmake -DINCLUDE_DIR=<capi/include> -P check_docs.cmake

file(GLOB headers "${INCLUDE_DIR}/tensorbuf/*.h")
set(undocumented "")
set(count 0)
foreach(header IN LISTS headers)
  file(STRINGS "${header}" lines)
  set(documented FALSE) # does a comment cover the declaration starting here?
  set(in_declaration FALSE)
  foreach(line IN LISTS lines)
    if(in_declaration)
      set(text "${text} ${line}")
    elseif(line MATCHES "^TB_API ")
      set(in_declaration TRUE)
      set(text "${line}")
    elseif(line MATCHES "\\*/ *$")
      set(documented TRUE) # a comment ends here
      continue()
    elseif(line MATCHES "^ *$" OR NOT line MATCHES "^ *(/?\\*|//)")
      set(documented FALSE) # a blank line or other code ends the group
      continue()
    else()
      continue() # inside a comment
    endif()
    if(NOT text MATCHES ";")
      continue() # the declaration goes on
    endif()
    set(in_declaration FALSE)
    math(EXPR count "${count} + 1")
    string(REGEX MATCH "([a-z_0-9]+) *\\(" _ "${text}")
    set(name "${CMAKE_MATCH_1}")
    if(NOT documented AND NOT text MATCHES ";[ ]*/\\*")
      cmake_path(GET header FILENAME file)
      string(APPEND undocumented "\n  ${file}: ${name}")
    endif()
  endforeach()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "no TB_API declaration found in ${INCLUDE_DIR}/tensorbuf")
endif()
if(NOT undocumented STREQUAL "")
  message(FATAL_ERROR "public functions without a documentation comment (say what it does, who owns what, thread-safety and errors, in a comment just above):${undocumented}")
endif()
message(STATUS "all ${count} public functions have a documentation comment")
