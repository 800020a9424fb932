# Checks that the C example in README.md (the ```c block right after the line
# "<!-- examples/readme_example.c -->") is byte for byte the file that the
# build compiles and ctest runs, so the README's code provably works.
#
# cmake -DREADME=<README.md> -DEXAMPLE=<readme_example.c> -P readme_in_sync.cmake

cmake_minimum_required(VERSION 3.25)

file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
set(marker "<!-- examples/readme_example.c -->\n```c\n")
string(FIND "${readme}" "${marker}" start)
if(start EQUAL -1)
  message(FATAL_ERROR "README.md has no code block after the line <!-- examples/readme_example.c -->")
endif()
string(LENGTH "${marker}" marker_length)
math(EXPR start "${start} + ${marker_length}")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" end)
string(SUBSTRING "${rest}" 0 ${end} block)
if(NOT block STREQUAL example)
  file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/readme_block.c" "${block}")
  execute_process(COMMAND diff -u "${CMAKE_CURRENT_BINARY_DIR}/readme_block.c"
    "${EXAMPLE}")
  message(FATAL_ERROR "the C example in README.md differs from examples/readme_example.c (diff above): copy the file into the README or the README's block into the file")
endif()
message(STATUS "README.md shows examples/readme_example.c exactly")
