/* cleave-safetensors.h: reading and writing .safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]}, "__metadata__":{str:str}},
 * then the data. The reader validates everything before allocating: header
 * length against file size, JSON syntax, dtypes, shapes against byte ranges,
 * offsets in range and not overlapping. Errors are CLEAVE_ERROR_INVALID_FILE
 * and name the file and the field ("model.safetensors: tensor 'conv1.weight':
 * data_offsets end 1234 exceeds data size 1000"). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *name;
  char *dtype;        /* as in the file: "F32", "F16", "BF16", "F64", "I64", "I32", "U8", ... */
  int ndim;
  gint64 shape[8];
  gsize nbytes;
  guint8 *data;       /* raw little-endian bytes */
} CleaveSafeTensor;

typedef struct {
  GPtrArray *tensors;        /* of CleaveSafeTensor*, file order (sorted by offset) */
  GHashTable *metadata;      /* char* -> char*, may be empty */
} CleaveSafetensors;

CleaveSafetensors *cleave_safetensors_new  (void);
void               cleave_safetensors_free (CleaveSafetensors *st);

CleaveSafetensors *cleave_safetensors_load       (const char *path, GError **error);
CleaveSafetensors *cleave_safetensors_load_bytes (const guint8 *data, gsize size, const char *display_name, GError **error);
/* Atomic: writes a temporary file in the same directory, then renames. */
gboolean           cleave_safetensors_save (const CleaveSafetensors *st, const char *path, GError **error);

const CleaveSafeTensor *cleave_safetensors_find (const CleaveSafetensors *st, const char *name);
/* Adds a copy of @data as F32. */
void cleave_safetensors_add_f32 (CleaveSafetensors *st, const char *name, int ndim, const int *shape, const float *data);
/* Adds a copy of @data as I32. */
void cleave_safetensors_add_i32 (CleaveSafetensors *st, const char *name, int ndim, const int *shape, const gint32 *data);
void cleave_safetensors_set_metadata (CleaveSafetensors *st, const char *key, const char *value);
const char *cleave_safetensors_get_metadata (const CleaveSafetensors *st, const char *key);

/* Converts a tensor to newly allocated float32 (from F32, F16, BF16, F64;
 * integer dtypes are converted too). Checks numel against @expected_numel
 * when it is not 0; errors name @file and the tensor. */
float  *cleave_safe_tensor_to_f32 (const CleaveSafeTensor *t, gsize expected_numel, const char *file, GError **error);
gint32 *cleave_safe_tensor_to_i32 (const CleaveSafeTensor *t, const char *file, GError **error);
gsize   cleave_safe_tensor_numel  (const CleaveSafeTensor *t);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveSafetensors, cleave_safetensors_free)

G_END_DECLS
