/* cleave-split-log.c: the split log and its JSON form (docs/SPLIT-LOG.md). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "cleave-split-log.h"
#include "cleave-error.h"

static void
entry_free (gpointer data)
{
  CleaveSplitLogEntry *e = data;

  g_free (e->module_krr);
  g_free (e->selection);
  g_free (e->module_epochs);
  g_free (e);
}

CleaveSplitLog *
cleave_split_log_new (void)
{
  CleaveSplitLog *log = g_new0 (CleaveSplitLog, 1);

  log->entries = g_ptr_array_new_with_free_func (entry_free);
  return log;
}

void
cleave_split_log_free (CleaveSplitLog *log)
{
  if (log == NULL)
    return;
  g_ptr_array_unref (log->entries);
  g_free (log);
}

CleaveSplitLogEntry *
cleave_split_log_append (CleaveSplitLog *log, int epoch, CleavePhase phase)
{
  CleaveSplitLogEntry *e = g_new0 (CleaveSplitLogEntry, 1);

  g_return_val_if_fail (log != NULL, NULL);
  e->epoch = epoch;
  e->phase = phase;
  e->train_loss = e->train_accuracy = e->val_accuracy = e->mean_krr = e->best_fitness = NAN;
  e->modules_mean_krr = e->modules_val_accuracy = NAN;
  e->kept_kernels = -1;
  g_ptr_array_add (log->entries, e);
  return e;
}

CleaveSplitLog *
cleave_split_log_copy (const CleaveSplitLog *log)
{
  CleaveSplitLog *out;

  if (log == NULL)
    return NULL;
  out = cleave_split_log_new ();
  for (guint i = 0; i < log->entries->len; i++)
    {
      const CleaveSplitLogEntry *e = log->entries->pdata[i];
      CleaveSplitLogEntry *c = cleave_split_log_append (out, e->epoch, e->phase);
      *c = *e;
      c->module_krr = e->module_krr ? g_memdup2 (e->module_krr, sizeof (double) * e->n_modules) : NULL;
      c->module_epochs = e->module_epochs ? g_memdup2 (e->module_epochs, sizeof (int) * e->n_modules) : NULL;
      c->selection = g_strdup (e->selection);
    }
  return out;
}

const CleaveSplitLogEntry *
cleave_split_log_selected (const CleaveSplitLog *log)
{
  for (guint i = 0; log && i < log->entries->len; i++)
    {
      const CleaveSplitLogEntry *e = log->entries->pdata[i];
      if (e->selected)
        return e;
    }
  return NULL;
}

gint64
cleave_split_log_images (const CleaveSplitLog *log)
{
  gint64 total = 0;

  for (guint i = 0; log && i < log->entries->len; i++)
    total += ((const CleaveSplitLogEntry *) log->entries->pdata[i])->images;
  return total;
}

/* ---- writer --------------------------------------------------------------- */

/* Measurements not taken are written as -1 (every measured value is ≥ 0). */
static void
add_measure (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_double_value (b, isfinite (v) ? v : -1);
}

static void
add_int (JsonBuilder *b, const char *key, gint64 v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_int_value (b, v);
}

static void
build_selection (const CleaveSplitLogEntry *e, JsonBuilder *b)
{
  if (e->selection)
    {
      json_builder_set_member_name (b, "selection");
      json_builder_add_string_value (b, e->selection);
    }
  if (e->module_epochs == NULL)
    return;
  json_builder_set_member_name (b, "module_epochs");
  json_builder_begin_array (b);
  for (int g = 0; g < e->n_modules; g++)
    json_builder_add_int_value (b, e->module_epochs[g]);
  json_builder_end_array (b);
  add_measure (b, "modules_mean_krr", e->modules_mean_krr);
  add_measure (b, "modules_val_accuracy", e->modules_val_accuracy);
  add_int (b, "holdout_moves_undone", e->holdout_moves_undone);
  if (!e->has_refit)
    return;
  json_builder_set_member_name (b, "head_refit");
  json_builder_begin_object (b);
  add_int (b, "images", e->refit.images);
  add_int (b, "passes", e->refit.passes);
  add_measure (b, "val_accuracy_before", e->refit.val_accuracy_before);
  add_measure (b, "val_accuracy_after", e->refit.val_accuracy_after);
  json_builder_set_member_name (b, "kept");
  json_builder_add_boolean_value (b, e->refit.kept);
  json_builder_end_object (b);
}

