/* f16 and bf16 conversions (round to nearest even). */
#ifndef TB_HALF_H
#define TB_HALF_H

#include <stdint.h>

uint16_t tb_f16_from_f64(double value);
double tb_f16_to_f64(uint16_t bits);
uint16_t tb_bf16_from_f64(double value);
double tb_bf16_to_f64(uint16_t bits);

#endif
