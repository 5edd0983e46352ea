// pg_loop.c: the C yardstick for PostgresBench: the same statements with libpq in a plain
// loop on one connection: a primary-key SELECT in autocommit, and BEGIN + INSERT + COMMIT,
// text parameters as PostgresBench sends them. Prints statements per second.
// Usage: pg_loop URL OPS TABLE
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ok(PGconn *c, PGresult *r, const char *what) {
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", what, PQerrorMessage(c));
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: pg_loop URL OPS TABLE\n"); return 2; }
    int ops = atoi(argv[2]);
    const char *table = argv[3];
    PGconn *c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) { fprintf(stderr, "connect: %s", PQerrorMessage(c)); return 1; }
    char sql[256];
    snprintf(sql, sizeof sql, "SET client_min_messages = warning; DROP TABLE IF EXISTS %s; CREATE TABLE %s (id BIGINT PRIMARY KEY, body TEXT NOT NULL)", table, table);
    PGresult *r = PQexec(c, sql); ok(c, r, "create"); PQclear(r);
    char body[201]; memset(body, 'x', 200); body[200] = 0;
    char insert[128], select[128], id[32];
    snprintf(insert, sizeof insert, "INSERT INTO %s (id, body) VALUES ($1, $2)", table);
    snprintf(select, sizeof select, "SELECT body FROM %s WHERE id = $1", table);

    double t0 = now();
    for (int i = 0; i < ops; i++) {
        snprintf(id, sizeof id, "%d", i);
        const char *params[2] = { id, body };
        r = PQexec(c, "BEGIN"); ok(c, r, "begin"); PQclear(r);
        r = PQexecParams(c, insert, 2, NULL, params, NULL, NULL, 0); ok(c, r, "insert"); PQclear(r);
        r = PQexec(c, "COMMIT"); ok(c, r, "commit"); PQclear(r);
    }
    double inserts = ops / (now() - t0);
    t0 = now();
    for (int i = 0; i < ops; i++) {
        snprintf(id, sizeof id, "%d", i);
        const char *params[1] = { id };
        r = PQexecParams(c, select, 1, NULL, params, NULL, NULL, 0); ok(c, r, "select");
        if (PQntuples(r) != 1) { fprintf(stderr, "row %d missing\n", i); return 1; }
        PQclear(r);
    }
    double selects = ops / (now() - t0);
    printf("c insert_c1=%d select_c1=%d\n", (int)inserts, (int)selects);
    PQfinish(c);
    return 0;
}
