/*
 * test_mq_procs.c - several processes share one queue file.
 *
 * The test binary forks itself: publisher children publish their share of
 * N messages while consumer children claim and ack them, each process
 * with its own handle (its own store writer and SQLite connection), so
 * only the file's write lock orders them.  Children report what they did
 * as fixed-size records on one pipe (a write under PIPE_BUF is atomic) and
 * stop when the parent closes a second pipe.  The parent forks before it
 * has any thread (its own handle is closed first), and children never use
 * CHECK: they exit non-zero instead, and the parent checks the status.
 *
 * With no consumer dying, every message is delivered and acked exactly
 * once.  With one consumer killed by SIGKILL while it holds a batch, every
 * message is still acked exactly once: those it held come back when its
 * lease ends and another consumer acks them, as a second attempt.  A
 * message whose consumer is killed max_attempts times in a row goes to
 * the dead letters, never to a consumer again.
 *
 * With MARQUEE_MQ_URL set, the same runs go through that RabbitMQ broker,
 * each process with its own connection; a lease there ends when the
 * holder's connection closes, which SIGKILL does at once.  With
 * MARQUEE_MQ_RESTART_DIR set too, one more test publishes while the
 * harness kills and restarts the broker (tests/integration/
 * test_mq_rabbitmq.py), and checks that no confirmed message was lost.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "harness.h"
#include "mq/mq.h"

#define MSGS_TOTAL      400
#define PUBLISHERS      2
#define CONSUMERS       3
#define WAIT_MS_MAX     60000 /* longest the parent waits for every ack */
#define TRIES_MAX       50    /* a child's tries of one call on ERR_BUSY */
#define KILL_LEASE_MS   1000
#define CRASH_ATTEMPTS  3     /* max_attempts of the crash-loop test */
#define RESTART_MSGS    20000 /* most messages the restart test publishes */
#define RESTART_WAIT_MS 90000 /* longest the restart test runs */

enum rec_kind { REC_ACK = 1, REC_CLAIM = 2, REC_HOLDING = 3 };

/* One report of a child; 16 bytes, far below PIPE_BUF. */
struct rec {
    int32_t kind;
    int32_t idx;
    int32_t attempt;
    int32_t pid;
};

struct run {
    char dir[64];
    char path[96];
    char queue[MQ_NAME_MAX + 1]; /* prefixed per run on a shared broker */
    char topic[MQ_TOPIC_MAX + 1];
    char pattern[MQ_TOPIC_MAX + 1];
    int lease_ms;
    int max_attempts;
    int recs[2]; /* children write, the parent reads */
    int stop[2]; /* the parent closes [1] to stop the consumers */
    pid_t pids[PUBLISHERS + CONSUMERS + 1];
    size_t npids;
    int acks[MSGS_TOTAL]; /* successful acks per message */
    int max_attempt[MSGS_TOTAL];
    bool victim_held[MSGS_TOTAL];
    int nvictim_held;
    int acked;
    int deliveries;
};

/* The broker's URL, or NULL: the runs use a SQLite file. */
static const char *rabbit_url(void)
{
    const char *url = getenv("MARQUEE_MQ_URL");

    return url != NULL && url[0] != '\0' ? url : NULL;
}

