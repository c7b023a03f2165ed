/* cleave-blas.h: choosing OpenBLAS's kernels for this CPU. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* OpenBLAS 0.3.21 (Debian 12) does not recognise AVX-512 on recent AMD
 * CPUs (Zen 4) and falls back to its AVX2 ("Haswell") kernels, about 1.4×
 * slower for Cleave's convolutions. It reads OPENBLAS_CORETYPE once, when
 * the library loads, so only a program's front end can choose: before
 * anything else runs, it may set OPENBLAS_CORETYPE to this value and
 * re-execute itself. Returns "SkylakeX" when the CPU has AVX-512 F/BW/DQ/VL,
 * else NULL (OpenBLAS's own choice is right). Reads no environment. */
const char *cleave_blas_preferred_coretype (void);
/* Re-executes the program (same @argv) with OPENBLAS_CORETYPE=@coretype;
 * returns only when that failed (nothing changed then). */
void cleave_blas_reexec (const char *coretype, char **argv);

G_END_DECLS
