/*
 * scale.c - the autoscaler's loop around as_decide(): read each ready
 * instance's /metrics, turn it into samples, decide, start or retire
 * instances, record the decision; and the status document of /status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "control/up_int.h"
#include "http/client.h"
#include "metrics/metrics.h"

/* The latency quantile the AS_P99 metric reads. */
#define UP_QUANTILE 0.99

/* One instance's sample from its /metrics and the previous read. */
static void sample_take(struct up *up, struct up_instance *in, int64_t now_ms,
                        struct as_sample *s)
{
    const struct topo_role *t = in->role->topo;
    struct http_client_response r;
    struct scrape cur;
    char url[64];
    double p99;

    memset(s, 0, sizeof(*s));
    if (!up_in_registry(in))
        return;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", in->port);
    if (http_client_request(url, "GET", "/metrics", NULL, NULL, 0,
                            up->check_timeout_ms, &r) != ERR_OK)
        return;
    if (r.status != 200) {
        http_client_response_free(&r);
        return;
    }
    scrape_parse(r.body, r.len, t->queue[0] != '\0' ? t->queue : NULL, &cur);
    http_client_response_free(&r);

    s->ready = true;
    if (cur.has_in_flight) {
        s->has[AS_IN_FLIGHT] = true;
        s->value[AS_IN_FLIGHT] = cur.in_flight;
    }
    if (cur.has_queue) {
        s->has[AS_QUEUE] = true;
        s->value[AS_QUEUE] = cur.queue_ready;
    }
    if (in->has_prev && now_ms > in->prev_ms) {
        double secs = (double)(now_ms - in->prev_ms) / 1000.0;

        if (cur.has_cpu && in->prev.has_cpu &&
            cur.cpu_seconds >= in->prev.cpu_seconds) {
            s->has[AS_CPU] = true;
            s->value[AS_CPU] = (cur.cpu_seconds - in->prev.cpu_seconds) / secs;
        }
        if (scrape_quantile(&in->prev, &cur, UP_QUANTILE, &p99)) {
            s->has[AS_P99] = true;
            s->value[AS_P99] = p99;
        }
    }
    in->prev = cur;
    in->has_prev = true;
    in->prev_ms = now_ms;
}

static void decision_record(struct up *up, struct up_role *r,
                            const struct as_decision *d)
{
    struct up_decision *e = &up->decisions[up->next_decision];
    const char *labels[2] = {r->topo->name, d->reason};

    metrics_inc(metrics_series(r->m_decisions, labels));
    metrics_set(r->m_desired, d->desired);
    /* Every decision is counted; the log and the ring keep the ones that
     * change something or change their reason, not every steady tick. */
    if (d->desired == d->current && r->last_reason != NULL &&
        strcmp(r->last_reason, d->reason) == 0)
        return;
    r->last_reason = d->reason;
    e->wall_ms = clock_wall_ms(clock_system());
    e->role = r->topo->name;
    e->d = *d;
    up->next_decision = (up->next_decision + 1) % UP_DECISIONS_MAX;
    if (up->ndecisions < UP_DECISIONS_MAX)
        up->ndecisions++;
    log_info("up",
             "scale_decision role=%s current=%d desired=%d recommended=%d "
             "metric=%s cpu=%.2f in_flight=%.2f p99=%.2f queue=%.2f "
             "reason=%s",
             r->topo->name, d->current, d->desired, d->recommended,
             as_metric_name(d->metric), d->ratio[AS_CPU],
             d->ratio[AS_IN_FLIGHT], d->ratio[AS_P99], d->ratio[AS_QUEUE],
             d->reason);
}

/* The instance to retire first: the first one found that is not serving
 * (starting or waiting to restart: retiring it costs nothing), else the
 * ready one with the highest number, the newest. */
static struct up_instance *retire_pick(struct up_role *r)
{
    struct up_instance *best = NULL;

    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++) {
        struct up_instance *in = &r->inst[i];

        if (in->retiring || (in->state != UP_STARTING &&
                             in->state != UP_READY && in->state != UP_BACKOFF))
            continue;
        if (best == NULL || (in->state != UP_READY) ||
            (best->state == UP_READY && in->slot > best->slot))
            best = in;
        if (best->state != UP_READY)
            break;
    }
    return best;
}

static void role_scale(struct up *up, struct up_role *r, int64_t now_ms)
{
    struct as_sample samples[AS_INSTANCES_MAX];
    struct as_decision d;
    size_t n = 0;
    int current = up_role_count(r);

    for (size_t i = 0; i < TOPO_INSTANCES_MAX && n < AS_INSTANCES_MAX; i++) {
        struct up_instance *in = &r->inst[i];

        if (in->retiring || (in->state != UP_STARTING &&
                             in->state != UP_READY && in->state != UP_BACKOFF))
            continue;
        sample_take(up, in, now_ms, &samples[n++]);
    }
    as_decide(&r->topo->policy, &r->as, now_ms, current, samples, n, &d);
    decision_record(up, r, &d);

    for (int k = current; k < d.desired; k++)
        if (up_instance_add(up, r, now_ms) == NULL)
            break;
    for (int k = d.desired; k < current; k++) {
        struct up_instance *in = retire_pick(r);

        if (in == NULL)
            break;
        up_instance_retire(up, in, now_ms);
    }
}

