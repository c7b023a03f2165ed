/* cleave-compose-page.c: the canvas of the Compose page (the composition
 * and the weak model's classes, their drop targets and actions), undo, the
 * weak model's evaluation and suggestions, and the glue to the palette,
 * the evaluation and the export. */
#include <glib/gi18n.h>

#include "cleave-dataset.h"
#include <math.h>

#include "cleave-compose-page.h"
#include "cleave-job.h"
#include "cleave-chart-view.h"
#include "cleave-compose-eval.h"
#include "cleave-compose-recipe.h"
#include "cleave-compose-results.h"
#include "cleave-dataset-row.h"
#include "cleave-error.h"
#include "cleave-file-kind.h"
#include "cleave-gui-util.h"
#include "cleave-try-image.h"

/* A class is weak when its F1 is this far below the model's macro F1. */
#define WEAK_MARGIN 0.05
/* Inputs settle for this long before results are re-evaluated. */
#define REEVALUATE_DELAY_MS 400

typedef struct {
  GArray *composed;
  GArray *patches;
} Snapshot;

struct _CleaveComposePage
{
  AdwBin parent_instance;

  AdwToastOverlay *toasts;
  AdwFlap *flap;
  CleaveModulePalette *palette;
  CleaveDatasetRow *dataset_row;
  GtkStack *mode_stack;
  GtkListBox *composition_list;
  GtkLabel *weak_label;
  GtkListBox *class_list;
  GtkScrolledWindow *scroller;
  GtkProgressBar *progress_bar;
  GtkLabel *headline_label;
  GtkLabel *detail_label;
  GtkWidget *compare_frame;
  GtkWidget *matrices_box;
  GtkPicture *try_picture;
  GtkSpinButton *try_spin;
  GtkLabel *try_label;
  CleaveChartView *try_chart;
  CleaveChartView *compare_chart;
  CleaveChartView *before_chart;
  CleaveChartView *after_chart;

  CleaveWorkspace *workspace;
  CleaveModel *weak;           /* owned */
  CleaveMetrics *weak_metrics; /* the weak model on the test split, NULL until known */
  GPtrArray *suggestions;      /* CleaveModuleRef* or NULL, per weak-model class */
  GArray *composed;            /* recipe entries */
  GArray *patches;
  GPtrArray *undo;             /* Snapshot*, newest last */
  GSettings *settings;
  GtkFileChooserNative *chooser;
  GCancellable *eval_cancellable;
  GCancellable *weak_cancellable;
  GCancellable *weak_eval_cancellable;
  GCancellable *try_cancellable;
  guint reevaluate_id;
  AdwToast *undo_toast;        /* the last change's, while shown */
  gboolean has_result;         /* results are shown */
  gboolean stale;              /* …and their inputs changed since */
  gboolean disposed;
  char *headline;
};

enum {
  SIGNAL_EVALUATED,
  SIGNAL_WEAK_LOADED,
  SIGNAL_WEAK_EVALUATED,
  SIGNAL_TRIED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

enum {
  PROP_0,
  PROP_WORKSPACE,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (CleaveComposePage, cleave_compose_page, ADW_TYPE_BIN)

static void fill_composition (CleaveComposePage *self);
static void cancel_and_clear (GCancellable **cancellable);
static void fill_classes (CleaveComposePage *self);
static gboolean start_evaluation (CleaveComposePage *self, gboolean quiet);

static char *
module_title (const CleaveModuleRef *ref)
{
  const CleaveModule *m = cleave_module_ref_get_module (ref);

  if (!m)
    return g_strdup ("?");
  return m->class_name ? g_strdup (m->class_name) : g_strdup_printf (_("class %d"), m->class_index);
}

static void
toast (CleaveComposePage *self, const char *message)
{
  AdwToast *t = adw_toast_new (message);

  adw_toast_set_timeout (t, 5);
  adw_toast_overlay_add_toast (self->toasts, t);
}

static gboolean
patch_mode (CleaveComposePage *self)
{
  return g_strcmp0 (gtk_stack_get_visible_child_name (self->mode_stack), "patch") == 0;
}

static GArray *
current_recipe (CleaveComposePage *self)
{
  return patch_mode (self) ? self->patches : self->composed;
}

static void
update_actions (CleaveComposePage *self)
{
  GtkWidget *w = GTK_WIDGET (self);
  gboolean selected, patch, evaluable, any_suggestion = FALSE;

  if (self->disposed)
    return;
  selected = cleave_module_palette_get_selected (self->palette) != NULL;
  patch = patch_mode (self);
  evaluable = patch ? self->weak != NULL : self->composed->len > 0;
  for (guint c = 0; self->suggestions && c < self->suggestions->len; c++)
    any_suggestion |= self->suggestions->pdata[c] != NULL && cleave_recipe_find_target (self->patches, c) < 0;

  gtk_widget_action_set_enabled (w, "compose.add", selected);
  gtk_widget_action_set_enabled (w, "compose.patch", selected && self->weak != NULL);
  gtk_widget_action_set_enabled (w, "compose.evaluate", evaluable);
  gtk_widget_action_set_enabled (w, "compose.try", evaluable);
  gtk_widget_action_set_enabled (w, "compose.try-random", evaluable);
  gtk_widget_action_set_enabled (w, "compose.export", evaluable && (!patch || self->patches->len > 0));
  gtk_widget_action_set_enabled (w, "compose.use-model",
                                 self->workspace && cleave_workspace_get_model (self->workspace));
  gtk_widget_action_set_enabled (w, "compose.undo", self->undo->len > 0);
  gtk_widget_action_set_enabled (w, "compose.apply-suggestions", any_suggestion);
  gtk_widget_action_set_enabled (w, "compose.remove",
                                 patch ? gtk_list_box_get_selected_row (self->class_list) != NULL
                                       : gtk_list_box_get_selected_row (self->composition_list) != NULL);
}

/* ---- results out of date ------------------------------------------------ */

static gboolean
reevaluate_cb (gpointer data)
{
  CleaveComposePage *self = data;

  self->reevaluate_id = 0;
  start_evaluation (self, TRUE);
  return G_SOURCE_REMOVE;
}

/* The inputs of the shown results changed: say so at once, and evaluate
 * again once they settle. */
static void
inputs_changed (CleaveComposePage *self)
{
  if (self->disposed)
    return;
  update_actions (self);
  if (!self->has_result)
    return;
  self->stale = TRUE;
  gtk_widget_add_css_class (GTK_WIDGET (self->headline_label), "dim-label");
  gtk_label_set_label (self->detail_label, _("Out of date: the inputs changed. Re-evaluating…"));
  gtk_widget_set_visible (GTK_WIDGET (self->detail_label), TRUE);
  g_clear_handle_id (&self->reevaluate_id, g_source_remove);
  self->reevaluate_id = g_timeout_add (REEVALUATE_DELAY_MS, reevaluate_cb, self);
}

gboolean
cleave_compose_page_is_stale (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  return self->stale;
}

const char *
cleave_compose_page_get_headline (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NULL);
  return self->headline;
}

/* ---- changes and undo ------------------------------------------------------ */

static void
snapshot_free (Snapshot *s)
{
  g_array_unref (s->composed);
  g_array_unref (s->patches);
  g_free (s);
}

static Snapshot *
snapshot_take (CleaveComposePage *self)
{
  Snapshot *s = g_new (Snapshot, 1);

  s->composed = cleave_recipe_copy (self->composed);
  s->patches = cleave_recipe_copy (self->patches);
  return s;
}

static void
refill (CleaveComposePage *self)
{
  fill_composition (self);
  fill_classes (self);
  inputs_changed (self);
}

/* A change was made after @before was taken: keep it for undo and tell
 * the user, with a way back. */
static void
changed (CleaveComposePage *self, Snapshot *before, const char *message)
{
  AdwToast *t;

  g_ptr_array_add (self->undo, before);
  refill (self);
  /* One toast at a time: while the last change's is up, it now tells of
   * this one (its Undo undoes the newest change either way). */
  if (self->undo_toast)
    {
      adw_toast_set_title (self->undo_toast, message);
      return;
    }
  t = adw_toast_new (message);
  g_set_weak_pointer (&self->undo_toast, t);
  adw_toast_set_button_label (t, _("_Undo"));
  adw_toast_set_action_name (t, "compose.undo");
  adw_toast_set_timeout (t, 6);
  adw_toast_overlay_add_toast (self->toasts, t);
}

gboolean
cleave_compose_page_undo (CleaveComposePage *self)
{
  Snapshot *s;

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  if (self->undo->len == 0)
    return FALSE;
  s = g_ptr_array_steal_index (self->undo, self->undo->len - 1);
  g_array_unref (self->composed);
  g_array_unref (self->patches);
  self->composed = g_steal_pointer (&s->composed);
  self->patches = g_steal_pointer (&s->patches);
  g_free (s);
  refill (self);
  return TRUE;
}

void
cleave_compose_page_set_recipe (CleaveComposePage *self, CleaveModel *weak, GArray *recipe)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_return_if_fail (recipe != NULL);
  if (weak)
    {
      cleave_compose_page_set_weak_model (self, weak);
      g_array_unref (self->patches);
      self->patches = recipe;
      cleave_compose_page_set_mode (self, "patch");
    }
  else
    {
      g_array_unref (self->composed);
      self->composed = recipe;
      cleave_compose_page_set_mode (self, "compose");
    }
  g_ptr_array_set_size (self->undo, 0);
  refill (self);
}

