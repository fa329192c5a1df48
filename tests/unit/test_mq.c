/*
 * test_mq.c - the messaging front and its SQLite backend, on real files.
 *
 * Every test works in its own mkdtemp() directory.  Where time matters
 * (leases, nack delays) the queue reads a manual clock that the test moves
 * between calls; every call is synchronous, so the writer thread reads the
 * clock only while the test thread waits for it.  The threaded test at the
 * end uses the system clock and real threads; test_mq_procs.c does the
 * same with processes.
 */
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "harness.h"
#include "metrics/metrics.h"
#include "mq/mq.h"

#define START_MS 1800000000000LL /* the manual clock's first reading */
#define LEASE_MS 1000
#define ATTEMPTS 3

/* The threaded test: publishers x messages each, consumers. */
#define PUB_THREADS     4
#define MSGS_PER_THREAD 150
#define MSGS_TOTAL      (PUB_THREADS * MSGS_PER_THREAD)
#define CON_THREADS     4

/* How long a RabbitMQ test waits for what the broker does on its own. */
#define BROKER_WAIT_MS 10000

struct tmp_dir {
    char dir[64];
    char path[96];
};

/* The broker's URL, or NULL: the tests run on SQLite. */
static const char *rabbit_url(void)
{
    const char *url = getenv("MARQUEE_MQ_URL");

    return url != NULL && url[0] != '\0' ? url : NULL;
}

static bool on_rabbit(void)
{
    return rabbit_url() != NULL;
}

/* This test's prefix of names on a shared broker; "" on SQLite. */
static char name_ns[32];

/*
 * name with this test's prefix: a queue name, a topic or a pattern.  The
 * result lives in a ring of buffers, enough for one statement's names.
 */
