/* matmul_avx2_vnni.c: the avx2-vnni kernel family, matmul_avx2.c compiled again with AVX-VNNI (-mavxvnni):
 * the integer dot products of q8 and q4 become vpdpwssd / vpdpbusd on 256-bit registers. For the CPUs that
 * have AVX-VNNI but not AVX-512 (Intel Alder Lake and later client cores); chosen at run time like the others. */
#define RC_AVX_VNNI 1
#include "matmul_avx2.c"
