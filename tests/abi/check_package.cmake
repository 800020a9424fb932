# What `cmake --install` delivers, used the way a user would.
#   STEP=install      stages BUILD_DIR (DESTDIR=STAGE_DIR, --prefix
#                     /opt/tensorbuf) and checks the files, the SONAME and the
#                     library symlinks, and that nothing lands outside the
#                     prefix (staging keeps a stray absolute path off the
#                     system);
#   STEP=find_package builds consumer/ with find_package(tensorbuf) against
#                     the staged prefix, shared and static, and runs both;
#   STEP=pkg-config   builds consumer.c with `pkg-config --cflags --libs
#                     tensorbuf` (and --static) from it, and runs both.
# The staged prefix is not where the files were meant to go, so the steps
# after install also show that the installed tree is relocatable.
#
# cmake -DSTEP=<step> -DBUILD_DIR=<dir> -DSTAGE_DIR=<dir> -DLIBDIR=<relative>
#       -DINCLUDEDIR=<relative> -DINCLUDE_DIR=<capi/include>
#       -DCONSUMER_DIR=<consumer/>
#       -DWORK_DIR=<scratch> -DVERSION=<x.y.z> -DC_COMPILER=<cc>
#       -DPKG_CONFIG=<pkg-config> -DOBJDUMP=<objdump> -P check_package.cmake

cmake_minimum_required(VERSION 3.25)

# Runs a command; stops with its output if it fails, else sets `output`.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result
    OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    message(NOTICE "${out}")
    message(FATAL_ERROR "${what} failed (${result}): ${ARGN}")
  endif()
  string(STRIP "${out}" out)
  set(output "${out}" PARENT_SCOPE)
endfunction()

