/*
 * mq_rabbitmq.c - the messaging backend on a RabbitMQ broker (AMQP 0-9-1,
 * librabbitmq).
 *
 * One AMQP connection per handle, behind one mutex: librabbitmq is not
 * thread-safe, and every call here is a short exchange of frames with a
 * bounded wait, so threads take turns.  Three channels:
 *   1  publishing, in confirm mode (every publish waits for basic.ack);
 *   2  claiming (basic.get) and settling (basic.ack, basic.reject); its
 *      delivery tags are the messages' tags;
 *   3  everything that may fail at channel level (declares, passive
 *      declares of queues that may be missing, dead-letter scans), so a
 *      404 there never costs the deliveries held on channel 2.
 *
 * Per queue Q: a durable quorum queue Q bound to the topic exchange, with
 * the dead-letter exchange sending to the quorum queue "Q:dead", and a
 * quorum queue "Q:retry" whose messages expire after their nack delay and
 * dead-letter back to Q.  ':' is not allowed in mq queue names, so these
 * never collide with a queue someone declares.
 *
 * docs/internals/mq.md ("The RabbitMQ backend") says why each choice was
 * made and what RabbitMQ cannot do that the SQLite backend does.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/rand.h"
#include "mq/mq_int.h"

#define MQR_EXCHANGE      "marquee"      /* topic exchange of every publish */
#define MQR_DEAD_EXCHANGE "marquee:dead" /* direct: routing key = queue */

#define MQR_CH_PUBLISH 1
#define MQR_CH_CLAIM   2
#define MQR_CH_SCRATCH 3

#define MQR_FRAME_MAX      131072 /* bytes of one frame (broker default) */
#define MQR_CONNECT_MS     2000   /* TCP connect and AMQP handshake */
#define MQR_RPC_MS         5000   /* any broker answer, confirms included */
#define MQR_BACKOFF_MS_MIN 100    /* first wait after a failed connect */
#define MQR_BACKOFF_MS_MAX 5000   /* longest wait between connects */
#define MQR_HELD_MAX       1024   /* unsettled deliveries of one handle */
#define MQR_DEAD_SCAN_MAX  1024   /* dead letters one list or requeue reads */
#define MQR_QNAME_MAX      (MQ_NAME_MAX + 8) /* "Q:retry" and "Q:dead" */

/* Headers this backend reads and writes. */
#define MQR_H_ATTEMPTS "x-mq-attempts" /* deliveries of earlier copies */
#define MQR_H_ERROR    "x-mq-error"    /* last nack's error text */
#define MQR_H_DEAD_MS  "x-mq-dead-ms"  /* set on dead letters we move */
#define MQR_H_DCOUNT   "x-delivery-count"

#define MQR_LEASE_EXPIRED "lease expired"

/* A delivery of the claim channel not yet acked or rejected. */
struct mqr_held {
    uint64_t tag;
    int64_t lease_end_ms; /* wall time, from the configured clock */
    int attempt;
    char queue[MQ_NAME_MAX + 1];
};

struct mq_backend {
    pthread_mutex_t lock; /* one call at a time on conn */
    const struct mq_config *cfg;
    char *url; /* amqp_parse_url() points into it */
    struct amqp_connection_info ci;
    amqp_connection_state_t conn; /* NULL while disconnected */
    bool scratch_open;
    int failures;        /* connects failed since the last success */
    int64_t retry_at_ms; /* monotonic: no connect before */
    int backoff_ms;
    int64_t lease; /* epoch of channel 2's deliveries, > 0 */
    struct rand rng;
    size_t nheld;
    struct mqr_held held[MQR_HELD_MAX]; /* ascending tags */
};

/* Names and tables ------------------------------------------------------- */

static void mqr_qname(char out[MQR_QNAME_MAX + 1], const char *queue,
                      const char *suffix)
{
    snprintf(out, MQR_QNAME_MAX + 1, "%s%s", queue, suffix);
}

static amqp_table_entry_t mqr_entry_str(const char *key, const char *v)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};

    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(v);
    return e;
}

static amqp_table_entry_t mqr_entry_int(const char *key, int64_t v)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};

    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = v;
    return e;
}

static const amqp_field_value_t *mqr_table_get(const amqp_table_t *t,
                                               const char *key)
{
    size_t klen = strlen(key);

    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        if (e->key.len == klen && memcmp(e->key.bytes, key, klen) == 0)
            return &e->value;
    }
    return NULL;
}

/* An integer field of any width; false if missing or not an integer. */
static bool mqr_field_int(const amqp_field_value_t *v, int64_t *out)
{
    if (v == NULL)
        return false;
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8: *out = v->value.i8; return true;
    case AMQP_FIELD_KIND_U8: *out = v->value.u8; return true;
    case AMQP_FIELD_KIND_I16: *out = v->value.i16; return true;
    case AMQP_FIELD_KIND_U16: *out = v->value.u16; return true;
    case AMQP_FIELD_KIND_I32: *out = v->value.i32; return true;
    case AMQP_FIELD_KIND_U32: *out = v->value.u32; return true;
    case AMQP_FIELD_KIND_I64: *out = v->value.i64; return true;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        *out = (int64_t)(v->value.u64 & INT64_MAX);
        return true;
    default: return false;
    }
}

static void mqr_field_text(const amqp_field_value_t *v, char *dst, size_t cap)
{
    size_t n;

    dst[0] = '\0';
    if (v == NULL ||
        (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES))
        return;
    n = v->value.bytes.len < cap - 1 ? v->value.bytes.len : cap - 1;
    memcpy(dst, v->value.bytes.bytes, n);
    dst[n] = '\0';
}

static void mqr_bytes_text(amqp_bytes_t b, char *dst, size_t cap)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;

    if (n > 0)
        memcpy(dst, b.bytes, n);
    dst[n] = '\0';
}

/* Connection ------------------------------------------------------------- */

