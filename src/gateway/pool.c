/*
 * pool.c - pools of upstream instances and their changing membership.
 *
 * Each pool has one mutex.  It is held only around calls into the
 * mechanism modules (balance, health, breaker) and the counters, never
 * across I/O: a pick takes the lock, chooses, counts the call in flight
 * and lets go before anything is sent.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "gateway/internal.h"

/* A health check in flight; thread 0 only. */
struct gw_check {
    struct gw_check *next, **prev;
    struct gateway *gw;
    struct gw_instance *inst; /* one reference */
    struct http_upstream_call *call;
};

static const char *const outcome_names[GW_OUT_COUNT] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "connect", "timeout", "io", "toobig",
};

int64_t gw_now_ms(void)
{
    return clock_mono_ms(clock_system());
}

/* --- metrics ------------------------------------------------------------- */

static struct metrics_family *family(enum metrics_type type, const char *name,
                                     const char *help, size_t nlabels,
                                     const char *const *labels)
{
    const double *b =
        type == METRICS_HISTOGRAM ? metrics_latency_buckets : NULL;
    size_t nb = type == METRICS_HISTOGRAM ? metrics_latency_nbuckets : 0;

    return metrics_family(metrics_process(), type, name, help, nlabels, labels,
                          b, nb);
}

static void instance_metrics(struct gw_instance *i)
{
    static const char *const pl[] = {"pool", "instance", "result"};
    const char *v[3] = {i->pool->name, i->addr, NULL};
    struct metrics_family *f;

    f = family(METRICS_COUNTER, "marquee_gateway_upstream_requests_total",
               "Calls to an upstream instance by how they ended", 3, pl);
    for (int k = 0; k < GW_OUT_COUNT; k++) {
        v[2] = outcome_names[k];
        i->m_outcome[k] = metrics_series(f, v);
    }
    f = family(METRICS_HISTOGRAM, "marquee_gateway_upstream_duration_seconds",
               "Time from sending a call to an instance to its end", 2, pl);
    i->m_duration = metrics_series(f, v);
    f = family(METRICS_GAUGE, "marquee_gateway_instance_up",
               "1 while an instance passes its health checks", 2, pl);
    i->m_up = metrics_series(f, v);
    f = family(METRICS_COUNTER, "marquee_gateway_ejections_total",
               "Times an instance was ejected by outlier detection", 2, pl);
    i->m_ejections = metrics_series(f, v);
}

static void pool_metrics(struct gw_pool *p)
{
    static const char *const pl[] = {"pool", "reason"};
    const char *v[2] = {p->name, NULL};
    struct metrics_family *f;

    f = family(METRICS_GAUGE, "marquee_gateway_breaker_state",
               "Circuit breaker of a pool: 0 closed, 1 half-open, 2 open", 1,
               pl);
    p->m_breaker_state = metrics_series(f, v);
    f = family(METRICS_COUNTER, "marquee_gateway_breaker_opens_total",
               "Times a pool's circuit breaker opened", 1, pl);
    p->m_breaker_opens = metrics_series(f, v);
    f = family(METRICS_COUNTER, "marquee_gateway_retries_total",
               "Retries sent to a pool", 1, pl);
    p->m_retries = metrics_series(f, v);
    f = family(METRICS_COUNTER, "marquee_gateway_retry_budget_exhausted_total",
               "Retries not sent because the pool's retry budget was spent", 1,
               pl);
    p->m_budget_exhausted = metrics_series(f, v);
    f = family(METRICS_COUNTER, "marquee_gateway_rejected_total",
               "Requests answered 503 without an upstream call", 2, pl);
    v[1] = "breaker_open";
    p->m_rejected_open = metrics_series(f, v);
    v[1] = "no_instance";
    p->m_rejected_none = metrics_series(f, v);
}

/* --- instances ------------------------------------------------------------ */

void gw_instance_retain(struct gw_instance *i)
{
    atomic_fetch_add(&i->refs, 1);
}

void gw_instance_release(struct gw_instance *i)
{
    if (i == NULL || atomic_fetch_sub(&i->refs, 1) != 1)
        return;
    http_upstream_release(i->up);
    free(i);
}

