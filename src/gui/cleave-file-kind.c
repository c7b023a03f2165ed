/* cleave-file-kind.c: content sniffing for the files the app opens.
 *
 * safetensors: an 8-byte little-endian header length, then that many bytes
 * of JSON starting with '{'; Cleave files name their format in the
 * header's "__metadata__" / "cleave.format". ONNX: a protobuf ModelProto,
 * whose first field is ir_version (field 1, varint: tag byte 0x08). */
#include <glib/gi18n.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "cleave-file-kind.h"
#include "cleave-compose.h"
#include "cleave-error.h"
#include "cleave-onnx.h"

/* A larger header is not one Cleave wrote. */
#define MAX_HEADER (64u << 20)

static gboolean
safetensors_format (GInputStream *in, guint64 header_len, const char *path, CleaveFileKind *kind, GError **error)
{
  g_autofree char *header = g_malloc (header_len + 1);
  gsize got = 0;
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonNode *root;
  JsonObject *meta;
  const char *format;

  if (!g_input_stream_read_all (in, header, header_len, &got, NULL, error))
    return FALSE;
  if (got != header_len)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   _("%s: the safetensors header is cut short (%" G_GSIZE_FORMAT " of %" G_GUINT64_FORMAT " bytes)"),
                   path, got, header_len);
      return FALSE;
    }
  header[header_len] = '\0';
  if (!json_parser_load_from_data (parser, header, (gssize) header_len, error))
    {
      g_prefix_error (error, _("%s: the safetensors header is not JSON: "), path);
      return FALSE;
    }
  root = json_parser_get_root (parser);
  meta = JSON_NODE_HOLDS_OBJECT (root) && json_object_has_member (json_node_get_object (root), "__metadata__")
    ? json_object_get_object_member (json_node_get_object (root), "__metadata__") : NULL;
  format = meta ? json_object_get_string_member_with_default (meta, "cleave.format", NULL) : NULL;
  if (g_strcmp0 (format, "cleave-modules/1") == 0)
    *kind = CLEAVE_FILE_MODULE_SET;
  else if (g_strcmp0 (format, CLEAVE_COMPOSITION_FORMAT) == 0)
    *kind = CLEAVE_FILE_COMPOSITION;
  else if (g_strcmp0 (format, CLEAVE_PATCHED_FORMAT) == 0)
    *kind = CLEAVE_FILE_PATCHED;
  else if (!format && !(meta && json_object_has_member (meta, "cleave.graph")))
    *kind = CLEAVE_FILE_STATE_DICT;
  else
    *kind = CLEAVE_FILE_MODEL;     /* the model loader judges the rest */
  return TRUE;
}

gboolean
cleave_file_kind_detect (const char *path, CleaveFileKind *kind, GError **error)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GFileInputStream) in = g_file_read (file, NULL, error);
  g_autoptr(GFileInfo) info = NULL;
  guint8 head[9];
  gsize got = 0;
  guint64 header_len = 0, size;

  if (!in)
    return FALSE;
  info = g_file_input_stream_query_info (in, G_FILE_ATTRIBUTE_STANDARD_SIZE, NULL, error);
  if (!info || !g_input_stream_read_all (G_INPUT_STREAM (in), head, sizeof head, &got, NULL, error))
    return FALSE;
  size = (guint64) g_file_info_get_size (info);
  for (int i = 7; i >= 0 && got >= 8; i--)
    header_len = (header_len << 8) | head[i];
  if (got == sizeof head && head[8] == '{' && header_len >= 2 && size >= 8 && header_len <= size - 8 && header_len <= MAX_HEADER)
    {
      /* The '{' was read already: put it back in front of the rest. */
      g_autoptr(GSeekable) seek = G_SEEKABLE (g_object_ref (in));

      if (!g_seekable_seek (seek, 8, G_SEEK_SET, NULL, error))
        return FALSE;
      return safetensors_format (G_INPUT_STREAM (in), header_len, path, kind, error);
    }
  if (got > 0 && head[0] == 0x08)
    {
      *kind = CLEAVE_FILE_ONNX;
      return TRUE;
    }
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
               _("%s is neither a safetensors file nor an ONNX model (it starts with bytes that are neither)"), path);
  return FALSE;
}

CleaveModel *
cleave_file_load_model (const char *path, GError **error)
{
  CleaveFileKind kind;
  g_autofree char *base = g_path_get_basename (path);

  if (!cleave_file_kind_detect (path, &kind, error))
    return NULL;
  switch (kind)
    {
    case CLEAVE_FILE_MODEL:
      return cleave_model_load (path, error);
    case CLEAVE_FILE_ONNX:
      return cleave_onnx_load_model (path, error);
    case CLEAVE_FILE_STATE_DICT:
      /* Translators: %s is a file name */
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   _("%s holds weights only: open it with Open Model to name its architecture"), base);
      return NULL;
    case CLEAVE_FILE_MODULE_SET:
      /* Translators: %s is a file name */
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("%s is a module set, not a model"), base);
      return NULL;
    case CLEAVE_FILE_COMPOSITION:
    case CLEAVE_FILE_PATCHED:
    default:
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   _("%s is a composition or patched model, not a trained model"), base);
      return NULL;
    }
}