static struct mq_config run_config(const struct run *r)
{
    return (struct mq_config){
        .backend = rabbit_url() != NULL ? "rabbitmq" : "sqlite",
        .path = r->path,
        .url = rabbit_url(),
        .max_attempts = r->max_attempts,
        .lease_ms = r->lease_ms,
        .prefetch = 8,
        .busy_timeout_ms = 5000,
        .synchronous = "normal",
    };
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Children --------------------------------------------------------------- */

static void child_report(const struct run *r, int kind, int idx, int attempt)
{
    struct rec rec = {kind, idx, attempt, (int32_t)getpid()};

    if (write(r->recs[1], &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
        _exit(3);
}

static int parse_index(const struct mq_message *m)
{
    char *end;
    long n = strtol((const char *)m->body, &end, 10);

    if (end == (const char *)m->body || *end != '\0' || n < 0 ||
        n >= MSGS_TOTAL)
        _exit(4);
    return (int)n;
}

/* True once the parent closed its end of the stop pipe. */
static bool child_should_stop(const struct run *r)
{
    struct pollfd p = {.fd = r->stop[0], .events = POLLIN};

    return poll(&p, 1, 0) > 0;
}

static struct mq *child_open(const struct run *r)
{
    struct mq_config cfg = run_config(r);
    struct mq *q = NULL;

    if (mq_open(&cfg, &q) != ERR_OK)
        _exit(2);
    return q;
}

/* Publishes messages [first, first + n); a retry reuses the id. */
static void publisher_main(const struct run *r, int first, int n)
{
    struct mq *q = child_open(r);
    char id[32], body[32];

    for (int i = first; i < first + n; i++) {
        int rc = ERR_BUSY;
        snprintf(id, sizeof(id), "p-%d", i);
        snprintf(body, sizeof(body), "%d", i);
        for (int t = 0; t < TRIES_MAX && rc != ERR_OK; t++) {
            rc = mq_publish(q, r->topic, id, body, strlen(body), NULL);
            if (rc != ERR_OK && rc != ERR_BUSY)
                _exit(5);
        }
        if (rc != ERR_OK)
            _exit(6);
    }
    mq_close(q);
    _exit(0);
}

/* ERR_OK, ERR_CONFLICT (lease lost), or exits on anything else. */
static int child_ack(struct mq *q, const struct mq_message *m)
{
    for (int t = 0; t < TRIES_MAX; t++) {
        int rc = mq_ack(q, m);
        if (rc == ERR_OK || rc == ERR_CONFLICT)
            return rc;
        if (rc != ERR_BUSY)
            _exit(7);
    }
    _exit(8);
}

static void consumer_main(const struct run *r)
{
    struct mq *q = child_open(r);

    while (!child_should_stop(r)) {
        struct mq_batch *b = NULL;
        int rc = mq_consume(q, r->queue, 0, &b);

        if (rc == ERR_BUSY)
            continue;
        if (rc != ERR_OK)
            _exit(9);
        for (size_t i = 0; i < b->n; i++) {
            int idx = parse_index(&b->msgs[i]);
            if (child_ack(q, &b->msgs[i]) == ERR_OK)
                child_report(r, REC_ACK, idx, b->msgs[i].attempt);
        }
        if (b->n == 0)
            sleep_ms(2);
        mq_batch_free(b);
    }
    mq_close(q);
    _exit(0);
}

/* Claims one non-empty batch, says what it holds, and waits to be killed. */
static void victim_main(const struct run *r)
{
    struct mq *q = child_open(r);
    struct mq_batch *b = NULL;

    for (;;) {
        int rc = mq_consume(q, r->queue, 0, &b);
        if (rc != ERR_OK && rc != ERR_BUSY)
            _exit(10);
        if (rc == ERR_OK && b->n > 0)
            break;
        mq_batch_free(b);
        b = NULL;
        sleep_ms(1);
    }
    for (size_t i = 0; i < b->n; i++)
        child_report(r, REC_CLAIM, parse_index(&b->msgs[i]),
                     b->msgs[i].attempt);
    child_report(r, REC_HOLDING, -1, 0);
    for (;;)
        pause();
}

/* The parent ------------------------------------------------------------- */

static pid_t run_fork(struct run *r, void (*fn)(const struct run *, int, int),
                      int a, int b)
{
    pid_t pid = fork();

    if (pid == 0) {
        close(r->recs[0]);
        close(r->stop[1]);
        fn(r, a, b);
        _exit(1); /* fn never returns */
    }
    CHECK(pid > 0);
    r->pids[r->npids++] = pid;
    return pid;
}

static void as_publisher(const struct run *r, int first, int n)
{
    publisher_main(r, first, n);
}

static void as_consumer(const struct run *r, int a, int b)
{
    (void)a;
    (void)b;
    consumer_main(r);
}

static void as_victim(const struct run *r, int a, int b)
{
    (void)a;
    (void)b;
    victim_main(r);
}

/* Creates the folder and the queue, then closes the handle: no thread. */
static void run_setup(struct run *r, int lease_ms, int max_attempts)
{
    static unsigned runs;
    const char *patterns[] = {r->pattern};
    char ns[32] = "";
    struct mq_config cfg;
    struct mq *q = NULL;

    memset(r, 0, sizeof(*r));
    r->lease_ms = lease_ms;
    r->max_attempts = max_attempts;
    snprintf(r->dir, sizeof(r->dir), "/tmp/marquee-mqp-XXXXXX");
    CHECK(mkdtemp(r->dir) != NULL);
    snprintf(r->path, sizeof(r->path), "%s/queue.db", r->dir);
    /* On a shared broker, names of this run only: the directory's random
     * part is unique among the runs of this machine. */
    if (rabbit_url() != NULL)
        snprintf(ns, sizeof(ns), "p%ux%s.", ++runs,
                 r->dir + strlen("/tmp/marquee-mqp-"));
    for (char *c = ns; *c != '\0'; c++)
        *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
    snprintf(r->queue, sizeof(r->queue), "%snotify", ns);
    snprintf(r->topic, sizeof(r->topic), "%sbooking.confirmed", ns);
    snprintf(r->pattern, sizeof(r->pattern), "%sbooking.*", ns);
    cfg = run_config(r);
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    CHECK_INT(mq_declare(q, r->queue, patterns, 1), ERR_OK);
    mq_close(q);
    CHECK_INT(pipe(r->recs), 0);
    CHECK_INT(pipe(r->stop), 0);
}

static void run_note(struct run *r, const struct rec *rec)
{
    if (rec->kind == REC_HOLDING)
        return;
    CHECK(rec->idx >= 0 && rec->idx < MSGS_TOTAL);
    if (rec->attempt > r->max_attempt[rec->idx])
        r->max_attempt[rec->idx] = rec->attempt;
    if (rec->kind == REC_CLAIM) {
        r->victim_held[rec->idx] = true;
        r->nvictim_held++;
        return;
    }
    r->acks[rec->idx]++;
    r->acked++;
}

/*
 * Reads records until stop(r) says so or the wait ends.  Returns the
 * last record's kind (0 when none came).
 */
static int run_read(struct run *r, bool (*stop)(const struct run *))
{
    int64_t deadline = now_ms() + WAIT_MS_MAX;
    int last = 0;

    while (!stop(r)) {
        struct pollfd p = {.fd = r->recs[0], .events = POLLIN};
        struct rec rec;

        CHECK(now_ms() < deadline);
        if (poll(&p, 1, 100) <= 0)
            continue;
        CHECK_INT(read(r->recs[0], &rec, sizeof(rec)), sizeof(rec));
        run_note(r, &rec);
        last = rec.kind;
        if (last == REC_HOLDING)
            break;
    }
    return last;
}

static bool all_acked(const struct run *r)
{
    return r->acked >= MSGS_TOTAL;
}

static bool never(const struct run *r)
{
    (void)r;
    return false;
}

/* Stops the consumers, reaps every child and checks how each ended. */
static void run_finish(struct run *r, pid_t victim)
{
    close(r->stop[1]);
    for (size_t i = 0; i < r->npids; i++) {
        int status = 0;
        CHECK_INT(waitpid(r->pids[i], &status, 0), r->pids[i]);
        if (r->pids[i] == victim) {
            CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            continue;
        }
        CHECK(WIFEXITED(status));
        CHECK_INT(WEXITSTATUS(status), 0);
    }
    close(r->recs[0]);
    close(r->recs[1]);
    close(r->stop[0]);
}

static void run_remove(struct run *r);

static void run_check_empty_and_remove(struct run *r)
{
    struct mq_config cfg = run_config(r);
    struct mq_depth d;
    struct mq *q = NULL;

    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    CHECK_INT(mq_depth(q, r->queue, &d), ERR_OK);
    mq_close(q);
    CHECK_INT(d.ready, 0);
    CHECK_INT(d.leased, 0);
    CHECK_INT(d.dead, 0);
    run_remove(r);
}

/* Removes the run's folder and its queue files. */
static void run_remove(struct run *r)
{
    DIR *dir;
    struct dirent *e;

    dir = opendir(r->dir);
    CHECK(dir != NULL);
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] != '.')
            CHECK_INT(unlinkat(dirfd(dir), e->d_name, 0), 0);
    }
    closedir(dir);
    CHECK_INT(rmdir(r->dir), 0);
}

