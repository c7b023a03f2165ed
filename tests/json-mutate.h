/* json-mutate.h: variants of a JSON document with one value replaced by a
 * value of another type, for tests that feed every field of a file's JSON
 * metadata the wrong type. A reader must answer each with a clean error (or
 * accept it), never with a json-glib critical: g_test_init makes criticals
 * fatal, so a getter called on the wrong node type fails the test. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <string.h>

typedef void (*JsonVariantFunc) (const char *json, gpointer user_data);

/* How many elements of each array are visited (long logs need not all be). */
static guint json_mutate_max_elements = 2;

/* @n rebuilt with the value at @path ("key" or "#index" steps) replaced by @repl. */
static JsonNode *
json_mutate_rebuild (JsonNode *n, char **path, JsonNode *repl)
{
  JsonNode *r;

  if (*path == NULL)
    return json_node_copy (repl);
  if (JSON_NODE_HOLDS_OBJECT (n))
    {
      JsonObject *o = json_node_get_object (n), *no = json_object_new ();
      GList *members = json_object_get_members (o);
      for (GList *l = members; l; l = l->next)
        {
          JsonNode *c = json_object_get_member (o, l->data);
          json_object_set_member (no, l->data, strcmp (l->data, path[0]) == 0
                                                   ? json_mutate_rebuild (c, path + 1, repl) : json_node_copy (c));
        }
      g_list_free (members);
      r = json_node_new (JSON_NODE_OBJECT);
      json_node_take_object (r, no);
      return r;
    }
  {
    JsonArray *a = json_node_get_array (n), *na = json_array_new ();
    guint at = (guint) atoi (path[0] + 1);
    for (guint i = 0; i < json_array_get_length (a); i++)
      {
        JsonNode *c = json_array_get_element (a, i);
        json_array_add_element (na, i == at ? json_mutate_rebuild (c, path + 1, repl) : json_node_copy (c));
      }
    r = json_node_new (JSON_NODE_ARRAY);
    json_node_take_array (r, na);
    return r;
  }
}

static void
json_mutate_at (JsonNode *root, GPtrArray *path, JsonVariantFunc f, gpointer user_data)
{
  static const char *const others[] = { "{}", "[]", "\"text\"", "-7", "1e300", "true", "null", "[[1]]", "{\"a\":{}}" };
  g_ptr_array_add (path, NULL);
  for (gsize k = 0; k < G_N_ELEMENTS (others); k++)
    {
      g_autoptr (JsonNode) repl = json_from_string (others[k], NULL);
      g_autoptr (JsonNode) variant = json_mutate_rebuild (root, (char **) path->pdata, repl);
      g_autofree char *text = json_to_string (variant, FALSE);
      f (text, user_data);
    }
  g_ptr_array_remove_index (path, path->len - 1);
}

/* Every value reachable from @n: each object member, the first
 * json_mutate_max_elements elements of each array, at any depth. */
static void
json_mutate_walk (JsonNode *root, JsonNode *n, GPtrArray *path, JsonVariantFunc f, gpointer user_data)
{
  if (JSON_NODE_HOLDS_OBJECT (n))
    {
      JsonObject *o = json_node_get_object (n);
      GList *members = json_object_get_members (o);
      for (GList *l = members; l; l = l->next)
        {
          g_ptr_array_add (path, g_strdup (l->data));
          json_mutate_at (root, path, f, user_data);
          json_mutate_walk (root, json_object_get_member (o, l->data), path, f, user_data);
          g_free (g_ptr_array_steal_index (path, path->len - 1));
        }
      g_list_free (members);
    }
  else if (JSON_NODE_HOLDS_ARRAY (n))
    {
      JsonArray *a = json_node_get_array (n);
      for (guint i = 0; i < MIN (json_mutate_max_elements, json_array_get_length (a)); i++)
        {
          g_ptr_array_add (path, g_strdup_printf ("#%u", i));
          json_mutate_at (root, path, f, user_data);
          json_mutate_walk (root, json_array_get_element (a, i), path, f, user_data);
          g_free (g_ptr_array_steal_index (path, path->len - 1));
        }
    }
}

/* Calls @f with every variant of @json (which must parse) that has one value
 * (the root included) replaced by each of several values of other types. */
static void
json_mutate_each (const char *json, JsonVariantFunc f, gpointer user_data)
{
  g_autoptr (JsonNode) root = json_from_string (json, NULL);
  g_autoptr (GPtrArray) path = g_ptr_array_new ();

  g_assert_nonnull (root);
  /* Documents without a root value: empty, or only white space. */
  f ("", user_data);
  f (" \n", user_data);
  json_mutate_at (root, path, f, user_data);
  json_mutate_walk (root, root, path, f, user_data);
}
