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

/* The tables, in display order. */
const CleaveOptionDesc *cleave_grad_split_option_table (guint *n);
const CleaveOptionDesc *cleave_ga_split_option_table (guint *n);

/* Sets every field the table describes to its default. */
void     cleave_options_set_defaults (const CleaveOptionDesc *table, guint n, gpointer options);
/* Each described field within its range (or among its choices); the error
 * names the option and the range. */
gboolean cleave_options_validate (const CleaveOptionDesc *table, guint n, gconstpointer options, GError **error);

/* One option's value as a double (CHOICE/BOOL: the field's value) and back. */
double   cleave_option_get (const CleaveOptionDesc *desc, gconstpointer options);
void     cleave_option_set (const CleaveOptionDesc *desc, gpointer options, double value);
/* Parses @text ("0.5", "krr") into the field; range-checked. */
gboolean cleave_option_parse (const CleaveOptionDesc *desc, gpointer options, const char *text, GError **error);
/* The default as text ("1.35", "reference"); newly allocated. */
char    *cleave_option_default_text (const CleaveOptionDesc *desc);
/* Looks a name up; NULL when the table has none. */
const CleaveOptionDesc *cleave_options_find (const CleaveOptionDesc *table, guint n, const char *name);

gboolean cleave_grad_split_options_validate (const CleaveGradSplitOptions *options, GError **error);
gboolean cleave_ga_split_options_validate (const CleaveGaSplitOptions *options, GError **error);

G_END_DECLS
