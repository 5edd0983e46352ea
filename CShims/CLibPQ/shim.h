// CLibPQ: the only door to libpq (Debian's libpq-dev, PostgreSQL's client library). Only the
// Postgres module imports it; pkg-config (libpq) gives the include directory.
#ifndef SPOOL_CLIBPQ_H
#define SPOOL_CLIBPQ_H
#include <libpq-fe.h>
#endif
