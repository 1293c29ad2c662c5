/* Error reporting shared by the file system modules: one formatted line into a caller's
 * buffer, returned together with an OFS_ERR_* code (image.h), and paths shown in it. */
#ifndef OFS_ERR_H
#define OFS_ERR_H

#include <stddef.h>

/* Format the message into err (when err and errlen are set) and return code. */
__attribute__((format(printf, 4, 5))) int ofs_fail(char *err, size_t errlen, int code,
                                                   const char *fmt, ...);

/* Printable form of a path for messages: non-printable bytes become '?', cut at 200 bytes
 * (then "..." follows).  Returns buf. */
const char *ofs_show_path(const char *p, size_t len, char buf[256]);

#endif
