/* cli-common.c: error printing, Ctrl-C handling and the terminal progress bar. */
#include "cli-common.h"

#include <json-glib/json-glib.h>
#include "cleave-onnx.h"
#include "cleave-file.h"

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
static volatile sig_atomic_t sigint_count;

static void
on_signal (int sig)
{
  sigint_count++;
  if (sigint_count > 1)
    _exit (130);
  /* g_cancellable_cancel is not async-signal-safe; a watcher thread polls the flag. */
}

static gpointer
signal_watch_thread (gpointer data)
{
  while (sigint_count == 0)
    g_usleep (50000);
  g_cancellable_cancel (sigint_cancellable);
  return NULL;
}

GCancellable *
cleave_cli_cancellable (void)
{
  if (sigint_cancellable == NULL)
    {
      struct sigaction sa = { 0 };
      sigint_cancellable = g_cancellable_new ();
      sa.sa_handler = on_signal;
      sigemptyset (&sa.sa_mask);
      sigaction (SIGINT, &sa, NULL);
      sigaction (SIGTERM, &sa, NULL);
      g_thread_unref (g_thread_new ("cleave-signal", signal_watch_thread, NULL));
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

CleaveBackend *
cleave_cli_open_device (const char *spec, GError **error)
{
  CleaveBackend *b = cleave_device_open (spec, error);
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

int *
cleave_cli_parse_int_list (const char *s, int *n_out, GError **error)
{
  g_auto(GStrv) parts = g_strsplit (s, ",", -1);
  GArray *a = g_array_new (FALSE, FALSE, sizeof (int));
  if (parts[0] == NULL)
    goto empty;
  for (int i = 0; parts[i]; i++)
    {
      char *end;
      gint64 lo, hi;
      const char *dash;
      if (parts[i][0] == 0)
        goto empty;
      dash = strchr (parts[i] + 1, '-');
      lo = g_ascii_strtoll (parts[i], &end, 10);
      if (end == parts[i])
        goto bad;
      hi = lo;
      if (dash && end == dash)
        {
          hi = g_ascii_strtoll (dash + 1, &end, 10);
          if (end == dash + 1)
            goto bad;
        }
      if (*end != 0 || lo < 0 || hi < lo || hi > 100000)
        goto bad;
      for (gint64 v = lo; v <= hi; v++)
        {
          int iv = (int) v;
          g_array_append_val (a, iv);
        }
      continue;
bad:
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "'%s' is not a list of numbers like 0,3,5 or 0-4", s);
      g_array_unref (a);
      return NULL;
    }
  *n_out = (int) a->len;
  return (int *) g_array_free (a, FALSE);
empty:
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "'%s' has an empty element: give a list of numbers like 0,3,5 or 0-4", s);
  g_array_unref (a);
  return NULL;
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
    g_string_append_printf (s, "%s %d/%d", p->phase ? p->phase : "", p->epoch, p->epochs);
  else if (p->phase)
    g_string_append (s, p->phase);
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

gboolean
cleave_cli_split_spec (const char *arg, char **path, int **list, int *n, GError **error)
{
  const char *colon = strrchr (arg, ':');
  /* "C:\x" style or a path without a list: the whole argument is the path. */
  if (colon == NULL || colon[1] == '\0' || strchr (colon, '/') != NULL)
    {
      *path = g_strdup (arg);
      *list = NULL;
      *n = 0;
      return TRUE;
    }
  *list = cleave_cli_parse_int_list (colon + 1, n, error);
  if (*list == NULL)
    return FALSE;
  *path = g_strndup (arg, colon - arg);
  return TRUE;
}

CleaveDataset *
cleave_cli_load_mix (const char *const *specs, int n_specs, CleaveSplit split, char ***class_names,
                     GCancellable *cancellable, GError **error)
{
  CleaveDataset **parts = g_new0 (CleaveDataset *, MAX (1, n_specs));
  GPtrArray *names = g_ptr_array_new ();
  CleaveDataset *out = NULL;
  gboolean ok = TRUE;

  for (int i = 0; i < n_specs && ok; i++)
    {
      g_autofree char *path = NULL;
      g_autofree int *list = NULL;
      int n = 0;
      CleaveDataset *ds;
      ok = cleave_cli_split_spec (specs[i], &path, &list, &n, error);
      if (!ok)
        break;
      ds = cleave_dataset_load (path, split, cancellable, error);
      if ((ok = ds != NULL) && list)
        {
          CleaveDataset *sel = cleave_dataset_select_classes (ds, list, n, error);
          cleave_dataset_free (ds);
          ok = (ds = sel) != NULL;
        }
      if (!ok)
        break;
      parts[i] = ds;
      for (int c = 0; c < ds->n_classes; c++)
        g_ptr_array_add (names, n_specs > 1 ? g_strdup_printf ("%s:%s", path, ds->class_names[c])
                                            : g_strdup (ds->class_names[c]));
    }
  if (ok)
    out = n_specs == 1 ? g_steal_pointer (&parts[0]) : cleave_dataset_concat (parts, n_specs, error);
  for (int i = 0; i < n_specs; i++)
    cleave_dataset_free (parts[i]);
  g_free (parts);
  g_ptr_array_add (names, NULL);
  if (out && class_names)
    *class_names = (char **) g_ptr_array_free (names, FALSE);
  else
    g_strfreev ((char **) g_ptr_array_free (names, FALSE));
  return out;
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
