/* cleave-util-private.h: small helpers shared by the core's readers and writers. */
#pragma once

#include <glib.h>
#include <stdarg.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Sets CLEAVE_ERROR_INVALID_FILE "FILE: message" and returns FALSE. */
gboolean cleave_invalid_file (GError **error, const char *file, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
/* The same with a va_list; @file may be any prefix ("architecture: conv_1"). */
gboolean cleave_invalid_file_valist (GError **error, const char *file, const char *fmt, va_list ap) G_GNUC_PRINTF (3, 0);

/* An option's value: TRUE when finite and within lo..hi (each end open or
 * closed); otherwise CLEAVE_ERROR_INVALID_ARGUMENT naming the option. */
gboolean cleave_check_option (GError **error, const char *name, double v,
                              double lo, gboolean lo_open, double hi, gboolean hi_open);

/* A JSON string value, or NULL for anything else (NULL-safe, never a
 * json-glib critical). */
const char *cleave_json_string (JsonNode *n);

/* Whether every integer literal (outside strings) of the JSON text @s fits
 * in 64 bits: json-glib wraps larger ones silently (2^64 reads as 0). On
 * FALSE, *@bad (if given) gets the literal (g_free). */
gboolean cleave_json_integers_fit (const char *s, gsize len, char **bad);

/* The parser's root node when it is of @type, else NULL (an empty document
 * has no root at all: checked here, never a json-glib critical). */
JsonNode *cleave_json_root (JsonParser *p, JsonNodeType type);

/* A JSON number (integer or real) as a float; NaN for anything else (strings,
 * booleans, null, containers, NULL) and ±inf where the float overflows. */
float cleave_json_float (JsonNode *n);

/* JSON builder members; non-finite numbers and NULL strings become null. */
void cleave_json_add_number (JsonBuilder *b, const char *key, double v);
void cleave_json_add_string (JsonBuilder *b, const char *key, const char *v);
/* Embeds JSON text as a value; NULL becomes null, text that does not parse is kept as a string. */
void cleave_json_add_json_text (JsonBuilder *b, const char *key, const char *text);

G_END_DECLS