void up_scale_tick(struct up *up, int64_t now_ms)
{
    if (now_ms < up->next_scale_ms)
        return;
    up->next_scale_ms = now_ms + up->scale_interval_ms;
    for (size_t i = 0; i < up->nroles; i++)
        if (up->roles[i].topo->autoscale)
            role_scale(up, &up->roles[i], now_ms);
}

/* --- /status -------------------------------------------------------------- */

static json_t *instance_json(const struct up_instance *in, int64_t now_ms)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:I, s:b, s:s}", "name",
                          in->name, "address", "", "pid", (json_int_t)in->pid,
                          "state", up_state_name(in->state), "restarts",
                          (json_int_t)in->restarts, "crash_loop",
                          in->crash_loop, "last_exit", in->last_exit);
    char addr[64];

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", in->port);
    json_object_set_new(o, "address", json_string(addr));
    json_object_set_new(o, "in_registry", json_boolean(up_in_registry(in)));
    if (in->state == UP_READY)
        json_object_set_new(o, "up_ms",
                            json_integer((json_int_t)(now_ms - in->ready_ms)));
    if (in->state == UP_BACKOFF)
        json_object_set_new(
            o, "restart_in_ms",
            json_integer((json_int_t)(in->restart_at_ms - now_ms)));
    return o;
}

static json_t *role_json(const struct up_role *r, int64_t now_ms)
{
    const struct topo_role *t = r->topo;
    json_t *list = json_array();
    json_t *o;

    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++)
        if (r->inst[i].state != UP_EMPTY)
            json_array_append_new(list, instance_json(&r->inst[i], now_ms));
    o = json_pack("{s:s, s:I, s:b, s:o}", "role", t->name, "count",
                  (json_int_t)up_role_count(r), "autoscale", t->autoscale,
                  "instances", list);
    if (t->autoscale)
        json_object_set_new(o, "limits",
                            json_pack("{s:i, s:i}", "min", t->policy.min, "max",
                                      t->policy.max));
    return o;
}

static json_t *decision_json(const struct up_decision *e)
{
    char at[CLOCK_RFC3339_LEN];
    json_t *ratios = json_object();

    clock_format_rfc3339(e->wall_ms, at);
    for (int m = 0; m < AS_METRICS; m++)
        if (e->d.per_metric[m] >= 0)
            json_object_set_new(ratios, as_metric_name((enum as_metric)m),
                                json_real(e->d.ratio[m]));
    return json_pack("{s:s, s:s, s:i, s:i, s:i, s:s, s:o, s:s}", "at", at,
                     "role", e->role, "current", e->d.current, "desired",
                     e->d.desired, "recommended", e->d.recommended, "metric",
                     as_metric_name(e->d.metric), "ratios", ratios, "reason",
                     e->d.reason);
}

void up_status_render(struct up *up, int64_t now_ms)
{
    json_t *roles = json_array(), *decisions = json_array(), *doc;
    char gateway[64];
    char *text;

    for (size_t i = 0; i < up->nroles; i++)
        json_array_append_new(roles, role_json(&up->roles[i], now_ms));
    /* Newest first. */
    for (size_t k = 0; k < up->ndecisions; k++) {
        size_t i =
            (up->next_decision + UP_DECISIONS_MAX - 1 - k) % UP_DECISIONS_MAX;

        json_array_append_new(decisions, decision_json(&up->decisions[i]));
    }
    snprintf(gateway, sizeof(gateway), "http://127.0.0.1:%d", up->gateway_port);
    doc = json_pack("{s:s, s:s, s:s, s:o, s:O, s:o}", "state",
                    atomic_load(&up->stopping) ? "stopping"
                    : atomic_load(&up->ready)  ? "running"
                                               : "starting",
                    "gateway", gateway, "data_dir", up->data_dir, "roles",
                    roles, "pools", up->pools != NULL ? up->pools : json_null(),
                    "decisions", decisions);
    if (up->pools != NULL)
        json_object_set_new(doc, "pools_age_ms",
                            json_integer((json_int_t)(now_ms - up->pools_ms)));
    text = json_dumps(doc, JSON_INDENT(1));
    json_decref(doc);
    if (text == NULL)
        return;
    pthread_mutex_lock(&up->lock);
    free(up->status_text);
    up->status_text = text;
    pthread_mutex_unlock(&up->lock);
}
