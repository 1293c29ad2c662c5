/* Error reporting shared by the file system modules (ofs_err.h). */
#include "ofs_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ofs_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *ofs_show_path(const char *p, size_t len, char buf[256]) {
    size_t n = len < 200 ? len : 200, i;
    for (i = 0; i < n; i++)
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    if (n < len) memcpy(buf + n, "...", 3), n += 3;
    buf[n] = 0;
    return buf;
}