static int instance_new(struct gw_pool *p, const char *addr, bool start_up,
                        int64_t now_ms, struct gw_instance **out)
{
    struct gw_instance *i = calloc(1, sizeof(*i));
    char host[GW_ADDR_MAX];
    int port, rc;

    if (i == NULL)
        return ERR_NOMEM;
    rc = gw_addr_parse(addr, host, sizeof(host), &port);
    assert(rc == ERR_OK && "addresses are checked when parsed");
    rc = http_upstream_create(p->gw->server, host, port, p->gw->max_idle,
                              &i->up);
    if (rc != ERR_OK) {
        log_error("gateway",
                  "upstream_create_failed pool=%s instance=%s error=%s",
                  p->name, addr, err_name(rc));
        free(i);
        return rc;
    }
    atomic_init(&i->refs, 1);
    i->pool = p;
    snprintf(i->addr, sizeof(i->addr), "%s", addr);
    gw_health_init(&i->health, &p->gw->health, now_ms, start_up);
    gw_outlier_init(&i->outlier);
    i->member = true;
    i->shown_up = gw_health_up(&i->health);
    instance_metrics(i);
    metrics_set(i->m_up, i->shown_up ? 1 : 0);
    *out = i;
    return ERR_OK;
}

/* --- pools ---------------------------------------------------------------- */

int gw_pool_init(struct gw_pool *p, struct gateway *gw,
                 const struct gw_pool_spec *spec, int64_t probe_deadline_ms)
{
    struct gw_breaker_config bc = gw->breaker;
    int rc;

    memset(p, 0, sizeof(*p));
    p->gw = gw;
    snprintf(p->name, sizeof(p->name), "%s", spec->name);
    p->hash = spec->hash;
    bc.probe_deadline_ms = probe_deadline_ms;
    rc = gw_breaker_init(&p->breaker, &bc);
    if (rc != ERR_OK)
        return rc;
    p->shown_state = GW_BREAKER_CLOSED;
    gw_retry_budget_init(&p->budget, gw->retry_ratio, gw->retry_min);
    if (rand_seed_secure(&p->rng) != ERR_OK)
        rand_seed(&p->rng, (uint64_t)gw_now_ms());
    pool_metrics(p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->set_lock, NULL);
    return ERR_OK;
}

void gw_pool_free(struct gw_pool *p)
{
    for (size_t k = 0; k < p->n; k++) {
        p->inst[k]->member = false;
        gw_instance_release(p->inst[k]);
    }
    p->n = 0;
    if (p->ring_built)
        gw_ring_free(&p->ring);
    p->ring_built = false;
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->set_lock);
}

struct gw_pool *gw_pool_find(struct gateway *gw, const char *name)
{
    for (size_t k = 0; k < gw->npools; k++)
        if (strcmp(gw->pools[k].name, name) == 0)
            return &gw->pools[k];
    return NULL;
}

/* The balancer's view of the members, in member order.  Under the lock. */
static void hosts_of(struct gw_pool *p, int64_t now_ms,
                     struct gw_lb_host *hosts)
{
    for (size_t k = 0; k < p->n; k++) {
        struct gw_instance *i = p->inst[k];

        hosts[k].name = i->addr;
        hosts[k].in_flight = i->in_flight;
        hosts[k].weight = gw_health_weight(&i->health, &p->gw->health, now_ms);
        hosts[k].available = gw_health_up(&i->health) &&
                             !gw_outlier_ejected(&i->outlier, now_ms);
    }
}

/* Under the lock; a failed build leaves hashed routes on P2C. */
static void ring_rebuild(struct gw_pool *p, int64_t now_ms)
{
    struct gw_lb_host hosts[GW_INSTANCES_MAX];

    if (!p->hash)
        return;
    if (p->ring_built)
        gw_ring_free(&p->ring);
    p->ring_built = false;
    if (p->n == 0)
        return;
    hosts_of(p, now_ms, hosts);
    if (gw_ring_build(&p->ring, hosts, p->n) == ERR_OK)
        p->ring_built = true;
    else
        log_error("gateway", "ring_build_failed pool=%s", p->name);
}

static struct gw_instance *member_named(struct gw_pool *p, const char *addr)
{
    for (size_t k = 0; k < p->n; k++)
        if (strcmp(p->inst[k]->addr, addr) == 0)
            return p->inst[k];
    return NULL;
}

static bool addrs_have(const struct gw_addrs *a, const char *addr)
{
    for (size_t k = 0; k < a->n; k++)
        if (strcmp(a->addr[k], addr) == 0)
            return true;
    return false;
}

/*
 * Makes an instance for each address that is not a member yet.  Outside
 * the pool lock (creating an upstream allocates and takes the server's
 * lock), under set_lock, so the members cannot change meanwhile.
 */
static int fresh_make(struct gw_pool *p, const struct gw_addrs *addrs,
                      bool start_up, int64_t now_ms, struct gw_instance **fresh)
{
    int rc = ERR_OK;

    for (size_t k = 0; k < addrs->n && rc == ERR_OK; k++)
        if (member_named(p, addrs->addr[k]) == NULL)
            rc = instance_new(p, addrs->addr[k], start_up, now_ms, &fresh[k]);
    return rc;
}