static void
undo_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_compose_page_undo (CLEAVE_COMPOSE_PAGE (widget));
}

/* ---- canvas: composition ------------------------------------------------------------ */

static void
on_remove_composed_clicked (GtkButton *button, CleaveComposePage *self)
{
  cleave_compose_page_remove_composed (self, GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (button), "index")));
}

static void
fill_composition (CleaveComposePage *self)
{
  GtkWidget *child;

  /* Rows only: the placeholder is a child too, and must stay. */
  while ((child = GTK_WIDGET (gtk_list_box_get_row_at_index (self->composition_list, 0))))
    gtk_list_box_remove (self->composition_list, child);
  for (guint i = 0; i < self->composed->len; i++)
    {
      const CleaveRecipeEntry *e = &g_array_index (self->composed, CleaveRecipeEntry, i);
      const CleaveModule *m = cleave_module_ref_get_module (&e->ref);
      g_autofree char *name = module_title (&e->ref);
      /* Translators: a composed class: its index in the new model and its name */
      g_autofree char *title = g_strdup_printf (_("Class %u: %s"), i, name);
      /* Translators: module class, module set, kernel retention rate */
      g_autofree char *subtitle = g_strdup_printf (_("Module for class %d of %s · KRR %.1f %%"),
                                                   m ? m->class_index : -1, cleave_open_set_get_name (e->ref.set),
                                                   m ? 100 * m->krr : NAN);
      GtkWidget *row = adw_action_row_new ();
      GtkWidget *remove = gtk_button_new_from_icon_name ("user-trash-symbolic");

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
      gtk_widget_set_valign (remove, GTK_ALIGN_CENTER);
      gtk_widget_add_css_class (remove, "flat");
      gtk_widget_set_tooltip_text (remove, _("Remove from the composition (Delete)"));
      g_object_set_data (G_OBJECT (remove), "index", GUINT_TO_POINTER (i));
      g_signal_connect (remove, "clicked", G_CALLBACK (on_remove_composed_clicked), self);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), remove);
      gtk_list_box_append (self->composition_list, row);
    }
  update_actions (self);
}

static gboolean
add_composed (CleaveComposePage *self, const CleaveModuleRef *ref, GError **error)
{
  g_autoptr(GArray) trial = NULL;
  g_autoptr(CleaveComposition) c = NULL;
  g_autofree char *name = NULL, *message = NULL;

  if (cleave_recipe_find_module (self->composed, ref) >= 0)
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                           _("This module is already in the composition"));
      return FALSE;
    }
  trial = cleave_recipe_copy (self->composed);
  cleave_recipe_append (trial, ref, -1);
  c = cleave_recipe_build_composition (trial, error);
  if (!c)
    return FALSE;
  {
    Snapshot *before = snapshot_take (self);

    g_array_unref (self->composed);
    self->composed = g_steal_pointer (&trial);
    name = module_title (ref);
    /* Translators: %s is a class name */
    message = g_strdup_printf (_("Added “%s” to the composition"), name);
    changed (self, before, message);
  }
  return TRUE;
}

void
cleave_compose_page_remove_composed (CleaveComposePage *self, guint index)
{
  Snapshot *before;
  g_autofree char *name = NULL, *message = NULL;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  if (index >= self->composed->len)
    return;
  before = snapshot_take (self);
  name = module_title (&g_array_index (self->composed, CleaveRecipeEntry, index).ref);
  g_array_remove_index (self->composed, index);
  /* Translators: %s is a class name */
  message = g_strdup_printf (_("Removed “%s” from the composition"), name);
  changed (self, before, message);
}

guint
cleave_compose_page_n_composed (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), 0);
  return self->composed->len;
}

/* ---- canvas: patching ------------------------------------------------------------------ */

static gboolean on_class_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self);
static gboolean add_patch (CleaveComposePage *self, const CleaveModuleRef *ref, int target, GError **error);

