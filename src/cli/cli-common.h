/* cli-common.h: what every cleave-cli subcommand shares. */
#pragma once

#include <glib.h>
#include <gio/gio.h>

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
