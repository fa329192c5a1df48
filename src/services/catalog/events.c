/*
 * events.c - show events, and their "http-notify" backend (see events.h).
 *
 * publish() copies the event into a ring under a mutex and signals the
 * notifier thread; that is all it does, so an event-loop thread never
 * waits on a subscriber.  The notifier takes events in order and POSTs
 * each to every subscriber in turn, retrying transport failures and 5xx
 * answers with a doubling backoff.  A subscriber that stays down therefore
 * delays the others; the queue bound turns a long outage into dropped
 * events rather than unbounded memory.
 */
#include "services/catalog/events.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "http/client.h"

#define NOTIFY_PATH "/internal/v1/show-events"
/* Longest body: the type and two 64-bit integers fit well within it. */
#define NOTIFY_BODY_MAX 160

struct notify_item {
    char type[CATALOG_EVENTS_TYPE_MAX];
    int64_t show_id;
    int64_t version;
};

struct notifier {
    char urls[CATALOG_EVENTS_SUBSCRIBERS_MAX][CATALOG_EVENTS_URL_MAX + 1];
    size_t nurls;
    pthread_t thread;
    bool thread_started;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct notify_item *ring; /* CATALOG_EVENTS_QUEUE_MAX entries */
    size_t head, count;
    bool closing;
    int64_t drain_until_ms; /* monotonic; set when closing */
    bool dropping;          /* the last publish found the ring full */
    uint64_t dropped_full;

    /* Written by the notifier thread only, read after it is joined. */
    uint64_t delivered, undelivered, dropped_at_close;
};

static int64_t now_ms(void)
{
    return clock_mono_ms(clock_system());
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        continue;
}

/* Lower-case letters and dots: safe to put in JSON and logs unescaped. */
static bool type_valid(const char *type)
{
    size_t n = 0;

    if (type == NULL)
        return false;
    for (; type[n] != '\0'; n++)
        if ((type[n] < 'a' || type[n] > 'z') && type[n] != '.')
            return false;
    return n > 0 && n < CATALOG_EVENTS_TYPE_MAX;
}

/* --- publishing (event-loop threads) -------------------------------------- */

static int notify_publish(void *impl, const struct show_event *ev)
{
    struct notifier *n = impl;
    bool first_drop = false;
    uint64_t dropped = 0;
    int rc = ERR_OK;

    if (!type_valid(ev->type))
        return ERR_INVALID;
    if (n->nurls == 0)
        return ERR_OK;

    pthread_mutex_lock(&n->lock);
    if (n->closing) {
        rc = ERR_CLOSED;
    } else if (n->count == CATALOG_EVENTS_QUEUE_MAX) {
        rc = ERR_FULL;
        dropped = ++n->dropped_full;
        first_drop = !n->dropping;
        n->dropping = true;
    } else {
        struct notify_item *it =
            &n->ring[(n->head + n->count) % CATALOG_EVENTS_QUEUE_MAX];
        snprintf(it->type, sizeof(it->type), "%s", ev->type);
        it->show_id = ev->show_id;
        it->version = ev->version;
        n->count++;
        n->dropping = false;
        pthread_cond_signal(&n->wake);
    }
    pthread_mutex_unlock(&n->lock);

    /* Once per burst: subscribers fetch shows on demand, so a lost event
     * only delays them, and a line per event would flood the log. */
    if (first_drop)
        log_warn("catalog",
                 "show_event_dropped reason=queue_full queue_max=%d "
                 "type=%s show=%lld dropped_total=%llu",
                 CATALOG_EVENTS_QUEUE_MAX, ev->type, (long long)ev->show_id,
                 (unsigned long long)dropped);
    return rc;
}

/* --- delivering (the notifier thread) ------------------------------------- */

/* Milliseconds left before the drain deadline (INT64_MAX when none). */
static int64_t time_left(int64_t until_ms)
{
    return until_ms == 0 ? INT64_MAX : until_ms - now_ms();
}

/* Sends one event to one subscriber, with retries, until a 2xx comes. */
static void deliver_one(struct notifier *n, const char *url,
                        const struct notify_item *it, const char *body,
                        size_t len, int64_t until_ms)
{
    int64_t backoff_ms = CATALOG_EVENTS_BACKOFF_MS;
    int rc = ERR_OK, status = 0, tries = 0;

    while (tries < CATALOG_EVENTS_TRIES_MAX) {
        int64_t left = time_left(until_ms);
        if (left <= 0)
            break;
        int timeout_ms = left < CATALOG_EVENTS_TIMEOUT_MS
                             ? (int)left
                             : CATALOG_EVENTS_TIMEOUT_MS;
        struct http_client_response r;
        tries++;
        rc = http_client_request(url, "POST", NOTIFY_PATH, NULL, body, len,
                                 timeout_ms, &r);
        status = rc == ERR_OK ? r.status : 0;
        http_client_response_free(&r);
        if (status >= 200 && status < 300) {
            n->delivered++;
            return;
        }
        /* The subscriber refused this event: sending it again would not
         * change its mind. */
        if (rc == ERR_OK && status < 500) {
            log_warn("catalog",
                     "show_event_refused type=%s show=%lld version=%lld "
                     "url=%s status=%d",
                     it->type, (long long)it->show_id, (long long)it->version,
                     url, status);
            n->undelivered++;
            return;
        }
        if (tries < CATALOG_EVENTS_TRIES_MAX) {
            left = time_left(until_ms);
            sleep_ms(backoff_ms < left ? backoff_ms : left);
            backoff_ms *= 2;
        }
    }
    log_warn("catalog",
             "show_event_undelivered type=%s show=%lld version=%lld url=%s "
             "tries=%d error=%s status=%d",
             it->type, (long long)it->show_id, (long long)it->version, url,
             tries, rc == ERR_OK ? "none" : err_name(rc), status);
    n->undelivered++;
}

