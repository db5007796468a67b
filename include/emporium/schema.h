/* SPDX-License-Identifier: MIT */
/* schema.h — `emporium migrate --plan`: what a migration run would do, applying nothing.
 *
 * For every logical database of the configured services (shards included): its schema
 * version, the number of migrations this program knows, and each migration that would run
 * (expand or contract, and its first statement); a database newer than the program says
 * whether this program may run on it (docs/operations.md, "Schema changes"). */
#ifndef EMPORIUM_SCHEMA_H
#define EMPORIUM_SCHEMA_H
#include <stdio.h>

struct config;

/* Prints the plan to out. 0 when this program could migrate and run on every database;
 * 1 when one would refuse it (schema newer and not marked readable) or cannot be read. */
int schema_plan(const struct config *cfg, FILE *out);

#endif
