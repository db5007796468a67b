/* SPDX-License-Identifier: MIT */
/* web_image.c — product pictures: a deterministic SVG drawn for each product.
 *
 * The palette follows the category (a category's products look related), the shapes follow
 * the product's key (its id or SKU), the monogram is the name's initials (or the SKU's last
 * characters when the name is not known). Same input, same bytes. Served by h_image()
 * in web_http.c. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "web_internal.h"

#define IMG_W 400
#define IMG_H 300

uint64_t web__hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* HSL (h in degrees, s and l in percent) as #rrggbb. */
static void hsl_hex(int h, int s, int l, char out[8])
{
    double S = s / 100.0, L = l / 100.0;
    double c = (1 - (2 * L - 1 < 0 ? -(2 * L - 1) : 2 * L - 1)) * S;
    double hp = (h % 360) / 60.0;
    double m2 = hp - 2 * (int)(hp / 2);
    double x = c * (1 - (m2 - 1 < 0 ? -(m2 - 1) : m2 - 1));
    double r = 0, g = 0, b = 0;
    switch ((int)hp) {
    case 0:
        r = c, g = x;
        break;
    case 1:
        r = x, g = c;
        break;
    case 2:
        g = c, b = x;
        break;
    case 3:
        g = x, b = c;
        break;
    case 4:
        r = x, b = c;
        break;
    default:
        r = c, b = x;
        break;
    }
    double m = L - c / 2;
    snprintf(out, 8, "#%02x%02x%02x", (unsigned)((r + m) * 255 + 0.5) & 255u,
             (unsigned)((g + m) * 255 + 0.5) & 255u, (unsigned)((b + m) * 255 + 0.5) & 255u);
}

/* Copies s into out with XML's five special characters escaped, at most max_chars input
 * bytes (cut at a UTF-8 boundary, with an ellipsis when cut). */
static void xml_text(char *out, size_t cap, const char *s, size_t max_chars)
{
    size_t o = 0, i = 0;
    for (; s[i] && i < max_chars && o + 8 < cap; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        if (rep) {
            size_t n = strlen(rep);
            memcpy(out + o, rep, n);
            o += n;
        } else if ((unsigned char)s[i] >= 0x20) {
            out[o++] = s[i];
        }
    }
    if (s[i] && o + 4 < cap) {
        while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
            o--; /* drop a partial UTF-8 sequence */
        if (o > 0 && (unsigned char)out[o - 1] >= 0xc0)
            o--;
        memcpy(out + o, "\xe2\x80\xa6", 3);
        o += 3;
    }
    out[o] = 0;
}

/* Up to two initials of the name's words (ASCII letters and digits only). */
static void initials(const char *name, char out[3])
{
    int n = 0;
    bool start = true;
    for (const char *p = name; *p && n < 2; p++) {
        if (isalnum((unsigned char)*p)) {
            if (start)
                out[n++] = (char)toupper((unsigned char)*p);
            start = false;
        } else {
            start = true;
        }
    }
    out[n] = 0;
}

size_t web__product_svg(char *out, size_t cap, const char *key, const char *name,
                        const char *category)
{
    /* The palette follows the category, so a category's products look related; the shapes
     * follow the product. */
    uint64_t seed = web__hash(key);
    uint64_t pal = category[0] ? web__hash(category) : seed;
    int hue = (int)(pal % 360);
    char c1[8], c2[8], ink[8];
    hsl_hex(hue, 55, 34, c1);
    hsl_hex(hue + 40, 60, 22, c2);
    hsl_hex(hue, 70, 92, ink);

    char label[8];
    if (name[0]) {
        initials(name, label);
    } else {
        /* a SKU: its last three characters */
        size_t n = strlen(key);
        snprintf(label, sizeof label, "%s", n > 3 ? key + n - 3 : key);
    }
    char title[700], caption[160], esc_label[48];
    xml_text(title, sizeof title, name[0] ? name : key, 120);
    xml_text(caption, sizeof caption, category[0] ? category : key, 30);
    xml_text(esc_label, sizeof esc_label, label, 4);

    size_t len = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(out + len, len < cap ? cap - len : 0, __VA_ARGS__);                      \
        if (w_ < 0 || (size_t)w_ >= (len < cap ? cap - len : 0))                                   \
            return 0;                                                                              \
        len += (size_t)w_;                                                                         \
    } while (0)
    PUT("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
        "height=\"%d\" role=\"img\" aria-label=\"%s\"><title>%s</title>"
        "<defs><linearGradient id=\"g\" x1=\"0\" y1=\"0\" x2=\"1\" y2=\"1\">"
        "<stop offset=\"0\" stop-color=\"%s\"/><stop offset=\"1\" stop-color=\"%s\"/>"
        "</linearGradient></defs><rect width=\"%d\" height=\"%d\" fill=\"url(#g)\"/>",
        IMG_W, IMG_H, IMG_W, IMG_H, title, title, c1, c2, IMG_W, IMG_H);
    int shapes = 4 + (int)(next(&seed) % 4);
    for (int i = 0; i < shapes; i++) {
        int x = (int)(next(&seed) % IMG_W), y = (int)(next(&seed) % IMG_H);
        int r = 20 + (int)(next(&seed) % 90);
        int op = 8 + (int)(next(&seed) % 18);
        if (next(&seed) % 2)
            PUT("<circle cx=\"%d\" cy=\"%d\" r=\"%d\" fill=\"%s\" fill-opacity=\"0.%02d\"/>", x, y,
                r, ink, op);
        else
            PUT("<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"12\" fill=\"%s\" "
                "fill-opacity=\"0.%02d\" transform=\"rotate(%d %d %d)\"/>",
                x - r, y - r, 2 * r, 2 * r, ink, op, (int)(next(&seed) % 90), x, y);
    }
    PUT("<circle cx=\"200\" cy=\"135\" r=\"78\" fill=\"%s\" fill-opacity=\"0.92\"/>"
        "<text x=\"200\" y=\"135\" text-anchor=\"middle\" dominant-baseline=\"central\" "
        "font-family=\"sans-serif\" font-size=\"64\" font-weight=\"700\" fill=\"%s\">%s</text>"
        "<text x=\"200\" y=\"270\" text-anchor=\"middle\" font-family=\"sans-serif\" "
        "font-size=\"20\" letter-spacing=\"2\" fill=\"%s\">%s</text></svg>",
        ink, c2, esc_label, ink, caption);
#undef PUT
    return len;
}
