/* cli-common.c: error printing, Ctrl-C handling and the terminal progress bar. */
#include "cli-common.h"

#include <json-glib/json-glib.h>
#include "cleave-onnx.h"
#include "cleave-file.h"
#include "cleave-options.h"

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <math.h>

int
cleave_cli_fail (GError *error)
{
  fprintf (stderr, "cleave-cli: %s\n", error ? error->message : "failed");
  g_clear_error (&error);
  return 1;
}

static GCancellable *sigint_cancellable;
static int signal_count;

/* Runs in the signal thread: the first SIGINT/SIGTERM cancels, the second
 * ends the program at once (a search stuck in one long step). */
static gboolean
on_signal (gpointer data)
{
  if (++signal_count > 1)
    _exit (130);
  g_cancellable_cancel (sigint_cancellable);
  return G_SOURCE_CONTINUE;
}

/* The commands run in the main thread without a main loop, so the signal
 * sources live on a context of their own, iterated by this thread. */
static gpointer
signal_thread (gpointer data)
{
  GMainContext *ctx = data;

  for (;;)
    g_main_context_iteration (ctx, TRUE);
  return NULL;
}

GCancellable *
cleave_cli_cancellable (void)
{
  if (sigint_cancellable == NULL)
    {
      GMainContext *ctx = g_main_context_new ();
      const int sigs[] = { SIGINT, SIGTERM };

      sigint_cancellable = g_cancellable_new ();
      for (gsize i = 0; i < G_N_ELEMENTS (sigs); i++)
        {
          GSource *src = g_unix_signal_source_new (sigs[i]);
          g_source_set_callback (src, on_signal, NULL, NULL);
          g_source_attach (src, ctx);
          g_source_unref (src);
        }
      g_thread_unref (g_thread_new ("cleave-signal", signal_thread, ctx));
    }
  return sigint_cancellable;
}

struct _CleaveCliProgress {
  char *label;
  gboolean tty;
  gint64 start_us;
  gint64 last_print_us;
  gboolean line_open;
};

CleaveCliProgress *
cleave_cli_progress_new (const char *label)
{
  CleaveCliProgress *p = g_new0 (CleaveCliProgress, 1);
  p->label = g_strdup (label);
  p->tty = isatty (fileno (stderr));
  p->start_us = g_get_monotonic_time ();
  return p;
}

static void
format_duration (double s, char *buf, gsize len)
{
  if (s < 0 || s > 1e7)
    g_strlcpy (buf, "--:--", len);
  else if (s >= 3600)
    g_snprintf (buf, len, "%d:%02d:%02d", (int) s / 3600, ((int) s / 60) % 60, (int) s % 60);
  else
    g_snprintf (buf, len, "%02d:%02d", (int) s / 60, (int) s % 60);
}

void
cleave_cli_progress_update (CleaveCliProgress *p, double fraction, const char *status)
{
  gint64 now = g_get_monotonic_time ();
  double elapsed = (now - p->start_us) / 1e6;
  double eta = fraction > 0.001 ? elapsed * (1.0 - fraction) / fraction : -1;
  char el[32], et[32];

  fraction = CLAMP (fraction, 0.0, 1.0);
  format_duration (elapsed, el, sizeof el);
  format_duration (eta, et, sizeof et);
  if (p->tty)
    {
      const int width = 28;
      int filled = (int) (fraction * width + 0.5);
      char bar[64];
      if (now - p->last_print_us < 100000 && fraction < 1.0)
        return;
      for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
      bar[width] = 0;
      fprintf (stderr, "\r\033[K%s [%s] %5.1f%% %s ETA %s  %s", p->label, bar, fraction * 100, el, et,
               status ? status : "");
      fflush (stderr);
      p->line_open = TRUE;
    }
  else
    {
      /* Plain lines for logs: at most one every 5 s. */
      if (now - p->last_print_us < 5000000 && fraction < 1.0)
        return;
      fprintf (stderr, "%s %5.1f%% elapsed %s ETA %s  %s\n", p->label, fraction * 100, el, et, status ? status : "");
    }
  p->last_print_us = now;
}