static void
on_unpatch_clicked (GtkButton *button, CleaveComposePage *self)
{
  cleave_compose_page_unpatch (self, GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "class")));
}

static void
on_apply_suggestion_clicked (GtkButton *button, CleaveComposePage *self)
{
  int c = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "class"));
  const CleaveModuleRef *ref = cleave_compose_page_suggestion (self, c);
  g_autoptr(GError) error = NULL;

  if (ref && !add_patch (self, ref, c, &error))
    toast (self, error->message);
}

double
cleave_compose_page_weak_f1 (CleaveComposePage *self, int c)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NAN);
  return self->weak_metrics && c >= 0 && c < self->weak_metrics->n_classes ? self->weak_metrics->f1[c] : NAN;
}

gboolean
cleave_compose_page_is_weak_class (CleaveComposePage *self, int c)
{
  double f1 = cleave_compose_page_weak_f1 (self, c);

  return isfinite (f1) && f1 < self->weak_metrics->macro_f1 - WEAK_MARGIN;
}

const CleaveModuleRef *
cleave_compose_page_suggestion (CleaveComposePage *self, int c)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NULL);
  return self->suggestions && c >= 0 && (guint) c < self->suggestions->len ? self->suggestions->pdata[c] : NULL;
}

/* For each weak class, the module of that class (same name, else same
 * index) with the best validation F1 among the open sets. */
static void
update_suggestions (CleaveComposePage *self)
{
  g_clear_pointer (&self->suggestions, g_ptr_array_unref);
  if (!self->weak || !self->weak_metrics || !self->workspace)
    return;
  self->suggestions = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_module_ref_free);
  for (int c = 0; c < self->weak->n_classes; c++)
    {
      const char *cname = self->weak->class_names ? self->weak->class_names[c] : NULL;
      CleaveModuleRef *best = NULL;
      double best_f1 = -1;

      for (guint s = 0; cleave_compose_page_is_weak_class (self, c) && s < cleave_workspace_n_sets (self->workspace); s++)
        {
          CleaveOpenSet *item = cleave_workspace_get_set (self->workspace, s);

          for (guint k = 0; k < cleave_open_set_get_set (item)->modules->len; k++)
            {
              const CleaveModule *m = cleave_open_set_get_module (item, k);
              gboolean same = cname && m->class_name ? g_strcmp0 (cname, m->class_name) == 0 : m->class_index == c;

              if (same && isfinite (m->val_f1) && m->val_f1 > best_f1 && m->score_max > m->score_min)
                {
                  cleave_module_ref_free (best);
                  best = cleave_module_ref_new (item, k);
                  best_f1 = m->val_f1;
                }
            }
        }
      g_ptr_array_add (self->suggestions, best);
    }
}

static char *
class_subtitle (CleaveComposePage *self, int c, const CleaveRecipeEntry *e)
{
  double f1 = cleave_compose_page_weak_f1 (self, c);
  const CleaveModuleRef *suggestion = cleave_compose_page_suggestion (self, c);
  g_autofree char *score = isfinite (f1) ? g_strdup_printf (_("Test F1 %.1f %%"), 100 * f1)
                                         : g_strdup (self->weak_eval_cancellable ? _("Evaluating…") : _("Not evaluated"));
  g_autofree char *mod = NULL;

  if (e)
    {
      mod = module_title (&e->ref);
      /* Translators: a patched class: its F1, the module's class name and its module set */
      return g_strdup_printf (_("%s · patched with the module for %s from %s"), score, mod,
                              cleave_open_set_get_name (e->ref.set));
    }
  if (suggestion)
    {
      mod = module_title (suggestion);
      /* Translators: a weak class: its F1, then the suggested module, its set and its validation F1 */
      return g_strdup_printf (_("%s · weak · suggested: %s from %s (validation F1 %.1f %%)"), score, mod,
                              cleave_open_set_get_name (suggestion->set),
                              100 * cleave_module_ref_get_module (suggestion)->val_f1);
    }
  if (cleave_compose_page_is_weak_class (self, c))
    /* Translators: a weak class for which no open module set has a module */
    return g_strdup_printf (_("%s · weak · no open module for this class"), score);
  return g_steal_pointer (&score);
}

static GtkWidget *
suffix_button (CleaveComposePage *self, const char *icon, const char *label, const char *tooltip, int c,
               GCallback callback)
{
  GtkWidget *button = icon ? gtk_button_new_from_icon_name (icon) : gtk_button_new_with_mnemonic (label);

  gtk_widget_set_valign (button, GTK_ALIGN_CENTER);
  gtk_widget_add_css_class (button, "flat");
  gtk_widget_set_tooltip_text (button, tooltip);
  g_object_set_data (G_OBJECT (button), "class", GINT_TO_POINTER (c));
  g_signal_connect (button, "clicked", callback, self);
  return button;
}

static void
fill_classes (CleaveComposePage *self)
{
  GtkWidget *child;

  /* Rows only: the placeholder is a child too, and must stay. */
  while ((child = GTK_WIDGET (gtk_list_box_get_row_at_index (self->class_list, 0))))
    gtk_list_box_remove (self->class_list, child);
  if (!self->weak)
    {
      gtk_label_set_label (self->weak_label, _("No weak model"));
      update_actions (self);
      return;
    }
  {
    g_autofree char *base = self->weak->path ? g_path_get_basename (self->weak->path) : g_strdup (_("model"));
    g_autofree char *text = self->weak_metrics
      /* Translators: model file name, its test accuracy and macro F1 */
      ? g_strdup_printf (_("Weak model: %s · test accuracy %.1f %%, macro F1 %.1f %%"), base,
                         100 * self->weak_metrics->accuracy, 100 * self->weak_metrics->macro_f1)
      /* Translators: %s is a model file name */
      : g_strdup_printf (_("Weak model: %s"), base);

    gtk_label_set_label (self->weak_label, text);
  }
  for (int c = 0; c < self->weak->n_classes; c++)
    {
      int i = cleave_recipe_find_target (self->patches, c);
      const CleaveRecipeEntry *e = i >= 0 ? &g_array_index (self->patches, CleaveRecipeEntry, i) : NULL;
      const char *cname = self->weak->class_names ? self->weak->class_names[c] : NULL;
      g_autofree char *title = cname ? g_strdup_printf ("%d · %s", c, cname) : g_strdup_printf ("%d", c);
      g_autofree char *subtitle = class_subtitle (self, c, e);
      GtkWidget *row = adw_action_row_new ();
      GtkDropTarget *drop = gtk_drop_target_new (CLEAVE_TYPE_MODULE_REF, GDK_ACTION_COPY);

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
      if (e)
        {
          gtk_widget_add_css_class (row, "patched-class");
          adw_action_row_add_suffix (ADW_ACTION_ROW (row),
                                     suffix_button (self, "edit-undo-symbolic", NULL, _("Remove the patch (Delete)"), c,
                                                    G_CALLBACK (on_unpatch_clicked)));
        }
      else if (cleave_compose_page_is_weak_class (self, c))
        {
          gtk_widget_add_css_class (row, "weak-class");
          if (cleave_compose_page_suggestion (self, c))
            adw_action_row_add_suffix (ADW_ACTION_ROW (row),
                                       suffix_button (self, NULL, _("_Apply"), _("Patch this class with the suggested module"),
                                                      c, G_CALLBACK (on_apply_suggestion_clicked)));
        }
      g_object_set_data (G_OBJECT (row), "class", GINT_TO_POINTER (c));
      g_object_set_data (G_OBJECT (drop), "class", GINT_TO_POINTER (c));
      g_signal_connect (drop, "drop", G_CALLBACK (on_class_drop), self);
      gtk_widget_add_controller (row, GTK_EVENT_CONTROLLER (drop));
      gtk_list_box_append (self->class_list, row);
    }
  update_actions (self);
}

