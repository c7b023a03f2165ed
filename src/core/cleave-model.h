/* cleave-model.h: a trained CNN with its metadata, stored as one .safetensors
 * file: tensors are the weights (PyTorch state_dict names); __metadata__ holds
 * "cleave.graph" (architecture JSON), "cleave.input" ([C,H,W]),
 * "cleave.normalize" ({"mean":[..],"std":[..]}), "cleave.classes" (JSON list),
 * "cleave.provenance" (JSON object: dataset, seed, epochs, accuracies, command),
 * "cleave.format" ("cleave-model/1"). */
#pragma once

#include "cleave-graph.h"
#include "cleave-dataset.h"
#include "cleave-safetensors.h"

G_BEGIN_DECLS

typedef struct {
  CleaveGraph *graph;
  int n_classes;
  char **class_names;       /* NULL-terminated */
  int n_channels;
  float mean[4], std[4];    /* per input channel */
  char *dataset;            /* dataset spec it was trained on, may be NULL */
  char *provenance_json;    /* JSON object text, may be NULL */
  char *path;               /* file it was loaded from, may be NULL */
  char *sha256;             /* of the file it was loaded from, may be NULL */
} CleaveModel;

CleaveModel *cleave_model_new  (CleaveGraph *graph /* taken */, int n_classes, const char *const *class_names);
void         cleave_model_free (CleaveModel *m);
/* A deep copy (graph, weights and metadata), e.g. for a worker thread. */
CleaveModel *cleave_model_copy (const CleaveModel *m);

CleaveModel *cleave_model_load (const char *path, GError **error);
/* A weights-only file (a PyTorch state_dict as safetensors, or a torch.save
 * checkpoint: .pt/.pth, see cleave-pth.h; chosen by content, not by name) with
 * an architecture: a preset name ("simcnn", "rescnn", "incecnn",
 * "simcnn:w=0.25", see cleave-arch.h) or the path of an architecture JSON
 * file (ending in ".json"), whose own input shape and outputs then apply. */
CleaveModel *cleave_model_load_with_arch (const char *path, const char *arch_spec, int in_c, int in_h, int in_w,
                                          int n_classes, GError **error);
gboolean     cleave_model_save (CleaveModel *m, const char *path, GError **error);
/* The same in memory, for files that embed a model: @file names the source
 * in errors; path and sha256 are left for the caller. */
CleaveModel       *cleave_model_from_safetensors (const CleaveSafetensors *st, const char *file, GError **error);
CleaveSafetensors *cleave_model_to_safetensors   (const CleaveModel *m);


void cleave_model_set_norm_from_dataset (CleaveModel *m, const CleaveDataset *ds, const int *idx, int n);
/* A model whose classes have no names ("0", "1", … as an ONNX file gives
 * them) takes @ds's, so that its modules are named after them. */
void cleave_model_name_classes_from_dataset (CleaveModel *m, const CleaveDataset *ds);
/* Merges "key": value (value is JSON text) into the provenance object; NULL removes the key. */
void cleave_model_set_provenance (CleaveModel *m, const char *key, const char *json_value);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveModel, cleave_model_free)

G_END_DECLS