void
cleave_cli_progress_line (CleaveCliProgress *p, const char *message)
{
  if (p->line_open)
    fprintf (stderr, "\r\033[K");
  p->line_open = FALSE;
  if (message)
    fprintf (stderr, "%s\n", message);
  p->last_print_us = 0;
}

void
cleave_cli_progress_free (CleaveCliProgress *p)
{
  if (p == NULL)
    return;
  if (p->line_open)
    fprintf (stderr, "\n");
  g_free (p->label);
  g_free (p);
}

/* ---------------------------------------------------------------- configuration */

static CleaveBackendConfig backend_config;
static char *env_device;            /* CLEAVE_DEVICE */
static char *env_data_dir;          /* CLEAVE_DATA_DIR */
static char **option_data_dirs;     /* --data-dir, in order */
static char **all_data_dirs;

gboolean
cleave_cli_config_init (GError **error)
{
  g_auto(GStrv) env = g_get_environ ();
  g_autoptr(GString) changed = g_string_new (NULL);

  cleave_backend_config_init (&backend_config);
  if (!cleave_backend_config_from_environ (&backend_config, env, changed, error))
    return FALSE;
  if (g_getenv ("CLEAVE_DEVICE") && *g_getenv ("CLEAVE_DEVICE"))
    {
      env_device = g_strdup (g_getenv ("CLEAVE_DEVICE"));
      g_string_append_printf (changed, ", CLEAVE_DEVICE=%s (default --device)", env_device);
    }
  if (g_getenv ("CLEAVE_DATA_DIR") && *g_getenv ("CLEAVE_DATA_DIR"))
    {
      env_data_dir = g_strdup (g_getenv ("CLEAVE_DATA_DIR"));
      g_string_append_printf (changed, ", CLEAVE_DATA_DIR=%s (data directory)", env_data_dir);
    }
  if (changed->len)
    fprintf (stderr, "cleave-cli: from the environment: %s\n", changed->str + (changed->str[0] == ',' ? 2 : 0));
  return TRUE;
}

static gboolean
on_backend_option (const char *option_name, const char *value, gpointer data, GError **error)
{
  /* "--conv-algo" → "conv-algo" */
  return cleave_backend_config_set (&backend_config, option_name + 2, value, error);
}

GOptionContext *
cleave_cli_option_context_new (const char *parameter_string)
{
  static char *helps[8];
  GOptionContext *ctx = g_option_context_new (parameter_string);
  GOptionGroup *group = g_option_group_new ("config", "Configuration (for every command):",
                                            "Show the configuration options", NULL, NULL);
  GOptionEntry entries[] = {
    { "data-dir", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &option_data_dirs,
      "Look for named datasets (mnist, fashion-mnist, cifar10) in DIR first (repeatable; then $CLEAVE_DATA_DIR, "
      "~/.local/share/cleave/datasets, /usr/share/datasets)", "DIR" },
    { "threads", 0, 0, G_OPTION_ARG_CALLBACK, on_backend_option, NULL, "N" },
    { "conv-algo", 0, 0, G_OPTION_ARG_CALLBACK, on_backend_option, NULL, "ALGO" },
    { "opencl-gemm", 0, 0, G_OPTION_ARG_CALLBACK, on_backend_option, NULL, "KERNEL" },
    { "opencl-split-k", 0, 0, G_OPTION_ARG_CALLBACK, on_backend_option, NULL, "N" },
    { NULL }
  };
  guint n;
  const CleaveBackendSetting *set = cleave_backend_settings (&n);

  /* Help of the backend settings from the core's table: the help text and
   * every variable read for it, the one that wins first. */
  for (int e = 1; entries[e].long_name && helps[e] == NULL; e++)
    {
      GString *h = g_string_new (NULL);
      for (guint i = n; i-- > 0;)
        if (g_str_equal (set[i].name, entries[e].long_name))
          {
            if (h->len == 0)
              g_string_append_printf (h, "%s (environment: %s", set[i].help, set[i].env);
            else
              g_string_append_printf (h, ", else %s", set[i].env);
          }
      g_string_append (h, ")");
      helps[e] = g_string_free (h, FALSE);
    }
  for (int e = 1; entries[e].long_name; e++)
    entries[e].description = helps[e];
  g_option_group_add_entries (group, entries);
  g_option_context_add_group (ctx, group);
  return ctx;
}