/* @trial replaces the patches when the core accepts it. */
static gboolean
try_patches (CleaveComposePage *self, GArray *trial, const char *message, GError **error)
{
  g_autoptr(CleavePatched) p = cleave_recipe_build_patched (self->weak, trial, error);
  Snapshot *before;

  if (!p)
    return FALSE;
  before = snapshot_take (self);
  g_array_unref (self->patches);
  self->patches = g_array_ref (trial);
  changed (self, before, message);
  return TRUE;
}

static gboolean
add_patch (CleaveComposePage *self, const CleaveModuleRef *ref, int target, GError **error)
{
  g_autoptr(GArray) trial = cleave_recipe_copy (self->patches);
  int old = cleave_recipe_find_target (trial, target);
  g_autofree char *name = module_title (ref);
  g_autofree char *message = NULL;

  /* A drop on a patched class replaces its patch. */
  if (old >= 0)
    g_array_remove_index (trial, old);
  cleave_recipe_append (trial, ref, target);
  /* Translators: patched weak class number with the module of class %s */
  message = g_strdup_printf (_("Patched class %d with the module for “%s”"), target, name);
  return try_patches (self, trial, message, error);
}

guint
cleave_compose_page_apply_suggestions (CleaveComposePage *self)
{
  g_autoptr(GArray) trial = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *message = NULL;
  guint n = 0;

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), 0);
  trial = cleave_recipe_copy (self->patches);
  for (guint c = 0; self->suggestions && c < self->suggestions->len; c++)
    if (self->suggestions->pdata[c] && cleave_recipe_find_target (trial, (int) c) < 0)
      {
        cleave_recipe_append (trial, self->suggestions->pdata[c], (int) c);
        n++;
      }
  if (n == 0)
    return 0;
  /* Translators: number of weak classes patched at once */
  message = g_strdup_printf (g_dngettext (NULL, "Patched %u weak class", "Patched %u weak classes", n), n);
  if (!try_patches (self, trial, message, &error))
    {
      toast (self, error->message);
      return 0;
    }
  return n;
}

static void
apply_suggestions_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);

  cleave_compose_page_set_mode (self, "patch");
  cleave_compose_page_apply_suggestions (self);
}

void
cleave_compose_page_unpatch (CleaveComposePage *self, int target_class)
{
  int i;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  i = cleave_recipe_find_target (self->patches, target_class);
  if (i >= 0)
    {
      Snapshot *before = snapshot_take (self);
      g_autofree char *message = NULL;

      g_array_remove_index (self->patches, i);
      /* Translators: %d is a class number */
      message = g_strdup_printf (_("Removed the patch of class %d"), target_class);
      changed (self, before, message);
    }
}

guint
cleave_compose_page_n_patched (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), 0);
  return self->patches->len;
}

/* ---- the weak model ------------------------------------------------------------------------- */

static void
weak_eval_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (source);
  g_autoptr(GError) error = NULL;
  CleaveComposeEval *job = cleave_compose_eval_finish (result, &error);

  if (self->disposed || g_task_get_cancellable (G_TASK (result)) != self->weak_eval_cancellable)
    return;     /* gone, or a newer weak model replaced this one */
  g_clear_object (&self->weak_eval_cancellable);
  if (job)
    {
      self->weak_metrics = g_steal_pointer (&job->after);
      update_suggestions (self);
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    toast (self, error->message);
  fill_classes (self);
  g_signal_emit (self, signals[SIGNAL_WEAK_EVALUATED], 0, job != NULL);
}

static void
evaluate_weak (CleaveComposePage *self)
{
  CleaveComposeEval *job;
  g_autofree char *device = NULL;

  if (self->weak_eval_cancellable)
    g_cancellable_cancel (self->weak_eval_cancellable);
  g_clear_object (&self->weak_eval_cancellable);
  g_clear_pointer (&self->weak_metrics, cleave_metrics_free);
  g_clear_pointer (&self->suggestions, g_ptr_array_unref);
  if (!self->weak)
    return;
  device = self->settings ? g_settings_get_string (self->settings, "device") : g_strdup ("auto");
  job = cleave_compose_eval_new (CLEAVE_COMPOSE_EVAL_MODEL, cleave_dataset_row_get_spec (self->dataset_row), device);
  job->weak = cleave_model_copy (self->weak);
  self->weak_eval_cancellable = g_cancellable_new ();
  cleave_compose_eval_run_async (job, self, self->weak_eval_cancellable, weak_eval_done, NULL);
}

void
cleave_compose_page_set_weak_model (CleaveComposePage *self, CleaveModel *model)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_clear_pointer (&self->weak, cleave_model_free);
  self->weak = model;
  g_array_set_size (self->patches, 0);
  /* Undo steps refer to the old model's classes. */
  g_ptr_array_set_size (self->undo, 0);
  evaluate_weak (self);
  fill_classes (self);
  inputs_changed (self);
}

static void
weak_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  CleaveModel *model = cleave_file_load_model (task_data, &error);

  if (model)
    g_task_return_pointer (task, model, (GDestroyNotify) cleave_model_free);
  else
    g_task_return_error (task, error);
}

static void
weak_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (source);
  g_autoptr(GError) error = NULL;
  CleaveModel *model = g_task_propagate_pointer (G_TASK (result), &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->disposed)
    {
      cleave_model_free (model);
      return;
    }
  g_clear_object (&self->weak_cancellable);
  if (model)
    {
      cleave_compose_page_set_weak_model (self, model);
      cleave_compose_page_set_mode (self, "patch");
    }
  else
    cleave_gui_show_error_details (GTK_WIDGET (self), _("Could Not Open the Weak Model"),
                                   cleave_gui_file_error_text (error), error->message);
  g_signal_emit (self, signals[SIGNAL_WEAK_LOADED], 0, model != NULL);
}

