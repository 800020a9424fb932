/* IEEE half (f16) and bfloat16 conversions, rounding to nearest even. Both
 * are narrow binary floats, so one routine serves each direction. */
#include "tensor/half.h"

#include <math.h>
#include <string.h>

static uint32_t narrow_from_f64(double value, int exp_bits, int mant_bits) {
  uint64_t bits;
  memcpy(&bits, &value, sizeof bits);
  uint32_t sign = (uint32_t)(bits >> 63) << (exp_bits + mant_bits);
  int exp = (int)((bits >> 52) & 0x7ff);
  uint64_t mant = bits & ((UINT64_C(1) << 52) - 1);
  uint32_t exp_max = (1u << exp_bits) - 1;
  uint32_t inf = exp_max << mant_bits;
  if (exp == 0x7ff) /* inf stays inf; NaN stays a quiet NaN */
    return sign | inf | (mant != 0 ? 1u << (mant_bits - 1) : 0);
  if (exp == 0) /* f64 subnormals are far below either format's range */
    return sign;
  int e = exp - 1023 + (int)(exp_max >> 1);
  if (e >= (int)exp_max)
    return sign | inf;
  int shift = 52 - mant_bits;
  if (e <= 0) { /* subnormal result: make the leading 1 explicit */
    shift += 1 - e;
    if (shift > 53)
      return sign; /* below half the smallest subnormal */
    mant |= UINT64_C(1) << 52;
    e = 0;
  }
  uint64_t kept = mant >> shift;
  uint64_t rest = mant & ((UINT64_C(1) << shift) - 1);
  uint64_t half = UINT64_C(1) << (shift - 1);
  uint32_t result = ((uint32_t)e << mant_bits) + (uint32_t)kept;
  if (rest > half || (rest == half && (result & 1)))
    result++; /* a carry into the exponent is the correct rounding */
  return sign | result;
}

static double narrow_to_f64(uint32_t bits, int exp_bits, int mant_bits) {
  uint32_t exp_max = (1u << exp_bits) - 1;
  int bias = (int)(exp_max >> 1);
  uint32_t e = (bits >> mant_bits) & exp_max;
  uint32_t m = bits & ((1u << mant_bits) - 1);
  double value;
  if (e == exp_max)
    value = m != 0 ? NAN : INFINITY;
  else if (e == 0)
    value = ldexp((double)m, 1 - bias - mant_bits);
  else
    value = ldexp((double)(m | (1u << mant_bits)), (int)e - bias - mant_bits);
  return (bits >> (exp_bits + mant_bits)) & 1 ? -value : value;
}

uint16_t tb_f16_from_f64(double value) {
  return (uint16_t)narrow_from_f64(value, 5, 10);
}
double tb_f16_to_f64(uint16_t bits) { return narrow_to_f64(bits, 5, 10); }
uint16_t tb_bf16_from_f64(double value) {
  return (uint16_t)narrow_from_f64(value, 8, 7);
}
double tb_bf16_to_f64(uint16_t bits) { return narrow_to_f64(bits, 8, 7); }
