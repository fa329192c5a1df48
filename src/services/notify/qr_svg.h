/*
 * qr_svg.h - a QR code as an SVG image.
 *
 * libqrencode makes the matrix (QRcode_encodeString, error correction
 * level M, 8-bit mode); this module draws it: one <path> whose subpaths
 * are the runs of dark modules of each row, one unit per module, inside a
 * white quiet zone of NOTIFY_QR_QUIET modules on every side, with
 * shape-rendering="crispEdges" so that no scaler blurs the module edges.
 * The image has no fixed size (only a viewBox): the page scales it.
 *
 * Pure functions; thread-safe (libqrencode is built with pthreads).
 */
#ifndef MARQUEE_SERVICES_NOTIFY_QR_SVG_H
#define MARQUEE_SERVICES_NOTIFY_QR_SVG_H

#include <stddef.h>

#define NOTIFY_QR_QUIET     4   /* modules of white border, as ISO 18004 asks */
#define NOTIFY_QR_WIDTH_MAX 177 /* modules of a version 40 symbol */
#define NOTIFY_QR_TEXT_MAX  512 /* bytes of text encoded */

/*
 * Draws a matrix of width x width modules (row by row; bit 0 of a byte
 * set means dark, as libqrencode lays it out).  On ERR_OK *out is a
 * malloc'd NUL-terminated SVG document (the caller frees it) and *len its
 * length.  ERR_INVALID for a width outside 1..NOTIFY_QR_WIDTH_MAX,
 * ERR_NOMEM.
 */
int notify_qr_svg_matrix(const unsigned char *modules, int width, char **out,
                         size_t *len);

/*
 * Encodes text (1..NOTIFY_QR_TEXT_MAX bytes) and draws it, as above.
 * ERR_INVALID for an empty or too long text, ERR_NOMEM, or ERR_TOOBIG when
 * the text does not fit a QR code.
 */
int notify_qr_svg(const char *text, char **out, size_t *len);

#endif
