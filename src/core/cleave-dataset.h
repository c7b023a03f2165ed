/* cleave-dataset.h: image classification datasets held in memory as uint8.
 *
 * Readers: IDX (MNIST / Fashion-MNIST, gzipped or raw), CIFAR-10 binary
 * (data_batch_N.bin, test_batch.bin), ImageFolder (root/CLASS/IMAGE.png or .jpg,
 * classes sorted by name, decoded with gdk-pixbuf). Bad files get
 * CLEAVE_ERROR_INVALID_FILE naming the file and the field. */
#pragma once

#include <glib.h>
#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct {
  char *name;            /* "fashion-mnist", "mnist", "cifar10", or the folder name */
  char *source;          /* path it was read from */
  int n, c, h, w;
  guint8 *pixels;        /* n × c × h × w, CHW per image */
  guint8 *labels;        /* n */
  int n_classes;
  char **class_names;    /* n_classes, NULL-terminated */
  gboolean digits;       /* horizontal flip is wrong for this data */
} CleaveDataset;

typedef enum {
  CLEAVE_SPLIT_TRAIN,    /* the file's training images */
  CLEAVE_SPLIT_TEST,
} CleaveSplit;

/**
 * cleave_dataset_names:
 *
 * Returns: (transfer none) (array zero-terminated=1): the named datasets, in the order front ends
 *   offer them: "fashion-mnist", "mnist", "cifar10"
 */
const char *const *cleave_dataset_names (void);
#define CLEAVE_N_DATASET_NAMES 3

/**
 * cleave_dataset_default_dirs:
 *
 * The data directories searched for named datasets when none are given:
 * $XDG_DATA_HOME/cleave/datasets, then DIR/datasets for each of the XDG
 * system data directories (/usr/share/datasets holds Debian's
 * dataset-fashion-mnist).
 *
 * Returns: (transfer none) (array zero-terminated=1): the directories
 */
const char *const *cleave_dataset_default_dirs (void);

/* @spec: a named dataset looked up in the first of @data_dirs (NULL: the
 * default ones) that has it — "fashion-mnist" and "mnist" (DIR/NAME with IDX
 * files), "cifar10" (DIR/cifar10/cifar10-jpg.tar.gz, an ImageFolder copy
 * unpacked to the user cache on first use), any other bare name found as a
 * folder in one of them — or a path: a directory with IDX
 * files, a directory with CIFAR-10 .bin files, or an ImageFolder root (with
 * train/ and test/ subfolders, or the class folders directly, then used for
 * both splits). */
CleaveDataset *cleave_dataset_load_from (const char *spec, const char *const *data_dirs, CleaveSplit split,
                                         GCancellable *cancellable, GError **error);
/* cleave_dataset_load_from() with the default data directories. */
CleaveDataset *cleave_dataset_load (const char *spec, CleaveSplit split, GCancellable *cancellable, GError **error);
void           cleave_dataset_free (CleaveDataset *ds);

CleaveDataset *cleave_dataset_load_idx          (const char *images_path, const char *labels_path, GError **error);
CleaveDataset *cleave_dataset_load_cifar_bin    (const char *const *files, GError **error);
CleaveDataset *cleave_dataset_load_image_folder (const char *root, GCancellable *cancellable, GError **error);

/* A new dataset holding the listed images (copied). */
CleaveDataset *cleave_dataset_subset (const CleaveDataset *ds, const int *indices, int n);
/* Keep only @classes (in that order) and relabel them 0..n-1. */
CleaveDataset *cleave_dataset_select_classes (const CleaveDataset *ds, const int *classes, int n_classes, GError **error);
/* Concatenate datasets of one image shape; labels offset so classes stay distinct. */
CleaveDataset *cleave_dataset_concat (CleaveDataset **parts, int n_parts, GError **error);

/* The largest batch any job accepts; jobs also clamp their batch to the images they have. */
#define CLEAVE_MAX_BATCH 65536

/* Check a user's choices before cleave_dataset_split (0 < @val_fraction < 1)
 * and cleave_dataset_dirichlet_subset (@alpha finite > 0, @min_per_class and
 * @total ≥ 0); FALSE with CLEAVE_ERROR_INVALID_ARGUMENT naming the option. */
gboolean cleave_dataset_validate_split  (double val_fraction, GError **error);
gboolean cleave_dataset_validate_subset (double alpha, int min_per_class, int total, GError **error);

/* Seeded, stable split: the same (n, fraction, seed) always yields the same
 * indices. Stratified by class. Arrays are g_free'd by the caller. */
void cleave_dataset_split (const CleaveDataset *ds, double val_fraction, guint64 seed,
                           int **train_idx, int *n_train, int **val_idx, int *n_val);

/* Class-skewed subset: class proportions drawn from Dirichlet(alpha), at least
 * @min_per_class images per class, at most @total images. */
int *cleave_dataset_dirichlet_subset (const CleaveDataset *ds, const int *pool, int n_pool, double alpha,
                                      int min_per_class, int total, guint64 seed, int *n_out);

/* Per-channel mean and std of pixel/255 over the listed images (all when indices NULL). */
void cleave_dataset_compute_norm (const CleaveDataset *ds, const int *indices, int n, float *mean, float *std);

typedef struct {
  gboolean crop;       /* random crop with @pad zero padding */
  int pad;
  gboolean flip;       /* random horizontal flip */
} CleaveAugment;

/* Writes count images as normalised floats (x = (p/255 - mean[c]) / std[c])
 * into @x (count × c × h × w) and labels as floats into @y (may be NULL).
 * @aug may be NULL; @rng is used only when augmenting. */
void cleave_dataset_fill_batch (const CleaveDataset *ds, const int *indices, int count,
                                const float *mean, const float *std, const CleaveAugment *aug,
                                GRand *rng, float *x, float *y);

/* Deterministic shuffle of an index array. */
void cleave_shuffle_indices (int *idx, int n, GRand *rng);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveDataset, cleave_dataset_free)

G_END_DECLS
