/* Error reporting shared by the file system modules (ofs_err.h). */
#include "ofs_err.h"

#include <stdarg.h>
#include <stdio.h>

int ofs_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