static void fork_publishers(struct run *r)
{
    int share = MSGS_TOTAL / PUBLISHERS;

    for (int i = 0; i < PUBLISHERS; i++)
        run_fork(r, as_publisher, i * share, share);
}

TEST(test_procs_each_message_acked_once)
{
    static struct run r;

    /* A lease no run reaches: nothing may be delivered twice. */
    run_setup(&r, 120000, 10);
    for (int i = 0; i < CONSUMERS; i++)
        run_fork(&r, as_consumer, 0, 0);
    fork_publishers(&r);

    run_read(&r, all_acked);
    run_finish(&r, 0);
    for (int i = 0; i < MSGS_TOTAL; i++) {
        CHECK_INT(r.acks[i], 1);
        CHECK_INT(r.max_attempt[i], 1);
    }
    run_check_empty_and_remove(&r);
}

TEST(test_procs_killed_consumer_loses_nothing)
{
    static struct run r;
    pid_t victim;

    run_setup(&r, KILL_LEASE_MS, 10);
    victim = run_fork(&r, as_victim, 0, 0);
    fork_publishers(&r);

    /* The victim dies holding a batch it never acks. */
    CHECK_INT(run_read(&r, never), REC_HOLDING);
    CHECK(r.nvictim_held > 0);
    CHECK_INT(kill(victim, SIGKILL), 0);

    for (int i = 0; i < CONSUMERS; i++)
        run_fork(&r, as_consumer, 0, 0);
    run_read(&r, all_acked);
    run_finish(&r, victim);

    for (int i = 0; i < MSGS_TOTAL; i++) {
        CHECK_INT(r.acks[i], 1);
        if (r.victim_held[i])
            CHECK(r.max_attempt[i] >= 2);
    }
    run_check_empty_and_remove(&r);
}

