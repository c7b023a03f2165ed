/* cleave-blas.h: choosing OpenBLAS's kernels for this CPU. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* OpenBLAS 0.3.21 (Debian 12) does not recognise AVX-512 on recent AMD
 * CPUs (Zen 4) and falls back to its AVX2 ("Haswell") kernels, about 1.4×
 * slower for Cleave's convolutions. It reads OPENBLAS_CORETYPE once, when
 * the library loads, so a program must set it before it starts: call this
 * first thing in main(). When the CPU has AVX-512 F/BW/DQ/VL and neither
 * OPENBLAS_CORETYPE nor CLEAVE_KEEP_BLAS_KERNELS is set, it sets
 * OPENBLAS_CORETYPE=SkylakeX and re-executes the program (same arguments);
 * otherwise, or if the re-exec fails, it returns and nothing changes. */
void cleave_blas_select_kernels (char **argv);

G_END_DECLS
