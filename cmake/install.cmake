# Install rules, and the files that let other projects use the installed
# library: tensorbuf.pc for pkg-config and a CMake package for find_package.
# Included by the top-level CMakeLists.txt once the targets exist.
#
# Components: "runtime" is libtensorbuf.so.0 alone; "development" is the rest
# (headers, libtensorbuf.so, libtensorbuf.a, tensorbuf.pc, the CMake package).

include(CMakePackageConfigHelpers)

set(TB_CMAKE_PACKAGE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tensorbuf)
set(TB_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS tensorbuf tensorbuf_static EXPORT tensorbufTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT runtime NAMELINK_COMPONENT development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/capi/include/tensorbuf
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development
  FILES_MATCHING PATTERN "*.h")

# tensorbuf.pc names its directories relative to its own location
# (${pcfiledir}), so the installed tree works under any prefix: the one given
# at configure time, `cmake --install --prefix`, DESTDIR, or a moved copy.
file(RELATIVE_PATH TB_PC_PREFIX_FROM_PCFILEDIR /${TB_PKGCONFIG_DIR} /)
string(REGEX REPLACE "/$" "" TB_PC_PREFIX_FROM_PCFILEDIR
  "${TB_PC_PREFIX_FROM_PCFILEDIR}")
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(TB_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(TB_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
# GLib and json-glib go to Libs.private, not Requires.private: the public
# headers include none of them, so `pkg-config --cflags` must not add their
# include paths nor need their .pc files; only a static link (`--static`)
# names their libraries. The compiler's own library directories are left out.
set(TB_PC_LIBS_PRIVATE "")
set(tb_private_flags ${JSON_GLIB_LDFLAGS} ${GLIB_LDFLAGS})
list(REMOVE_DUPLICATES tb_private_flags)
foreach(flag IN LISTS tb_private_flags)
  string(REGEX REPLACE "^-L" "" dir "${flag}")
  if(NOT flag MATCHES "^-L" OR NOT dir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
    string(APPEND TB_PC_LIBS_PRIVATE "${flag} ")
  endif()
endforeach()
string(APPEND TB_PC_LIBS_PRIVATE "-lm")
configure_file(${PROJECT_SOURCE_DIR}/cmake/tensorbuf.pc.in
  ${PROJECT_BINARY_DIR}/tensorbuf.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tensorbuf.pc
  DESTINATION ${TB_PKGCONFIG_DIR} COMPONENT development)

# find_package(tensorbuf): tensorbuf::tensorbuf and tensorbuf::tensorbuf_static.
# Every 0.x release keeps the ABI of libtensorbuf.so.0, so a request for 0.1
# is met by any later 0.y: SameMajorVersion, like the SONAME.
install(EXPORT tensorbufTargets NAMESPACE tensorbuf::
  DESTINATION ${TB_CMAKE_PACKAGE_DIR} COMPONENT development)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tensorbufConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tensorbufConfig.cmake
  INSTALL_DESTINATION ${TB_CMAKE_PACKAGE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tensorbufConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tensorbufConfig.cmake
  ${PROJECT_BINARY_DIR}/tensorbufConfigVersion.cmake
  DESTINATION ${TB_CMAKE_PACKAGE_DIR} COMPONENT development)

# After the library is installed: refresh the loader's cache when the library
# went to a directory the loader searches, so that programs linked with
# `pkg-config --libs tensorbuf` run with no further step; elsewhere say what
# to add. Last, so that it runs once everything is in place.
install(CODE "set(TB_INSTALL_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")"
  COMPONENT runtime)
install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/ldconfig.cmake COMPONENT runtime)