/* Publishes one message from the parent, with a handle closed again. */
static void parent_publish(const struct run *r, const char *id,
                           const char *body)
{
    struct mq_config cfg = run_config(r);
    struct mq *q = NULL;
    int stored = 0;

    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    CHECK_INT(mq_publish(q, r->topic, id, body, strlen(body), &stored), ERR_OK);
    CHECK_INT(stored, 1);
    mq_close(q);
}

/*
 * A message that kills its consumer: each victim claims it, says so and is
 * killed with SIGKILL, CRASH_ATTEMPTS times.  Each sees the next attempt
 * number, exactly; then the message is dead, and no claim gets it again.
 * On RabbitMQ this is the quorum queue's x-delivery-limit at work.
 */
TEST(test_procs_crash_loop_dead_letters)
{
    static struct run r;
    struct mq_config cfg;
    struct mq_batch *b = NULL;
    struct mq_depth d = {0};
    struct mq *q = NULL;
    int64_t deadline;

    run_setup(&r, KILL_LEASE_MS, CRASH_ATTEMPTS);
    parent_publish(&r, "poison", "0");

    for (int attempt = 1; attempt <= CRASH_ATTEMPTS; attempt++) {
        int status = 0;
        pid_t victim = run_fork(&r, as_victim, 0, 0);

        CHECK_INT(run_read(&r, never), REC_HOLDING);
        CHECK_INT(r.max_attempt[0], attempt);
        CHECK_INT(kill(victim, SIGKILL), 0);
        CHECK_INT(waitpid(victim, &status, 0), victim);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        r.npids--;
    }

    /* Claims until the message is seen dead (SQLite moves it at the first
     * claim after the last lease; the broker on its own): never
     * delivered again. */
    cfg = run_config(&r);
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    deadline = now_ms() + WAIT_MS_MAX;
    while (d.dead == 0) {
        CHECK(now_ms() < deadline);
        CHECK_INT(mq_consume(q, r.queue, 0, &b), ERR_OK);
        CHECK_INT(b->n, 0);
        mq_batch_free(b);
        CHECK_INT(mq_depth(q, r.queue, &d), ERR_OK);
        if (d.dead == 0)
            sleep_ms(20);
    }
    CHECK_INT(d.ready, 0);
    CHECK_INT(mq_dead_list(q, r.queue, 0, 10, &b), ERR_OK);
    CHECK_INT(b->n, 1);
    CHECK_STR(b->msgs[0].id, "poison");
    CHECK_STR(b->msgs[0].error, "lease expired");
    CHECK_INT(b->msgs[0].attempt, CRASH_ATTEMPTS);
    mq_batch_free(b);
    mq_close(q);

    run_finish(&r, 0);
    run_remove(&r);
}

/* True once path exists. */
static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Publishes id until the broker confirms it; false past the deadline. */
static bool publish_confirmed(struct mq *q, const struct run *r, int i,
                              int64_t deadline, int *failures)
{
    char id[32], body[32];

    snprintf(id, sizeof(id), "r-%d", i);
    snprintf(body, sizeof(body), "%d", i);
    while (now_ms() < deadline) {
        int rc = mq_publish(q, r->topic, id, body, strlen(body), NULL);
        if (rc == ERR_OK)
            return true;
        /* The broker is away: the handle reconnects with its backoff. */
        CHECK(rc == ERR_IO || rc == ERR_TIMEOUT);
        (*failures)++;
        sleep_ms(20);
    }
    return false;
}