static const char *N(const char *name)
{
    static char ring[8][MQ_TOPIC_MAX + 1];
    static unsigned next;
    char *out = ring[next++ % 8];

    snprintf(out, MQ_TOPIC_MAX + 1, "%s%s", name_ns, name);
    return out;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static void tmp_make(struct tmp_dir *t)
{
    static unsigned tests;

    snprintf(t->dir, sizeof(t->dir), "/tmp/marquee-mq-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(t->path, sizeof(t->path), "%s/queue.db", t->dir);
    name_ns[0] = '\0';
    if (on_rabbit())
        snprintf(name_ns, sizeof(name_ns), "t%ldx%ux%lld.", (long)getpid(),
                 ++tests, (long long)(clock_wall_ms(clock_system()) % 100000));
}

/* Removes the queue file and its -wal and -shm files, then the folder. */
static void tmp_remove(struct tmp_dir *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *e;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            CHECK_INT(unlinkat(dirfd(d), e->d_name, 0), 0);
    }
    closedir(d);
    CHECK_INT(rmdir(t->dir), 0);
}

static struct mq_config test_config(const struct tmp_dir *t,
                                    struct clock_manual *clk)
{
    return (struct mq_config){
        .backend = on_rabbit() ? "rabbitmq" : "sqlite",
        .path = t->path,
        .url = rabbit_url(),
        .max_attempts = ATTEMPTS,
        .lease_ms = LEASE_MS,
        .prefetch = 8,
        .busy_timeout_ms = 5000,
        .synchronous = "normal",
        .clock = clk != NULL ? &clk->base : NULL,
    };
}

static struct mq *open_mq(const struct tmp_dir *t, struct clock_manual *clk)
{
    struct mq_config cfg = test_config(t, clk);
    struct mq *q = NULL;

    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    CHECK(q != NULL);
    return q;
}

static void declare(struct mq *q, const char *queue, const char *pattern)
{
    const char *patterns[] = {N(pattern)};

    CHECK_INT(mq_declare(q, N(queue), patterns, 1), ERR_OK);
}

/*
 * Publishes a text body.  RabbitMQ tells only whether some queue took a
 * copy, not how many: there expect_stored counts as 0 or 1.
 */
static void publish_text(struct mq *q, const char *topic, const char *id,
                         const char *body, int expect_stored)
{
    int stored = -1;

    CHECK_INT(mq_publish(q, N(topic), id, body, strlen(body), &stored), ERR_OK);
    if (on_rabbit())
        expect_stored = expect_stored > 0;
    CHECK_INT(stored, expect_stored);
}

/* Claims and expects exactly n messages. */
static struct mq_batch *consume_n(struct mq *q, const char *queue, size_t n)
{
    struct mq_batch *b = NULL;

    CHECK_INT(mq_consume(q, N(queue), 0, &b), ERR_OK);
    CHECK(b != NULL);
    if (b->n != n) {
        size_t got = b->n;
        mq_batch_free(b);
        CHECK_INT(got, n);
    }
    return b;
}

static void check_depth(struct mq *q, const char *queue, int64_t ready,
                        int64_t leased, int64_t dead)
{
    struct mq_depth d;

    CHECK_INT(mq_depth(q, N(queue), &d), ERR_OK);
    CHECK_INT(d.ready, ready);
    CHECK_INT(d.leased, leased);
    CHECK_INT(d.dead, dead);
}

/*
 * check_depth() once the backend settled: RabbitMQ dead-letters and
 * settles acks asynchronously, so there it may take a moment.
 */
static void wait_depth(struct mq *q, const char *queue, int64_t ready,
                       int64_t leased, int64_t dead)
{
    struct mq_depth d;

    for (int waited = 0; on_rabbit() && waited < BROKER_WAIT_MS; waited += 20) {
        CHECK_INT(mq_depth(q, N(queue), &d), ERR_OK);
        if (d.ready == ready && d.leased == leased && d.dead == dead)
            return;
        sleep_ms(20);
    }
    check_depth(q, queue, ready, leased, dead);
}

/* Claims until n messages came, within BROKER_WAIT_MS (RabbitMQ's
 * per-message expiry runs on the broker's clock, not the manual one). */
static struct mq_batch *consume_wait(struct mq *q, const char *queue, size_t n)
{
    for (int waited = 0; waited < BROKER_WAIT_MS; waited += 20) {
        struct mq_batch *b = NULL;
        CHECK_INT(mq_consume(q, N(queue), 0, &b), ERR_OK);
        if (b->n > 0 || !on_rabbit()) {
            size_t got = b->n;
            if (got != n)
                mq_batch_free(b);
            CHECK_INT(got, n);
            return b;
        }
        mq_batch_free(b);
        sleep_ms(20);
    }
    CHECK_INT(0, n);
    return NULL;
}

static double plain_counter(const char *name)
{
    return metrics_value(metrics_counter(metrics_process(), name, NULL));
}

static double depth_gauge(const char *queue, const char *state)
{
    static const char *const labels[] = {"queue", "state"};
    const char *values[] = {N(queue), state};
    struct metrics_family *f =
        metrics_family(metrics_process(), METRICS_GAUGE, "marquee_mq_messages",
                       NULL, 2, labels, NULL, 0);

    return metrics_value(metrics_series(f, values));
}

static double queue_counter(const char *name, const char *queue)
{
    static const char *const label[] = {"queue"};
    const char *values[] = {N(queue)};
    struct metrics_family *f = metrics_family(
        metrics_process(), METRICS_COUNTER, name, NULL, 1, label, NULL, 0);

    return metrics_value(metrics_series(f, values));
}

/* Names and patterns ----------------------------------------------------- */

TEST(test_topic_match)
{
    CHECK(mq_topic_match("booking.*", "booking.confirmed"));
    CHECK(!mq_topic_match("booking.*", "booking"));
    CHECK(!mq_topic_match("booking.*", "booking.confirmed.late"));
    CHECK(!mq_topic_match("booking.*", "show.cancelled"));
    CHECK(mq_topic_match("#", "show.cancelled"));
    CHECK(mq_topic_match("show.#", "show"));
    CHECK(mq_topic_match("show.#", "show.a.b.c"));
    CHECK(mq_topic_match("#.cancelled", "booking.cancelled"));
    CHECK(mq_topic_match("#.cancelled", "cancelled"));
    CHECK(!mq_topic_match("#.cancelled", "booking.confirmed"));
    CHECK(mq_topic_match("*.#.x", "a.x"));
    CHECK(!mq_topic_match("*.#.x", "x"));
    CHECK(mq_topic_match("a.#.#.b", "a.b"));
    CHECK(mq_topic_match("booking.confirmed", "booking.confirmed"));
    CHECK(!mq_topic_match("booking.confirmed", "booking.confirme"));
}

TEST(test_names_valid)
{
    CHECK(mq_topic_valid("booking.confirmed"));
    CHECK(!mq_topic_valid("booking.*"));
    CHECK(!mq_topic_valid("booking..confirmed"));
    CHECK(!mq_topic_valid("Booking"));
    CHECK(!mq_topic_valid(""));
    CHECK(mq_pattern_valid("booking.*"));
    CHECK(mq_pattern_valid("#"));
    CHECK(!mq_pattern_valid("booking.c*"));
    CHECK(!mq_pattern_valid("booking."));
    CHECK(mq_queue_name_valid("notify.tickets"));
    CHECK(!mq_queue_name_valid("notify tickets"));
    CHECK(!mq_queue_name_valid(""));
}

/* Configuration ---------------------------------------------------------- */

TEST(test_config_keys)
{
    static const struct config_key keys[] = {MQ_CONFIG_KEYS};
    struct config cfg;
    struct mq_config mc;

    CHECK_INT(config_init(&cfg, keys, sizeof(keys) / sizeof(keys[0])), ERR_OK);
    mq_config_from(&mc, &cfg);
    CHECK_STR(mc.backend, "sqlite");
    CHECK_STR(mc.path, "var/queue.db");
    CHECK_INT(mc.max_attempts, 5);
    CHECK_INT(mc.lease_ms, 30000);
    CHECK_INT(mc.prefetch, 32);
    CHECK_STR(mc.url, "amqp://guest:guest@localhost:5672/");
    CHECK(config_set(&cfg, "mq.prefetch", "257", "test") != ERR_OK);
    config_free(&cfg);
}

TEST(test_config_refused)
{
    struct tmp_dir t;
    struct mq_config cfg;
    struct mq *q = NULL;

    tmp_make(&t);
    cfg = test_config(&t, NULL);
    cfg.max_attempts = 0;
    CHECK_INT(mq_open(&cfg, &q), ERR_CONFIG);
    cfg = test_config(&t, NULL);
    cfg.prefetch = MQ_PREFETCH_MAX + 1;
    CHECK_INT(mq_open(&cfg, &q), ERR_CONFIG);
    cfg = test_config(&t, NULL);
    cfg.backend = "carrier-pigeon";
    CHECK_INT(mq_open(&cfg, &q), ERR_CONFIG);
    CHECK(q == NULL);
    tmp_remove(&t);
}

/*
 * RabbitMQ fixes a queue's delivery limit when it is first declared, so a
 * handle with another mq.max_attempts cannot declare it again: ERR_CONFIG,
 * and the queue keeps working.  SQLite reads max_attempts per handle.
 */
TEST(test_declare_with_other_max_attempts)
{
    struct tmp_dir t;
    struct mq_config cfg;
    struct mq *q = NULL, *other = NULL;
    const char *patterns[1];

    tmp_make(&t);
    q = open_mq(&t, NULL);
    declare(q, "notify", "booking.*");
    cfg = test_config(&t, NULL);
    cfg.max_attempts = ATTEMPTS + 1;
    CHECK_INT(mq_open(&cfg, &other), ERR_OK);
    patterns[0] = N("booking.*");
    CHECK_INT(mq_declare(other, N("notify"), patterns, 1),
              on_rabbit() ? ERR_CONFIG : ERR_OK);
    publish_text(other, "booking.confirmed", "after", "x", 1);
    check_depth(q, "notify", 1, 0, 0);
    mq_close(other);
    mq_close(q);
    tmp_remove(&t);
}

/* Round trip and routing ------------------------------------------------- */

TEST(test_round_trip)
{
    static const unsigned char body[] = {'o', 'k', 0, 0xff, '\n', 7};
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b;
    int stored = 0;
    double acked;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    declare(q, "notify", "booking.*");
    acked = queue_counter("marquee_mq_acked_total", "notify");

    CHECK_INT(mq_publish(q, N("booking.confirmed"), "evt-1", body, sizeof(body),
                         &stored),
              ERR_OK);
    CHECK_INT(stored, 1);
    check_depth(q, "notify", 1, 0, 0);

    b = consume_n(q, "notify", 1);
    CHECK_STR(b->msgs[0].id, "evt-1");
    CHECK_STR(b->msgs[0].topic, N("booking.confirmed"));
    CHECK_STR(b->msgs[0].queue, N("notify"));
    CHECK_INT(b->msgs[0].len, sizeof(body));
    CHECK(memcmp(b->msgs[0].body, body, sizeof(body)) == 0);
    CHECK_INT(b->msgs[0].attempt, 1);
    CHECK_STR(b->msgs[0].error, "");
    check_depth(q, "notify", 0, 1, 0);

    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_OK);
    check_depth(q, "notify", 0, 0, 0);
    /* A second ack finds nothing held: the message is gone. */
    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_CONFLICT);
    CHECK(queue_counter("marquee_mq_acked_total", "notify") == acked + 1);
    mq_batch_free(b);

    b = consume_n(q, "notify", 0);
    mq_batch_free(b);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_routing_by_pattern)
{
    char p1[MQ_TOPIC_MAX + 1], p2[MQ_TOPIC_MAX + 1];
    const char *const two[] = {p1, p2};
    struct tmp_dir t;
    struct mq_batch *b;

    tmp_make(&t);
    snprintf(p1, sizeof(p1), "%s", N("booking.*"));
    snprintf(p2, sizeof(p2), "%s", N("show.cancelled"));
    struct mq *q = open_mq(&t, NULL);
    CHECK_INT(mq_declare(q, N("notify"), two, 2), ERR_OK);
    declare(q, "catalog", "show.scheduled");
    /* A topic no queue is bound to is dropped, as RabbitMQ drops it. */
    publish_text(q, "payment.refunded", "unroutable", "U", 0);
    declare(q, "audit", "#");

    publish_text(q, "booking.confirmed", "a", "A", 2);
    publish_text(q, "show.cancelled", "b", "B", 2);
    publish_text(q, "show.scheduled", "c", "C", 2);
    publish_text(q, "payment.refunded", "d", "D", 1);
    mq_close(q);

    /* Queues, bindings and copies are durable: they hold after a reopen. */
    q = open_mq(&t, NULL);

    check_depth(q, "notify", 2, 0, 0);
    check_depth(q, "audit", 4, 0, 0);
    check_depth(q, "catalog", 1, 0, 0);

    /* Oldest first. */
    b = consume_n(q, "notify", 2);
    CHECK_STR(b->msgs[0].id, "a");
    CHECK_STR(b->msgs[1].id, "b");
    CHECK_STR((const char *)b->msgs[1].body, "B");
    mq_batch_free(b);
    b = consume_n(q, "catalog", 1);
    CHECK_STR(b->msgs[0].topic, N("show.scheduled"));
    mq_batch_free(b);

    /* Declaring again adds nothing twice, and a copy is made once. */
    CHECK_INT(mq_declare(q, N("notify"), two, 2), ERR_OK);
    publish_text(q, "booking.cancelled", "e", "E", 2);
    check_depth(q, "notify", 1, 2, 0);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_duplicate_id_stored_once)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    declare(q, "notify", "booking.*");
    declare(q, "audit", "#");

    double dups = plain_counter("marquee_mq_publish_duplicates_total");
    if (on_rabbit()) {
        /* RabbitMQ does not deduplicate: both copies are stored, and the
         * consumers' own dedupe by id is the guarantee. */
        publish_text(q, "booking.confirmed", "evt-7", "first", 2);
        publish_text(q, "booking.confirmed", "evt-7", "again", 2);
        check_depth(q, "notify", 2, 0, 0);
        b = consume_n(q, "notify", 2);
        CHECK_STR(b->msgs[0].id, "evt-7");
        CHECK_STR(b->msgs[1].id, "evt-7");
        mq_batch_free(b);
        mq_close(q);
        tmp_remove(&t);
        return;
    }
    publish_text(q, "booking.confirmed", "evt-7", "first", 2);
    publish_text(q, "booking.confirmed", "evt-7", "again", 0);
    CHECK(plain_counter("marquee_mq_publish_duplicates_total") == dups + 1);
    check_depth(q, "notify", 1, 0, 0);
    check_depth(q, "audit", 1, 0, 0);

    /* Still refused once consumed and acked: an outbox relay resending. */
    b = consume_n(q, "notify", 1);
    CHECK_STR((const char *)b->msgs[0].body, "first");
    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_OK);
    mq_batch_free(b);
    publish_text(q, "booking.confirmed", "evt-7", "third", 0);
    check_depth(q, "notify", 0, 0, 0);

    /* Past the dedup window, the id is forgotten. */
    clock_manual_advance(&clk, MQ_DEDUP_WINDOW_MS_DEFAULT + 1);
    publish_text(q, "booking.confirmed", "evt-8", "x", 2);
    publish_text(q, "booking.confirmed", "evt-7", "late", 1);
    check_depth(q, "notify", 2, 0, 0);
    mq_close(q);
    tmp_remove(&t);
}

