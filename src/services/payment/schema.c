#include "services/payment/internal.h"

/*
 * Money is integer minor units.  A charge's `refunded` is the sum of its
 * refunds, kept in the refund's own transaction; the CHECK makes a refund
 * past the charge impossible even for a bug in the code above it.
 * provider_charges is the simulated provider's own table, by its
 * idempotency key (provider.h); the service reads it only through the
 * provider.  Times are epoch milliseconds.
 */
const struct store_migration payment_migrations[] = {
    {1, "initial",
     "CREATE TABLE charges ("
     "  id TEXT PRIMARY KEY,"
     "  status TEXT NOT NULL CHECK (status IN ('succeeded', 'declined',"
     "    'failed')),"
     "  amount INTEGER NOT NULL CHECK (amount > 0),"
     "  currency TEXT NOT NULL,"
     "  reference TEXT NOT NULL,"
     "  customer_id TEXT NOT NULL,"
     "  refunded INTEGER NOT NULL DEFAULT 0"
     "    CHECK (refunded >= 0 AND refunded <= amount),"
     "  provider_key TEXT NOT NULL,"
     "  provider_charge_id TEXT,"
     "  decline_code TEXT,"
     "  failure TEXT,"
     "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
     "CREATE INDEX charges_reference ON charges (reference, created_at);"
     "CREATE TABLE refunds ("
     "  id TEXT PRIMARY KEY,"
     "  charge_id TEXT NOT NULL REFERENCES charges(id),"
     "  amount INTEGER NOT NULL CHECK (amount > 0),"
     "  currency TEXT NOT NULL,"
     "  reason TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
     "CREATE INDEX refunds_charge ON refunds (charge_id);"
     "CREATE TABLE idempotency ("
     "  scope TEXT NOT NULL,"
     "  key TEXT NOT NULL,"
     "  request_hash TEXT NOT NULL,"
     "  status INTEGER NOT NULL,"
     "  content_type TEXT NOT NULL,"
     "  response TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL,"
     "  PRIMARY KEY (scope, key)) WITHOUT ROWID;"
     "CREATE INDEX idempotency_age ON idempotency (created_at);"
     "CREATE TABLE provider_charges ("
     "  key TEXT PRIMARY KEY,"
     "  amount INTEGER NOT NULL,"
     "  currency TEXT NOT NULL,"
     "  outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'declined')),"
     "  provider_charge_id TEXT NOT NULL,"
     "  decline_code TEXT,"
     "  created_at INTEGER NOT NULL) WITHOUT ROWID;"},
    /* One row per provider charge: a key's attempt repeated after its
     * stored answer expired finds its charge instead of adding one. */
    {2, "charge_per_provider_key",
     "CREATE UNIQUE INDEX charges_provider_key ON charges (provider_key)"
     "  WHERE status IN ('succeeded', 'declined');"},
};

const size_t payment_nmigrations =
    sizeof(payment_migrations) / sizeof(payment_migrations[0]);
