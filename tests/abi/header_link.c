/* Compiled as C99 and as C++11 by check_headers.cmake, linked against the
 * shared library and run: a header that lost its extern "C" fails to link as
 * C++, and a library that does not match its headers fails to run. */
#include <tensorbuf/tensorbuf.h>

#include <stdio.h>

int main(void) {
  if (tb_version_number() != TB_VERSION_NUMBER) {
    fprintf(stderr, "headers are version %d but the library is %u\n",
            TB_VERSION_NUMBER, (unsigned)tb_version_number());
    return 1;
  }
  return 0;
}
