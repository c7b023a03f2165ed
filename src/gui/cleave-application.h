/* cleave-application.h: the AdwApplication (org.cleave.Cleave). */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define CLEAVE_APPLICATION_ID "org.cleave.Cleave"

#define CLEAVE_TYPE_APPLICATION (cleave_application_get_type ())
G_DECLARE_FINAL_TYPE (CleaveApplication, cleave_application, CLEAVE, APPLICATION, AdwApplication)

CleaveApplication *cleave_application_new (void);

/* The settings, or NULL when the schema is not installed (running from a
 * build tree without GSETTINGS_SCHEMA_DIR): callers then skip persistence. */
GSettings *cleave_application_get_settings (CleaveApplication *self);

/* Where the shipped demo model lives: the installed data dir, or the source
 * tree's data/models when running uninstalled. NULL when neither has it. */
char *cleave_application_find_demo_model (void);

G_END_DECLS
