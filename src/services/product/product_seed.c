/* SPDX-License-Identifier: MIT */
/* product_seed.c — `emporium seed` and the demo catalog (in progress). */
#include <stdio.h>

#include "emporium/app.h"
#include "product_internal.h"

int product__seed_command(struct app *app, int argc, char **argv)
{
    fprintf(stderr, "emporium seed: not implemented yet\n");
    return 1;
}

int product__on_serve(struct app *app) { return 0; }