/* Logs a change once the lock is released; drops the removed ones. */
static void change_report(struct gw_pool *p, const struct gw_addrs *addrs,
                          const bool *added, struct gw_instance **gone,
                          size_t ngone, bool start_up)
{
    size_t nadded = 0;

    for (size_t k = 0; k < ngone; k++) {
        metrics_set(gone[k]->m_up, 0);
        log_info("gateway", "instance_removed pool=%s instance=%s", p->name,
                 gone[k]->addr);
        gw_instance_release(gone[k]);
    }
    for (size_t k = 0; k < addrs->n; k++) {
        nadded += added[k];
        if (added[k] && !start_up)
            log_info("gateway", "instance_added pool=%s instance=%s", p->name,
                     addrs->addr[k]);
    }
    if (nadded > 0 || ngone > 0)
        log_info("gateway",
                 "pool_changed pool=%s size=%zu added=%zu removed=%zu", p->name,
                 addrs->n, nadded, ngone);
}

int gw_pool_set(struct gw_pool *p, const struct gw_addrs *addrs, bool start_up)
{
    struct gw_instance *fresh[GW_INSTANCES_MAX] = {0};
    struct gw_instance *gone[GW_INSTANCES_MAX];
    bool added[GW_INSTANCES_MAX] = {false};
    size_t ngone = 0;
    int64_t now = gw_now_ms();
    int rc;

    pthread_mutex_lock(&p->set_lock);
    rc = fresh_make(p, addrs, start_up, now, fresh);
    if (rc != ERR_OK)
        goto out_unlock;

    pthread_mutex_lock(&p->lock);
    for (size_t k = 0; k < p->n; k++) {
        if (!addrs_have(addrs, p->inst[k]->addr)) {
            p->inst[k]->member = false;
            gone[ngone++] = p->inst[k];
        }
    }
    struct gw_instance *next[GW_INSTANCES_MAX];
    for (size_t k = 0; k < addrs->n; k++) {
        next[k] = fresh[k] != NULL ? fresh[k] : member_named(p, addrs->addr[k]);
        added[k] = fresh[k] != NULL;
        fresh[k] = NULL; /* the pool's reference now */
    }
    memcpy(p->inst, next, addrs->n * sizeof(next[0]));
    p->n = addrs->n;
    ring_rebuild(p, now);
    pthread_mutex_unlock(&p->lock);
    change_report(p, addrs, added, gone, ngone, start_up);

out_unlock:
    pthread_mutex_unlock(&p->set_lock);
    for (size_t k = 0; k < addrs->n; k++)
        gw_instance_release(fresh[k]);
    return rc;
}

/* --- the request path ----------------------------------------------------- */

/*
 * Counts breaker transitions; under the lock.  Returns the new state for
 * breaker_log() to report once the lock is released, or -1.
 */
static int breaker_watch(struct gw_pool *p, int64_t now_ms)
{
    enum gw_breaker_state s = gw_breaker_state(&p->breaker, now_ms);
    uint64_t opens = p->breaker.opened_total;

    if (opens != p->shown_opens) {
        metrics_add(p->m_breaker_opens, opens - p->shown_opens);
        p->shown_opens = opens;
    }
    if (s == p->shown_state)
        return -1;
    p->shown_state = s;
    /* Rising with severity, so alert rules can compare with >=. */
    metrics_set(p->m_breaker_state, s == GW_BREAKER_CLOSED      ? 0
                                    : s == GW_BREAKER_HALF_OPEN ? 1
                                                                : 2);
    return (int)s;
}

/* Logs what breaker_watch() saw, outside the lock. */
static void breaker_log(const struct gw_pool *p, int change)
{
    if (change < 0)
        return;
    log_info("gateway", "breaker_%s pool=%s",
             change == GW_BREAKER_OPEN     ? "opened"
             : change == GW_BREAKER_CLOSED ? "closed"
                                           : "half_open",
             p->name);
}

static int choose(struct gw_pool *p, int64_t now_ms, bool has_key,
                  uint64_t key_hash, const bool *exclude,
                  const struct gw_lb_host *hosts)
{
    if (has_key && p->ring_built)
        return gw_ring_pick(&p->ring, hosts, p->n, key_hash, p->gw->hash_factor,
                            exclude);
    (void)now_ms;
    return gw_balance_p2c(hosts, p->n, exclude, &p->rng);
}

