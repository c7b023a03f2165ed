/* fuzz-common.h: what the harnesses in tests/fuzz share.
 *
 * Each harness defines LLVMFuzzerTestOneInput and feeds the bytes to one of
 * Cleave's readers. Built with -Dfuzzing=true it links libFuzzer; otherwise
 * fuzz-replay.c supplies a main() that replays files or folders of inputs
 * (the committed corpus, under meson test). */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The harness's private folder, made on first use under $TMPDIR and removed
 * at exit. $TMPDIR then points into it, so temporary files the code under
 * test makes stay there as well. Also makes GLib criticals fatal: a reader
 * that trips a g_return_if_fail on bad input is a finding. */
const char *fuzz_dir (void);

/* Writes @data to @relpath inside fuzz_dir(), making parent folders;
 * returns the full path (g_free). An I/O failure aborts: that is the
 * machine, not a finding. */
char *fuzz_write (const char *relpath, const guint8 *data, gsize size);

/* A NUL-terminated copy of @data (g_free). */
char *fuzz_strndup (const guint8 *data, gsize size);

/* The contract of every reader: a result and no error, or no result and an
 * error with a message. Frees @error; prints its message first when
 * CLEAVE_FUZZ_VERBOSE is set (to see why a seed is refused). */
void fuzz_check_result (gboolean have_result, GError *error);