static struct timeval mqr_tv(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static int64_t mqr_new_lease(struct mq_backend *b)
{
    return (int64_t)(rand_next(&b->rng) >> 1) | 1;
}

/* Drops the connection; the broker returns every delivery it held. */
static void mqr_disconnect(struct mq_backend *b)
{
    if (b->conn == NULL)
        return;
    amqp_destroy_connection(b->conn);
    b->conn = NULL;
    b->scratch_open = false;
    b->nheld = 0;
}

/* Maps a failed RPC to an error code; a connection-level failure drops the
 * connection, a channel-level one only marks the channel closed. */
static int mqr_reply(struct mq_backend *b, amqp_rpc_reply_t r, int channel,
                     const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return ERR_OK;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        log_warn("mq", "rabbitmq_failed op=%s err=\"%s\"", what,
                 amqp_error_string2(r.library_error));
        mqr_disconnect(b);
        return r.library_error == AMQP_STATUS_TIMEOUT ? ERR_TIMEOUT : ERR_IO;
    case AMQP_RESPONSE_SERVER_EXCEPTION: break;
    default: mqr_disconnect(b); return ERR_IO;
    }

    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *c = r.reply.decoded;
        amqp_channel_close_ok_t ok = {0};
        int code = c->reply_code;

        if (code != AMQP_NOT_FOUND)
            log_warn("mq",
                     "rabbitmq_channel_closed op=%s code=%d text=\"%.*s\"",
                     what, code, (int)c->reply_text.len,
                     (const char *)c->reply_text.bytes);
        if (amqp_send_method(b->conn, (amqp_channel_t)channel,
                             AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != 0) {
            mqr_disconnect(b);
            return ERR_IO;
        }
        if (channel == MQR_CH_SCRATCH) {
            b->scratch_open = false;
        } else {
            /* Channels 1 and 2 carry state (confirm mode, deliveries). */
            mqr_disconnect(b);
        }
        if (code == AMQP_NOT_FOUND)
            return ERR_NOTFOUND;
        if (code == AMQP_PRECONDITION_FAILED)
            return ERR_CONFIG;
        if (code == AMQP_ACCESS_REFUSED)
            return ERR_DENIED;
        return ERR_IO;
    }

    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *c = r.reply.decoded;
        amqp_connection_close_ok_t ok = {0};

        log_warn("mq", "rabbitmq_connection_closed op=%s code=%d text=\"%.*s\"",
                 what, c->reply_code, (int)c->reply_text.len,
                 (const char *)c->reply_text.bytes);
        amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        mqr_disconnect(b);
        return ERR_IO;
    }
    mqr_disconnect(b);
    return ERR_IO;
}

/* A library status (not an RPC) that failed: the connection is unusable. */
static int mqr_status(struct mq_backend *b, int status, const char *what)
{
    if (status == AMQP_STATUS_OK)
        return ERR_OK;
    log_warn("mq", "rabbitmq_failed op=%s err=\"%s\"", what,
             amqp_error_string2(status));
    mqr_disconnect(b);
    return status == AMQP_STATUS_TIMEOUT ? ERR_TIMEOUT : ERR_IO;
}

static int mqr_channel_open(struct mq_backend *b, int channel)
{
    amqp_channel_open(b->conn, (amqp_channel_t)channel);
    return mqr_reply(b, amqp_get_rpc_reply(b->conn), channel, "channel_open");
}

static int mqr_exchange_declare(struct mq_backend *b, const char *name,
                                const char *type)
{
    amqp_exchange_declare(b->conn, MQR_CH_SCRATCH, amqp_cstring_bytes(name),
                          amqp_cstring_bytes(type), 0, 1, 0, 0,
                          amqp_empty_table);
    return mqr_reply(b, amqp_get_rpc_reply(b->conn), MQR_CH_SCRATCH,
                     "exchange_declare");
}

/* Opens the connection, its channels and both exchanges. */
static int mqr_connect_now(struct mq_backend *b)
{
    struct timeval connect_tv = mqr_tv(MQR_CONNECT_MS);
    struct timeval rpc_tv = mqr_tv(MQR_RPC_MS);
    amqp_socket_t *sock;
    amqp_rpc_reply_t r;
    int rc;

    b->conn = amqp_new_connection();
    if (b->conn == NULL)
        return ERR_NOMEM;
    sock = amqp_tcp_socket_new(b->conn);
    if (sock == NULL) {
        mqr_disconnect(b);
        return ERR_NOMEM;
    }
    rc = amqp_socket_open_noblock(sock, b->ci.host, b->ci.port, &connect_tv);
    if (rc != AMQP_STATUS_OK)
        return mqr_status(b, rc, "connect");
    amqp_set_handshake_timeout(b->conn, &connect_tv);
    amqp_set_rpc_timeout(b->conn, &rpc_tv);

    /* Heartbeat 0: a dead peer on this machine closes its socket; a
     * broken link shows as a failed or timed-out call. */
    r = amqp_login(b->conn, b->ci.vhost, 0, MQR_FRAME_MAX, 0,
                   AMQP_SASL_METHOD_PLAIN, b->ci.user, b->ci.password);
    if ((rc = mqr_reply(b, r, 0, "login")) != ERR_OK)
        return rc;
    for (int ch = MQR_CH_PUBLISH; ch <= MQR_CH_SCRATCH; ch++) {
        if ((rc = mqr_channel_open(b, ch)) != ERR_OK)
            return rc;
    }
    b->scratch_open = true;
    amqp_confirm_select(b->conn, MQR_CH_PUBLISH);
    if ((rc = mqr_reply(b, amqp_get_rpc_reply(b->conn), MQR_CH_PUBLISH,
                        "confirm_select")) != ERR_OK)
        return rc;
    if ((rc = mqr_exchange_declare(b, MQR_EXCHANGE, "topic")) != ERR_OK ||
        (rc = mqr_exchange_declare(b, MQR_DEAD_EXCHANGE, "direct")) != ERR_OK)
        return rc;
    b->lease = mqr_new_lease(b);
    b->nheld = 0;
    return ERR_OK;
}

