/* cli-common.h: what every cleave-cli subcommand shares. */
#pragma once

#include <glib.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>

G_BEGIN_DECLS

/* Each subcommand: argv[0] is the subcommand name. Returns the exit status. */
typedef int (*CleaveCliCommand) (int argc, char **argv);

int cleave_cmd_devices (int argc, char **argv);
int cleave_cmd_info    (int argc, char **argv);
int cleave_cmd_train   (int argc, char **argv);
int cleave_cmd_eval    (int argc, char **argv);
int cleave_cmd_split   (int argc, char **argv);
int cleave_cmd_modules (int argc, char **argv);
int cleave_cmd_compose (int argc, char **argv);
int cleave_cmd_patch   (int argc, char **argv);
int cleave_cmd_export  (int argc, char **argv);
int cleave_cmd_demo    (int argc, char **argv);

/* Prints "cleave-cli: <message>" to stderr and returns 1. */
int cleave_cli_fail (GError *error);

/* A GCancellable cancelled by SIGINT/SIGTERM (first signal); the second signal exits. */
GCancellable *cleave_cli_cancellable (void);

/* A progress line: a bar with ETA on a terminal, plain lines otherwise. */
typedef struct _CleaveCliProgress CleaveCliProgress;
CleaveCliProgress *cleave_cli_progress_new    (const char *label);
void               cleave_cli_progress_update (CleaveCliProgress *p, double fraction, const char *status);
/* Ends the bar line and prints @message (may be NULL) on a fresh line. */
void               cleave_cli_progress_line   (CleaveCliProgress *p, const char *message);
void               cleave_cli_progress_free   (CleaveCliProgress *p);

G_END_DECLS

#include "cleave-model.h"
#include "cleave-device.h"
#include "cleave-metrics.h"
#include "cleave-job.h"
#include "cleave-options.h"

G_BEGIN_DECLS
/* Reads the environment once, first thing in main(): the backend settings
 * (cleave_backend_settings: CLEAVE_CONV_ALGO, OMP_NUM_THREADS…),
 * CLEAVE_DEVICE (the default --device) and CLEAVE_DATA_DIR (a data
 * directory); prints to stderr what it took from there. FALSE on a bad value. */
gboolean cleave_cli_config_init (GError **error);
/* A command's option context with the shared configuration options
 * (--data-dir, --threads, --conv-algo, --opencl-gemm, --opencl-split-k). */
GOptionContext *cleave_cli_option_context_new (const char *parameter_string);
const CleaveBackendConfig *cleave_cli_backend_config (void);

/* A method's option table (cleave-options.h) and the struct its options fill. */
typedef struct {
  const CleaveOptionDesc *table;
  guint n;
  gpointer options;
  const char *prefix;          /* help prefix: "grad" */
} CleaveCliOptionTable;
/* Adds a --NAME option for every entry of the tables, help and default text
 * from the table; values are parsed and range-checked as they are read. A
 * name in several tables is one option setting each. */
void cleave_cli_add_option_tables (GOptionContext *ctx, const CleaveCliOptionTable *tables, guint n_tables);
/* CLEAVE_DEVICE, or NULL (the default rule). */
const char *cleave_cli_default_device (void);
/* --data-dir, then CLEAVE_DATA_DIR, then cleave_dataset_default_dirs()
 * (fixed at the first call, which comes after the options are parsed). */
const char *const *cleave_cli_data_dirs (void);
/* cleave_dataset_load_from() with those directories. */
CleaveDataset *cleave_cli_load_dataset (const char *spec, CleaveSplit split, GCancellable *cancellable,
                                        GError **error);
/* Opens --device (NULL = CLEAVE_DEVICE, else the default rule) with the
 * configured backend settings; prints which device on stderr. */
CleaveBackend *cleave_cli_open_device (const char *spec, GError **error);
/* Prints accuracy, per-class P/R/F1 and the confusion matrix. */
void cleave_cli_print_metrics (const CleaveMetrics *m, const char *const *class_names, const char *title);
/* The command line as one string (for provenance). */
char *cleave_cli_command_line (int argc, char **argv);
/* A progress callback drawing onto a CleaveCliProgress (user_data). */
void cleave_cli_progress_cb (const CleaveProgress *p, gpointer user_data);
G_END_DECLS

G_BEGIN_DECLS
/* Opens a model file: a Cleave model, an ONNX file (*.onnx), or with @arch a
 * weights-only state_dict, safetensors or PyTorch checkpoint (.pt/.pth)
 * (@input "C×H×W" like "1x28x28", @n_classes). */
CleaveModel *cleave_cli_load_model (const char *path, const char *arch, const char *input, int n_classes, GError **error);
/* The same for use on @ds: with @arch, the input shape and the class names are the dataset's. */
CleaveModel *cleave_cli_load_model_for (const char *path, const char *arch, const CleaveDataset *ds, GError **error);
G_END_DECLS

G_BEGIN_DECLS

/* The builder's (finished) root as JSON text. Build JSON this way, not with
 * printf: numbers then read the same in every locale (no "0,5" under
 * LC_NUMERIC=de_DE) and strings are escaped. */
char *cleave_cli_json_text (JsonBuilder *b, gboolean pretty);

/* Claims an output file for the rest of the command. Refuses one that is one
 * of the @n_inputs @inputs (paths or "PATH:LIST" specs; NULL entries skipped; the same
 * device and inode, so links count), and takes an exclusive lock on
 * ".NAME.lock" beside it so that a second cleave-cli writing the same file is
 * refused; with the lock held, removes the hidden temporaries a killed
 * writer left (cleave_file_remove_stale_temps). Release removes the lock file
 * (a killed process leaves it behind; the next claim reuses it). */
typedef struct _CleaveCliOutput CleaveCliOutput;
CleaveCliOutput *cleave_cli_output_claim   (const char *path, const char *const *inputs, int n_inputs,
                                             GError **error);
void             cleave_cli_output_release (CleaveCliOutput *o);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveCliOutput, cleave_cli_output_release)
G_END_DECLS