enum gw_pick_result gw_pool_pick(struct gw_pool *p, int64_t now_ms,
                                 bool has_key, uint64_t key_hash,
                                 struct gw_instance *const *tried,
                                 size_t ntried, struct gw_instance **out,
                                 struct gw_breaker_ticket *ticket,
                                 int64_t *retry_after_ms)
{
    struct gw_lb_host hosts[GW_INSTANCES_MAX];
    bool exclude[GW_INSTANCES_MAX] = {false};
    enum gw_pick_result res = GW_PICK_OK;
    int k = -1, change = -1;

    pthread_mutex_lock(&p->lock);
    hosts_of(p, now_ms, hosts);
    for (size_t j = 0; j < p->n; j++)
        for (size_t t = 0; t < ntried; t++)
            if (p->inst[j] == tried[t])
                exclude[j] = true;
    if (p->n > 0)
        k = choose(p, now_ms, has_key, key_hash, exclude, hosts);
    /* Every instance tried: one of them again beats no answer. */
    if (k < 0 && ntried > 0 && p->n > 0)
        k = choose(p, now_ms, has_key, key_hash, NULL, hosts);
    if (k < 0) {
        res = GW_PICK_NONE;
        *retry_after_ms = 1000;
        goto out_unlock;
    }
    if (!gw_breaker_allow(&p->breaker, now_ms, ticket, retry_after_ms)) {
        res = GW_PICK_OPEN;
        change = breaker_watch(p, now_ms);
        goto out_unlock;
    }
    change = breaker_watch(p, now_ms);
    *out = p->inst[k];
    (*out)->in_flight++;
    gw_instance_retain(*out);

out_unlock:
    pthread_mutex_unlock(&p->lock);
    breaker_log(p, change);
    if (res == GW_PICK_OPEN)
        metrics_inc(p->m_rejected_open);
    else if (res == GW_PICK_NONE)
        metrics_inc(p->m_rejected_none);
    return res;
}

/* Under the lock. */
static size_t ejected_count(struct gw_pool *p, int64_t now_ms)
{
    size_t n = 0;

    for (size_t k = 0; k < p->n; k++)
        n += gw_outlier_ejected(&p->inst[k]->outlier, now_ms);
    return n;
}

void gw_pool_done(struct gw_pool *p, struct gw_instance *inst,
                  const struct gw_breaker_ticket *ticket, int64_t now_ms,
                  enum gw_outcome outcome, bool breaker_failed,
                  bool outlier_failed, int64_t duration_ms)
{
    bool ejected = false;
    int change;

    pthread_mutex_lock(&p->lock);
    inst->in_flight--;
    inst->requests++;
    inst->failures += breaker_failed;
    gw_breaker_record(&p->breaker, ticket, now_ms, breaker_failed, duration_ms);
    change = breaker_watch(p, now_ms);
    /* A removed instance's outcome no longer says anything of the pool. */
    if (inst->member) {
        bool was = gw_outlier_ejected(&inst->outlier, now_ms);
        size_t nej = ejected_count(p, now_ms);

        gw_outlier_record(&inst->outlier, &p->gw->outlier, now_ms,
                          outlier_failed, p->n, nej, &p->rng);
        ejected = !was && gw_outlier_ejected(&inst->outlier, now_ms);
        if (ejected) {
            inst->ejections++;
            inst->shown_ejected = true;
        }
    }
    pthread_mutex_unlock(&p->lock);

    breaker_log(p, change);
    metrics_inc(inst->m_outcome[outcome]);
    metrics_observe(inst->m_duration, (double)duration_ms / 1000.0);
    if (ejected) {
        metrics_inc(inst->m_ejections);
        log_info("gateway", "instance_ejected pool=%s instance=%s", p->name,
                 inst->addr);
    }
    gw_instance_release(inst);
}

/* --- health checks -------------------------------------------------------- */

static void check_done(void *arg, enum http_upstream_result result,
                       const struct http_upstream_response *resp,
                       bool first_byte)
{
    struct gw_check *c = arg;
    struct gw_instance *i = c->inst;
    struct gw_pool *p = i->pool;
    bool passed = result == HTTP_UPSTREAM_OK && resp != NULL &&
                  resp->status >= 200 && resp->status < 300;
    bool was, now_up, member;

    (void)first_byte;
    *c->prev = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;

    pthread_mutex_lock(&p->lock);
    i->checking = false;
    was = i->shown_up;
    gw_health_record(&i->health, &p->gw->health, gw_now_ms(), passed);
    now_up = gw_health_up(&i->health);
    i->shown_up = now_up;
    member = i->member;
    pthread_mutex_unlock(&p->lock);

    if (was != now_up && member) {
        metrics_set(i->m_up, now_up ? 1 : 0);
        log_info("gateway", "instance_%s pool=%s instance=%s",
                 now_up ? "up" : "down", p->name, i->addr);
    }
    gw_instance_release(i);
    free(c);
}