/* Leases, nacks, dead letters -------------------------------------------- */

TEST(test_lease_hides_then_redelivers)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *a, *b;
    double redelivered;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    struct mq *other = open_mq(&t, &clk); /* a second consumer's handle */
    declare(q, "notify", "booking.*");
    redelivered = queue_counter("marquee_mq_redelivered_total", "notify");
    publish_text(q, "booking.confirmed", "m1", "x", 1);

    a = consume_n(q, "notify", 1);
    CHECK_INT(a->msgs[0].attempt, 1);
    b = consume_n(other, "notify", 0);
    mq_batch_free(b);
    clock_manual_advance(&clk, LEASE_MS - 1);
    b = consume_n(other, "notify", 0);
    mq_batch_free(b);

    if (on_rabbit()) {
        /* The broker holds the delivery for q's connection: its lease
         * ends when q gives it back (at q's next claim past the lease) or
         * when q's connection closes, as when its process dies. */
        struct mq *late = open_mq(&t, &clk);
        clock_manual_advance(&clk, 1);
        b = consume_n(other, "notify", 0);
        mq_batch_free(b);
        mq_close(q);
        b = consume_wait(other, "notify", 1); /* the broker's own pace */
        CHECK_STR(b->msgs[0].id, "m1");
        CHECK_INT(b->msgs[0].attempt, 2);
        CHECK(queue_counter("marquee_mq_redelivered_total", "notify") ==
              redelivered + 1);
        /* Another handle cannot settle a delivery it does not hold. */
        CHECK_INT(mq_ack(late, &a->msgs[0]), ERR_CONFLICT);
        CHECK_INT(mq_ack(late, &b->msgs[0]), ERR_CONFLICT);
        CHECK_INT(mq_ack(other, &b->msgs[0]), ERR_OK);
        check_depth(other, "notify", 0, 0, 0);
        mq_batch_free(a);
        mq_batch_free(b);
        mq_close(late);
        mq_close(other);
        tmp_remove(&t);
        return;
    }

    /* The lease ends: the next consumer gets it, as a second attempt. */
    clock_manual_advance(&clk, 1);
    b = consume_n(other, "notify", 1);
    CHECK_STR(b->msgs[0].id, "m1");
    CHECK_INT(b->msgs[0].attempt, 2);
    CHECK(b->msgs[0].lease != a->msgs[0].lease);
    CHECK(queue_counter("marquee_mq_redelivered_total", "notify") ==
          redelivered + 1);

    /* The first consumer's lease is lost: it can neither ack nor nack. */
    CHECK_INT(mq_ack(q, &a->msgs[0]), ERR_CONFLICT);
    CHECK_INT(mq_nack(q, &a->msgs[0], 0, "late", NULL), ERR_CONFLICT);
    CHECK_INT(mq_ack(other, &b->msgs[0]), ERR_OK);
    check_depth(q, "notify", 0, 0, 0);

    mq_batch_free(a);
    mq_batch_free(b);
    mq_close(other);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_ack_before_reclaim_still_counts)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *a;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    declare(q, "notify", "booking.*");
    publish_text(q, "booking.confirmed", "m1", "x", 1);

    /* Ended but not claimed by anyone else: the slow consumer's ack wins. */
    a = consume_n(q, "notify", 1);
    clock_manual_advance(&clk, 5 * LEASE_MS);
    CHECK_INT(mq_ack(q, &a->msgs[0]), ERR_OK);
    check_depth(q, "notify", 0, 0, 0);
    mq_batch_free(a);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_nack_delay)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b;
    bool dead = true;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    declare(q, "notify", "booking.*");
    publish_text(q, "booking.confirmed", "m1", "x", 1);

    /* RabbitMQ: the delay is a per-message TTL in the retry queue, on the
     * broker's own clock; long enough that the first claim below comes
     * before it ends. */
    int delay_ms = on_rabbit() ? 3000 : 500;

    b = consume_n(q, "notify", 1);
    CHECK_INT(mq_nack(q, &b->msgs[0], delay_ms, "smtp down", &dead), ERR_OK);
    CHECK(!dead);
    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_CONFLICT); /* no longer held */
    mq_batch_free(b);
    check_depth(q, "notify", 1, 0, 0);

    b = consume_n(q, "notify", 0);
    mq_batch_free(b);
    clock_manual_advance(&clk, delay_ms - 1);
    if (!on_rabbit()) {
        b = consume_n(q, "notify", 0);
        mq_batch_free(b);
    }
    clock_manual_advance(&clk, 1);
    b = consume_wait(q, "notify", 1);
    CHECK_INT(b->msgs[0].attempt, 2);
    CHECK_STR(b->msgs[0].error, "smtp down");

    CHECK_INT(mq_nack(q, &b->msgs[0], -1, NULL, NULL), ERR_INVALID);
    CHECK_INT(mq_nack(q, &b->msgs[0], 0, NULL, NULL), ERR_OK);
    mq_batch_free(b);
    b = consume_n(q, "notify", 1); /* no delay: due at once */
    CHECK_INT(b->msgs[0].attempt, 3);
    CHECK_STR(b->msgs[0].error, "");
    mq_batch_free(b);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_dead_letter_after_max_attempts)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b;
    char err[32];
    bool dead = false;
    double dead_before;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    declare(q, "notify", "booking.*");
    dead_before = queue_counter("marquee_mq_dead_lettered_total", "notify");
    publish_text(q, "booking.confirmed", "poison", "x", 1);
    publish_text(q, "booking.confirmed", "fine", "y", 1);

    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        b = consume_n(q, "notify", attempt == 1 ? 2 : 1);
        CHECK_STR(b->msgs[0].id, "poison");
        CHECK_INT(b->msgs[0].attempt, attempt);
        if (attempt == 1)
            CHECK_INT(mq_ack(q, &b->msgs[1]), ERR_OK);
        snprintf(err, sizeof(err), "bad seat %d", attempt);
        CHECK_INT(mq_nack(q, &b->msgs[0], 0, err, &dead), ERR_OK);
        CHECK(dead == (attempt == ATTEMPTS));
        mq_batch_free(b);
    }
    check_depth(q, "notify", 0, 0, 1);
    b = consume_n(q, "notify", 0);
    mq_batch_free(b);
    CHECK(queue_counter("marquee_mq_dead_lettered_total", "notify") ==
          dead_before + 1);

    CHECK_INT(mq_dead_list(q, N("notify"), 0, 10, &b), ERR_OK);
    CHECK_INT(b->n, 1);
    CHECK_STR(b->msgs[0].id, "poison");
    CHECK_STR(b->msgs[0].error, "bad seat 3");
    CHECK_INT(b->msgs[0].attempt, ATTEMPTS);
    CHECK_INT(b->msgs[0].dead_ms, START_MS);
    CHECK_STR((const char *)b->msgs[0].body, "x");
    mq_batch_free(b);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_dead_letter_after_expired_leases)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b;

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk);
    declare(q, "notify", "booking.*");
    publish_text(q, "booking.confirmed", "crasher", "x", 1);

    /* A consumer that dies on this message every time it gets it. */
    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        b = consume_n(q, "notify", 1);
        CHECK_INT(b->msgs[0].attempt, attempt);
        mq_batch_free(b);
        clock_manual_advance(&clk, LEASE_MS);
    }
    b = consume_n(q, "notify", 0);
    mq_batch_free(b);
    wait_depth(q, "notify", 0, 0, 1);

    CHECK_INT(mq_dead_list(q, N("notify"), 0, 10, &b), ERR_OK);
    CHECK_INT(b->n, 1);
    CHECK_STR(b->msgs[0].error, "lease expired");
    mq_batch_free(b);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_requeue_dead_letter)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b, *d;
    int64_t tags[2];
    char second[MQ_ID_MAX + 1];

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq_config cfg = test_config(&t, &clk);
    cfg.max_attempts = 1;
    struct mq *q = NULL;
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    declare(q, "notify", "booking.*");
    publish_text(q, "booking.confirmed", "p1", "x", 1);
    publish_text(q, "booking.confirmed", "p2", "y", 1);

    b = consume_n(q, "notify", 2);
    for (size_t i = 0; i < 2; i++)
        CHECK_INT(mq_nack(q, &b->msgs[i], 0, "no", NULL), ERR_OK);
    mq_batch_free(b);
    check_depth(q, "notify", 0, 0, 2);

    /* Paging: one at a time, after the last tag seen. */
    CHECK_INT(mq_dead_list(q, N("notify"), 0, 1, &d), ERR_OK);
    CHECK_INT(d->n, 1);
    tags[0] = d->msgs[0].tag;
    mq_batch_free(d);
    CHECK_INT(mq_dead_list(q, N("notify"), tags[0], 1, &d), ERR_OK);
    CHECK_INT(d->n, 1);
    /* SQLite's tags follow publication; RabbitMQ's are a hash of the id. */
    if (!on_rabbit())
        CHECK_STR(d->msgs[0].id, "p2");
    tags[1] = d->msgs[0].tag;
    CHECK(tags[1] > tags[0]);
    snprintf(second, sizeof(second), "%s", d->msgs[0].id);
    mq_batch_free(d);
    CHECK_INT(mq_dead_list(q, N("notify"), tags[1], 1, &d), ERR_OK);
    CHECK_INT(d->n, 0);
    mq_batch_free(d);

    CHECK_INT(mq_requeue(q, N("notify"), tags[1]), ERR_OK);
    CHECK_INT(mq_requeue(q, N("notify"), tags[1]), ERR_NOTFOUND);
    CHECK_INT(mq_requeue(q, N("other"), tags[0]), ERR_NOTFOUND);
    wait_depth(q, "notify", 1, 0, 1);

    /* Its attempts count from zero again. */
    b = consume_n(q, "notify", 1);
    CHECK_STR(b->msgs[0].id, second);
    CHECK_INT(b->msgs[0].attempt, 1);
    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_OK);
    mq_batch_free(b);
    wait_depth(q, "notify", 0, 0, 1);
    mq_close(q);
    tmp_remove(&t);
}