/* ---------------------------------------------------------------- option tables */

static GArray *option_tables;      /* CleaveCliOptionTable: where each table's options go */

static gboolean
on_table_option (const char *option_name, const char *value, gpointer data, GError **error)
{
  const char *name = option_name + 2;   /* "--alpha" */

  for (guint t = 0; t < option_tables->len; t++)
    {
      const CleaveCliOptionTable *ot = &g_array_index (option_tables, CleaveCliOptionTable, t);
      const CleaveOptionDesc *d = cleave_options_find (ot->table, ot->n, name);
      if (d && !cleave_option_parse (d, ot->options, value ? value : "", error))
        return FALSE;
    }
  return TRUE;
}

static GPtrArray *table_entries;   /* GArray of GOptionEntry, one per call */

void
cleave_cli_add_option_tables (GOptionContext *ctx, const CleaveCliOptionTable *tables, guint n_tables)
{
  GArray *entries = g_array_new (TRUE, TRUE, sizeof (GOptionEntry));
  GPtrArray *helps = g_ptr_array_new ();   /* GString, parallel to entries */

  if (option_tables == NULL)
    option_tables = g_array_new (FALSE, FALSE, sizeof (CleaveCliOptionTable));
  g_array_append_vals (option_tables, tables, n_tables);
  for (guint t = 0; t < n_tables; t++)
    for (guint i = 0; i < tables[t].n; i++)
      {
        const CleaveOptionDesc *d = &tables[t].table[i];
        g_autofree char *def = cleave_option_default_text (d);
        GString *help = NULL;
        guint e;

        for (e = 0; e < entries->len; e++)
          if (g_str_equal (g_array_index (entries, GOptionEntry, e).long_name, d->name))
            help = helps->pdata[e];
        if (help == NULL)
          {
            GOptionEntry entry = { d->name, 0, d->type == CLEAVE_OPTION_BOOL ? G_OPTION_FLAG_NO_ARG : 0,
                                   G_OPTION_ARG_CALLBACK, on_table_option, NULL, NULL };
            entry.arg_description = d->type == CLEAVE_OPTION_CHOICE ? "WORD"
                                    : d->type == CLEAVE_OPTION_INT ? "N"
                                    : d->type == CLEAVE_OPTION_BOOL ? NULL : "X";
            g_array_append_val (entries, entry);
            g_ptr_array_add (helps, help = g_string_new (NULL));
          }
        else
          g_string_append (help, "; ");
        if (d->type == CLEAVE_OPTION_BOOL)
          g_string_append_printf (help, "%s: %s", tables[t].prefix, d->help);
        else
          g_string_append_printf (help, "%s: %s (default %s)", tables[t].prefix, d->help, def);
      }
  /* The entries and their texts live as long as the program (GOption keeps
   * pointers to the texts): held by a static, so they stay reachable. */
  for (guint e = 0; e < entries->len; e++)
    g_array_index (entries, GOptionEntry, e).description = g_string_free (helps->pdata[e], FALSE);
  g_ptr_array_free (helps, TRUE);
  if (table_entries == NULL)
    table_entries = g_ptr_array_new ();
  g_ptr_array_add (table_entries, entries);
  g_option_context_add_main_entries (ctx, (GOptionEntry *) (gpointer) entries->data, NULL);
}

const CleaveBackendConfig *
cleave_cli_backend_config (void)
{
  return &backend_config;
}

const char *const *
cleave_cli_data_dirs (void)
{
  GPtrArray *a;
  const char *const *defaults = cleave_dataset_default_dirs ();

  /* built once, after the command's options are parsed */
  if (all_data_dirs)
    return (const char *const *) all_data_dirs;
  a = g_ptr_array_new ();

  for (int i = 0; option_data_dirs && option_data_dirs[i]; i++)
    g_ptr_array_add (a, g_strdup (option_data_dirs[i]));
  if (env_data_dir)
    g_ptr_array_add (a, g_strdup (env_data_dir));
  for (int i = 0; defaults[i]; i++)
    g_ptr_array_add (a, g_strdup (defaults[i]));
  g_ptr_array_add (a, NULL);
  all_data_dirs = (char **) g_ptr_array_free (a, FALSE);
  return (const char *const *) all_data_dirs;
}