void
cleave_compose_page_open_weak_model (CleaveComposePage *self, GFile *file)
{
  g_autoptr(GTask) task = NULL;
  char *path;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  path = g_file_get_path (file);
  if (!path)
    {
      cleave_gui_show_error (GTK_WIDGET (self), _("Could Not Open the Weak Model"), _("Only local files can be opened"));
      return;
    }
  if (self->weak_cancellable)
    g_cancellable_cancel (self->weak_cancellable);
  g_clear_object (&self->weak_cancellable);
  self->weak_cancellable = g_cancellable_new ();
  task = g_task_new (self, self->weak_cancellable, weak_done, NULL);
  g_task_set_source_tag (task, cleave_compose_page_open_weak_model);
  g_task_set_task_data (task, path, g_free);
  g_task_run_in_thread (task, weak_thread);
}

/* ---- drops (and everything that does what a drop does) ------------------------------------ */

gboolean
cleave_compose_page_drop_module (CleaveComposePage *self, const GValue *value, int target_class, GError **error)
{
  const CleaveModuleRef *ref;

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  if (!G_VALUE_HOLDS (value, CLEAVE_TYPE_MODULE_REF) || !(ref = g_value_get_boxed (value)))
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("Not a module"));
      return FALSE;
    }
  if (!cleave_module_ref_get_module (ref) || !cleave_workspace_is_open (self->workspace, ref->set))
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("The module is not open"));
      return FALSE;
    }
  return target_class < 0 ? add_composed (self, ref, error) : add_patch (self, ref, target_class, error);
}

static gboolean
with_ref (CleaveComposePage *self, const CleaveModuleRef *ref, int target_class)
{
  GValue value = G_VALUE_INIT;
  g_autoptr(GError) error = NULL;
  gboolean ok;

  g_value_init (&value, CLEAVE_TYPE_MODULE_REF);
  g_value_set_boxed (&value, ref);
  ok = cleave_compose_page_drop_module (self, &value, target_class, &error);
  g_value_unset (&value);
  if (!ok)
    toast (self, error->message);
  return ok;
}

static gboolean
on_canvas_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self)
{
  return with_ref (self, g_value_get_boxed (value), -1);
}

static gboolean
on_class_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self)
{
  return with_ref (self, g_value_get_boxed (value), GPOINTER_TO_INT (g_object_get_data (G_OBJECT (target), "class")));
}

static gboolean
on_file_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self)
{
  g_autoptr(GFile) file = cleave_gui_dropped_file (value);

  if (!file)
    return FALSE;
  cleave_compose_page_open_weak_model (self, file);
  return TRUE;
}

static void
add_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  const CleaveModuleRef *ref = cleave_module_palette_get_selected (self->palette);

  if (!ref)
    return;
  cleave_compose_page_set_mode (self, "compose");
  with_ref (self, ref, -1);
}

static void
patch_with (CleaveComposePage *self, const CleaveModuleRef *ref)
{
  GtkListBoxRow *row = gtk_list_box_get_selected_row (self->class_list);
  const CleaveModule *m = cleave_module_ref_get_module (ref);

  if (!m)
    return;
  /* The selected weak class, else the module's own class. */
  cleave_compose_page_set_mode (self, "patch");
  with_ref (self, ref, row ? GPOINTER_TO_INT (g_object_get_data (G_OBJECT (row), "class")) : m->class_index);
}

static void
patch_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  const CleaveModuleRef *ref = cleave_module_palette_get_selected (self->palette);

  if (ref)
    patch_with (self, ref);
}

/* Double-click or Enter on a palette row. */
static void
on_module_activated (CleaveComposePage *self, const CleaveModuleRef *ref)
{
  if (patch_mode (self) && self->weak)
    patch_with (self, ref);
  else
    with_ref (self, ref, -1);
}

static void
remove_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  GtkListBoxRow *row;

  if (patch_mode (self))
    {
      row = gtk_list_box_get_selected_row (self->class_list);
      if (row)
        cleave_compose_page_unpatch (self, GPOINTER_TO_INT (g_object_get_data (G_OBJECT (row), "class")));
    }
  else
    {
      row = gtk_list_box_get_selected_row (self->composition_list);
      if (row)
        cleave_compose_page_remove_composed (self, gtk_list_box_row_get_index (row));
    }
}

static void
use_model_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  CleaveModel *model = self->workspace ? cleave_workspace_get_model (self->workspace) : NULL;

  if (!model)
    return;
  cleave_compose_page_set_weak_model (self, cleave_model_copy (model));
  cleave_compose_page_set_mode (self, "patch");
}

void
cleave_compose_page_set_mode (CleaveComposePage *self, const char *mode)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  gtk_stack_set_visible_child_name (self->mode_stack, g_strcmp0 (mode, "patch") == 0 ? "patch" : "compose");
}

const char *
cleave_compose_page_get_mode (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NULL);
  return patch_mode (self) ? "patch" : "compose";
}

static void
on_mode_changed (CleaveComposePage *self)
{
  inputs_changed (self);
}

CleaveModulePalette *
cleave_compose_page_get_palette (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NULL);
  return self->palette;
}

/* ---- evaluation ------------------------------------------------------------------------------ */

static void
eval_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (source);
  g_autoptr(GError) error = NULL;
  CleaveComposeEval *job = cleave_compose_eval_finish (result, &error);

  if (self->disposed || g_task_get_cancellable (G_TASK (result)) != self->eval_cancellable)
    return;     /* gone, or replaced by a newer evaluation */
  g_clear_object (&self->eval_cancellable);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), FALSE);
  update_actions (self);
  if (job)
    {
      g_autofree gboolean *patched = g_new0 (gboolean, MAX (job->n_classes, 1));
      g_autofree char *headline = NULL;

      for (guint i = 0; job->kind == CLEAVE_COMPOSE_EVAL_PATCHED && i < self->patches->len; i++)
        {
          int c = g_array_index (self->patches, CleaveRecipeEntry, i).target;

          if (c >= 0 && c < job->n_classes)
            patched[c] = TRUE;
        }
      headline = cleave_compose_results_show (job, patched, self->compare_chart, self->before_chart, self->after_chart);
      g_free (self->headline);
      self->headline = g_steal_pointer (&headline);
      {
        /* Translators: headline of an evaluation: "Patched model: 61.9 % → 75.8 % (+13.9)" */
        g_autofree char *text = g_strdup_printf (job->kind == CLEAVE_COMPOSE_EVAL_PATCHED ? _("Patched model: %s")
                                                                                          : _("Composed model: %s"),
                                                 self->headline);

        gtk_label_set_label (self->headline_label, text);
      }
      gtk_widget_remove_css_class (GTK_WIDGET (self->headline_label), "dim-label");
      gtk_label_set_label (self->detail_label, job->before_text ? job->before_text : "");
      gtk_widget_set_visible (GTK_WIDGET (self->detail_label), job->before_text != NULL);
      gtk_widget_set_visible (self->compare_frame, TRUE);
      gtk_widget_set_visible (self->matrices_box, TRUE);
      self->has_result = TRUE;
      self->stale = FALSE;
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      gtk_label_set_label (self->detail_label, error->message);
      gtk_widget_set_visible (GTK_WIDGET (self->detail_label), TRUE);
      cleave_gui_show_error_details (GTK_WIDGET (self), _("Evaluation Failed"),
                                     _("The evaluation stopped: the dataset could not be read, or the device failed."),
                                     error->message);
    }
  g_signal_emit (self, signals[SIGNAL_EVALUATED], 0, job != NULL);
}

