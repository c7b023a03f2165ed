/* cleave-file-kind.h: what a file is, told by its content, not its name:
 * a safetensors file (and which Cleave format its metadata names) or an
 * ONNX model. */
#pragma once

#include <glib.h>
#include "cleave-model.h"

G_BEGIN_DECLS

typedef enum {
  CLEAVE_FILE_MODEL,           /* a Cleave model */
  CLEAVE_FILE_STATE_DICT,      /* safetensors weights without a graph: needs an architecture */
  CLEAVE_FILE_MODULE_SET,
  CLEAVE_FILE_COMPOSITION,
  CLEAVE_FILE_PATCHED,
  CLEAVE_FILE_ONNX,
} CleaveFileKind;

/* FALSE with @error naming the file when it is neither safetensors nor
 * ONNX, or cannot be read. */
gboolean cleave_file_kind_detect (const char *path, CleaveFileKind *kind, GError **error);

/* Loads a model file of either kind; a module set, composition or patched
 * model is refused with an error that says what the file is. */
CleaveModel *cleave_file_load_model (const char *path, GError **error);

G_END_DECLS
