/*
 * internal.h - what the files of the payment service share.
 *
 * A charge travels: event-loop thread (checks, Idempotency-Key) ->
 * provider worker (the call) -> store writer (the charge row and the
 * stored answer, one transaction) -> back to the event-loop thread that
 * holds the request, which answers.  A refund skips the provider: its
 * checks against the charge run inside the writer's transaction, so two
 * refunds of one charge can never together pass its amount.
 */
#ifndef MARQUEE_SERVICES_PAYMENT_INTERNAL_H
#define MARQUEE_SERVICES_PAYMENT_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/rand.h"
#include "http/http.h"
#include "services/payment/provider.h"
#include "store/store.h"

/* Named limits. */
#define PAY_KEY_MAX        128 /* Idempotency-Key length */
#define PAY_REFERENCE_MAX  128
#define PAY_CUSTOMER_MAX   64
#define PAY_TOKEN_MAX      64
#define PAY_REASON_MAX     200
#define PAY_AMOUNT_MAX     100000000000LL /* minor units of one charge */
#define PAY_ID_LEN         20             /* "ch_"/"re_", 16 hex, NUL */
#define PAY_LIST_MAX       100            /* charges listed per reference */
#define PAY_RUNNING_MAX    65536          /* keys in flight at once */
#define PAY_IDEM_TTL_MS    (24LL * 3600 * 1000)
#define PAY_RETRY_AFTER_S  1 /* queue full, database busy */
#define PAY_OUTAGE_RETRY_S 5 /* the provider is down */
#define PAY_DETAIL_MAX     256

struct keyset;
struct metrics_series;

struct pay_metrics {
    struct metrics_series *succeeded, *declined, *failed; /* charges */
    struct metrics_series *refunds;
};

struct payment {
    struct store *store;
    struct clock *clock;
    struct http_server *server;
    struct provider *provider;
    struct keyset *running;  /* Idempotency-Keys in flight */
    const char *admin_token; /* "" disables /admin/ */
    atomic_bool closing;     /* the server's run has returned */
    struct pay_metrics metrics;
};

struct pay_thread {
    struct payment *p;
    struct store_conn *conn;
    struct rand rng;
};

enum pay_kind { PAY_CHARGE, PAY_REFUND };

/*
 * One charge or refund attempt, travelling request thread -> provider
 * worker -> writer -> request thread.  Owned by whichever stage holds it.
 */
struct pay_op {
    enum pay_kind kind;
    struct payment *p;
    struct http_async *async;
    char key[PAY_KEY_MAX + 1];
    char scope[16]; /* the idempotency scope: "charges" or "refunds" */
    char request_hash[20];
    int64_t now_ms;
    /* A charge. */
    char id[PAY_ID_LEN];
    int64_t amount;
    char currency[4];
    char reference[PAY_REFERENCE_MAX + 1];
    char customer[PAY_CUSTOMER_MAX + 1];
    char token[PAY_TOKEN_MAX + 1];
    struct provider_job job;
    /* A refund. */
    char charge_id[PAY_ID_LEN];
    char reason[PAY_REASON_MAX + 1];
    int64_t charge_refunded; /* the charge's total after this refund */
    /* The database write. */
    struct store_write w;
    /* The answer. */
    int status;
    char slug[40];
    char title[64];
    char detail[PAY_DETAIL_MAX];
    json_t *ext;    /* a problem's extension members, owned */
    char *response; /* a success body, serialized, owned */
};

/* schema.c */
extern const struct store_migration payment_migrations[];
extern const size_t payment_nmigrations;

/* charges.c: the public routes. */
void pay_handle_create_charge(struct http_req *req, void *app);
void pay_handle_get_charge(struct http_req *req, void *app);
void pay_handle_list_charges(struct http_req *req, void *app);
void pay_handle_create_refund(struct http_req *req, void *app);
void pay_handle_get_refund(struct http_req *req, void *app);
void pay_metrics_setup(struct pay_metrics *m);

/* admin.c: the admin routes. */
void pay_handle_get_provider(struct http_req *req, void *app);
void pay_handle_put_provider(struct http_req *req, void *app);
void pay_handle_ledger(struct http_req *req, void *app);
/* Parses a rate dial from configuration text; ERR_OK or ERR_INVALID. */
int pay_parse_rate(const char *text, double *out);

/* ops.c: the life of an op. */
struct pay_op *pay_op_new(struct payment *p, enum pay_kind kind);
void pay_op_free(struct pay_op *op);
void pay_op_fail(struct pay_op *op, int status, const char *slug,
                 const char *title, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The document stored for a problem answer: no instance or request_id. */
char *pay_op_problem_text(const struct pay_op *op);
/*
 * Answers op on its request's thread (after its commit, if any), ends its
 * key's time in flight and frees it.  Callable from any thread.
 */
void pay_op_finish(struct pay_op *op);
/* Fills a new id "<prefix>_<16 hex digits>" into out (PAY_ID_LEN). */
void pay_new_id(struct rand *rng, const char *prefix, char out[PAY_ID_LEN]);
bool pay_id_ok(const char *id, const char *prefix);

/* idem.c: Idempotency-Key. */
/*
 * On the request thread, after the body was checked: true when the
 * request was answered (no key or a bad one, a replay, a key in flight, a
 * key reused for another body); false to go on, the key then marked in
 * flight until pay_idem_end.
 */
bool pay_idem_begin(struct payment *p, struct http_req *req, struct pay_op *op);
void pay_idem_end(struct payment *p, struct pay_op *op);
/* Inside a writer job: stores the op's answer under its key. */
int pay_idem_store(struct store_conn *c, const struct pay_op *op, int status,
                   const char *response);
/* Queues the deletion of keys older than PAY_IDEM_TTL_MS. */
void pay_idem_expire_old(struct payment *p, int64_t now_ms);

#endif