static void
build_entry (const CleaveSplitLogEntry *e, JsonBuilder *b)
{
  json_builder_begin_object (b);
  if (e->phase == CLEAVE_PHASE_GENERATION)
    {
      add_int (b, "generation", e->epoch);
      add_measure (b, "val_accuracy", e->val_accuracy);
      add_measure (b, "mean_krr", e->mean_krr);
      json_builder_set_member_name (b, "best_fitness");
      json_builder_add_double_value (b, isfinite (e->best_fitness) ? e->best_fitness : 0);
      add_measure (b, "seconds", e->seconds);
      json_builder_end_object (b);
      return;
    }
  add_int (b, "epoch", e->epoch);
  json_builder_set_member_name (b, "phase");
  json_builder_add_string_value (b, cleave_phase_name (e->phase));
  add_measure (b, "train_loss", e->train_loss);
  add_measure (b, "train_accuracy", e->train_accuracy);
  add_measure (b, "val_accuracy", e->val_accuracy);
  add_measure (b, "mean_krr", e->mean_krr);
  add_int (b, "kept_kernels", e->kept_kernels);
  json_builder_set_member_name (b, "module_krr");
  json_builder_begin_array (b);
  for (int g = 0; e->module_krr && g < e->n_modules; g++)
    json_builder_add_double_value (b, e->module_krr[g]);
  json_builder_end_array (b);
  add_measure (b, "seconds", e->seconds);
  add_int (b, "images", e->images);
  add_measure (b, "images_per_s", e->images_per_s);
  json_builder_set_member_name (b, "selected");
  json_builder_add_boolean_value (b, e->selected);
  if (e->selected)
    build_selection (e, b);
  json_builder_end_object (b);
}

void
cleave_split_log_build (const CleaveSplitLog *log, JsonBuilder *b)
{
  g_return_if_fail (log != NULL && b != NULL);
  json_builder_begin_array (b);
  for (guint i = 0; i < log->entries->len; i++)
    build_entry (log->entries->pdata[i], b);
  json_builder_end_array (b);
}

char *
cleave_split_log_to_json (const CleaveSplitLog *log)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  g_return_val_if_fail (log != NULL, NULL);
  cleave_split_log_build (log, b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

/* ---- reader --------------------------------------------------------------- */

typedef struct {
  guint index;                /* entry */
  GError **error;
} Reader;

static gboolean
fail (Reader *r, const char *field, const char *what)
{
  g_set_error (r->error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "log[%u].%s: %s", r->index, field, what);
  return FALSE;
}

static gboolean
is_number (JsonNode *n)
{
  GType t;

  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  t = json_node_get_value_type (n);
  return t == G_TYPE_DOUBLE || t == G_TYPE_INT64;
}

/* A measurement: absent, null or negative means not measured (NAN). */
static gboolean
read_measure (Reader *r, JsonObject *o, const char *key, double *out)
{
  JsonNode *n = json_object_get_member (o, key);

  *out = NAN;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!is_number (n))
    return fail (r, key, "is not a number");
  if (json_node_get_double (n) >= 0)
    *out = json_node_get_double (n);
  return TRUE;
}

static gboolean
read_int (Reader *r, JsonObject *o, const char *key, gint64 lo, gint64 hi, gint64 *out)
{
  JsonNode *n = json_object_get_member (o, key);

  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;   /* keeps the default */
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return fail (r, key, "is not a whole number");
  *out = json_node_get_int (n);
  if (*out < lo || *out > hi)
    return fail (r, key, "is out of range");
  return TRUE;
}

/* An array of @n numbers (or ints when @ints). */
static gboolean
read_array (Reader *r, JsonObject *o, const char *key, gboolean ints, int *n, gpointer *out)
{
  JsonNode *node = json_object_get_member (o, key);
  JsonArray *a;
  guint len;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (node))
    return fail (r, key, "is not an array");
  a = json_node_get_array (node);
  len = json_array_get_length (a);
  if (len > 100000 || (*n > 0 && (int) len != *n))
    return fail (r, key, "has the wrong length");
  *out = ints ? (gpointer) g_new0 (int, MAX (len, 1)) : (gpointer) g_new0 (double, MAX (len, 1));
  for (guint i = 0; i < len; i++)
    {
      JsonNode *v = json_array_get_element (a, i);
      if (!is_number (v) || (ints && json_node_get_value_type (v) != G_TYPE_INT64))
        return fail (r, key, ints ? "holds something other than whole numbers" : "holds something other than numbers");
      if (ints)
        ((int *) *out)[i] = (int) CLAMP (json_node_get_int (v), G_MININT, G_MAXINT);
      else
        ((double *) *out)[i] = json_node_get_double (v);
    }
  *n = (int) len;
  return TRUE;
}

/* An optional string member: @def when absent or null; any other type fails. */
static gboolean
read_string (Reader *r, JsonObject *o, const char *key, const char *def, const char **out)
{
  JsonNode *n = json_object_get_member (o, key);

  *out = def;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return fail (r, key, "is not a string");
  *out = json_node_get_string (n);
  return TRUE;
}

/* An optional boolean member: @def when absent or null; any other type fails. */
static gboolean
read_bool (Reader *r, JsonObject *o, const char *key, gboolean def, gboolean *out)
{
  JsonNode *n = json_object_get_member (o, key);

  *out = def;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return fail (r, key, "is not true or false");
  *out = json_node_get_boolean (n);
  return TRUE;
}