/* Depth and limits ------------------------------------------------------- */

TEST(test_depth_and_prefetch)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b;
    struct mq_depth d;
    char id[16];

    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq *q = open_mq(&t, &clk); /* prefetch 8 */
    declare(q, "notify", "booking.*");
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        publish_text(q, "booking.confirmed", id, "x", 1);
    }
    CHECK_INT(mq_depth(q, N("missing"), &d), ERR_NOTFOUND);
    check_depth(q, "notify", 12, 0, 0);

    /* Asking for more than prefetch gets prefetch. */
    CHECK_INT(mq_consume(q, N("notify"), 100, &b), ERR_OK);
    CHECK_INT(b->n, 8);
    CHECK_STR(b->msgs[0].id, "m0");
    CHECK_STR(b->msgs[7].id, "m7");
    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_OK);
    CHECK_INT(mq_nack(q, &b->msgs[1], 60000, "later", NULL), ERR_OK);
    mq_batch_free(b);
    check_depth(q, "notify", 5, 6, 0);

    CHECK_INT(mq_consume(q, N("notify"), 2, &b), ERR_OK);
    CHECK_INT(b->n, 2);
    CHECK_STR(b->msgs[0].id, "m8");
    mq_batch_free(b);
    check_depth(q, "notify", 3, 8, 0);
    CHECK(depth_gauge("notify", "ready") == 3);
    CHECK(depth_gauge("notify", "leased") == 8);
    CHECK(depth_gauge("notify", "dead") == 0);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_limits_and_bad_input)
{
    struct tmp_dir t;
    struct mq_batch *b = NULL;
    unsigned char *big = calloc(1, MQ_BODY_MAX + 1);
    char long_id[MQ_ID_MAX + 2];
    int stored = 0;

    CHECK(big != NULL);
    tmp_make(&t);
    struct mq *q = open_mq(&t, NULL);
    declare(q, "notify", "booking.*");

    CHECK_INT(mq_publish(q, N("booking.confirmed"), "big", big, MQ_BODY_MAX + 1,
                         NULL),
              ERR_TOOBIG);
    memset(big, 0xab, MQ_BODY_MAX);
    CHECK_INT(
        mq_publish(q, N("booking.confirmed"), "max", big, MQ_BODY_MAX, &stored),
        ERR_OK);
    CHECK_INT(stored, 1);
    b = consume_n(q, "notify", 1);
    CHECK_INT(b->msgs[0].len, MQ_BODY_MAX);
    CHECK(memcmp(b->msgs[0].body, big, MQ_BODY_MAX) == 0);
    mq_batch_free(b);

    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    CHECK_INT(mq_publish(q, N("booking.confirmed"), long_id, "x", 1, NULL),
              ERR_INVALID);
    CHECK_INT(mq_publish(q, N("booking.confirmed"), "has space", "x", 1, NULL),
              ERR_INVALID);
    CHECK_INT(mq_publish(q, N("booking.*"), "id", "x", 1, NULL), ERR_INVALID);
    CHECK_INT(mq_declare(q, "Bad Name", (const char *const[]){"#"}, 1),
              ERR_INVALID);
    CHECK_INT(mq_declare(q, N("notify"), (const char *const[]){"a.b*"}, 1),
              ERR_INVALID);
    CHECK_INT(mq_declare(q, N("notify"), NULL, 0), ERR_INVALID);
    CHECK_INT(mq_consume(q, N("never-declared"), 0, &b), ERR_NOTFOUND);
    CHECK_INT(mq_dead_list(q, N("notify"), 0, 0, &b), ERR_INVALID);
    CHECK_INT(mq_dead_list(q, N("notify"), 0, MQ_PREFETCH_MAX + 1, &b),
              ERR_INVALID);

    free(big);
    mq_close(q);
    tmp_remove(&t);
}