/* Starts an evaluation of the current mode, replacing a running one.
 * @quiet: an automatic re-evaluation, which says nothing when there is
 * nothing to evaluate. */
static gboolean
start_evaluation (CleaveComposePage *self, gboolean quiet)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *device = NULL;
  gboolean patch = patch_mode (self);
  CleaveComposeEval *job;

  device = self->settings ? g_settings_get_string (self->settings, "device") : g_strdup ("auto");
  job = cleave_compose_eval_new (patch ? CLEAVE_COMPOSE_EVAL_PATCHED : CLEAVE_COMPOSE_EVAL_COMPOSITION,
                                 cleave_dataset_row_get_spec (self->dataset_row), device);
  if (patch && (job->patched = cleave_recipe_build_patched (self->weak, self->patches, &error)))
    job->weak = cleave_model_copy (self->weak);
  else if (!patch)
    job->composition = cleave_recipe_build_composition (self->composed, &error);
  if (error)
    {
      if (!quiet)
        cleave_gui_show_error (GTK_WIDGET (self), _("Evaluation Failed"), error->message);
      cleave_compose_eval_free (job);
      return FALSE;
    }
  g_clear_handle_id (&self->reevaluate_id, g_source_remove);
  if (self->eval_cancellable)
    g_cancellable_cancel (self->eval_cancellable);
  g_clear_object (&self->eval_cancellable);
  self->eval_cancellable = g_cancellable_new ();
  gtk_progress_bar_pulse (self->progress_bar);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  if (!self->has_result)
    gtk_label_set_label (self->headline_label, _("Evaluating…"));
  cleave_compose_eval_run_async (job, self, self->eval_cancellable, eval_done, NULL);
  return TRUE;
}

void
cleave_compose_page_show_results (CleaveComposePage *self)
{
  GtkAdjustment *adj;
  graphene_point_t p;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  adj = gtk_scrolled_window_get_vadjustment (self->scroller);
  if (gtk_widget_compute_point (GTK_WIDGET (self->headline_label), gtk_scrolled_window_get_child (self->scroller),
                                &GRAPHENE_POINT_INIT (0, 0), &p))
    gtk_adjustment_set_value (adj, p.y - 12);
}

gboolean
cleave_compose_page_evaluate (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  return start_evaluation (self, FALSE);
}

static void
evaluate_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_compose_page_evaluate (CLEAVE_COMPOSE_PAGE (widget));
}

/* ---- try an image ------------------------------------------------------------------------------ */

static int
argmax (const double *v, int n)
{
  int best = 0;

  for (int c = 1; c < n; c++)
    if (v[c] > v[best])
      best = c;
  return best;
}

static void
show_try (CleaveComposePage *self, const CleaveTryImage *job)
{
  const char *const *names = (const char *const *) job->class_names;
  const char *const patch_series[] = { _("weak model"), _("patched model"), NULL };
  const char *const compose_series[] = { _("module score"), NULL };
  g_autofree double *values = g_new (double, (gsize) job->n_classes * 2);
  int n_series = job->before ? 2 : 1, a = argmax (job->after, job->n_classes);
  g_autofree char *text = NULL;

  for (int c = 0; c < job->n_classes; c++)
    {
      values[c * n_series] = job->before ? job->before[c] : job->after[c];
      /* A patched class's value is its module's calibrated score, which
       * leaves 0–1 for images outside the module's validation range. */
      if (job->before)
        values[c * n_series + 1] = CLAMP (job->after[c], 0.0, 1.0);
    }
  if (job->before)
    {
      int b = argmax (job->before, job->n_classes);

      /* Translators: test image number, its true class, the weak and patched models' answers with probabilities */
      text = g_strdup_printf (_("Test image %d, a %s: the weak model says %s (%.0f %%), the patched model %s (%.0f %%)"),
                              job->image, job->true_class, names[b], 100 * job->before[b], names[a], 100 * job->after[a]);
    }
  else
    /* Translators: test image number, its true class, the class whose module claims it most and its score */
    text = g_strdup_printf (_("Test image %d, a %s: the module of %s claims it most strongly (score %.2f)"),
                            job->image, job->true_class, names[a], job->after[a]);
  gtk_label_set_label (self->try_label, text);
  gtk_widget_remove_css_class (GTK_WIDGET (self->try_label), "dim-label");
  gtk_picture_set_paintable (self->try_picture, GDK_PAINTABLE (job->texture));
  {
    CleaveBarChart chart = {
      .title = job->before ? _("Class probabilities before and after patching (patched classes: module score, clipped to 0–1)")
                           : _("Each module’s score for the image"),
      .categories = names,
      .n_categories = job->n_classes,
      .series_names = job->before ? patch_series : compose_series,
      .n_series = n_series,
      .values = values,
      .y_max = job->before ? 1.0 : 0,
    };
    cleave_chart_view_set_chart (self->try_chart, CLEAVE_CHART_BARS, &chart);
  }
}

static void
try_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (source);
  g_autoptr(GError) error = NULL;
  CleaveTryImage *job = cleave_try_image_finish (result, &error);

  if (self->disposed || g_task_get_cancellable (G_TASK (result)) != self->try_cancellable)
    return;
  g_clear_object (&self->try_cancellable);
  if (job)
    show_try (self, job);
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    gtk_label_set_label (self->try_label, error->message);
  g_signal_emit (self, signals[SIGNAL_TRIED], 0, job != NULL);
}

