/* cleave-pth.h: PyTorch checkpoints (torch.save) read without running them.
 *
 * Two container formats are read:
 * - the zip format torch.save writes since PyTorch 1.6: a zip archive
 *   holding PREFIX/data.pkl (the pickled object), PREFIX/data/KEY (one raw
 *   little-endian storage per key) and PREFIX/version, entries stored
 *   uncompressed;
 * - the legacy format (_use_new_zipfile_serialization=False): five pickles
 *   in a row (magic number, protocol 1001, sys_info, the object, the list of
 *   storage keys), then each storage as a little-endian int64 element count
 *   followed by its bytes.
 *
 * The pickle is parsed by a small stack machine, never executed: it accepts
 * the opcodes of pickle protocols 2 to 4 that describe plain data, and only
 * the globals a tensor state_dict is made of (collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the
 * torch.*Storage type tags). Any other global (os.system, builtins.eval, a
 * model class) is refused with an error naming it, before anything else of
 * the file is used.
 *
 * The object must be a state_dict (a dict of name -> tensor), or a dict whose
 * "state_dict", "model" or "model_state_dict" entry is one. Each tensor is
 * returned as a contiguous little-endian copy in its storage's dtype
 * ("F32", "F64", "F16", "BF16", "I64", ...), so cleave_safe_tensor_to_f32()
 * converts it. Every size, stride and offset is checked against the storage
 * and the file before it is used; errors are CLEAVE_ERROR_INVALID_FILE (or
 * CLEAVE_ERROR_UNSUPPORTED for a refused global or opcode) and name the file
 * and the field. */
#pragma once

#include "cleave-safetensors.h"

G_BEGIN_DECLS

/* TRUE when @data starts like a torch.save file (zip "PK\3\4", or the legacy
 * format's pickled magic number). */
gboolean cleave_pth_detect (const guint8 *data, gsize size);

/* The state_dict as CleaveSafetensors (tensors in the checkpoint's order, no
 * metadata). @display_name names the file in errors. */
CleaveSafetensors *cleave_pth_load_bytes (const guint8 *data, gsize size, const char *display_name, GError **error);
CleaveSafetensors *cleave_pth_load       (const char *path, GError **error);

G_END_DECLS