static void check_send(struct gateway *gw, struct gw_instance *i)
{
    struct gw_check *c = calloc(1, sizeof(*c));
    struct http_upstream_request rq = {
        .method = "GET",
        .target = "/readyz",
        .connect_timeout_ms = (int)gw->health.timeout_ms,
        .first_byte_timeout_ms = (int)gw->health.timeout_ms,
        .total_timeout_ms = (int)gw->health.timeout_ms,
        .max_response_bytes = 4096,
    };

    if (c == NULL) {
        pthread_mutex_lock(&i->pool->lock);
        i->checking = false;
        pthread_mutex_unlock(&i->pool->lock);
        gw_instance_release(i);
        return;
    }
    c->gw = gw;
    c->inst = i;
    c->next = gw->checks;
    if (c->next != NULL)
        c->next->prev = &c->next;
    c->prev = &gw->checks;
    gw->checks = c;
    c->call = http_upstream_send(i->up, 0, &rq, check_done, c);
    if (c->call != NULL)
        return;
    /* Shutting down, or out of memory: try again at a later tick. */
    gw->checks = c->next;
    if (c->next != NULL)
        c->next->prev = &gw->checks;
    pthread_mutex_lock(&i->pool->lock);
    i->checking = false;
    pthread_mutex_unlock(&i->pool->lock);
    gw_instance_release(i);
    free(c);
}

void gw_pool_tick(struct gw_pool *p, int64_t now_ms)
{
    struct gw_instance *due[GW_INSTANCES_MAX];
    struct gw_instance *back[GW_INSTANCES_MAX];
    size_t ndue = 0, nback = 0;
    int change;

    pthread_mutex_lock(&p->lock);
    for (size_t k = 0; k < p->n; k++) {
        struct gw_instance *i = p->inst[k];

        if (!i->checking && gw_health_due(&i->health, now_ms)) {
            i->checking = true;
            gw_instance_retain(i);
            due[ndue++] = i;
        }
        if (i->shown_ejected && !gw_outlier_ejected(&i->outlier, now_ms)) {
            i->shown_ejected = false;
            back[nback++] = i;
        }
    }
    change = breaker_watch(p, now_ms);
    pthread_mutex_unlock(&p->lock);

    breaker_log(p, change);
    for (size_t k = 0; k < nback; k++)
        log_info("gateway", "instance_readmitted pool=%s instance=%s", p->name,
                 back[k]->addr);
    for (size_t k = 0; k < ndue; k++)
        check_send(p->gw, due[k]);
}

void gw_checks_cancel(struct gateway *gw)
{
    while (gw->checks != NULL) {
        struct gw_check *c = gw->checks;

        gw->checks = c->next;
        if (c->call != NULL)
            http_upstream_cancel(c->call);
        gw_instance_release(c->inst);
        free(c);
    }
}

/* --- admin view ----------------------------------------------------------- */

json_t *gw_pool_json(struct gw_pool *p, int64_t now_ms)
{
    json_t *list = json_array();
    json_t *out;
    enum gw_breaker_state s;
    int change;

    pthread_mutex_lock(&p->lock);
    s = gw_breaker_state(&p->breaker, now_ms);
    change = breaker_watch(p, now_ms);
    for (size_t k = 0; k < p->n; k++) {
        struct gw_instance *i = p->inst[k];
        double w = gw_health_weight(&i->health, &p->gw->health, now_ms);

        json_array_append_new(
            list,
            json_pack("{s:s, s:s, s:b, s:I, s:f, s:I, s:I, s:I}", "address",
                      i->addr, "health",
                      gw_health_up(&i->health) ? "up" : "down", "ejected",
                      gw_outlier_ejected(&i->outlier, now_ms), "in_flight",
                      (json_int_t)i->in_flight, "weight", isfinite(w) ? w : 0.0,
                      "requests_total", (json_int_t)i->requests,
                      "failures_total", (json_int_t)i->failures,
                      "ejections_total", (json_int_t)i->ejections));
    }
    out = json_pack("{s:s, s:s, s:{s:s, s:I, s:I}, s:o}", "name", p->name,
                    "balance", p->hash ? "hash" : "p2c", "breaker", "state",
                    gw_breaker_state_name(s), "opened_total",
                    (json_int_t)p->breaker.opened_total, "rejected_total",
                    (json_int_t)p->breaker.rejected_total, "instances", list);
    pthread_mutex_unlock(&p->lock);
    breaker_log(p, change);
    return out;
}
