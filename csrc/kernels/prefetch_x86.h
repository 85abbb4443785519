/* prefetch_x86.h: software prefetch of the weight stream for the x86 decode kernels (matmul_avx2.c,
 * matmul_avx512.c); include after <immintrin.h>.
 *
 * RC_PF(p, RC_PF_<TYPE>) prefetches into L2 (prefetcht1) this many bytes ahead of p (rows are contiguous:
 * past a row is the next; a prefetch never faults); a distance of 0 compiles to nothing. The distances are
 * measured, not derived: on the Sapphire Rapids VM of docs/PERFORMANCE.md ("Prefetch distance": bench_kernels,
 * 14336x4096 from DRAM, medians of 4-5 runs x 21-31, idle machine) prefetcht0 at 1 KB left the f16, q8 and q4
 * products at 1.09-1.24x the time of a plain read of the same bytes; prefetcht1 at these distances brings them
 * to about 0.93-1.07x, for both families (AVX2 measured on the same CPU). -DRC_PF_<TYPE>=bytes and
 * -DRC_PF_HINT=... override them, to re-measure on another CPU. */
#ifndef RC_PREFETCH_X86_H
#define RC_PREFETCH_X86_H

#include "core/cpu.h"

#ifndef RC_PF_F32
#define RC_PF_F32 2048
#endif
#ifndef RC_PF_F16
#define RC_PF_F16 8192
#endif
#ifndef RC_PF_Q8
#define RC_PF_Q8 2048
#endif
#ifndef RC_PF_Q4
#define RC_PF_Q4 8192
#endif
#ifndef RC_PF_HINT
#define RC_PF_HINT _MM_HINT_T1
#endif
/* ...and only where rc_x86_sw_prefetch says (core/cpu.h: not on AMD CPUs, where they measured slower). */
#define RC_PF(p, dist) do { if ((dist) && rc_x86_sw_prefetch >= 2) _mm_prefetch((const char *)(p) + (dist), RC_PF_HINT); } while (0)
/* RC_PF_BUSY: the same wherever rc_x86_sw_prefetch >= 1 (AMD included), for the loops that do much arithmetic per
 * byte of weights (the small-batch functions of q4 and f16), where the hardware prefetcher falls behind. Measured on the AMD EPYC (Zen 3), 14336x4096
 * and 4096x14336 from DRAM, 4 vectors, 2 threads, without -> with: q4 29.8-30.1 -> 32.3-32.9 and 22.0-23.9 ->
 * 25.5-26.2 G weights/s, f16 16.4-18.3 -> 18.6-19.9 GB/s; f32 batches (4 bytes per weight) lost with them (23.1-26.3
 * -> 20.6-23.2 GB/s) and one-vector products too (core/cpu.h), so those keep RC_PF. */
#define RC_PF_BUSY(p, dist) do { if ((dist) && rc_x86_sw_prefetch >= 1) _mm_prefetch((const char *)(p) + (dist), RC_PF_HINT); } while (0)

#endif
