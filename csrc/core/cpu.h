/* cpu.h: run-time CPU feature detection (cpuid + xgetbv on x86, hwcaps on ARM). */
#ifndef RC_CPU_H
#define RC_CPU_H

typedef struct {
    int sse41, avx, avx2, fma, f16c;          /* x86: AVX2 kernel needs avx2+fma+f16c */
    int avxvnni;                              /* x86: AVX-VNNI (VEX vpdpbusd on YMM): the avx2-vnni kernel */
    int avx512f, avx512bw, avx512vl, avx512vnni; /* x86: AVX-512 kernel needs all four */
    int amx;                                  /* x86: AMX-TILE + AMX-INT8, OS state and this process's permission */
    int neon, dotprod;                        /* aarch64 */
    char names[128];                          /* "avx2 fma f16c ..." */
} rc_cpu_features;

/* Detected once (thread-safe), then read-only. */
const rc_cpu_features *rc_cpu(void);

#endif
