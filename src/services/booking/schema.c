#include "services/booking/internal.h"

/*
 * A seat row is the truth about one seat of one show.  "Free" in every
 * write's condition is `state = 0 OR (state = 1 AND expires_at <= now)`:
 * an expired hold frees its seats by itself, whether or not the sweeper
 * has run.  Times are epoch milliseconds.
 */
const struct store_migration booking_migrations[] = {
    {1, "initial",
     "CREATE TABLE shows ("
     "  id INTEGER PRIMARY KEY,"
     "  catalog_version INTEGER NOT NULL,"
     "  status TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),"
     "  starts_at INTEGER NOT NULL,"
     "  hold_seconds INTEGER NOT NULL,"
     "  currency TEXT NOT NULL,"
     "  no_orphan INTEGER NOT NULL,"
     "  prices TEXT NOT NULL,"
     "  layout TEXT NOT NULL);"
     "CREATE TABLE seats ("
     "  show_id INTEGER NOT NULL REFERENCES shows(id),"
     "  idx INTEGER NOT NULL,"
     "  state INTEGER NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 3),"
     "  hold_id TEXT,"
     "  expires_at INTEGER NOT NULL DEFAULT 0,"
     "  version INTEGER NOT NULL DEFAULT 0,"
     "  PRIMARY KEY (show_id, idx)) WITHOUT ROWID;"
     "CREATE TABLE holds ("
     "  id TEXT PRIMARY KEY,"
     "  show_id INTEGER NOT NULL REFERENCES shows(id),"
     "  customer_id TEXT NOT NULL,"
     "  seat_idx TEXT NOT NULL,"
     "  seats TEXT NOT NULL,"
     "  total INTEGER NOT NULL,"
     "  currency TEXT NOT NULL,"
     "  status TEXT NOT NULL CHECK (status IN ('active', 'released',"
     "    'expired')),"
     "  created_at INTEGER NOT NULL,"
     "  expires_at INTEGER NOT NULL,"
     "  max_expires_at INTEGER NOT NULL,"
     "  extensions INTEGER NOT NULL DEFAULT 0,"
     "  ended_at INTEGER,"
     "  version INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID;"
     "CREATE INDEX holds_live ON holds (show_id) WHERE status = 'active';"
     "CREATE TABLE idempotency ("
     "  customer_id TEXT NOT NULL,"
     "  key TEXT NOT NULL,"
     "  request_hash TEXT NOT NULL,"
     "  status INTEGER NOT NULL,"
     "  content_type TEXT NOT NULL,"
     "  response TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL,"
     "  PRIMARY KEY (customer_id, key)) WITHOUT ROWID;"
     "CREATE INDEX idempotency_age ON idempotency (created_at);"},
};

const size_t booking_nmigrations =
    sizeof(booking_migrations) / sizeof(booking_migrations[0]);
