/*
 * test_notify_qr.c - the SVG drawing of QR codes: exact output for a small
 * matrix, runs merged, the quiet zone, and a real code from libqrencode
 * redrawn module by module from the SVG path.
 */
#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "harness.h"
#include "services/notify/qr_svg.h"

/*
 * Reads the path of an SVG back into a matrix of side `side` (quiet zone
 * included): every subpath "Mx,yhNv1h-Nz" marks N modules from (x, y).
 * Returns the number of dark modules, or -1 if the path is not made of
 * such subpaths.
 */
static int read_back(const char *svg, unsigned char *grid, int side)
{
    const char *p = strstr(svg, " d=\"");
    int dark = 0;

    if (p == NULL)
        return -1;
    for (p += 4; *p == 'M';) {
        int x, y, n, n2, used = 0;
        if (sscanf(p, "M%d,%dh%dv1h-%dz%n", &x, &y, &n, &n2, &used) != 4 ||
            used == 0 || n != n2 || n < 1 || x < 0 || y < 0 || x + n > side ||
            y >= side)
            return -1;
        for (int i = 0; i < n; i++) {
            if (grid[y * side + x + i])
                return -1; /* drawn twice */
            grid[y * side + x + i] = 1;
        }
        dark += n;
        p += used;
    }
    return *p == '"' ? dark : -1;
}

TEST(small_matrix_exact)
{
    /* 3x3: a full top row, a lone middle module, bottom corners. */
    static const unsigned char m[9] = {1, 1, 1, 0, 1, 0, 1, 0, 1};
    char *svg;
    size_t len;

    CHECK_INT(notify_qr_svg_matrix(m, 3, &svg, &len), ERR_OK);
    CHECK_INT(len, strlen(svg));
    CHECK_STR(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" "
                   "viewBox=\"0 0 11 11\" shape-rendering=\"crispEdges\">"
                   "<rect width=\"11\" height=\"11\" fill=\"#fff\"/>"
                   "<path fill=\"#000\" d=\"M4,4h3v1h-3zM5,5h1v1h-1z"
                   "M4,6h1v1h-1zM6,6h1v1h-1z\"/></svg>\n");
    free(svg);
}

TEST(only_bit_zero_means_dark)
{
    /* libqrencode keeps other flags in the upper bits of each byte. */
    static const unsigned char m[4] = {0xc0, 0x81, 0x02, 0x03};
    unsigned char grid[(2 + 8) * (2 + 8)] = {0};
    char *svg;
    size_t len;

    CHECK_INT(notify_qr_svg_matrix(m, 2, &svg, &len), ERR_OK);
    CHECK_INT(read_back(svg, grid, 10), 2);
    CHECK(grid[4 * 10 + 5] && grid[5 * 10 + 5]);
    free(svg);
}

TEST(real_code_module_for_module)
{
    const char *text = "MQT1.tk_000102030405060708090a0b.27-00ab3f9c1d2e4b5a."
                       "Lr8Cu5NlKwwN6aI3hrDALs-I8dJExfFlfLF6xBAqEMo";
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    int w, side, dark = 0;
    unsigned char *grid;
    char *svg, view[64];
    size_t len;

    CHECK(qr != NULL);
    w = qr->width;
    side = w + 2 * NOTIFY_QR_QUIET;
    for (int i = 0; i < w * w; i++)
        dark += qr->data[i] & 1;
    CHECK_INT(notify_qr_svg(text, &svg, &len), ERR_OK);
    snprintf(view, sizeof(view), "viewBox=\"0 0 %d %d\"", side, side);
    CHECK(strstr(svg, view) != NULL);
    grid = calloc((size_t)(side * side), 1);
    CHECK(grid != NULL);
    CHECK_INT(read_back(svg, grid, side), dark);

    /* Every module where libqrencode put it, and a white quiet zone. */
    for (int y = 0; y < side; y++) {
        for (int x = 0; x < side; x++) {
            int inside = x >= NOTIFY_QR_QUIET && x < NOTIFY_QR_QUIET + w &&
                         y >= NOTIFY_QR_QUIET && y < NOTIFY_QR_QUIET + w;
            int want = inside ? qr->data[(y - NOTIFY_QR_QUIET) * w +
                                         (x - NOTIFY_QR_QUIET)] &
                                    1
                              : 0;
            CHECK_INT(grid[y * side + x], want);
        }
    }
    free(grid);
    free(svg);
    QRcode_free(qr);
}

TEST(largest_matrix_fits_its_buffer)
{
    /* A checkerboard has the most runs a row can have. */
    unsigned char *m = malloc(NOTIFY_QR_WIDTH_MAX * NOTIFY_QR_WIDTH_MAX);
    int side = NOTIFY_QR_WIDTH_MAX + 2 * NOTIFY_QR_QUIET;
    unsigned char *grid = calloc((size_t)(side * side), 1);
    char *svg;
    size_t len;

    CHECK(m != NULL && grid != NULL);
    for (int y = 0; y < NOTIFY_QR_WIDTH_MAX; y++)
        for (int x = 0; x < NOTIFY_QR_WIDTH_MAX; x++)
            m[y * NOTIFY_QR_WIDTH_MAX + x] = (unsigned char)((x + y) % 2 == 0);
    CHECK_INT(notify_qr_svg_matrix(m, NOTIFY_QR_WIDTH_MAX, &svg, &len), ERR_OK);
    CHECK_INT(read_back(svg, grid, side),
              (NOTIFY_QR_WIDTH_MAX * NOTIFY_QR_WIDTH_MAX + 1) / 2);
    free(svg);
    free(grid);
    free(m);
}

TEST(refusals)
{
    static const unsigned char m[1] = {1};
    char long_text[NOTIFY_QR_TEXT_MAX + 2];
    char *svg = NULL;
    size_t len;

    CHECK_INT(notify_qr_svg_matrix(m, 0, &svg, &len), ERR_INVALID);
    CHECK_INT(notify_qr_svg_matrix(m, NOTIFY_QR_WIDTH_MAX + 1, &svg, &len),
              ERR_INVALID);
    CHECK_INT(notify_qr_svg("", &svg, &len), ERR_INVALID);
    CHECK_INT(notify_qr_svg(NULL, &svg, &len), ERR_INVALID);
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    CHECK_INT(notify_qr_svg(long_text, &svg, &len), ERR_INVALID);
    CHECK(svg == NULL);
}

HARNESS_MAIN(T(small_matrix_exact), T(only_bit_zero_means_dark),
             T(real_code_module_for_module), T(largest_matrix_fits_its_buffer),
             T(refusals))