gboolean
cleave_compose_page_try_image (CleaveComposePage *self, int index)
{
  g_autoptr(GError) error = NULL;
  CleaveTryImage *job;

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  job = g_new0 (CleaveTryImage, 1);
  if (patch_mode (self) && (job->patched = cleave_recipe_build_patched (self->weak, self->patches, &error)))
    job->weak = cleave_model_copy (self->weak);
  else if (!patch_mode (self))
    job->composition = cleave_recipe_build_composition (self->composed, &error);
  if (error)
    {
      gtk_label_set_label (self->try_label, error->message);
      cleave_try_image_free (job);
      return FALSE;
    }
  job->index = index;
  job->dataset = g_strdup (cleave_dataset_row_get_spec (self->dataset_row));
  job->device = self->settings ? g_settings_get_string (self->settings, "device") : g_strdup ("auto");
  cancel_and_clear (&self->try_cancellable);
  self->try_cancellable = g_cancellable_new ();
  gtk_spin_button_set_value (self->try_spin, index);
  cleave_try_image_run_async (job, self, self->try_cancellable, try_done, NULL);
  return TRUE;
}

const char *
cleave_compose_page_get_try_text (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NULL);
  return gtk_label_get_label (self->try_label);
}

static void
try_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);

  cleave_compose_page_try_image (self, gtk_spin_button_get_value_as_int (self->try_spin));
}

static void
try_random_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_compose_page_try_image (CLEAVE_COMPOSE_PAGE (widget), g_random_int_range (0, 1000000));
}

/* ---- export ------------------------------------------------------------------------------------ */

gboolean
cleave_compose_page_export (CleaveComposePage *self, const char *path, GError **error)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  if (patch_mode (self) && !self->weak)
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                           _("Open a weak model first: drop a model file on the canvas"));
      return FALSE;
    }
  return cleave_recipe_export (patch_mode (self) ? self->weak : NULL, current_recipe (self), path, error);
}

static void
open_folder_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  g_autoptr(GFile) file = g_file_new_for_path (g_variant_get_string (param, NULL));
  g_autoptr(GFile) folder = g_file_get_parent (file);
  g_autofree char *uri = folder ? g_file_get_uri (folder) : NULL;
  g_autoptr(GError) error = NULL;

  if (uri && !g_app_info_launch_default_for_uri (uri, NULL, &error))
    toast (CLEAVE_COMPOSE_PAGE (widget), error->message);
}

static void
on_export_response (GtkNativeDialog *dialog, int response, CleaveComposePage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      g_autoptr(GError) error = NULL;

      if (path && !cleave_compose_page_export (self, path, &error))
        cleave_gui_show_error_details (GTK_WIDGET (self), _("Export Failed"),
                                       _("The file could not be written, or the model could not be built."),
                                       error->message);
      else if (path)
        {
          g_autofree char *base = g_path_get_basename (path);
          /* Translators: %s is the exported file's name */
          g_autofree char *message = g_strdup_printf (_("Exported %s"), base);
          AdwToast *t = adw_toast_new (message);

          adw_toast_set_button_label (t, _("Open _Folder"));
          adw_toast_set_detailed_action_name (t, NULL);
          adw_toast_set_action_name (t, "compose.open-folder");
          adw_toast_set_action_target_value (t, g_variant_new_string (path));
          adw_toast_overlay_add_toast (self->toasts, t);
        }
    }
  g_clear_object (&self->chooser);
}

static void
on_weak_chosen (GtkNativeDialog *dialog, int response, CleaveComposePage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));

      if (file)
        cleave_compose_page_open_weak_model (self, file);
    }
  g_clear_object (&self->chooser);
}

static GtkFileChooserNative *
new_chooser (CleaveComposePage *self, const char *title, GtkFileChooserAction action, const char *accept)
{
  GtkNative *native = gtk_widget_get_native (GTK_WIDGET (self));

  if (self->chooser || !GTK_IS_WINDOW (native))
    return NULL;
  self->chooser = gtk_file_chooser_native_new (title, GTK_WINDOW (native), action, accept, _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  return self->chooser;
}

static void
export_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  gboolean onnx = g_strcmp0 (g_variant_get_string (param, NULL), "onnx") == 0;
  GtkFileChooserNative *chooser = new_chooser (self, onnx ? _("Export as ONNX") : _("Export as a Cleave File"),
                                               GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"));
  g_autofree char *name = NULL;

  if (!chooser)
    return;
  /* Translators: default file names of exported compositions and patched models */
  name = g_strdup_printf ("%s.%s", patch_mode (self) ? _("patched") : _("composition"),
                          onnx ? "onnx" : patch_mode (self) ? "cleave-patched" : "cleave-composition");
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), name);
  g_signal_connect (chooser, "response", G_CALLBACK (on_export_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
open_weak_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  GtkFileChooserNative *chooser = new_chooser (self, _("Open Weak Model"), GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"));

  if (!chooser)
    return;
  g_signal_connect (chooser, "response", G_CALLBACK (on_weak_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* ---- dataset, settings, workspace ------------------------------------------------------------- */

void
cleave_compose_page_set_dataset (CleaveComposePage *self, const char *spec)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_return_if_fail (spec != NULL);
  cleave_dataset_row_set_spec (self->dataset_row, spec);
}

static void
on_dataset_changed (CleaveComposePage *self)
{
  if (self->disposed)
    return;
  if (self->weak)
    {
      evaluate_weak (self);
      fill_classes (self);
    }
  inputs_changed (self);
}

void
cleave_compose_page_set_settings (CleaveComposePage *self, GSettings *settings)
{
  g_autofree char *spec = NULL;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_set_object (&self->settings, settings);
  if (!settings)
    return;
  spec = g_settings_get_string (settings, "default-dataset");
  if (spec && *spec)
    cleave_compose_page_set_dataset (self, spec);
}

/* Closed sets leave the recipes (and the undo steps, which may refer to
 * them); new sets may hold better modules for the weak classes. */
static void
on_sets_changed (CleaveComposePage *self)
{
  gboolean dropped;

  if (self->disposed)
    return;
  dropped = cleave_recipe_drop_closed (self->composed, self->workspace);
  dropped |= cleave_recipe_drop_closed (self->patches, self->workspace);
  if (dropped)
    g_ptr_array_set_size (self->undo, 0);
  update_suggestions (self);
  fill_composition (self);
  fill_classes (self);
  if (dropped)
    inputs_changed (self);
}

static void
set_workspace (CleaveComposePage *self, CleaveWorkspace *workspace)
{
  if (self->workspace)
    {
      g_signal_handlers_disconnect_by_data (self->workspace, self);
      g_signal_handlers_disconnect_by_data (cleave_workspace_get_sets (self->workspace), self);
    }
  g_set_object (&self->workspace, workspace);
  cleave_module_palette_set_workspace (self->palette, workspace);
  if (workspace)
    {
      g_signal_connect_object (workspace, "notify::model", G_CALLBACK (update_actions), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (cleave_workspace_get_sets (workspace), "items-changed", G_CALLBACK (on_sets_changed),
                               self, G_CONNECT_SWAPPED);
    }
  update_actions (self);
}

/* ---- life cycle ------------------------------------------------------------------------------------ */

static void
cleave_compose_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_WORKSPACE)
    g_value_set_object (value, CLEAVE_COMPOSE_PAGE (object)->workspace);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cleave_compose_page_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_WORKSPACE)
    set_workspace (CLEAVE_COMPOSE_PAGE (object), g_value_get_object (value));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cancel_and_clear (GCancellable **cancellable)
{
  if (*cancellable)
    g_cancellable_cancel (*cancellable);
  g_clear_object (cancellable);
}

static void
cleave_compose_page_dispose (GObject *object)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (object);

  /* Signals of the template's widgets may still arrive while it is torn
   * down: every handler checks this first. */
  self->disposed = TRUE;
  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  g_clear_handle_id (&self->reevaluate_id, g_source_remove);
  g_clear_weak_pointer (&self->undo_toast);
  cancel_and_clear (&self->eval_cancellable);
  cancel_and_clear (&self->weak_cancellable);
  cancel_and_clear (&self->weak_eval_cancellable);
  cancel_and_clear (&self->try_cancellable);
  if (self->workspace)
    {
      g_signal_handlers_disconnect_by_data (self->workspace, self);
      g_signal_handlers_disconnect_by_data (cleave_workspace_get_sets (self->workspace), self);
    }
  g_clear_object (&self->workspace);
  g_clear_object (&self->settings);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_COMPOSE_PAGE);
  G_OBJECT_CLASS (cleave_compose_page_parent_class)->dispose (object);
}

static void
cleave_compose_page_finalize (GObject *object)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (object);

  g_clear_pointer (&self->weak, cleave_model_free);
  g_clear_pointer (&self->weak_metrics, cleave_metrics_free);
  g_clear_pointer (&self->suggestions, g_ptr_array_unref);
  g_ptr_array_unref (self->undo);
  g_array_unref (self->composed);
  g_array_unref (self->patches);
  g_free (self->headline);
  G_OBJECT_CLASS (cleave_compose_page_parent_class)->finalize (object);
}