/* Creates the empty file dir/name: a signal to the harness. */
static void signal_file(const char *dir, const char *name)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fclose(f);
}

static bool signal_seen(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return file_exists(path);
}

/*
 * Publishes a stream while the harness takes the broker away twice: it
 * writes "stop" in MARQUEE_MQ_RESTART_DIR and the harness stops the
 * broker and starts it again ("stop.done"), then "kill" and the harness
 * kills it with SIGKILL and starts it again ("kill.done").  Each phase
 * goes on until a publish failed during it and the broker is back.
 * Every message the broker confirmed must then be delivered.  A message
 * claimed before the outages cannot be acked after them (its lease went
 * with the connection: ERR_CONFLICT), and is delivered again.  Only
 * under the harness (tests/integration/test_mq_rabbitmq.py); elsewhere it
 * checks nothing.
 */
TEST(test_procs_publish_through_broker_restart)
{
    static const char *const phases[] = {"stop", "kill"};
    static struct run r;
    static bool seen[RESTART_MSGS];
    const char *dir = getenv("MARQUEE_MQ_RESTART_DIR");
    struct mq_config cfg;
    struct mq *q = NULL;
    struct mq_batch *held = NULL;
    int64_t deadline = now_ms() + RESTART_WAIT_MS;
    int failures = 0, confirmed = 0, delivered = 0;

    if (dir == NULL || rabbit_url() == NULL) {
        printf("     (skipped: needs MARQUEE_MQ_URL and "
               "MARQUEE_MQ_RESTART_DIR)\n");
        return;
    }
    run_setup(&r, 120000, 10);
    cfg = run_config(&r);
    CHECK_INT(mq_open(&cfg, &q), ERR_OK);
    CHECK(publish_confirmed(q, &r, confirmed++, deadline, &failures));
    CHECK_INT(mq_consume(q, r.queue, 1, &held), ERR_OK);
    CHECK_INT(held->n, 1);

    for (size_t p = 0; p < sizeof(phases) / sizeof(phases[0]); p++) {
        char done[16];
        int failed_before = failures, after = 0;

        snprintf(done, sizeof(done), "%s.done", phases[p]);
        for (int i = 0; i < 100; i++, confirmed++)
            CHECK(publish_confirmed(q, &r, confirmed, deadline, &failures));
        signal_file(dir, phases[p]);
        /* Until the outage was seen and the broker is back, and then 20
         * more: publishes retried through it, with their ids. */
        while (after < 20) {
            CHECK(confirmed < RESTART_MSGS);
            CHECK(publish_confirmed(q, &r, confirmed, deadline, &failures));
            confirmed++;
            if (failures > failed_before && signal_seen(dir, done))
                after++;
            else
                sleep_ms(2);
        }
    }

    CHECK_INT(mq_ack(q, &held->msgs[0]), ERR_CONFLICT);
    mq_batch_free(held);

    /* Every confirmed message is there (a retried one may be twice). */
    while (delivered < confirmed) {
        struct mq_batch *b = NULL;
        CHECK(now_ms() < deadline);
        int rc = mq_consume(q, r.queue, 0, &b);
        if (rc != ERR_OK) {
            CHECK(rc == ERR_IO || rc == ERR_TIMEOUT);
            sleep_ms(20);
            continue;
        }
        for (size_t i = 0; i < b->n; i++) {
            int idx = (int)strtol((const char *)b->msgs[i].body, NULL, 10);
            CHECK(idx >= 0 && idx < confirmed);
            if (!seen[idx])
                delivered++;
            seen[idx] = true;
            CHECK_INT(mq_ack(q, &b->msgs[i]), ERR_OK);
        }
        if (b->n == 0)
            sleep_ms(5);
        mq_batch_free(b);
    }
    printf("     confirmed=%d publish_failures=%d\n", confirmed, failures);
    mq_close(q);
    run_remove(&r);
}

HARNESS_MAIN(T(test_procs_each_message_acked_once),
             T(test_procs_killed_consumer_loses_nothing),
             T(test_procs_crash_loop_dead_letters),
             T(test_procs_publish_through_broker_restart))
