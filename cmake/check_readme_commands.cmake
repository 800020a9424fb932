# The ctest docs.readme_ctest_commands: every `ctest ...` command README.md
# gives finds tests when typed, as written, in the repository root (a bare
# `ctest -L lua` there finds none and exits 0). Each runs with -N (list
# only). The commands name the default preset, whose build folder is
# SOURCE_DIR/build: from another build folder the test skips (its
# SKIP_REGULAR_EXPRESSION matches the line it prints; CMake 3.25 has no
# cmake_language(EXIT) to exit 77).
# cmake -DSOURCE_DIR=<root> -DBINARY_DIR=<this build> -DCTEST=<ctest>
#       -P check_readme_commands.cmake

if(NOT BINARY_DIR STREQUAL "${SOURCE_DIR}/build")
  message("skipped: README's ctest commands use the default preset's build/, not ${BINARY_DIR}")
  return()
endif()
file(READ "${SOURCE_DIR}/README.md" readme)
string(REGEX MATCHALL "(`|\n)ctest [^`\n#]*" commands "${readme}")
list(LENGTH commands count)
if(count EQUAL 0)
  message(FATAL_ERROR "README.md gives no ctest command")
endif()
foreach(command IN LISTS commands)
  string(REGEX REPLACE "^(`|\n)ctest " "" arguments "${command}")
  string(STRIP "${arguments}" typed)
  separate_arguments(arguments UNIX_COMMAND "${typed}")
  execute_process(COMMAND "${CTEST}" ${arguments} -N
    WORKING_DIRECTORY "${SOURCE_DIR}"
    OUTPUT_VARIABLE output ERROR_VARIABLE output RESULT_VARIABLE result)
  string(REGEX MATCH "Total Tests: ([0-9]+)" _ "${output}")
  if(NOT result EQUAL 0 OR NOT CMAKE_MATCH_1 OR CMAKE_MATCH_1 EQUAL 0)
    message(FATAL_ERROR "README's `ctest ${typed}` finds no test from the repository root (exit ${result}):\n${output}")
  endif()
  message(STATUS "ctest ${typed}: ${CMAKE_MATCH_1} tests")
endforeach()