CleaveDataset *
cleave_cli_load_dataset (const char *spec, CleaveSplit split, GCancellable *cancellable, GError **error)
{
  return cleave_dataset_load_from (spec, cleave_cli_data_dirs (), split, cancellable, error);
}

const char *
cleave_cli_default_device (void)
{
  return env_device;
}

CleaveBackend *
cleave_cli_open_device (const char *spec, GError **error)
{
  CleaveBackend *b = cleave_device_open (spec ? spec : env_device, &backend_config, error);
  if (b)
    fprintf (stderr, "device: %s\n", b->name);
  return b;
}

void
cleave_cli_print_metrics (const CleaveMetrics *m, const char *const *class_names, const char *title)
{
  int n = m->n_classes;
  if (title)
    printf ("%s\n", title);
  printf ("accuracy %.2f%% (%d/%d), macro F1 %.4f\n", 100 * m->accuracy, m->correct, m->total, m->macro_f1);
  printf ("%-14s %9s %9s %9s %7s\n", "class", "precision", "recall", "F1", "images");
  for (int c = 0; c < n; c++)
    {
      guint row = 0;
      for (int k = 0; k < n; k++)
        row += m->confusion[c * n + k];
      printf ("%-14.14s %9.4f %9.4f %9.4f %7u\n", class_names && class_names[c] ? class_names[c] : "?",
              m->precision[c], m->recall[c], m->f1[c], row);
    }
  printf ("confusion (rows: true, columns: predicted)\n      ");
  for (int c = 0; c < n; c++)
    printf ("%6d", c);
  printf ("\n");
  for (int r = 0; r < n; r++)
    {
      printf ("%6d", r);
      for (int c = 0; c < n; c++)
        printf ("%6u", m->confusion[r * n + c]);
      printf ("\n");
    }
}

char *
cleave_cli_command_line (int argc, char **argv)
{
  GString *s = g_string_new ("cleave-cli");
  for (int i = 0; i < argc; i++)
    {
      g_autofree char *q = g_shell_quote (argv[i]);
      g_string_append_c (s, ' ');
      g_string_append (s, strpbrk (argv[i], " '\"$") ? q : argv[i]);
    }
  return g_string_free (s, FALSE);
}

void
cleave_cli_progress_cb (const CleaveProgress *p, gpointer user_data)
{
  CleaveCliProgress *bar = user_data;
  g_autofree char *status = NULL;
  GString *s = g_string_new (NULL);
  if (p->epochs > 0)
    g_string_append_printf (s, "%s %d/%d", cleave_phase_name (p->phase), p->epoch, p->epochs);
  else
    g_string_append (s, cleave_phase_name (p->phase));
  if (!isnan (p->loss))
    g_string_append_printf (s, " loss %.4f", p->loss);
  if (!isnan (p->accuracy))
    g_string_append_printf (s, " acc %.2f%%", 100 * p->accuracy);
  if (!isnan (p->val_accuracy))
    g_string_append_printf (s, " val %.2f%%", 100 * p->val_accuracy);
  if (!isnan (p->krr))
    g_string_append_printf (s, " KRR %.1f%%", 100 * p->krr);
  if (p->images_per_s > 0)
    g_string_append_printf (s, " %.0f img/s", p->images_per_s);
  status = g_string_free (s, FALSE);
  if (p->epoch_done)
    {
      g_autofree char *line = g_strdup_printf ("  %s", status);
      cleave_cli_progress_line (bar, line);
    }
  else
    cleave_cli_progress_update (bar, p->fraction, status);
}