static void deliver(struct notifier *n, const struct notify_item *it,
                    int64_t until_ms)
{
    char body[NOTIFY_BODY_MAX];
    int len =
        snprintf(body, sizeof(body),
                 "{\"type\":\"%s\",\"show_id\":%lld,\"version\":%lld}",
                 it->type, (long long)it->show_id, (long long)it->version);

    if (len < 0 || (size_t)len >= sizeof(body)) {
        log_error("catalog", "show_event_unencodable type=%s show=%lld",
                  it->type, (long long)it->show_id);
        return;
    }
    for (size_t i = 0; i < n->nurls; i++) {
        if (time_left(until_ms) <= 0) {
            n->dropped_at_close++;
            continue;
        }
        deliver_one(n, n->urls[i], it, body, (size_t)len, until_ms);
    }
}

static void *notify_main(void *arg)
{
    struct notifier *n = arg;
    struct notify_item it;

    for (;;) {
        pthread_mutex_lock(&n->lock);
        while (n->count == 0 && !n->closing)
            pthread_cond_wait(&n->wake, &n->lock);
        if (n->count == 0) {
            pthread_mutex_unlock(&n->lock);
            return NULL;
        }
        it = n->ring[n->head];
        n->head = (n->head + 1) % CATALOG_EVENTS_QUEUE_MAX;
        n->count--;
        int64_t until_ms = n->closing ? n->drain_until_ms : 0;
        pthread_mutex_unlock(&n->lock);

        deliver(n, &it, until_ms);
    }
}

/* --- opening and closing -------------------------------------------------- */

static void notify_free(struct notifier *n)
{
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->wake);
    free(n->ring);
    free(n);
}

static void notify_close(void *impl)
{
    struct notifier *n = impl;

    if (n->thread_started) {
        pthread_mutex_lock(&n->lock);
        n->closing = true;
        n->drain_until_ms = now_ms() + CATALOG_EVENTS_DRAIN_MS;
        pthread_cond_signal(&n->wake);
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->thread, NULL);
    }
    if (n->undelivered > 0 || n->dropped_full > 0 || n->dropped_at_close > 0)
        log_warn("catalog",
                 "show_events_closed delivered=%llu undelivered=%llu "
                 "dropped_queue_full=%llu dropped_at_close=%llu",
                 (unsigned long long)n->delivered,
                 (unsigned long long)n->undelivered,
                 (unsigned long long)n->dropped_full,
                 (unsigned long long)n->dropped_at_close);
    notify_free(n);
}

static const struct show_events_ops http_notify_ops = {
    .name = "http-notify",
    .publish = notify_publish,
    .close = notify_close,
};

static int bad_url(const char *url, size_t len, const char *reason)
{
    log_error("config",
              "bad_value key=catalog.notify_urls url=\"%.*s\" reason=\"%s\"",
              (int)(len < 200 ? len : 200), url, reason);
    return ERR_CONFIG;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Splits the comma-separated list into n->urls, checking each. */
static int parse_urls(const char *urls, struct notifier *n)
{
    const char *p = urls != NULL ? urls : "";

    while (is_space(*p))
        p++;
    if (*p == '\0')
        return ERR_OK;
    for (;;) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *s = p, *e = end;
        while (s < e && is_space(*s))
            s++;
        while (e > s && is_space(e[-1]))
            e--;
        size_t len = (size_t)(e - s);

        if (len == 0)
            return bad_url(s, len, "empty entry in the list");
        if (len > CATALOG_EVENTS_URL_MAX)
            return bad_url(s, len, "URL too long");
        if (n->nurls == CATALOG_EVENTS_SUBSCRIBERS_MAX)
            return bad_url(s, len, "too many subscribers");
        char *url = n->urls[n->nurls];
        memcpy(url, s, len);
        url[len] = '\0';
        if (!http_client_url_valid(url))
            return bad_url(s, len, "expected http://host:port");
        n->nurls++;
        if (*end == '\0')
            return ERR_OK;
        p = end + 1;
    }
}

int show_events_http_open(const char *urls, struct show_events *out)
{
    struct notifier *n = calloc(1, sizeof(*n));
    int rc;

    memset(out, 0, sizeof(*out));
    if (n == NULL)
        return ERR_NOMEM;
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->wake, NULL);
    if ((rc = parse_urls(urls, n)) != ERR_OK)
        goto out_free;
    if (n->nurls > 0) {
        n->ring = calloc(CATALOG_EVENTS_QUEUE_MAX, sizeof(*n->ring));
        if (n->ring == NULL) {
            rc = ERR_NOMEM;
            goto out_free;
        }
        if (pthread_create(&n->thread, NULL, notify_main, n) != 0) {
            log_error("catalog", "thread_create_failed what=show_events");
            rc = ERR_SYS;
            goto out_free;
        }
        n->thread_started = true;
    }
    out->ops = &http_notify_ops;
    out->impl = n;
    log_info("catalog", "show_events_open backend=%s subscribers=%zu",
             http_notify_ops.name, n->nurls);
    return ERR_OK;

out_free:
    notify_free(n);
    return rc;
}

int show_events_publish(struct show_events *ev, const struct show_event *e)
{
    if (ev->ops == NULL)
        return ERR_OK;
    return ev->ops->publish(ev->impl, e);
}

void show_events_close(struct show_events *ev)
{
    if (ev->ops != NULL)
        ev->ops->close(ev->impl);
    memset(ev, 0, sizeof(*ev));
}