static void
install_actions (GtkWidgetClass *widget_class)
{
  gtk_widget_class_install_action (widget_class, "compose.add", NULL, add_action);
  gtk_widget_class_install_action (widget_class, "compose.patch", NULL, patch_action);
  gtk_widget_class_install_action (widget_class, "compose.remove", NULL, remove_action);
  gtk_widget_class_install_action (widget_class, "compose.undo", NULL, undo_action);
  gtk_widget_class_install_action (widget_class, "compose.apply-suggestions", NULL, apply_suggestions_action);
  gtk_widget_class_install_action (widget_class, "compose.use-model", NULL, use_model_action);
  gtk_widget_class_install_action (widget_class, "compose.open-weak", NULL, open_weak_action);
  gtk_widget_class_install_action (widget_class, "compose.evaluate", NULL, evaluate_action);
  gtk_widget_class_install_action (widget_class, "compose.export", "s", export_action);
  gtk_widget_class_install_action (widget_class, "compose.open-folder", "s", open_folder_action);
  gtk_widget_class_install_action (widget_class, "compose.try", NULL, try_action);
  gtk_widget_class_install_action (widget_class, "compose.try-random", NULL, try_random_action);
  /* Delete removes the selected composed class or patch. */
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Delete, 0, "compose.remove", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_KP_Delete, 0, "compose.remove", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_z, GDK_CONTROL_MASK, "compose.undo", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_e, GDK_CONTROL_MASK, "compose.evaluate", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_e, GDK_CONTROL_MASK | GDK_SHIFT_MASK,
                                       "compose.export", "s", "onnx");
}

static void
cleave_compose_page_class_init (CleaveComposePageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_compose_page_dispose;
  object_class->finalize = cleave_compose_page_finalize;
  object_class->get_property = cleave_compose_page_get_property;
  object_class->set_property = cleave_compose_page_set_property;
  props[PROP_WORKSPACE] = g_param_spec_object ("workspace", NULL, NULL, CLEAVE_TYPE_WORKSPACE,
                                               G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  g_type_ensure (CLEAVE_TYPE_DATASET_ROW);
  g_type_ensure (CLEAVE_TYPE_MODULE_PALETTE);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-compose-page.ui");
#define BIND(name) gtk_widget_class_bind_template_child (widget_class, CleaveComposePage, name)
  BIND (toasts);
  BIND (flap);
  BIND (palette);
  BIND (dataset_row);
  BIND (mode_stack);
  BIND (composition_list);
  BIND (weak_label);
  BIND (class_list);
  BIND (scroller);
  BIND (progress_bar);
  BIND (headline_label);
  BIND (detail_label);
  BIND (compare_frame);
  BIND (matrices_box);
  BIND (try_picture);
  BIND (try_spin);
  BIND (try_label);
  BIND (try_chart);
  BIND (compare_chart);
  BIND (before_chart);
  BIND (after_chart);
#undef BIND
  gtk_widget_class_bind_template_callback (widget_class, on_module_activated);
  gtk_widget_class_bind_template_callback (widget_class, update_actions);
  gtk_widget_class_bind_template_callback (widget_class, on_mode_changed);
  install_actions (widget_class);

  signals[SIGNAL_EVALUATED] =
    g_signal_new ("evaluated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  signals[SIGNAL_WEAK_LOADED] =
    g_signal_new ("weak-loaded", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  signals[SIGNAL_TRIED] =
    g_signal_new ("tried", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  signals[SIGNAL_WEAK_EVALUATED] =
    g_signal_new ("weak-evaluated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
cleave_compose_page_init (CleaveComposePage *self)
{
  GtkDropTarget *drop;

  self->composed = cleave_recipe_new ();
  self->patches = cleave_recipe_new ();
  self->undo = g_ptr_array_new_with_free_func ((GDestroyNotify) snapshot_free);
  gtk_widget_init_template (GTK_WIDGET (self));
  g_signal_connect_swapped (self->dataset_row, "notify::spec", G_CALLBACK (on_dataset_changed), self);

  drop = gtk_drop_target_new (CLEAVE_TYPE_MODULE_REF, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_canvas_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self->composition_list), GTK_EVENT_CONTROLLER (drop));

  /* A model file dropped anywhere on the canvas becomes the weak model. */
  drop = gtk_drop_target_new (GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_file_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self->mode_stack), GTK_EVENT_CONTROLLER (drop));

  update_actions (self);
}
