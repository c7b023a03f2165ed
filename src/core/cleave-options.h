/* cleave-options.h: the splitters' options described once — name, type,
 * default, range, help — so that the defaults (options_init), the core's
 * validation, the command line's options and help, the app's rows and the
 * remembered settings all come from the same table. */
#pragma once

#include "cleave-split.h"

G_BEGIN_DECLS

typedef enum {
  CLEAVE_OPTION_INT,      /* int field */
  CLEAVE_OPTION_FLOAT,    /* float field */
  CLEAVE_OPTION_DOUBLE,   /* double field */
  CLEAVE_OPTION_BOOL,     /* gboolean field; a flag named @name sets it to !@inverted */
  CLEAVE_OPTION_CHOICE,   /* int (enum or gboolean) field: the index of one of @choices */
} CleaveOptionType;

typedef struct {
  const char *name;             /* "alpha-growth": the command-line option and the settings key */
  CleaveOptionType type;
  gsize offset;                 /* of the field in the options struct */
  double def;                   /* default (for CHOICE and BOOL: the field's value) */
  double min, max;              /* inclusive range (numbers) */
  const char *const *choices;   /* CHOICE: the words, NULL-terminated, in field-value order */
  gboolean inverted;            /* BOOL: the flag clears the field */
  gboolean advanced;            /* shown under "Advanced" in the app */
  int digits;                   /* decimals the app shows (numbers) */
  const char *label;            /* short label for the app (English; the app translates it) */
  const char *help;             /* one-line description, without the default */
} CleaveOptionDesc;

/**
 * cleave_grad_split_option_table:
 * @n: (out): the number of entries
 *
 * Returns: (transfer none) (array length=n): GradSplitter's options, in display order
 */
const CleaveOptionDesc *cleave_grad_split_option_table (guint *n);
/**
 * cleave_ga_split_option_table:
 * @n: (out): the number of entries
 *
 * Returns: (transfer none) (array length=n): CNNSplitter's
 */
const CleaveOptionDesc *cleave_ga_split_option_table (guint *n);

/**
 * cleave_options_set_defaults:
 * @table: (array length=n): a table
 * @n: its size
 * @options: sets every field it describes to its default
 */
void     cleave_options_set_defaults (const CleaveOptionDesc *table, guint n, gpointer options);
/**
 * cleave_options_validate:
 * @table: (array length=n): a table
 * @n: its size
 * @options: the struct it describes
 * @error: a #GError (%CLEAVE_ERROR_INVALID_ARGUMENT) naming the option and its range
 *
 * Returns: %TRUE when each described field lies within its range (or among its choices)
 */
gboolean cleave_options_validate (const CleaveOptionDesc *table, guint n, gconstpointer options, GError **error);

/**
 * cleave_option_get:
 * @desc: an entry
 * @options: the struct
 *
 * Returns: the field as a double (CHOICE, BOOL: the field's value)
 */
double   cleave_option_get (const CleaveOptionDesc *desc, gconstpointer options);
/**
 * cleave_option_set:
 * @desc: an entry
 * @options: the struct
 * @value: stored into the field (rounded for whole numbers)
 */
void     cleave_option_set (const CleaveOptionDesc *desc, gpointer options, double value);
/**
 * cleave_option_parse:
 * @desc: an entry
 * @options: the struct
 * @text: "0.5", "krr" (ignored for BOOL: the flag was given)
 * @error: a #GError naming the option and what it accepts
 *
 * Returns: %TRUE when @text was stored into the field (range-checked)
 */
gboolean cleave_option_parse (const CleaveOptionDesc *desc, gpointer options, const char *text, GError **error);
/**
 * cleave_option_default_text:
 * @desc: an entry
 *
 * Returns: (transfer full): the default as text ("1.35", "reference")
 */
char    *cleave_option_default_text (const CleaveOptionDesc *desc);
/**
 * cleave_options_find:
 * @table: (array length=n): a table
 * @n: its size
 * @name: an option name
 *
 * Returns: (transfer none) (nullable): its entry
 */
const CleaveOptionDesc *cleave_options_find (const CleaveOptionDesc *table, guint n, const char *name);

/**
 * cleave_grad_split_options_validate:
 * @options: GradSplitter options
 * @error: a #GError naming the option
 *
 * The table's ranges, then the schedule (at least one epoch).
 *
 * Returns: %TRUE when the options can run
 */
gboolean cleave_grad_split_options_validate (const CleaveGradSplitOptions *options, GError **error);
/**
 * cleave_ga_split_options_validate:
 * @options: CNNSplitter options
 * @error: names the option
 *
 * Returns: %TRUE when the ranges hold and parents ≤ population > elites
 */
gboolean cleave_ga_split_options_validate (const CleaveGaSplitOptions *options, GError **error);

G_END_DECLS
