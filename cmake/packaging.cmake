# Debian packages with CPack (`./run package`, or `cpack` in a build folder
# configured with the `package` preset: prefix /usr, no install RPATH). One
# package per install component, named and depending as Debian does:
#   runtime     -> libtensorbuf0      libtensorbuf.so.0
#   development -> libtensorbuf-dev   headers, .so, .a, tensorbuf.pc, CMake files
#   lua         -> lua-tensorbuf      the Lua 5.4 module
#   python      -> python3-tensorbuf  the Python 3 package
# Dependencies on Debian's libraries come from dpkg-shlibdeps; those between
# the packages from the component dependencies (exact version).

set(TB_DEB_DOC_DIR ${CMAKE_INSTALL_DATADIR}/doc)
set(TB_DEB_PACKAGES runtime libtensorbuf0 development libtensorbuf-dev
  lua lua-tensorbuf python python3-tensorbuf)

# Every Debian package carries its copyright file and a compressed changelog
# (lintian: no-copyright-file, no-changelog).
set(TB_DEB_CHANGELOG ${PROJECT_BINARY_DIR}/debian/changelog.gz)
string(TIMESTAMP TB_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE ${PROJECT_BINARY_DIR}/debian/changelog
  "tensorbuf (${PROJECT_VERSION}) unstable; urgency=medium\n\n"
  "  * Release ${PROJECT_VERSION}.\n\n"
  " -- tensorbuf developers <tensorbuf@example.org>  ${TB_DEB_DATE}\n")
add_custom_command(OUTPUT ${TB_DEB_CHANGELOG}
  COMMAND gzip -9n -c ${PROJECT_BINARY_DIR}/debian/changelog > ${TB_DEB_CHANGELOG}
  DEPENDS ${PROJECT_BINARY_DIR}/debian/changelog VERBATIM)
add_custom_target(tb_deb_changelog ALL DEPENDS ${TB_DEB_CHANGELOG})
while(TB_DEB_PACKAGES)
  list(POP_FRONT TB_DEB_PACKAGES component package)
  install(FILES ${PROJECT_SOURCE_DIR}/cmake/debian/copyright
    DESTINATION ${TB_DEB_DOC_DIR}/${package} COMPONENT ${component})
  install(FILES ${TB_DEB_CHANGELOG} RENAME changelog.Debian.gz
    DESTINATION ${TB_DEB_DOC_DIR}/${package} COMPONENT ${component})
  string(TOUPPER ${component} COMPONENT)
  set(CPACK_DEBIAN_${COMPONENT}_PACKAGE_NAME ${package})
endwhile()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tensorbuf)
set(CPACK_PACKAGE_VENDOR "tensorbuf developers")
set(CPACK_PACKAGE_CONTACT "tensorbuf developers <tensorbuf@example.org>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime development lua python)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The modules need libtensorbuf.so.0, which dpkg-shlibdeps cannot attribute
# to a package not yet built: their dependencies are written out instead
# (libc6 at the version the build machine's glibc gives).
set(CPACK_DEBIAN_LUA_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_PYTHON_PACKAGE_SHLIBDEPS OFF)
execute_process(COMMAND dpkg-query -W "-f=\${Version}" libc6
  OUTPUT_VARIABLE TB_DEB_LIBC_VERSION COMMAND_ERROR_IS_FATAL ANY)
string(REGEX MATCH "^[0-9]+\\.[0-9]+" TB_DEB_LIBC_VERSION "${TB_DEB_LIBC_VERSION}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.org/tensorbuf")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(summary "zero-copy tensor memory for Linux")
# CPack indents the lines after the synopsis and turns an empty line into
# Debian's " .".
set(body "tensorbuf gives typed tensors whose bytes live in heap memory, sealed
shared memory (memfd) or DMA-BUF, mapped for CPU access without copies and
handed to other processes by file descriptor, behind one stable C ABI.")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "${summary} - shared library\n${body}\n\nThis package holds the shared library.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/cmake/debian/triggers)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON) # only libtensorbuf0 has a SONAME
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION "${summary} - development files\n${body}\n\nThis package holds the headers, the static library, tensorbuf.pc and\nthe CMake package.")
# libtensorbuf.a needs GLib; the shared library's users do not.
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS "libtensorbuf0 (= ${PROJECT_VERSION}-1)")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SUGGESTS "libglib2.0-dev, pkg-config")

set(CPACK_DEBIAN_LUA_PACKAGE_SECTION interpreters)
set(CPACK_DEBIAN_LUA_DESCRIPTION "${summary} - Lua 5.4 module\n${body}\n\nThis package holds the Lua 5.4 module (require \"tensorbuf\").")
set(CPACK_DEBIAN_LUA_PACKAGE_DEPENDS
  "libc6 (>= ${TB_DEB_LIBC_VERSION}), libtensorbuf0 (= ${PROJECT_VERSION}-1), lua5.4")

set(CPACK_DEBIAN_PYTHON_PACKAGE_SECTION python)
set(CPACK_DEBIAN_PYTHON_DESCRIPTION "${summary} - Python 3 module\n${body}\n\nThis package holds the Python 3 package (import tensorbuf).")
# The extension module is built for one Python 3.X: python3 of that X.
execute_process(COMMAND ${TB_PYTHON_EXECUTABLE} -c
  "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]} {sys.version_info[0]}.{sys.version_info[1] + 1}')"
  OUTPUT_VARIABLE python_versions OUTPUT_STRIP_TRAILING_WHITESPACE
  COMMAND_ERROR_IS_FATAL ANY)
separate_arguments(python_versions)
list(GET python_versions 0 python_this)
list(GET python_versions 1 python_next)
set(CPACK_DEBIAN_PYTHON_PACKAGE_DEPENDS
  "libc6 (>= ${TB_DEB_LIBC_VERSION}), libtensorbuf0 (= ${PROJECT_VERSION}-1), python3 (>= ${python_this}), python3 (<< ${python_next})")
set(CPACK_DEBIAN_PYTHON_PACKAGE_RECOMMENDS "python3-numpy")

include(CPack)

# The packages' check (`./run package` runs it after cpack).
if(TB_BUILD_TESTS)
  add_test(NAME package.readme_examples
    COMMAND ${PROJECT_SOURCE_DIR}/cmake/check_debs.sh
      ${CPACK_PACKAGE_DIRECTORY} ${PROJECT_BINARY_DIR}/package-check
      ${PROJECT_SOURCE_DIR} ${CMAKE_LIBRARY_ARCHITECTURE})
  set_tests_properties(package.readme_examples PROPERTIES LABELS package)
endif()
