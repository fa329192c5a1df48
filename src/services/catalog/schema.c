#include "services/catalog/internal.h"

/*
 * Times are milliseconds since the epoch (UTC).  Prices are integers in
 * minor units.  A show's `version` grows with every change, so readers
 * can tell a stale copy.
 */
const struct store_migration catalog_migrations[] = {
    {1, "initial",
     "CREATE TABLE cities ("
     "  id INTEGER PRIMARY KEY,"
     "  name TEXT NOT NULL UNIQUE,"
     "  slug TEXT NOT NULL UNIQUE,"
     "  utc_offset_minutes INTEGER NOT NULL,"
     "  currency TEXT NOT NULL);"
     "CREATE TABLE cinemas ("
     "  id INTEGER PRIMARY KEY,"
     "  city_id INTEGER NOT NULL REFERENCES cities(id),"
     "  name TEXT NOT NULL,"
     "  address TEXT NOT NULL,"
     "  UNIQUE (city_id, name));"
     "CREATE TABLE screens ("
     "  id INTEGER PRIMARY KEY,"
     "  cinema_id INTEGER NOT NULL REFERENCES cinemas(id),"
     "  name TEXT NOT NULL,"
     "  layout TEXT NOT NULL,"
     "  seat_count INTEGER NOT NULL,"
     "  UNIQUE (cinema_id, name));"
     "CREATE TABLE movies ("
     "  id INTEGER PRIMARY KEY,"
     "  title TEXT NOT NULL,"
     "  language TEXT NOT NULL,"
     "  genres TEXT NOT NULL,"
     "  duration_minutes INTEGER NOT NULL,"
     "  certificate TEXT NOT NULL,"
     "  release_date TEXT NOT NULL,"
     "  synopsis TEXT NOT NULL);"
     "CREATE TABLE movie_genres ("
     "  movie_id INTEGER NOT NULL REFERENCES movies(id),"
     "  genre TEXT NOT NULL,"
     "  PRIMARY KEY (movie_id, genre)) WITHOUT ROWID;"
     "CREATE TABLE shows ("
     "  id INTEGER PRIMARY KEY,"
     "  movie_id INTEGER NOT NULL REFERENCES movies(id),"
     "  screen_id INTEGER NOT NULL REFERENCES screens(id),"
     "  starts_at INTEGER NOT NULL,"
     "  ends_at INTEGER NOT NULL CHECK (ends_at > starts_at),"
     "  prices TEXT NOT NULL,"
     "  hold_seconds INTEGER NOT NULL,"
     "  status TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),"
     "  cancel_reason TEXT,"
     "  version INTEGER NOT NULL DEFAULT 1);"
     "CREATE INDEX shows_by_screen ON shows (screen_id, starts_at);"
     "CREATE INDEX shows_by_movie ON shows (movie_id, starts_at);"
     "CREATE INDEX cinemas_by_city ON cinemas (city_id);"},
    /* Booking refuses holds that would strand a single empty seat. */
    {2, "show no-orphan-seats rule",
     "ALTER TABLE shows ADD COLUMN no_orphan_seats INTEGER NOT NULL "
     "DEFAULT 0;"},
    /* Show events written with the change they announce, relayed to the
     * message queue by outbox.c; sent_at is NULL until the queue took it. */
    {3, "show events outbox",
     "CREATE TABLE outbox ("
     "  id INTEGER PRIMARY KEY,"
     "  event_id TEXT NOT NULL UNIQUE,"
     "  topic TEXT NOT NULL,"
     "  body TEXT NOT NULL CHECK (json_valid(body)),"
     "  created_at INTEGER NOT NULL,"
     "  sent_at INTEGER);"
     "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;"
     "CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;"},
    /* Booking reads the policy with the show and applies it to
     * cancellations; shows made before it get the defaults. */
    {4, "show cancellation policy",
     "ALTER TABLE shows ADD COLUMN cancel_until_minutes INTEGER NOT NULL "
     "DEFAULT 120 CHECK (cancel_until_minutes BETWEEN 0 AND 10080);"
     "ALTER TABLE shows ADD COLUMN cancel_fee_percent INTEGER NOT NULL "
     "DEFAULT 10 CHECK (cancel_fee_percent BETWEEN 0 AND 100);"},
};

const size_t catalog_nmigrations =
    sizeof(catalog_migrations) / sizeof(catalog_migrations[0]);
