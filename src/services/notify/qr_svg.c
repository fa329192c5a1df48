/*
 * qr_svg.c - draws a QR matrix as SVG (qr_svg.h).
 *
 * A row's dark modules are drawn run by run: "M x,y h n v 1 h -n z" is one
 * rectangle n modules wide, so a row of 30 dark modules in a line costs one
 * subpath, not 30.  Every coordinate is an integer, so with crispEdges the
 * rectangles of neighbouring rows meet with no seam.
 */
#include "services/notify/qr_svg.h"

#include <assert.h>
#include <errno.h>
#include <qrencode.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

/* Longest subpath: "M" x "," y "h" n "v1h-" n "z", three-digit numbers. */
#define RUN_TEXT_MAX 32

struct svg_buf {
    char *text;
    size_t len, cap;
};

static void buf_add(struct svg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends; the buffer was sized beforehand, so running out is a bug. */
static void buf_add(struct svg_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(b->text + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < b->cap - b->len);
    b->len += (size_t)n;
}

int notify_qr_svg_matrix(const unsigned char *modules, int width, char **out,
                         size_t *len)
{
    static const char head[] =
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
        "shape-rendering=\"crispEdges\">"
        "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>"
        "<path fill=\"#000\" d=\"";
    static const char tail[] = "\"/></svg>\n";
    int side = width + 2 * NOTIFY_QR_QUIET;
    struct svg_buf b = {0};

    if (width < 1 || width > NOTIFY_QR_WIDTH_MAX)
        return ERR_INVALID;
    /* At most one run starts in every other module of a row. */
    b.cap = sizeof(head) + 4 * 8 + sizeof(tail) +
            (size_t)width * (size_t)(width / 2 + 1) * RUN_TEXT_MAX;
    if ((b.text = malloc(b.cap)) == NULL)
        return ERR_NOMEM;

    buf_add(&b, head, side, side, side, side);
    for (int y = 0; y < width; y++) {
        const unsigned char *row = modules + (size_t)y * (size_t)width;
        for (int x = 0; x < width;) {
            if ((row[x] & 1) == 0) {
                x++;
                continue;
            }
            int start = x;
            while (x < width && (row[x] & 1) != 0)
                x++;
            buf_add(&b, "M%d,%dh%dv1h-%dz", start + NOTIFY_QR_QUIET,
                    y + NOTIFY_QR_QUIET, x - start, x - start);
        }
    }
    buf_add(&b, "%s", tail);
    *out = b.text;
    *len = b.len;
    return ERR_OK;
}

int notify_qr_svg(const char *text, char **out, size_t *len)
{
    size_t n = text != NULL ? strnlen(text, NOTIFY_QR_TEXT_MAX + 1) : 0;
    QRcode *qr;
    int rc;

    if (n == 0 || n > NOTIFY_QR_TEXT_MAX)
        return ERR_INVALID;
    errno = 0;
    qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL) {
        rc = errno == ERANGE   ? ERR_TOOBIG
             : errno == ENOMEM ? ERR_NOMEM
                               : ERR_INVALID;
        log_warn("notify", "qr_encode_failed bytes=%zu errno=%d", n, errno);
        return rc;
    }
    rc = notify_qr_svg_matrix(qr->data, qr->width, out, len);
    QRcode_free(qr);
    return rc;
}