static gboolean
read_refit (Reader *r, JsonObject *o, CleaveSplitLogEntry *e)
{
  JsonNode *n = json_object_get_member (o, "head_refit");
  JsonObject *h;
  gint64 images = 0, passes = 0;

  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (r, "head_refit", "is not an object");
  h = json_node_get_object (n);
  if (!read_int (r, h, "images", 0, G_MAXINT, &images) || !read_int (r, h, "passes", 0, G_MAXINT, &passes) ||
      !read_measure (r, h, "val_accuracy_before", &e->refit.val_accuracy_before) ||
      !read_measure (r, h, "val_accuracy_after", &e->refit.val_accuracy_after))
    return FALSE;
  e->has_refit = TRUE;
  e->refit.images = (int) images;
  e->refit.passes = (int) passes;
  return read_bool (r, h, "kept", FALSE, &e->refit.kept);
}

static gboolean
read_entry (Reader *r, JsonNode *node, CleaveSplitLog *log)
{
  JsonObject *o;
  gint64 epoch = 0, kept = -1, images = 0, undone = 0;
  gboolean ga;
  CleavePhase phase = CLEAVE_PHASE_GENERATION;
  CleaveSplitLogEntry *e;
  int n_krr = 0, n_epochs = 0;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return fail (r, "", "is not an object");
  o = json_node_get_object (node);
  ga = json_object_has_member (o, "generation");
  if (!ga && !json_object_has_member (o, "epoch"))
    return fail (r, "epoch", "is missing (an entry has \"epoch\" or \"generation\")");
  if (!read_int (r, o, ga ? "generation" : "epoch", 0, 1000000, &epoch))
    return FALSE;
  if (!ga)
    {
      const char *p;
      if (!read_string (r, o, "phase", "masks", &p))
        return FALSE;
      if (g_strcmp0 (p, "masks") != 0 && g_strcmp0 (p, "heads") != 0)
        return fail (r, "phase", "is neither \"heads\" nor \"masks\"");
      phase = g_str_equal (p, "heads") ? CLEAVE_PHASE_HEADS : CLEAVE_PHASE_MASKS;
    }
  e = cleave_split_log_append (log, (int) epoch, phase);
  if (!read_measure (r, o, "train_loss", &e->train_loss) || !read_measure (r, o, "train_accuracy", &e->train_accuracy) ||
      !read_measure (r, o, "val_accuracy", &e->val_accuracy) || !read_measure (r, o, "mean_krr", &e->mean_krr) ||
      !read_measure (r, o, "seconds", &e->seconds) || !read_measure (r, o, "images_per_s", &e->images_per_s) ||
      !read_measure (r, o, "modules_mean_krr", &e->modules_mean_krr) ||
      !read_measure (r, o, "modules_val_accuracy", &e->modules_val_accuracy) ||
      !read_int (r, o, "kept_kernels", -1, G_MAXINT, &kept) || !read_int (r, o, "images", 0, G_MAXINT64, &images) ||
      !read_int (r, o, "holdout_moves_undone", 0, G_MAXINT, &undone) ||
      !read_array (r, o, "module_krr", FALSE, &n_krr, (gpointer *) &e->module_krr) ||
      !read_array (r, o, "module_epochs", TRUE, &n_epochs, (gpointer *) &e->module_epochs) ||
      !read_refit (r, o, e))
    return FALSE;
  if (e->module_krr && e->module_epochs && n_krr != n_epochs)
    return fail (r, "module_epochs", "has another length than module_krr");
  e->n_modules = MAX (n_krr, n_epochs);
  e->kept_kernels = (int) kept;
  e->images = images;
  e->holdout_moves_undone = (int) undone;
  if (ga && json_object_has_member (o, "best_fitness"))
    {
      JsonNode *f = json_object_get_member (o, "best_fitness");
      if (!is_number (f))
        return fail (r, "best_fitness", "is not a number");
      e->best_fitness = json_node_get_double (f);
    }
  {
    const char *selection;
    if (!read_bool (r, o, "selected", FALSE, &e->selected) || !read_string (r, o, "selection", NULL, &selection))
      return FALSE;
    e->selection = g_strdup (selection);
  }
  return TRUE;
}

CleaveSplitLog *
cleave_split_log_from_node (JsonNode *node, GError **error)
{
  g_autoptr(CleaveSplitLog) log = cleave_split_log_new ();
  Reader r = { 0, error };
  JsonArray *a;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "log: is not an array");
      return NULL;
    }
  a = json_node_get_array (node);
  for (r.index = 0; r.index < json_array_get_length (a); r.index++)
    if (!read_entry (&r, json_array_get_element (a, r.index), log))
      return NULL;
  return g_steal_pointer (&log);
}

CleaveSplitLog *
cleave_split_log_from_json (const char *text, GError **error)
{
  g_autoptr(JsonParser) p = json_parser_new ();

  g_return_val_if_fail (text != NULL, NULL);
  if (!json_parser_load_from_data (p, text, -1, error))
    return NULL;
  return cleave_split_log_from_node (json_parser_get_root (p), error);
}
