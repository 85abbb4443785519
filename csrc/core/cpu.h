/* cpu.h: run-time CPU feature detection (cpuid + xgetbv on x86, hwcaps on ARM). */
#ifndef RC_CPU_H
#define RC_CPU_H

typedef struct {
    int sse41, avx, avx2, fma, f16c;          /* x86: AVX2 kernel needs avx2+fma+f16c */
    int avxvnni;                              /* x86: AVX-VNNI (VEX vpdpbusd on YMM): the avx2-vnni kernel */
    int avx512f, avx512bw, avx512vl, avx512vnni; /* x86: AVX-512 kernel needs all four */
    int amx;                                  /* x86: AMX-TILE + AMX-INT8, OS state and this process's permission */
    int neon, dotprod;                        /* aarch64 */
    int amd;                                  /* x86: an AMD (or Hygon) CPU, cpuid vendor string */
    char names[128];                          /* "avx2 fma f16c ..." */
} rc_cpu_features;

/* Detected once (thread-safe), then read-only. */
const rc_cpu_features *rc_cpu(void);

/* Which software prefetches the x86 decode kernels issue (kernels/prefetch_x86.h): 2 all of them, 1 only those of
 * the small-batch q4 / f16 loops (RC_PF_BUSY), 0 none. 2 until rc_cpu() has run; then 1 on AMD CPUs, 2 elsewhere,
 * or what RWKV_CPU_PREFETCH says (0: none, 1: all). A plain int, written once inside rc_cpu()'s detection (before
 * any kernel is chosen) and only read after: the kernels test it per group of weights, where a call would cost
 * more than the test. Measured (docs/PERFORMANCE.md, "AMD EPYC (Zen 3)"): the prefetches tuned on a Sapphire
 * Rapids made that AMD CPU's one-vector f32, f16 and q4 products read 9-13% slower and its f32 batches 8% slower,
 * while its q4 and f16 batches gained 8-11% with them; the Xeon lost 25-35% without them. */
extern int rc_x86_sw_prefetch;

#endif
