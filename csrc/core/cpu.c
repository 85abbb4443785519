/* cpu.c: run-time CPU feature detection. Only this file and the dispatcher decide which kernels run;
 * it is compiled without any SIMD flag, so it runs on every CPU of the target architecture. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "rwkv_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
static unsigned long long rc_xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static rc_cpu_features rc_features;
int rc_x86_sw_prefetch = 2;
static pthread_once_t rc_features_once = PTHREAD_ONCE_INIT;

static void rc_add_name(const char *name, int present) {
    if (!present) return;
    size_t len = strlen(rc_features.names);
    snprintf(rc_features.names + len, sizeof rc_features.names - len, "%s%s", len ? " " : "", name);
}

static void rc_detect(void) {
    rc_cpu_features *f = &rc_features;
    memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
    unsigned int a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) { /* vendor string in ebx, edx, ecx */
        char vendor[13];
        memcpy(vendor, &b, 4);
        memcpy(vendor + 4, &d, 4);
        memcpy(vendor + 8, &c, 4);
        vendor[12] = 0;
        f->amd = strcmp(vendor, "AuthenticAMD") == 0 || strcmp(vendor, "HygonGenuine") == 0;
    }
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        f->sse41 = (c >> 19) & 1;
        int osxsave = (c >> 27) & 1;
        int avx_hw = (c >> 28) & 1;
        f->fma = (c >> 12) & 1;
        f->f16c = (c >> 29) & 1;
        unsigned long long xcr0 = osxsave ? rc_xgetbv0() : 0;
        int os_ymm = (xcr0 & 0x6) == 0x6;     /* XMM and YMM state saved by the OS */
        int os_zmm = (xcr0 & 0xe6) == 0xe6;   /* plus opmask and ZMM state */
        f->avx = avx_hw && os_ymm;
        if (!f->avx) { f->fma = 0; f->f16c = 0; }
        if (__get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            f->avx2 = f->avx && ((b >> 5) & 1);
            if (os_zmm) {
                f->avx512f = (b >> 16) & 1;
                f->avx512bw = (b >> 30) & 1;
                f->avx512vl = (b >> 31) & 1;
                f->avx512vnni = (c >> 11) & 1;
            }
            unsigned int a1, b1, c1, d1;
            __cpuid_count(7, 1, a1, b1, c1, d1); /* subleaf 1 (reads as zeros where it does not exist) */
            f->avxvnni = f->avx2 && ((a1 >> 4) & 1);
            (void)b1, (void)c1, (void)d1;
            /* AMX-TILE (edx 24) and AMX-INT8 (edx 25), the OS saving XTILECFG / XTILEDATA (XCR0 bits 17, 18);
             * Linux then wants each process to ask for the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM,
             * 0x1023, feature 18) before its first tile instruction: refused (old kernel, a sigaltstack too
             * small for the larger signal frame), the tiles are not used. */
            int amx_hw = ((d >> 24) & 1) && ((d >> 25) & 1) && (xcr0 & 0x60000) == 0x60000;
#if defined(__linux__) && defined(__x86_64__)
            f->amx = amx_hw && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
            f->amx = 0;
            (void)amx_hw;
#endif
        }
    }
#elif defined(__aarch64__)
    f->neon = 1; /* Advanced SIMD is mandatory on AArch64 */
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    f->dotprod = (hw & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    f->dotprod = 1;
#endif
#endif
    const char *pf = getenv("RWKV_CPU_PREFETCH");
    rc_x86_sw_prefetch = pf && (strcmp(pf, "0") == 0 || strcmp(pf, "1") == 0) ? 2 * (pf[0] == '1') : f->amd ? 1 : 2;
    rc_add_name("sse4.1", f->sse41);
    rc_add_name("avx", f->avx);
    rc_add_name("avx2", f->avx2);
    rc_add_name("fma", f->fma);
    rc_add_name("f16c", f->f16c);
    rc_add_name("avx-vnni", f->avxvnni);
    rc_add_name("avx512f", f->avx512f);
    rc_add_name("avx512bw", f->avx512bw);
    rc_add_name("avx512vl", f->avx512vl);
    rc_add_name("avx512vnni", f->avx512vnni);
    rc_add_name("amx-int8", f->amx);
#if defined(__x86_64__) || defined(__i386__)
    /* a choice, not a CPU feature: which loops prefetch (core/cpu.h) */
    rc_add_name("sw-prefetch", rc_x86_sw_prefetch == 2);
    rc_add_name("sw-prefetch-batches", rc_x86_sw_prefetch == 1);
#endif
    rc_add_name("neon", f->neon);
    rc_add_name("dotprod", f->dotprod);
}

const rc_cpu_features *rc_cpu(void) {
    pthread_once(&rc_features_once, rc_detect);
    return &rc_features;
}

const char *rwkv_cpu_features(void) { return rc_cpu()->names; }
