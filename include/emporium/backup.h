/* SPDX-License-Identifier: MIT */
/* backup.h — `emporium backup` and `emporium restore` for the embedded (SQLite) mode.
 *
 * backup: a consistent online copy of every database of a data dir while the shop serves.
 * A read transaction is opened on every database first, then each is copied with SQLite's
 * online backup API inside its transaction, so every file is the snapshot of the moment the
 * transactions began (all within a few microseconds of each other) and writers are never
 * blocked (WAL). The copies are checked (PRAGMA quick_check) and listed in MANIFEST.json.
 * restore: checks a backup, then installs it into a data dir that holds no shop (or, with
 * --force, replaces the one it holds: stop its server first).
 * PostgreSQL (EMPORIUM_DATABASE_URL): refused with exit 2; docs/operations.md says how
 * (pg_dump, or the operator's point-in-time recovery). */
#ifndef EMPORIUM_BACKUP_H
#define EMPORIUM_BACKUP_H

/* argv[0] is "backup" or "restore"; returns the exit status: 0 done, 1 failed, 2 usage or
 * configuration error. */
int backup_command(int argc, char **argv);

#endif