TEST(test_messages_survive_reopen)
{
    struct tmp_dir t;
    struct mq_batch *b;

    tmp_make(&t);
    struct mq *q = open_mq(&t, NULL);
    declare(q, "notify", "booking.*");
    publish_text(q, "booking.confirmed", "kept", "durable", 1);
    mq_close(q);

    q = open_mq(&t, NULL);
    /* RabbitMQ keeps the second copy too (no dedup by id). */
    publish_text(q, "booking.confirmed", "kept", "again", on_rabbit());
    b = consume_n(q, "notify", on_rabbit() ? 2 : 1);
    CHECK_STR((const char *)b->msgs[0].body, "durable");
    CHECK_INT(mq_ack(q, &b->msgs[0]), ERR_OK);
    if (on_rabbit())
        CHECK_INT(mq_ack(q, &b->msgs[1]), ERR_OK);
    mq_batch_free(b);
    mq_close(q);
    tmp_remove(&t);
}

/*
 * Another process holds the write lock (a plain sqlite3 handle in a
 * transaction) and the queue does not wait: calls fail with ERR_BUSY,
 * change nothing, and succeed once the lock is gone.
 */
/*
 * The RabbitMQ backend and a broker nobody listens for (it runs with or
 * without a broker).  The handle opens (the broker may come later), and
 * every call fails at once with ERR_IO, retrying the connection only
 * after its backoff.  A URL that is not amqp:// stops the open.
 */
