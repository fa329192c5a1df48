#include "services/notify/internal.h"
#include "store/store.h"

/*
 * events is the dedupe record (I4): one row per event id applied, written
 * in the same transaction as the event's effect, so "applied" and
 * "recorded" can never disagree after a crash.  tickets.booking_id is
 * UNIQUE as well: a second confirmation of one booking under another
 * event id cannot make a second ticket even if the code above had a bug.
 * deliveries.event_id is UNIQUE for the same reason: one message per
 * event.  Times are epoch milliseconds.
 */
const struct store_migration notify_migrations[] = {
    {1, "initial",
     "CREATE TABLE events ("
     "  id TEXT PRIMARY KEY,"
     "  type TEXT NOT NULL,"
     "  booking_id TEXT NOT NULL,"
     "  outcome TEXT NOT NULL CHECK (outcome IN ('issued', 'duplicate',"
     "    'cancelled')),"
     "  processed_at INTEGER NOT NULL) WITHOUT ROWID;"
     "CREATE TABLE tickets ("
     "  id TEXT PRIMARY KEY,"
     "  booking_id TEXT NOT NULL UNIQUE,"
     "  show_id INTEGER NOT NULL,"
     "  customer_id TEXT NOT NULL,"
     "  status TEXT NOT NULL CHECK (status IN ('valid', 'cancelled')),"
     "  code TEXT NOT NULL,"
     "  total INTEGER NOT NULL,"
     "  currency TEXT NOT NULL,"
     "  event_id TEXT NOT NULL,"
     "  issued_at INTEGER NOT NULL,"
     "  cancelled_at INTEGER) WITHOUT ROWID;"
     "CREATE TABLE ticket_seats ("
     "  ticket_id TEXT NOT NULL REFERENCES tickets(id),"
     "  seat TEXT NOT NULL,"
     "  pos INTEGER NOT NULL,"
     "  state TEXT NOT NULL CHECK (state IN ('valid', 'cancelled')),"
     "  cancelled_at INTEGER,"
     "  PRIMARY KEY (ticket_id, seat)) WITHOUT ROWID;"
     "CREATE TABLE deliveries ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  customer_id TEXT NOT NULL,"
     "  booking_id TEXT NOT NULL,"
     "  event_id TEXT NOT NULL UNIQUE,"
     "  kind TEXT NOT NULL CHECK (kind IN ('tickets', 'cancellation')),"
     "  message TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL);"
     "CREATE INDEX deliveries_customer ON deliveries (customer_id, id);"},
};

const size_t notify_nmigrations =
    sizeof(notify_migrations) / sizeof(notify_migrations[0]);
