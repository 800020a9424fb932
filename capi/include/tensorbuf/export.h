/* tensorbuf — symbol export macro and library version. */
#ifndef TENSORBUF_EXPORT_H
#define TENSORBUF_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The library is built with -fvisibility=hidden; TB_API marks the exports. */
#if defined(TB_BUILDING_LIBRARY) && defined(__GNUC__)
#define TB_API __attribute__((visibility("default")))
#else
#define TB_API
#endif

/* Compile-time version of these headers. The build reads these lines. */
#define TB_VERSION_MAJOR 0
#define TB_VERSION_MINOR 1
#define TB_VERSION_PATCH 0
#define TB_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, comparable with tb_version_number(). */
#define TB_VERSION_NUMBER                                                      \
  (TB_VERSION_MAJOR * 10000 + TB_VERSION_MINOR * 100 + TB_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the loaded library, so a binding can check it against the
 * TB_VERSION_NUMBER it was compiled with. Thread-safe. */
TB_API uint32_t tb_version_number(void);
TB_API const char *tb_version_string(void);

/* Number of live handles (buffers, tensors, maps, fences, pools, channels,
 * listeners) in the process, so a binding's tests can check that they
 * release everything. Thread-safe. */
TB_API int64_t tb_live_objects(void);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_EXPORT_H */
