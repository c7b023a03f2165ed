/* cli-common.c: error printing, Ctrl-C handling and the terminal progress bar. */
#include "cli-common.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

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