TEST(test_rabbitmq_unreachable_fails_cleanly)
{
    struct tmp_dir t;
    struct mq_batch *b = NULL;
    struct mq_depth d;
    struct mq *q = NULL;

    tmp_make(&t);
    struct mq_config cfg = test_config(&t, NULL);
    cfg.url = "amqp://guest:guest@127.0.0.1:1/";
    cfg.backend = "rabbitmq";
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    CHECK_INT(mq_publish(q, N("booking.confirmed"), "m1", "x", 1, NULL),
              ERR_IO);
    CHECK_INT(mq_consume(q, N("notify"), 0, &b), ERR_IO);
    CHECK_INT(mq_depth(q, N("notify"), &d), ERR_IO);
    mq_close(q);

    cfg.url = "http://not-amqp/";
    CHECK_INT(mq_open(&cfg, &q), ERR_CONFIG);
    tmp_remove(&t);
}

TEST(test_busy_file_fails_cleanly)
{
    struct tmp_dir t;
    struct clock_manual clk;
    struct mq_batch *b = NULL;
    sqlite3 *db = NULL;

    if (on_rabbit()) {
        printf("     (SQLite only: the broker has no file lock)\n");
        return;
    }
    tmp_make(&t);
    clock_manual_init(&clk, START_MS);
    struct mq_config cfg = test_config(&t, &clk);
    cfg.busy_timeout_ms = 0;
    struct mq *q = NULL;
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    declare(q, "notify", "booking.*");
    publish_text(q, "booking.confirmed", "m1", "x", 1);

    CHECK_INT(sqlite3_open(t.path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(mq_publish(q, N("booking.confirmed"), "m2", "y", 1, NULL),
              ERR_BUSY);
    CHECK_INT(mq_consume(q, N("notify"), 0, &b), ERR_BUSY);
    CHECK_INT(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* The failed publish stored nothing, not even its id. */
    publish_text(q, "booking.confirmed", "m2", "y", 1);
    b = consume_n(q, "notify", 2);
    CHECK_INT(b->msgs[0].attempt, 1); /* the failed claim took nothing */
    mq_batch_free(b);
    mq_close(q);
    tmp_remove(&t);
}

/* Real threads ----------------------------------------------------------- */

/* The threads' names, prefixed before they start (N() is not for threads). */
static char thread_topic[MQ_TOPIC_MAX + 1], thread_queue[MQ_NAME_MAX + 1];

struct thread_run {
    struct mq *q;
    int first;           /* publishers: first message number */
    _Atomic int *acks;   /* per message: successful acks */
    _Atomic int *acked;  /* total successful acks */
    _Atomic int *errors; /* unexpected return codes */
};

static void *publisher_main(void *arg)
{
    struct thread_run *r = arg;
    char id[32], body[32];

    for (int i = r->first; i < r->first + MSGS_PER_THREAD; i++) {
        int stored = 0;
        snprintf(id, sizeof(id), "t-%d", i);
        snprintf(body, sizeof(body), "%d", i);
        if (mq_publish(r->q, thread_topic, id, body, strlen(body), &stored) !=
                ERR_OK ||
            stored != 1)
            atomic_fetch_add(r->errors, 1);
    }
    return NULL;
}

/* The message number a body holds, or -1. */
static int parse_index(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);

    return end != s && *end == '\0' && n >= 0 && n < MSGS_TOTAL ? (int)n : -1;
}

static void *consumer_main(void *arg)
{
    struct thread_run *r = arg;

    while (atomic_load(r->acked) < MSGS_TOTAL && atomic_load(r->errors) == 0) {
        struct mq_batch *b = NULL;

        if (mq_consume(r->q, thread_queue, 0, &b) != ERR_OK) {
            atomic_fetch_add(r->errors, 1);
            break;
        }
        for (size_t i = 0; i < b->n; i++) {
            int n = parse_index((const char *)b->msgs[i].body);
            if (n < 0 || n >= MSGS_TOTAL ||
                mq_ack(r->q, &b->msgs[i]) != ERR_OK) {
                atomic_fetch_add(r->errors, 1);
                continue;
            }
            atomic_fetch_add(&r->acks[n], 1);
            atomic_fetch_add(r->acked, 1);
        }
        if (b->n == 0)
            usleep(1000);
        mq_batch_free(b);
    }
    return NULL;
}

TEST(test_threads_each_message_acked_once)
{
    static _Atomic int acks[MSGS_TOTAL];
    static _Atomic int acked, errors;
    struct thread_run pubs[PUB_THREADS], cons[CON_THREADS];
    pthread_t pub_t[PUB_THREADS], con_t[CON_THREADS];
    struct tmp_dir t;

    tmp_make(&t);
    struct mq_config cfg = test_config(&t, NULL); /* system clock */
    cfg.lease_ms = 60000; /* no lease may end: exactly once is expected */
    struct mq *q = NULL;
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    declare(q, "notify", "booking.*");
    snprintf(thread_topic, sizeof(thread_topic), "%s", N("booking.confirmed"));
    snprintf(thread_queue, sizeof(thread_queue), "%s", N("notify"));

    for (int i = 0; i < CON_THREADS; i++) {
        cons[i] = (struct thread_run){q, 0, acks, &acked, &errors};
        CHECK_INT(pthread_create(&con_t[i], NULL, consumer_main, &cons[i]), 0);
    }
    for (int i = 0; i < PUB_THREADS; i++) {
        pubs[i] =
            (struct thread_run){q, i * MSGS_PER_THREAD, acks, &acked, &errors};
        CHECK_INT(pthread_create(&pub_t[i], NULL, publisher_main, &pubs[i]), 0);
    }
    for (int i = 0; i < PUB_THREADS; i++)
        pthread_join(pub_t[i], NULL);
    for (int i = 0; i < CON_THREADS; i++)
        pthread_join(con_t[i], NULL);

    CHECK_INT(atomic_load(&errors), 0);
    CHECK_INT(atomic_load(&acked), MSGS_TOTAL);
    for (int i = 0; i < MSGS_TOTAL; i++)
        CHECK_INT(atomic_load(&acks[i]), 1);
    check_depth(q, "notify", 0, 0, 0);
    mq_close(q);
    tmp_remove(&t);
}

HARNESS_MAIN(T(test_topic_match), T(test_names_valid), T(test_config_keys),
             T(test_config_refused), T(test_declare_with_other_max_attempts),
             T(test_round_trip), T(test_routing_by_pattern),
             T(test_duplicate_id_stored_once),
             T(test_lease_hides_then_redelivers),
             T(test_ack_before_reclaim_still_counts), T(test_nack_delay),
             T(test_dead_letter_after_max_attempts),
             T(test_dead_letter_after_expired_leases),
             T(test_requeue_dead_letter), T(test_depth_and_prefetch),
             T(test_limits_and_bad_input), T(test_messages_survive_reopen),
             T(test_busy_file_fails_cleanly),
             T(test_rabbitmq_unreachable_fails_cleanly),
             T(test_threads_each_message_acked_once))
