/*
 * provider.h - the simulated card provider and the worker threads that
 * call it.
 *
 * A provider call takes tens of milliseconds to seconds, so it never runs
 * on an event-loop thread.  Calls queue in one bounded FIFO (queue_max
 * jobs) served by `workers` threads; each sleeps for the dialled latency,
 * decides the outcome, and hands the result to the job's done callback on
 * the worker thread.
 *
 * Like a real card network, the provider is idempotent by its own key:
 * it keeps a table of the charges it accepted or declined
 * (provider_charges, in the service's database, committed before the
 * result is handed back), and answers a repeated key with the first
 * result.  So an attempt repeated after a crash between "the provider
 * said yes" and the service's own commit is not charged twice.
 *
 * Dials change at run time (PUT /admin/provider) and apply to calls that
 * start after the change.  Card tokens "tok_decline", "tok_fail" and
 * "tok_timeout" decide the outcome whatever the dials say, for tests.
 */
#ifndef MARQUEE_SERVICES_PAYMENT_PROVIDER_H
#define MARQUEE_SERVICES_PAYMENT_PROVIDER_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct provider;

/* Named limits. */
#define PROVIDER_WORKERS_MAX    64
#define PROVIDER_QUEUE_MAX      65536
#define PROVIDER_LATENCY_MAX_MS 60000 /* latency_ms and jitter_ms dials */
#define PROVIDER_KEY_MAX        160   /* "charge:" and an idempotency key */
#define PROVIDER_ID_LEN         24    /* "pch_", 16 hex digits, NUL */
#define PROVIDER_CODE_MAX       32

struct provider_dials {
    int latency_ms;      /* mean time of a call */
    int jitter_ms;       /* each call is latency_ms +- up to this, >= 0 */
    double failure_rate; /* share of calls that fail (502), 0 to 1 */
    double decline_rate; /* share of calls declined (402), 0 to 1 */
    double timeout_rate; /* share of calls that never answer (504), 0 to 1 */
    bool outage;         /* every call refused at once (503) */
};

enum provider_outcome {
    PROVIDER_SUCCEEDED,
    PROVIDER_DECLINED,
    PROVIDER_FAILED,      /* the provider answered with an error */
    PROVIDER_TIMEOUT,     /* no answer within timeout_ms */
    PROVIDER_UNAVAILABLE, /* outage, shutting down, or the provider could
                           * not record the charge: nothing charged */
};

struct provider_result {
    enum provider_outcome outcome;
    char provider_id[PROVIDER_ID_LEN];    /* succeeded and declined */
    char decline_code[PROVIDER_CODE_MAX]; /* declined */
    int64_t elapsed_ms;                   /* time the call took */
};

/*
 * One call.  The caller fills the request part, keeps the job alive until
 * done() runs, and must not touch it meanwhile.  done() runs on a worker
 * thread (or, for jobs still queued at provider_stop, on the stopping
 * thread) exactly once per accepted job; it may block briefly (a store
 * submit) but not for long.
 */
struct provider_job {
    char key[PROVIDER_KEY_MAX + 1]; /* the provider's idempotency key */
    int64_t amount;
    char currency[4];
    const char *token; /* card token, owned by the caller */
    struct provider_result result;
    void (*done)(struct provider_job *job);
    struct provider_job *next; /* private to the provider */
};

struct provider_config {
    int workers;    /* 1 to PROVIDER_WORKERS_MAX */
    int queue_max;  /* 1 to PROVIDER_QUEUE_MAX */
    int timeout_ms; /* a call longer than this is a timeout */
    struct provider_dials dials;
};

/*
 * Checks dials; ERR_OK or ERR_INVALID.  For each field at fault calls
 * bad(field, detail, arg) when bad is not NULL, so a caller can list all.
 */
int provider_dials_check(const struct provider_dials *d,
                         void (*bad)(const char *field, const char *detail,
                                     void *arg),
                         void *arg);

/*
 * Starts the workers, each with its own read connection to store (not
 * owned; it must outlive the provider).  On ERR_OK *out is the caller's:
 * free with provider_stop().  ERR_INVALID for a bad config, ERR_NOMEM,
 * ERR_SYS when a thread cannot start.
 */
int provider_start(const struct provider_config *cfg, struct store *store,
                   struct provider **out);

/*
 * Stops: calls in progress end at once as PROVIDER_UNAVAILABLE unless
 * already decided, queued jobs get PROVIDER_UNAVAILABLE, and the workers
 * are joined.  Every accepted job's done() has run when it returns.
 */
void provider_stop(struct provider *p);

/*
 * Queues a call.  ERR_OK (done() will run), ERR_FULL when queue_max jobs
 * wait, ERR_CLOSED once stopping; on error done() never runs.  Never
 * blocks beyond a short mutex hold: callable on an event-loop thread.
 */
int provider_submit(struct provider *p, struct provider_job *job);

/* Jobs waiting for a worker now. */
int provider_queue_depth(struct provider *p);

void provider_get_dials(struct provider *p, struct provider_dials *out);

/* Replaces the dials; they must pass provider_dials_check (asserted). */
void provider_set_dials(struct provider *p, const struct provider_dials *d);

/* Whether the outage dial is on: callers refuse at once rather than queue. */
bool provider_in_outage(struct provider *p);

#endif