/*
 * Connected, or ERR_IO at once while the backoff after a failed connect
 * runs: callers retry on their own schedule and never wait here longer
 * than one connect attempt.
 */
static int mqr_connected(struct mq_backend *b)
{
    int64_t now = clock_mono_ms(clock_system());
    int rc;

    if (b->conn != NULL) {
        if (b->scratch_open)
            return ERR_OK;
        if ((rc = mqr_channel_open(b, MQR_CH_SCRATCH)) != ERR_OK)
            return rc;
        b->scratch_open = true;
        return ERR_OK;
    }
    if (now < b->retry_at_ms)
        return ERR_IO;

    rc = mqr_connect_now(b);
    if (rc != ERR_OK) {
        mqr_disconnect(b);
        b->backoff_ms =
            b->backoff_ms == 0 ? MQR_BACKOFF_MS_MIN : b->backoff_ms * 2;
        if (b->backoff_ms > MQR_BACKOFF_MS_MAX)
            b->backoff_ms = MQR_BACKOFF_MS_MAX;
        b->retry_at_ms = now + b->backoff_ms;
        if (b->failures++ == 0)
            log_warn("mq",
                     "rabbitmq_connect_failed host=%s port=%d vhost=%s "
                     "err=%s retry_in_ms=%d",
                     b->ci.host, b->ci.port, b->ci.vhost, err_name(rc),
                     b->backoff_ms);
        return rc == ERR_TIMEOUT || rc == ERR_NOMEM ? rc : ERR_IO;
    }
    if (b->failures > 0)
        log_info("mq",
                 "rabbitmq_connected host=%s port=%d vhost=%s "
                 "failed_connects=%d",
                 b->ci.host, b->ci.port, b->ci.vhost, b->failures);
    b->failures = 0;
    b->backoff_ms = 0;
    return ERR_OK;
}

/* Publishing ------------------------------------------------------------- */

/* What one publish carries besides its body. */
struct mqr_pub {
    const char *exchange, *routing_key;
    const char *topic, *id;
    int64_t attempts;  /* deliveries of earlier copies; 0: no header */
    const char *error; /* NULL or "": no header */
    int64_t dead_ms;   /* 0: no header */
    int expiration_ms; /* 0: none */
};

/* Reads frames on channel 1 until the broker confirms the publish. */
static int mqr_wait_confirm(struct mq_backend *b, bool *returned)
{
    int64_t deadline = clock_mono_ms(clock_system()) + MQR_RPC_MS;

    for (;;) {
        int64_t left = deadline - clock_mono_ms(clock_system());
        struct timeval tv = mqr_tv(left > 0 ? (int)left : 0);
        amqp_frame_t f;
        int rc;

        if (left <= 0)
            return mqr_status(b, AMQP_STATUS_TIMEOUT, "publish_confirm");
        amqp_maybe_release_buffers_on_channel(b->conn, MQR_CH_PUBLISH);
        rc = amqp_simple_wait_frame_noblock(b->conn, &f, &tv);
        if (rc != AMQP_STATUS_OK)
            return mqr_status(b, rc, "publish_confirm");
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: return ERR_OK;
        case AMQP_BASIC_NACK_METHOD:
            log_warn("mq", "rabbitmq_publish_refused err=\"broker nack\"");
            return ERR_IO;
        case AMQP_BASIC_RETURN_METHOD: {
            /* Unroutable (mandatory): its content follows, then the ack. */
            amqp_message_t msg;
            amqp_rpc_reply_t r = amqp_read_message(b->conn, f.channel, &msg, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL)
                return mqr_reply(b, r, f.channel, "publish_return");
            amqp_destroy_message(&msg);
            *returned = true;
            break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
                                  .reply = f.payload.method};
            rc = mqr_reply(b, r, f.channel, "publish");
            if (f.channel != MQR_CH_PUBLISH && b->conn != NULL)
                break;
            return rc == ERR_OK ? ERR_IO : rc;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
                                  .reply = f.payload.method};
            return mqr_reply(b, r, 0, "publish");
        }
        default: break;
        }
    }
}

/*
 * Publishes persistently with mandatory set and waits for the confirm.
 * *routed is false when no queue took it.
 */
static int mqr_publish_raw(struct mq_backend *b, const struct mqr_pub *p,
                           const void *body, size_t len, bool *routed)
{
    amqp_table_entry_t headers[3];
    amqp_basic_properties_t props = {0};
    char expiration[24];
    bool returned = false;
    int nh = 0;
    int rc;

    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.message_id = amqp_cstring_bytes(p->id);
    props.type = amqp_cstring_bytes(p->topic); /* survives re-routing */
    props.content_type = amqp_cstring_bytes("application/octet-stream");
    if (p->attempts > 0)
        headers[nh++] = mqr_entry_int(MQR_H_ATTEMPTS, p->attempts);
    if (p->error != NULL && p->error[0] != '\0')
        headers[nh++] = mqr_entry_str(MQR_H_ERROR, p->error);
    if (p->dead_ms > 0)
        headers[nh++] = mqr_entry_int(MQR_H_DEAD_MS, p->dead_ms);
    if (nh > 0) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = nh;
        props.headers.entries = headers;
    }
    if (p->expiration_ms > 0) {
        snprintf(expiration, sizeof(expiration), "%d", p->expiration_ms);
        props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props.expiration = amqp_cstring_bytes(expiration);
    }

    rc = amqp_basic_publish(b->conn, MQR_CH_PUBLISH,
                            amqp_cstring_bytes(p->exchange),
                            amqp_cstring_bytes(p->routing_key), 1, 0, &props,
                            (amqp_bytes_t){len, (void *)body});
    if (rc != AMQP_STATUS_OK)
        return mqr_status(b, rc, "publish");
    rc = mqr_wait_confirm(b, &returned);
    if (rc != ERR_OK)
        return rc;
    *routed = !returned;
    return ERR_OK;
}

