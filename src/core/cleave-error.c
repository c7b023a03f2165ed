#include "cleave-error.h"

G_DEFINE_QUARK (cleave-error-quark, cleave_error)
