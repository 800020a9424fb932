# The API reference: `docs` builds HTML pages from the public headers'
# comments with Doxygen (Debian: doxygen), into <build>/docs/html; the ctest
# docs.comments fails when a public function has no documentation comment
# (check_docs.cmake), so every page has something to say.

set(TB_DOCS_DIR ${PROJECT_BINARY_DIR}/docs)
find_program(TB_DOXYGEN doxygen)
if(TB_DOXYGEN)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/Doxyfile.in
    ${PROJECT_BINARY_DIR}/Doxyfile @ONLY)
  add_custom_target(docs
    COMMAND ${TB_DOXYGEN} ${PROJECT_BINARY_DIR}/Doxyfile
    COMMAND ${CMAKE_COMMAND} -E echo "API reference: ${TB_DOCS_DIR}/html/index.html"
    WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
    COMMENT "Doxygen: the API reference of capi/include/tensorbuf"
    VERBATIM)
else()
  add_custom_target(docs
    COMMAND ${CMAKE_COMMAND} -E echo "doxygen not found (Debian: doxygen): no API reference"
    COMMAND ${CMAKE_COMMAND} -E false
    VERBATIM)
endif()

if(TB_BUILD_TESTS)
  add_test(NAME docs.comments
    COMMAND ${CMAKE_COMMAND} -DINCLUDE_DIR=${PROJECT_SOURCE_DIR}/capi/include
      -P ${PROJECT_SOURCE_DIR}/cmake/check_docs.cmake)
  # README's ctest commands find tests from the repository root.
  add_test(NAME docs.readme_ctest_commands
    COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
      -DBINARY_DIR=${PROJECT_BINARY_DIR} -DCTEST=${CMAKE_CTEST_COMMAND}
      -P ${PROJECT_SOURCE_DIR}/cmake/check_readme_commands.cmake)
  set_tests_properties(docs.comments docs.readme_ctest_commands PROPERTIES
    LABELS docs)
  set_tests_properties(docs.readme_ctest_commands PROPERTIES
    SKIP_REGULAR_EXPRESSION "skipped: README's ctest commands")
endif()