static int mqr_publish(struct mq_backend *b, const char *topic, const char *id,
                       const void *body, size_t len, int *stored)
{
    struct mqr_pub p = {.exchange = MQR_EXCHANGE,
                        .routing_key = topic,
                        .topic = topic,
                        .id = id};
    bool routed = false;
    int rc;

    pthread_mutex_lock(&b->lock);
    rc = mqr_connected(b);
    if (rc == ERR_OK)
        rc = mqr_publish_raw(b, &p, body, len, &routed);
    pthread_mutex_unlock(&b->lock);
    /* The exchange routes in the broker: how many queues took a copy is
     * not told, only whether any did. */
    if (rc == ERR_OK)
        *stored = routed ? 1 : 0;
    return rc;
}

/* Declaring -------------------------------------------------------------- */

static int mqr_queue_declare(struct mq_backend *b, const char *name,
                             bool passive, amqp_table_t args, uint32_t *ready)
{
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(b->conn, MQR_CH_SCRATCH, amqp_cstring_bytes(name),
                           passive, 1, 0, 0, args);
    int rc = mqr_reply(b, amqp_get_rpc_reply(b->conn), MQR_CH_SCRATCH,
                       passive ? "queue_check" : "queue_declare");

    if (rc == ERR_OK && ready != NULL)
        *ready = ok->message_count;
    if (rc == ERR_CONFIG)
        log_error("mq",
                  "rabbitmq_queue_mismatch queue=%s err=\"declared before "
                  "with other arguments (mq.max_attempts differs?)\"",
                  name);
    return rc;
}

static int mqr_bind(struct mq_backend *b, const char *queue,
                    const char *exchange, const char *key)
{
    amqp_queue_bind(b->conn, MQR_CH_SCRATCH, amqp_cstring_bytes(queue),
                    amqp_cstring_bytes(exchange), amqp_cstring_bytes(key),
                    amqp_empty_table);
    return mqr_reply(b, amqp_get_rpc_reply(b->conn), MQR_CH_SCRATCH,
                     "queue_bind");
}

/* Q:dead, then Q:retry, then Q with its limits: each target exists before
 * anything can be sent to it. */
static int mqr_declare_locked(struct mq_backend *b, const char *queue,
                              const char *const *patterns, size_t npatterns)
{
    char dead[MQR_QNAME_MAX + 1], retry[MQR_QNAME_MAX + 1];
    amqp_table_entry_t quorum = mqr_entry_str("x-queue-type", "quorum");
    amqp_table_entry_t retry_args[] = {
        quorum,
        mqr_entry_str("x-dead-letter-exchange", ""),
        mqr_entry_str("x-dead-letter-routing-key", queue),
        mqr_entry_str("x-dead-letter-strategy", "at-least-once"),
        mqr_entry_str("x-overflow", "reject-publish"),
    };
    /* A quorum queue dead-letters a message returned more than
     * x-delivery-limit times: max_attempts deliveries in all. */
    amqp_table_entry_t main_args[] = {
        quorum,
        mqr_entry_str("x-dead-letter-exchange", MQR_DEAD_EXCHANGE),
        mqr_entry_str("x-dead-letter-routing-key", queue),
        mqr_entry_str("x-dead-letter-strategy", "at-least-once"),
        mqr_entry_str("x-overflow", "reject-publish"),
        mqr_entry_int("x-delivery-limit", b->cfg->max_attempts - 1),
    };
    int rc;

    mqr_qname(dead, queue, ":dead");
    mqr_qname(retry, queue, ":retry");
    rc = mqr_queue_declare(b, dead, false, (amqp_table_t){1, &quorum}, NULL);
    if (rc == ERR_OK)
        rc = mqr_bind(b, dead, MQR_DEAD_EXCHANGE, queue);
    if (rc == ERR_OK)
        rc = mqr_queue_declare(
            b, retry, false,
            (amqp_table_t){sizeof(retry_args) / sizeof(retry_args[0]),
                           retry_args},
            NULL);
    if (rc == ERR_OK)
        rc = mqr_queue_declare(
            b, queue, false,
            (amqp_table_t){sizeof(main_args) / sizeof(main_args[0]), main_args},
            NULL);
    for (size_t i = 0; i < npatterns && rc == ERR_OK; i++)
        rc = mqr_bind(b, queue, MQR_EXCHANGE, patterns[i]);
    return rc;
}

