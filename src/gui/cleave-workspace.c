/* cleave-workspace.c: the open model and module sets of a window. */
#include <glib/gi18n.h>

#include "cleave-workspace.h"

/* ---- CleaveOpenSet ------------------------------------------------------ */

struct _CleaveOpenSet
{
  GObject parent_instance;

  CleaveModuleSet *set;
  char *name;
};

enum {
  SET_PROP_0,
  SET_PROP_NAME,
  SET_N_PROPS
};

static GParamSpec *set_props[SET_N_PROPS];

G_DEFINE_FINAL_TYPE (CleaveOpenSet, cleave_open_set, G_TYPE_OBJECT)

static void
cleave_open_set_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  CleaveOpenSet *self = CLEAVE_OPEN_SET (object);

  if (prop_id == SET_PROP_NAME)
    g_value_set_string (value, self->name);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cleave_open_set_finalize (GObject *object)
{
  CleaveOpenSet *self = CLEAVE_OPEN_SET (object);

  g_clear_pointer (&self->set, cleave_module_set_free);
  g_free (self->name);
  G_OBJECT_CLASS (cleave_open_set_parent_class)->finalize (object);
}

static void
cleave_open_set_class_init (CleaveOpenSetClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = cleave_open_set_get_property;
  object_class->finalize = cleave_open_set_finalize;
  set_props[SET_PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL,
                                                  G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, SET_N_PROPS, set_props);
}

static void
cleave_open_set_init (CleaveOpenSet *self)
{
}

CleaveModuleSet *
cleave_open_set_get_set (CleaveOpenSet *self)
{
  g_return_val_if_fail (CLEAVE_IS_OPEN_SET (self), NULL);
  return self->set;
}

const char *
cleave_open_set_get_name (CleaveOpenSet *self)
{
  g_return_val_if_fail (CLEAVE_IS_OPEN_SET (self), NULL);
  return self->name;
}

const CleaveModule *
cleave_open_set_get_module (CleaveOpenSet *self, guint index)
{
  g_return_val_if_fail (CLEAVE_IS_OPEN_SET (self), NULL);
  return index < self->set->modules->len ? g_ptr_array_index (self->set->modules, index) : NULL;
}

/* ---- CleaveWorkspace ------------------------------------------------------ */

struct _CleaveWorkspace
{
  GObject parent_instance;

  CleaveModel *model;
  GListStore *sets;
};

enum {
  PROP_0,
  PROP_MODEL,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (CleaveWorkspace, cleave_workspace, G_TYPE_OBJECT)

static void
cleave_workspace_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  CleaveWorkspace *self = CLEAVE_WORKSPACE (object);

  if (prop_id == PROP_MODEL)
    g_value_set_pointer (value, self->model);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cleave_workspace_dispose (GObject *object)
{
  CleaveWorkspace *self = CLEAVE_WORKSPACE (object);

  g_clear_object (&self->sets);
  G_OBJECT_CLASS (cleave_workspace_parent_class)->dispose (object);
}

static void
cleave_workspace_finalize (GObject *object)
{
  CleaveWorkspace *self = CLEAVE_WORKSPACE (object);

  g_clear_pointer (&self->model, cleave_model_free);
  G_OBJECT_CLASS (cleave_workspace_parent_class)->finalize (object);
}

static void
cleave_workspace_class_init (CleaveWorkspaceClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = cleave_workspace_get_property;
  object_class->dispose = cleave_workspace_dispose;
  object_class->finalize = cleave_workspace_finalize;
  props[PROP_MODEL] = g_param_spec_pointer ("model", NULL, NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
cleave_workspace_init (CleaveWorkspace *self)
{
  self->sets = g_list_store_new (CLEAVE_TYPE_OPEN_SET);
}

CleaveWorkspace *
cleave_workspace_new (void)
{
  return g_object_new (CLEAVE_TYPE_WORKSPACE, NULL);
}

CleaveModel *
cleave_workspace_get_model (CleaveWorkspace *self)
{
  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), NULL);
  return self->model;
}

void
cleave_workspace_set_model (CleaveWorkspace *self, CleaveModel *model)
{
  CleaveModel *old;

  g_return_if_fail (CLEAVE_IS_WORKSPACE (self));
  if (model == self->model)
    return;
  /* Listeners drop their borrowed pointer to the old model on the
   * notification, before it is freed. */
  old = self->model;
  self->model = model;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_MODEL]);
  cleave_model_free (old);
}

GListModel *
cleave_workspace_get_sets (CleaveWorkspace *self)
{
  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), NULL);
  return G_LIST_MODEL (self->sets);
}

guint
cleave_workspace_n_sets (CleaveWorkspace *self)
{
  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), 0);
  return g_list_model_get_n_items (G_LIST_MODEL (self->sets));
}

CleaveOpenSet *
cleave_workspace_get_set (CleaveWorkspace *self, guint index)
{
  g_autoptr(CleaveOpenSet) item = NULL;

  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), NULL);
  item = g_list_model_get_item (G_LIST_MODEL (self->sets), index);
  /* The store keeps its own reference. */
  return item;
}

CleaveOpenSet *
cleave_workspace_add_set (CleaveWorkspace *self, CleaveModuleSet *set, const char *name)
{
  g_autoptr(CleaveOpenSet) item = NULL;

  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), NULL);
  g_return_val_if_fail (set != NULL, NULL);
  item = g_object_new (CLEAVE_TYPE_OPEN_SET, NULL);
  item->set = set;
  item->name = g_strdup (name ? name : _("Module set"));
  g_list_store_append (self->sets, item);
  return item;
}

gboolean
cleave_workspace_is_open (CleaveWorkspace *self, CleaveOpenSet *item)
{
  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), FALSE);
  return item && g_list_store_find (self->sets, item, NULL);
}

gboolean
cleave_workspace_close_set (CleaveWorkspace *self, CleaveOpenSet *item)
{
  guint pos;

  g_return_val_if_fail (CLEAVE_IS_WORKSPACE (self), FALSE);
  g_return_val_if_fail (CLEAVE_IS_OPEN_SET (item), FALSE);
  if (!g_list_store_find (self->sets, item, &pos))
    return FALSE;
  g_list_store_remove (self->sets, pos);
  return TRUE;
}

/* ---- CleaveModuleRef -------------------------------------------------------- */

CleaveModuleRef *
cleave_module_ref_new (CleaveOpenSet *set, guint module_index)
{
  CleaveModuleRef *ref = g_new (CleaveModuleRef, 1);

  g_return_val_if_fail (CLEAVE_IS_OPEN_SET (set), NULL);
  ref->set = g_object_ref (set);
  ref->module_index = module_index;
  return ref;
}

CleaveModuleRef *
cleave_module_ref_copy (const CleaveModuleRef *ref)
{
  return cleave_module_ref_new (ref->set, ref->module_index);
}

void
cleave_module_ref_free (CleaveModuleRef *ref)
{
  if (!ref)
    return;
  g_object_unref (ref->set);
  g_free (ref);
}

const CleaveModule *
cleave_module_ref_get_module (const CleaveModuleRef *ref)
{
  return ref && ref->set ? cleave_open_set_get_module (ref->set, ref->module_index) : NULL;
}

gboolean
cleave_module_ref_equal (const CleaveModuleRef *a, const CleaveModuleRef *b)
{
  return a->set == b->set && a->module_index == b->module_index;
}

G_DEFINE_BOXED_TYPE (CleaveModuleRef, cleave_module_ref, cleave_module_ref_copy, cleave_module_ref_free)
