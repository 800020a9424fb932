# The ABI baseline: capi/abi/libtensorbuf.abi is what abidw (libabigail) reads
# from libtensorbuf.so.0 and its public headers. MODE=check compares the
# fresh library with it and fails on a change that can break a program built
# against the baseline; added functions pass (and are listed). MODE=update
# rewrites the baseline, for a deliberate and reviewed change
# (`cmake --build <build> --target abi-baseline`).
#
# cmake -DMODE=check|update -DABIDW=<abidw> -DABIDIFF=<abidiff>
#       -DLIBRARY=<libtensorbuf.so.0> -DINCLUDE_DIR=<capi/include>
#       -DSUPPRESSIONS=<.abignore> -DBASELINE=<.abi> -DSOURCE_DIR=<top>
#       -DWORK_DIR=<scratch dir> -P abi_compat.cmake
# A skipped check prints "ABI check skipped:" (the test's skip pattern).

cmake_minimum_required(VERSION 3.25)

set(update_hint "If the change is intended, update the baseline deliberately (cmake --build <build dir> --target abi-baseline), review `git diff capi/abi` and say why in the commit.")

# Nothing that depends on where or how the library was built: no build paths
# (source paths are made relative below), no DT_NEEDED list (a sanitizer adds
# to it), and type ids that are hashes rather than a sequence that shifts on
# every new type. Source files stay (SUPPRESSIONS matches on them); their
# line and column numbers go, so that an edit that moves a declaration
# changes nothing and an unchanged tree rewrites the baseline identically.
set(abidw_flags
  --headers-dir "${INCLUDE_DIR}" --drop-private-types --drop-undefined-syms
  --no-corpus-path --no-comp-dir-path --no-elf-needed --type-id-style hash)

# Writes the ABI of LIBRARY to `file`, with the translation units' paths made
# relative to the source tree; sets `function_count` in the caller.
function(dump_abi file)
  execute_process(COMMAND "${ABIDW}" ${abidw_flags} "${LIBRARY}"
    OUTPUT_VARIABLE abi RESULT_VARIABLE result ERROR_VARIABLE errors)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "abidw failed on ${LIBRARY}:\n${errors}")
  endif()
  string(REPLACE "'${SOURCE_DIR}/" "'" abi "${abi}")
  string(REGEX REPLACE " line='[0-9]+' column='[0-9]+'" "" abi "${abi}")
  file(WRITE "${file}" "${abi}")
  string(REGEX MATCHALL "<function-decl " decls "${abi}")
  list(LENGTH decls count)
  set(function_count ${count} PARENT_SCOPE)
endfunction()

function(architecture_of file out)
  file(STRINGS "${file}" corpus LIMIT_COUNT 1 REGEX "<abi-corpus ")
  string(REGEX MATCH "architecture='([^']*)'" _ "${corpus}")
  set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

file(MAKE_DIRECTORY "${WORK_DIR}")
set(fresh "${WORK_DIR}/libtensorbuf.abi")
dump_abi("${fresh}")

if(MODE STREQUAL "update")
  if(function_count EQUAL 0)
    message(FATAL_ERROR "${LIBRARY} has no debug information: build it with -g (the default preset, RelWithDebInfo) before updating the baseline")
  endif()
  file(COPY_FILE "${fresh}" "${BASELINE}")
  message(STATUS "wrote ${BASELINE} (${function_count} functions); review it with git diff before committing")
  return()
elseif(NOT MODE STREQUAL "check")
  message(FATAL_ERROR "MODE must be check or update, not '${MODE}'")
endif()

if(function_count EQUAL 0)
  message(STATUS "ABI check skipped: ${LIBRARY} has no debug information (a Release build?); the default and asan presets build with -g")
  return()
endif()
if(NOT EXISTS "${BASELINE}")
  message(FATAL_ERROR "there is no ABI baseline ${BASELINE}: create it with cmake --build <build dir> --target abi-baseline and commit it")
endif()
architecture_of("${BASELINE}" baseline_architecture)
architecture_of("${fresh}" fresh_architecture)
if(NOT baseline_architecture STREQUAL fresh_architecture)
  message(STATUS "ABI check skipped: the baseline describes ${baseline_architecture}, this build is ${fresh_architecture}")
  return()
endif()

# abidiff's exit status is a bit set: 1 error, 2 usage error, 4 ABI change,
# 8 incompatible change (a removed or changed symbol).
execute_process(
  COMMAND "${ABIDIFF}" --suppressions "${SUPPRESSIONS}" "${BASELINE}" "${fresh}"
  RESULT_VARIABLE result OUTPUT_VARIABLE report ERROR_VARIABLE report)
if(NOT report STREQUAL "")
  message(NOTICE "${report}")
endif()
math(EXPR tool_error "${result} & 3")
math(EXPR incompatible "${result} & 8")
math(EXPR changed "${result} & 4")
if(tool_error)
  message(FATAL_ERROR "abidiff failed (exit status ${result})")
endif()
if(incompatible)
  message(FATAL_ERROR "incompatible ABI change against ${BASELINE} (above): programs built against it would break. ${update_hint}")
endif()
if(changed)
  # abidiff marks a public struct whose layout changed as a plain "change"
  # (bit 4), like an added function. Asking again without the added symbols
  # tells the two apart: only additions are compatible by construction.
  execute_process(
    COMMAND "${ABIDIFF}" --no-added-syms --suppressions "${SUPPRESSIONS}"
            "${BASELINE}" "${fresh}"
    RESULT_VARIABLE result_without_additions OUTPUT_QUIET ERROR_QUIET)
  math(EXPR changed_existing "${result_without_additions} & 4")
  if(changed_existing)
    message(FATAL_ERROR "the ABI of existing functions changed against ${BASELINE} (above): libabigail cannot prove it compatible (a public struct or enum changed layout, a parameter changed type...). ${update_hint}")
  endif()
  message(STATUS "ABI compatible with the baseline: only additions (listed above); they join the baseline when it is next updated")
else()
  message(STATUS "no ABI change against the baseline (${function_count} functions)")
endif()