static int mqr_declare(struct mq_backend *b, const char *queue,
                       const char *const *patterns, size_t npatterns)
{
    int rc;

    pthread_mutex_lock(&b->lock);
    rc = mqr_connected(b);
    if (rc == ERR_OK)
        rc = mqr_declare_locked(b, queue, patterns, npatterns);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Holding deliveries ----------------------------------------------------- */

/* Index of tag among the held deliveries, or -1. */
static ssize_t mqr_held_find(const struct mq_backend *b, uint64_t tag)
{
    size_t lo = 0, hi = b->nheld;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->held[mid].tag == tag)
            return (ssize_t)mid;
        if (b->held[mid].tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void mqr_held_remove(struct mq_backend *b, size_t i)
{
    memmove(&b->held[i], &b->held[i + 1],
            (b->nheld - i - 1) * sizeof(b->held[0]));
    b->nheld--;
}

/* The held delivery m names, or -1 when its lease was lost. */
static ssize_t mqr_held_of(const struct mq_backend *b,
                           const struct mq_message *m)
{
    if (b->conn == NULL || m->lease != b->lease || m->tag <= 0)
        return -1;
    return mqr_held_find(b, (uint64_t)m->tag);
}

/*
 * Gives back the deliveries whose lease ended: requeued (the quorum queue
 * counts the return), or on their last attempt rejected to the
 * dead-letter exchange.  A consumer that is alive but stuck past its
 * lease thus frees its messages at its next claim.
 */
static int mqr_expire_leases(struct mq_backend *b, size_t *returned, int *dead)
{
    int64_t now = clock_wall_ms(b->cfg->clock);
    size_t i = 0;

    while (i < b->nheld) {
        struct mqr_held *h = &b->held[i];
        bool last = h->attempt >= b->cfg->max_attempts;
        int rc;

        if (h->lease_end_ms > now) {
            i++;
            continue;
        }
        rc = amqp_basic_reject(b->conn, MQR_CH_CLAIM, h->tag, last ? 0 : 1);
        if (rc != AMQP_STATUS_OK)
            return mqr_status(b, rc, "lease_return");
        if (last) {
            log_warn("mq",
                     "dead_lettered queue=%s attempts=%d count=1 "
                     "reason=lease_expired",
                     h->queue, h->attempt);
            (*dead)++;
        }
        (*returned)++;
        mqr_held_remove(b, i);
    }
    return ERR_OK;
}

/* Claiming --------------------------------------------------------------- */

/*
 * Fills m from a delivered message of at most MQ_BODY_MAX bytes: ERR_OK,
 * ERR_NOMEM, or ERR_INVALID when it lacks the id or topic every mq
 * publish sets (published around mq).
 */
static int mqr_message_fill(struct mq_message *m, const char *queue,
                            const amqp_message_t *msg, uint64_t tag,
                            int64_t lease)
{
    const amqp_basic_properties_t *p = &msg->properties;
    const amqp_table_t *h =
        (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : NULL;
    int64_t earlier = 0, returns = 0;

    m->tag = (int64_t)tag;
    m->lease = lease;
    mq_copy_text(m->queue, sizeof(m->queue), queue);
    m->id[0] = m->topic[0] = m->error[0] = '\0';
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        mqr_bytes_text(p->message_id, m->id, sizeof(m->id));
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        mqr_bytes_text(p->type, m->topic, sizeof(m->topic));
    if (h != NULL) {
        mqr_field_int(mqr_table_get(h, MQR_H_ATTEMPTS), &earlier);
        mqr_field_int(mqr_table_get(h, MQR_H_DCOUNT), &returns);
        mqr_field_text(mqr_table_get(h, MQR_H_ERROR), m->error,
                       sizeof(m->error));
    }
    m->attempt = (int)(earlier + returns + 1);
    if (mq_message_body_alloc(m, msg->body.len) == NULL)
        return ERR_NOMEM;
    if (msg->body.len > 0)
        memcpy(m->body, msg->body.bytes, msg->body.len);
    return m->id[0] != '\0' && m->topic[0] != '\0' ? ERR_OK : ERR_INVALID;
}

/* Moves a delivery we hold to Q:dead ourselves, with its error kept. */
static int mqr_dead_letter(struct mq_backend *b, const struct mq_message *m,
                           const char *error, int attempts)
{
    char dead[MQR_QNAME_MAX + 1];
    struct mqr_pub p = {.exchange = "",
                        .routing_key = dead,
                        .topic = m->topic[0] != '\0' ? m->topic : "unknown",
                        .id = m->id[0] != '\0' ? m->id : "unknown",
                        .attempts = attempts,
                        .error = error,
                        .dead_ms = clock_wall_ms(b->cfg->clock)};
    bool routed = false;
    int rc;

    mqr_qname(dead, m->queue, ":dead");
    rc = mqr_publish_raw(b, &p, m->body, m->len, &routed);
    if (rc != ERR_OK)
        return rc;
    if (!routed) {
        log_error("mq", "dead_letter_unroutable queue=%s id=%s", m->queue,
                  m->id);
        return ERR_NOTFOUND;
    }
    log_warn("mq", "dead_lettered queue=%s id=%s attempts=%d err=\"%s\"",
             m->queue, m->id, attempts, error);
    return mqr_status(
        b, amqp_basic_ack(b->conn, MQR_CH_CLAIM, (uint64_t)m->tag, 0), "ack");
}

/* What one basic.get gave. */
enum mqr_got { MQR_EMPTY, MQR_GOT, MQR_SKIPPED };

/*
 * One basic.get into out->msgs[out->n].  A delivery past its last attempt
 * (possible when a message came back from the retry queue and then lost
 * leases) goes to the dead letters instead (MQR_SKIPPED), and so does one
 * that was not published through mq or is over MQ_BODY_MAX: rejected
 * whole to the dead-letter exchange.
 */
static int mqr_get_one(struct mq_backend *b, const char *queue,
                       struct mq_batch *out, enum mqr_got *got, int *dead)
{
    struct mq_message *m = &out->msgs[out->n];
    amqp_rpc_reply_t r;
    amqp_message_t msg;
    uint64_t tag;
    int fill, rc;

    *got = MQR_EMPTY;
    r = amqp_basic_get(b->conn, MQR_CH_CLAIM, amqp_cstring_bytes(queue), 0);
    if ((rc = mqr_reply(b, r, MQR_CH_CLAIM, "get")) != ERR_OK)
        return rc;
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
        return ERR_OK;
    tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    r = amqp_read_message(b->conn, MQR_CH_CLAIM, &msg, 0);
    if ((rc = mqr_reply(b, r, MQR_CH_CLAIM, "get_content")) != ERR_OK)
        return rc;

    *got = MQR_SKIPPED;
    fill = msg.body.len <= MQ_BODY_MAX
               ? mqr_message_fill(m, queue, &msg, tag, b->lease)
               : ERR_TOOBIG;
    amqp_destroy_message(&msg);
    amqp_maybe_release_buffers_on_channel(b->conn, MQR_CH_CLAIM);
    if (fill == ERR_NOMEM) {
        /* Ours to deliver later: back to the queue, as a return. */
        *got = MQR_EMPTY;
        rc = mqr_status(b, amqp_basic_reject(b->conn, MQR_CH_CLAIM, tag, 1),
                        "reject");
        return rc != ERR_OK ? rc : ERR_NOMEM;
    }
    if (fill != ERR_OK) {
        log_warn("mq", "dead_lettered queue=%s id=%s err=\"not an mq message\"",
                 queue, m->id);
        free(m->body);
        m->body = NULL;
        (*dead)++;
        return mqr_status(b, amqp_basic_reject(b->conn, MQR_CH_CLAIM, tag, 0),
                          "reject");
    }
    if (m->attempt > b->cfg->max_attempts) {
        rc = mqr_dead_letter(b, m, MQR_LEASE_EXPIRED, m->attempt);
        free(m->body);
        m->body = NULL;
        if (rc == ERR_OK)
            (*dead)++;
        return rc;
    }

    b->held[b->nheld] = (struct mqr_held){
        .tag = tag,
        .lease_end_ms = clock_wall_ms(b->cfg->clock) + b->cfg->lease_ms,
        .attempt = m->attempt,
    };
    mq_copy_text(b->held[b->nheld].queue, MQ_NAME_MAX + 1, queue);
    b->nheld++;
    out->n++;
    *got = MQR_GOT;
    return ERR_OK;
}

/*
 * basic.get up to max times: a pull, like the SQLite claim, that returns
 * at once with what is ready.  Every delivery handed out is one the
 * consumer sees, so the quorum queue's delivery count is exactly the
 * attempts that consumers saw end without an ack.
 *
 * First a passive queue.declare reads the ready count (and finds a
 * missing queue without a 404 on the claim channel): a basic.get on a
 * quorum queue is a command through its Raft log, written to disk even
 * when it finds nothing, and idle consumers poll.  So an empty queue
 * costs one read, and a claim asks for no more than is ready.
 */
static int mqr_consume(struct mq_backend *b, const char *queue, size_t max,
                       struct mq_batch *out, int *dead)
{
    size_t skipped = 0, returned = 0, want;
    uint32_t ready = 0;
    int rc;

    pthread_mutex_lock(&b->lock);
    if ((rc = mqr_connected(b)) != ERR_OK)
        goto out_unlock;
    if ((rc = mqr_expire_leases(b, &returned, dead)) != ERR_OK)
        goto out_unlock;
    if ((rc = mqr_queue_declare(b, queue, true, amqp_empty_table, &ready)) !=
        ERR_OK)
        goto out_unlock;
    /* Given-back deliveries may not be counted yet (another channel). */
    want = returned > 0 || ready >= max ? max : ready;
    if (b->nheld + want > MQR_HELD_MAX) {
        log_warn("mq", "rabbitmq_held_full queue=%s held=%zu max=%d", queue,
                 b->nheld, MQR_HELD_MAX);
        rc = ERR_FULL;
        goto out_unlock;
    }
    /* Dead-lettered deliveries do not count against max, but are bounded
     * too, so one call never drains a queue of poison. */
    while (out->n < want && skipped < MQ_PREFETCH_MAX) {
        enum mqr_got got;
        rc = mqr_get_one(b, queue, out, &got, dead);
        if (rc != ERR_OK || got == MQR_EMPTY)
            break;
        skipped += got == MQR_SKIPPED;
    }
out_unlock:
    pthread_mutex_unlock(&b->lock);
    /* What a claim got before it failed is handed out: if the connection
     * went with it, their acks answer ERR_CONFLICT (lease lost). */
    return out->n > 0 ? ERR_OK : rc;
}

/* Settling --------------------------------------------------------------- */

static int mqr_ack(struct mq_backend *b, const struct mq_message *m)
{
    ssize_t i;
    int rc;

    pthread_mutex_lock(&b->lock);
    i = mqr_held_of(b, m);
    if (i < 0) {
        rc = ERR_CONFLICT;
        goto out_unlock;
    }
    rc = mqr_status(
        b, amqp_basic_ack(b->conn, MQR_CH_CLAIM, (uint64_t)m->tag, 0), "ack");
    if (rc == ERR_OK)
        mqr_held_remove(b, (size_t)i);
out_unlock:
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/*
 * A nack republishes the message, with its attempts and error in headers,
 * to Q (no delay) or to Q:retry with the delay as its expiration, and
 * then acks the delivery.  basic.nack with requeue could carry neither the
 * error nor a delay.  The copy is confirmed before the ack, so a crash
 * between the two leaves two copies, never none.
 */
static int mqr_nack(struct mq_backend *b, const struct mq_message *m,
                    int delay_ms, const char *error, bool *dead)
{
    char target[MQR_QNAME_MAX + 1];
    struct mqr_pub p = {.exchange = "",
                        .routing_key = target,
                        .topic = m->topic,
                        .id = m->id,
                        .attempts = m->attempt,
                        .error = error,
                        .expiration_ms = delay_ms};
    bool routed = false;
    ssize_t i;
    int rc;

    pthread_mutex_lock(&b->lock);
    i = mqr_held_of(b, m);
    if (i < 0) {
        rc = ERR_CONFLICT;
        goto out_unlock;
    }
    if (m->attempt >= b->cfg->max_attempts) {
        rc = mqr_dead_letter(b, m, error, m->attempt);
        if (rc == ERR_OK) {
            *dead = true;
            mqr_held_remove(b, (size_t)i);
        }
        goto out_unlock;
    }

    mqr_qname(target, m->queue, delay_ms > 0 ? ":retry" : "");
    rc = mqr_publish_raw(b, &p, m->body, m->len, &routed);
    if (rc == ERR_OK && !routed) {
        log_error("mq", "nack_unroutable queue=%s id=%s target=%s", m->queue,
                  m->id, target);
        rc = ERR_NOTFOUND;
    }
    if (rc == ERR_OK)
        rc = mqr_status(
            b, amqp_basic_ack(b->conn, MQR_CH_CLAIM, (uint64_t)m->tag, 0),
            "ack");
    if (rc == ERR_OK)
        mqr_held_remove(b, (size_t)i);
out_unlock:
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Dead letters ----------------------------------------------------------- */

/*
 * A dead letter's tag: a 63-bit FNV-1a hash of its id, stable however
 * often the dead queue is read (RabbitMQ has no row number).
 */
static int64_t mqr_dead_tag(const char *id)
{
    uint64_t h = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (int64_t)(h >> 1) | 1;
}

/* Fills a dead letter's fields from what either path of dead-lettering
 * left in its headers. */
static void mqr_dead_fill(struct mq_backend *b, struct mq_message *m,
                          const amqp_message_t *msg)
{
    const amqp_basic_properties_t *p = &msg->properties;
    const amqp_table_t *h =
        (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : NULL;
    const amqp_field_value_t *death;
    int64_t v = 0;

    m->tag = mqr_dead_tag(m->id);
    m->lease = 0;
    if (h != NULL && mqr_field_int(mqr_table_get(h, MQR_H_DEAD_MS), &v)) {
        int64_t attempts = 0;
        mqr_field_int(mqr_table_get(h, MQR_H_ATTEMPTS), &attempts);
        m->dead_ms = v;
        m->attempt = (int)attempts;
        return;
    }
    /* Moved by the broker: a lease given back on its last attempt, or a
     * delivery limit reached while connections holding it died. */
    mq_copy_text(m->error, sizeof(m->error), MQR_LEASE_EXPIRED);
    m->attempt = b->cfg->max_attempts;
    m->dead_ms = clock_wall_ms(b->cfg->clock);
    death = h != NULL ? mqr_table_get(h, "x-death") : NULL;
    if (death != NULL && death->kind == AMQP_FIELD_KIND_ARRAY &&
        death->value.array.num_entries > 0 &&
        death->value.array.entries[0].kind == AMQP_FIELD_KIND_TABLE &&
        mqr_field_int(
            mqr_table_get(&death->value.array.entries[0].value.table, "time"),
            &v))
        m->dead_ms = v * 1000;
}

/* Gives back every message the scan took: closing the channel requeues
 * them. */
static int mqr_scan_end(struct mq_backend *b)
{
    amqp_rpc_reply_t r;

    if (b->conn == NULL || !b->scratch_open)
        return ERR_OK;
    r = amqp_channel_close(b->conn, MQR_CH_SCRATCH, AMQP_REPLY_SUCCESS);
    b->scratch_open = false;
    return mqr_reply(b, r, MQR_CH_SCRATCH, "scan_end");
}

/*
 * Reads up to MQR_DEAD_SCAN_MAX dead letters of queue on the scratch
 * channel without acking them and calls fn on each; fn returns false to
 * stop.  The caller ends the scan with mqr_scan_end().
 */
static int mqr_dead_scan(struct mq_backend *b, const char *queue,
                         bool (*fn)(struct mq_backend *, struct mq_message *,
                                    uint64_t, void *),
                         void *arg)
{
    char dead[MQR_QNAME_MAX + 1];
    int rc;

    mqr_qname(dead, queue, ":dead");
    if ((rc = mqr_queue_declare(b, dead, true, amqp_empty_table, NULL)) !=
        ERR_OK)
        return rc;
    for (int n = 0; n < MQR_DEAD_SCAN_MAX; n++) {
        struct mq_message m = {0};
        amqp_rpc_reply_t r;
        amqp_message_t msg;
        uint64_t dtag;
        bool more;

        r = amqp_basic_get(b->conn, MQR_CH_SCRATCH, amqp_cstring_bytes(dead),
                           0);
        if ((rc = mqr_reply(b, r, MQR_CH_SCRATCH, "dead_get")) != ERR_OK)
            return rc;
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            return ERR_OK;
        dtag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        r = amqp_read_message(b->conn, MQR_CH_SCRATCH, &msg, 0);
        if ((rc = mqr_reply(b, r, MQR_CH_SCRATCH, "dead_content")) != ERR_OK)
            return rc;
        if (msg.body.len > MQ_BODY_MAX) {
            /* Not ours to show: left in place, whole. */
            amqp_destroy_message(&msg);
            continue;
        }
        if (mqr_message_fill(&m, queue, &msg, 0, 0) == ERR_NOMEM) {
            amqp_destroy_message(&msg);
            return ERR_NOMEM;
        }
        mqr_dead_fill(b, &m, &msg);
        amqp_destroy_message(&msg);
        amqp_maybe_release_buffers_on_channel(b->conn, MQR_CH_SCRATCH);
        more = fn(b, &m, dtag, arg);
        free(m.body);
        if (!more)
            return ERR_OK;
    }
    return ERR_OK;
}

struct mqr_list {
    struct mq_batch *out;
    size_t max;
    int64_t after;
};

/* Keeps the max lowest tags above after, in order. */
static bool mqr_list_one(struct mq_backend *b, struct mq_message *m,
                         uint64_t dtag, void *arg)
{
    struct mqr_list *l = arg;
    struct mq_batch *out = l->out;
    size_t pos = out->n;

    (void)b;
    (void)dtag;
    if (m->tag <= l->after)
        return true;
    while (pos > 0 && out->msgs[pos - 1].tag > m->tag)
        pos--;
    if (pos >= l->max)
        return true;
    if (out->n == l->max) {
        free(out->msgs[out->n - 1].body);
        out->n--;
    }
    memmove(&out->msgs[pos + 1], &out->msgs[pos],
            (out->n - pos) * sizeof(out->msgs[0]));
    out->msgs[pos] = *m;
    m->body = NULL; /* now the batch's */
    out->n++;
    return true;
}

static int mqr_dead_list(struct mq_backend *b, const char *queue,
                         int64_t after_tag, size_t max, struct mq_batch *out)
{
    struct mqr_list l = {out, max, after_tag};
    int rc, end;

    pthread_mutex_lock(&b->lock);
    rc = mqr_connected(b);
    if (rc == ERR_OK) {
        rc = mqr_dead_scan(b, queue, mqr_list_one, &l);
        end = mqr_scan_end(b);
        if (rc == ERR_OK)
            rc = end;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

struct mqr_requeue {
    int64_t tag;
    int found;
    int rc;
};

/* Publishes a matching dead letter to its queue afresh, then acks it. */
static bool mqr_requeue_one(struct mq_backend *b, struct mq_message *m,
                            uint64_t dtag, void *arg)
{
    struct mqr_requeue *q = arg;
    struct mqr_pub p = {.exchange = "",
                        .routing_key = m->queue,
                        .topic = m->topic[0] != '\0' ? m->topic : "unknown",
                        .id = m->id};
    bool routed = false;

    if (m->tag != q->tag)
        return true;
    q->rc = mqr_publish_raw(b, &p, m->body, m->len, &routed);
    if (q->rc == ERR_OK && !routed)
        q->rc = ERR_NOTFOUND;
    if (q->rc == ERR_OK)
        q->rc = mqr_status(b, amqp_basic_ack(b->conn, MQR_CH_SCRATCH, dtag, 0),
                           "dead_ack");
    if (q->rc != ERR_OK)
        return false;
    q->found++;
    log_info("mq", "requeued queue=%s tag=%lld id=%s", m->queue,
             (long long)m->tag, m->id);
    return true;
}

static int mqr_requeue(struct mq_backend *b, const char *queue, int64_t tag)
{
    struct mqr_requeue q = {tag, 0, ERR_OK};
    int rc, end;

    pthread_mutex_lock(&b->lock);
    rc = mqr_connected(b);
    if (rc == ERR_OK) {
        rc = mqr_dead_scan(b, queue, mqr_requeue_one, &q);
        end = mqr_scan_end(b);
        if (rc == ERR_OK)
            rc = q.rc != ERR_OK ? q.rc : end;
        if (rc == ERR_OK && q.found == 0)
            rc = ERR_NOTFOUND;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Depth ------------------------------------------------------------------ */

/*
 * Ready: Q's ready count plus the delayed messages of Q:retry.  Leased:
 * what this handle holds (AMQP 0-9-1 does not tell other connections'
 * unacked count).  Dead: Q:dead's count.
 */
static int mqr_depth(struct mq_backend *b, const char *queue,
                     struct mq_depth *out)
{
    char retry[MQR_QNAME_MAX + 1], dead[MQR_QNAME_MAX + 1];
    uint32_t ready = 0, delayed = 0, dead_n = 0;
    int rc;

    mqr_qname(retry, queue, ":retry");
    mqr_qname(dead, queue, ":dead");
    pthread_mutex_lock(&b->lock);
    rc = mqr_connected(b);
    if (rc == ERR_OK)
        rc = mqr_queue_declare(b, queue, true, amqp_empty_table, &ready);
    if (rc == ERR_OK && (rc = mqr_connected(b)) == ERR_OK)
        rc = mqr_queue_declare(b, retry, true, amqp_empty_table, &delayed);
    if (rc == ERR_OK && (rc = mqr_connected(b)) == ERR_OK)
        rc = mqr_queue_declare(b, dead, true, amqp_empty_table, &dead_n);
    if (rc == ERR_OK) {
        out->ready = (int64_t)ready + delayed;
        out->dead = dead_n;
        out->leased = 0;
        for (size_t i = 0; i < b->nheld; i++)
            out->leased += strcmp(b->held[i].queue, queue) == 0;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Open and close --------------------------------------------------------- */

static char mqr_default_vhost[] = "/";

static int mqr_open(const struct mq_config *cfg, struct mq_backend **out)
{
    struct mq_backend *b = calloc(1, sizeof(*b));
    int rc;

    if (b == NULL) {
        log_error("mq", "open_failed err=\"out of memory\"");
        return ERR_NOMEM;
    }
    b->cfg = cfg;
    b->url = strdup(cfg->url != NULL ? cfg->url : "");
    if (b->url == NULL) {
        rc = ERR_NOMEM;
        goto out_free_backend;
    }
    amqp_default_connection_info(&b->ci);
    if (amqp_parse_url(b->url, &b->ci) != AMQP_STATUS_OK || b->ci.ssl) {
        log_error("mq",
                  "bad_config key=mq.url expected=amqp://user:pass@host:port/"
                  "vhost");
        rc = ERR_CONFIG;
        goto out_free_url;
    }
    /* "amqp://host/" parses to vhost "", which cannot exist: it means
     * the default vhost, as in "amqp://host". */
    if (b->ci.vhost[0] == '\0')
        b->ci.vhost = mqr_default_vhost;
    if ((rc = rand_seed_secure(&b->rng)) != ERR_OK)
        goto out_free_url;
    pthread_mutex_init(&b->lock, NULL);

    /* The broker may come later: open succeeds, calls fail until then. */
    rc = mqr_connected(b);
    log_info("mq", "rabbitmq_open host=%s port=%d vhost=%s connected=%s",
             b->ci.host, b->ci.port, b->ci.vhost, rc == ERR_OK ? "yes" : "no");
    *out = b;
    return ERR_OK;

out_free_url:
    free(b->url);
out_free_backend:
    free(b);
    return rc;
}

static void mqr_close(struct mq_backend *b)
{
    if (b->conn != NULL) {
        amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
        mqr_disconnect(b);
    }
    pthread_mutex_destroy(&b->lock);
    free(b->url);
    free(b);
}

const struct mq_ops mq_rabbitmq_ops = {
    .name = "rabbitmq",
    .open = mqr_open,
    .close = mqr_close,
    .declare = mqr_declare,
    .publish = mqr_publish,
    .consume = mqr_consume,
    .ack = mqr_ack,
    .nack = mqr_nack,
    .dead_list = mqr_dead_list,
    .requeue = mqr_requeue,
    .depth = mqr_depth,
};
