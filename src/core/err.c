/* SPDX-License-Identifier: MIT */
/* err.c — names and texts of the error codes in emporium/err.h. */
#include "emporium/err.h"

static const struct {
    int code;
    const char *name;
    const char *text;
} errs[] = {
    {ERR_OK, "ok", "success"},
    {ERR_INVALID, "validation_failed", "invalid input"},
    {ERR_UNAUTHORIZED, "unauthorized", "authentication required"},
    {ERR_FORBIDDEN, "forbidden", "not allowed"},
    {ERR_NOTFOUND, "not_found", "not found"},
    {ERR_CONFLICT, "conflict", "conflict"},
    {ERR_TOOBIG, "too_large", "request too large"},
    {ERR_RATELIMITED, "rate_limited", "too many requests"},
    {ERR_UNAVAILABLE, "unavailable", "a dependency is unavailable"},
    {ERR_NOMEM, "internal", "out of memory"},
    {ERR_INTERNAL, "internal", "internal error"},
    {ERR_PAYMENT, "payment_failed", "payment failed"},
    {ERR_METHOD, "method_not_allowed", "method not allowed"},
    {ERR_BUSY, "busy", "temporarily busy, retry"},
    {ERR_HEADERS_TOOBIG, "headers_too_large", "request headers too large"},
    {ERR_UNSUPPORTED, "unsupported_media_type", "unsupported media type"},
    {ERR_NOT_MODIFIED, "not_modified", "not modified"},
};

const char *err_name(int code)
{
    for (unsigned i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (errs[i].code == code)
            return errs[i].name;
    return "internal";
}

const char *err_str(int code)
{
    for (unsigned i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (errs[i].code == code)
            return errs[i].text;
    return "internal error";
}