set(install_prefix /opt/tensorbuf)
set(prefix "${STAGE_DIR}${install_prefix}")
set(libdir "${prefix}/${LIBDIR}")

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${STAGE_DIR}")
  run("cmake --install" "${CMAKE_COMMAND}" -E env "DESTDIR=${STAGE_DIR}"
    "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${install_prefix}")
  file(GLOB_RECURSE installed LIST_DIRECTORIES false "${STAGE_DIR}/*")
  set(strays "")
  foreach(file IN LISTS installed)
    cmake_path(IS_PREFIX prefix "${file}" inside)
    if(NOT inside)
      string(REPLACE "${STAGE_DIR}" "" file "${file}")
      string(APPEND strays "\n  ${file}")
    endif()
  endforeach()
  if(NOT strays STREQUAL "")
    message(FATAL_ERROR "installed outside the prefix ${install_prefix} (give install() a DESTINATION relative to the prefix):${strays}")
  endif()
  file(GLOB public_headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/tensorbuf/*.h")
  list(TRANSFORM public_headers PREPEND "${INCLUDEDIR}/")
  set(missing "")
  foreach(file IN ITEMS
      ${LIBDIR}/libtensorbuf.so.${VERSION} ${LIBDIR}/libtensorbuf.so.0
      ${LIBDIR}/libtensorbuf.so ${LIBDIR}/libtensorbuf.a
      ${LIBDIR}/pkgconfig/tensorbuf.pc
      ${LIBDIR}/cmake/tensorbuf/tensorbufConfig.cmake
      ${LIBDIR}/cmake/tensorbuf/tensorbufConfigVersion.cmake
      ${LIBDIR}/cmake/tensorbuf/tensorbufTargets.cmake
      ${public_headers})
    if(NOT EXISTS "${prefix}/${file}")
      string(APPEND missing " ${file}")
    endif()
  endforeach()
  if(NOT missing STREQUAL "")
    message(FATAL_ERROR "not installed under ${install_prefix}:${missing}")
  endif()
  file(READ_SYMLINK "${libdir}/libtensorbuf.so" dev_link)
  file(READ_SYMLINK "${libdir}/libtensorbuf.so.0" soname_link)
  if(NOT dev_link STREQUAL "libtensorbuf.so.0"
     OR NOT soname_link STREQUAL "libtensorbuf.so.${VERSION}")
    message(FATAL_ERROR "expected libtensorbuf.so -> libtensorbuf.so.0 -> libtensorbuf.so.${VERSION}, got ${dev_link} and ${soname_link}")
  endif()
  run("objdump" "${OBJDUMP}" -p "${libdir}/libtensorbuf.so.${VERSION}")
  if(NOT output MATCHES "SONAME +libtensorbuf\\.so\\.0\n")
    message(FATAL_ERROR "the installed library's SONAME is not libtensorbuf.so.0")
  endif()
  message(STATUS "installed into ${install_prefix} (staged in ${STAGE_DIR}): libtensorbuf.so.${VERSION} (SONAME libtensorbuf.so.0), libtensorbuf.a, headers, pkg-config and CMake package files")

elseif(STEP STREQUAL "find_package")
  set(build "${WORK_DIR}/find_package")
  file(REMOVE_RECURSE "${build}")
  run("configuring the consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}"
    -B "${build}" -DCMAKE_C_COMPILER=${C_COMPILER}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  file(STRINGS "${build}/CMakeCache.txt" found REGEX "^tensorbuf_DIR:")
  if(NOT found STREQUAL "tensorbuf_DIR:PATH=${libdir}/cmake/tensorbuf")
    message(FATAL_ERROR "find_package found the wrong tensorbuf: ${found}")
  endif()
  run("building the consumer" "${CMAKE_COMMAND}" --build "${build}")
  set(programs consumer consumer_static)
  set(targets tensorbuf tensorbuf_static)
  foreach(program target IN ZIP_LISTS programs targets)
    run("running ${program}" "${build}/${program}")
    message(STATUS "${program} (find_package, tensorbuf::${target}): ${output}")
  endforeach()

elseif(STEP STREQUAL "pkg-config")
  set(ENV{PKG_CONFIG_PATH} "${libdir}/pkgconfig")
  run("pkg-config --modversion" "${PKG_CONFIG}" --modversion tensorbuf)
  if(NOT output STREQUAL VERSION)
    message(FATAL_ERROR "pkg-config says version ${output}, the project is ${VERSION}")
  endif()
  run("pkg-config --cflags" "${PKG_CONFIG}" --cflags tensorbuf)
  # The public headers include no GLib header, so building against the
  # library must not need GLib's development files.
  if(output MATCHES "glib")
    message(FATAL_ERROR "pkg-config --cflags tensorbuf names GLib: ${output}")
  endif()
  separate_arguments(cflags UNIX_COMMAND "${output}")
  run("pkg-config --libs" "${PKG_CONFIG}" --libs tensorbuf)
  separate_arguments(libs UNIX_COMMAND "${output}")
  # --static adds Libs.private (GLib, libm); the archive is named explicitly, since -ltensorbuf would pick the .so.
  run("pkg-config --static --libs" "${PKG_CONFIG}" --static --libs tensorbuf)
  separate_arguments(static_libs UNIX_COMMAND "${output}")
  list(TRANSFORM static_libs REPLACE "^-ltensorbuf$" "-l:libtensorbuf.a")

  file(REMOVE_RECURSE "${WORK_DIR}/pkg-config")
  file(MAKE_DIRECTORY "${WORK_DIR}/pkg-config")
  set(shared "${WORK_DIR}/pkg-config/consumer")
  set(static "${WORK_DIR}/pkg-config/consumer_static")
  run("compiling against the shared library" "${C_COMPILER}" ${cflags}
    "${CONSUMER_DIR}/consumer.c" -o "${shared}" ${libs})
  run("compiling against the static library" "${C_COMPILER}" ${cflags}
    "${CONSUMER_DIR}/consumer.c" -o "${static}" ${static_libs})
  run("running consumer" "${CMAKE_COMMAND}" -E env
    "LD_LIBRARY_PATH=${libdir}" "${shared}")
  message(STATUS "consumer (pkg-config --libs): ${output}")
  run("running consumer_static" "${static}")
  message(STATUS "consumer_static (pkg-config --static --libs): ${output}")

else()
  message(FATAL_ERROR "STEP must be install, find_package or pkg-config, not '${STEP}'")
endif()
