#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define CLEAVE_ERROR (cleave_error_quark ())
GQuark cleave_error_quark (void);

typedef enum {
  CLEAVE_ERROR_FAILED,
  CLEAVE_ERROR_INVALID_ARGUMENT,  /* bad shapes, options */
  CLEAVE_ERROR_INVALID_FILE,      /* malformed input file: message names file and field */
  CLEAVE_ERROR_IO,
  CLEAVE_ERROR_NO_DEVICE,         /* no OpenCL platform / device not found */
  CLEAVE_ERROR_OUT_OF_MEMORY,
  CLEAVE_ERROR_KERNEL_BUILD,      /* message carries the build log */
  CLEAVE_ERROR_DEVICE,            /* any other driver failure */
  CLEAVE_ERROR_UNSUPPORTED,       /* e.g. an ONNX op outside the supported set */
} CleaveError;

G_END_DECLS