CleaveModel *
cleave_cli_load_model (const char *path, const char *arch, const char *input, int n_classes, GError **error)
{
  if (arch != NULL)
    {
      int c = 1, h = 28, w = 28;
      if (input && sscanf (input, "%dx%dx%d", &c, &h, &w) != 3)
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--input '%s' must look like 1x28x28", input);
          return NULL;
        }
      return cleave_model_load_with_arch (path, arch, c, h, w, n_classes > 0 ? n_classes : 10, error);
    }
  if (g_str_has_suffix (path, ".onnx") || g_str_has_suffix (path, ".ONNX"))
    return cleave_onnx_load_model (path, error);
  return cleave_model_load (path, error);
}

CleaveModel *
cleave_cli_load_model_for (const char *path, const char *arch, const CleaveDataset *ds, GError **error)
{
  g_autofree char *input = g_strdup_printf ("%dx%dx%d", ds->c, ds->h, ds->w);
  CleaveModel *m = cleave_cli_load_model (path, arch, arch ? input : NULL, ds->n_classes, error);

  if (m != NULL && arch != NULL && m->n_classes == ds->n_classes)
    for (int i = 0; i < m->n_classes && ds->class_names && ds->class_names[i]; i++)
      {
        g_free (m->class_names[i]);
        m->class_names[i] = g_strdup (ds->class_names[i]);
      }
  return m;
}

char *
cleave_cli_json_text (JsonBuilder *b, gboolean pretty)
{
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);

  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, pretty);
  return json_generator_to_data (gen, NULL);
}

struct _CleaveCliOutput {
  char *lock_path;
  int fd;
};

/* The file an input argument names: the argument itself, or for a
 * "PATH:LIST" spec the part before the last colon. */
static gboolean
stat_input (const char *arg, GStatBuf *st)
{
  const char *colon = strrchr (arg, ':');
  g_autofree char *prefix = colon ? g_strndup (arg, colon - arg) : NULL;
  return g_stat (arg, st) == 0 || (prefix && g_stat (prefix, st) == 0);
}

CleaveCliOutput *
cleave_cli_output_claim (const char *path, const char *const *inputs, int n_inputs, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path), *base = g_path_get_basename (path);
  g_autofree char *lock_name = g_strdup_printf (".%s.lock", base);
  CleaveCliOutput *o;
  GStatBuf out, in;

  if (g_stat (path, &out) == 0)
    for (int i = 0; i < n_inputs; i++)
      if (inputs[i] && stat_input (inputs[i], &in) && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
        {
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                       "the output %s is also an input (%s): write to another file", path, inputs[i]);
          return NULL;
        }
  o = g_new0 (CleaveCliOutput, 1);
  o->lock_path = g_build_filename (dir, lock_name, NULL);
  /* Lock, then check the lock file is still the one on disk: a holder that
   * finished may have removed it between our open and our lock. */
  for (int attempt = 0; attempt < 8; attempt++)
    {
      GStatBuf held, named;
      o->fd = g_open (o->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (o->fd < 0)
        {
          int err = errno;
          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err), "cannot write %s: %s", path, g_strerror (err));
          break;
        }
      if (flock (o->fd, LOCK_EX | LOCK_NB) != 0)
        {
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                       "another cleave-cli is writing %s (it holds %s): wait for it or choose another output",
                       path, o->lock_path);
          break;
        }
      if (fstat (o->fd, &held) == 0 && g_stat (o->lock_path, &named) == 0 &&
          held.st_dev == named.st_dev && held.st_ino == named.st_ino)
        {
          /* Holding the lock, no other writer of @path runs: temporaries
           * beside it are from one that was killed. */
          int stale = cleave_file_remove_stale_temps (path);
          if (stale > 0)
            fprintf (stderr, "removed %d temporary file%s an interrupted write of %s left behind\n",
                     stale, stale == 1 ? "" : "s", path);
          return o;
        }
      close (o->fd);
      o->fd = -1;
    }
  if (o->fd >= 0)
    close (o->fd);
  g_free (o->lock_path);
  g_free (o);
  if (error && *error == NULL)
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot lock %s", path);
  return NULL;
}

void
cleave_cli_output_release (CleaveCliOutput *o)
{
  if (o == NULL)
    return;
  g_unlink (o->lock_path);
  close (o->fd);
  g_free (o->lock_path);
  g_free (o);
}
