/*
 * harness.h - the unit test harness.
 *
 * A test file defines test functions with TEST(name) and lists them in
 * HARNESS_MAIN(...).  A failed CHECK records the file, line and expression
 * and ends that test; the binary prints one line per test and ends with
 * "N passed, N failed", exiting 1 if anything failed.
 */
#ifndef MARQUEE_TESTS_HARNESS_H
#define MARQUEE_TESTS_HARNESS_H

#include <setjmp.h>
#include <stdint.h>
#include <string.h>

struct harness_test {
    const char *name;
    void (*fn)(void);
};

extern jmp_buf harness_jmp;
void harness_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
int harness_run(const struct harness_test *tests, size_t n);

#define TEST(name) static void name(void)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            harness_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);              \
    } while (0)

#define CHECK_INT(a, b)                                                        \
    do {                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
        if (check_a_ != check_b_)                                              \
            harness_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, \
                         check_a_, check_b_);                                  \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *check_a_ = (a), *check_b_ = (b);                           \
        if (check_a_ == NULL || check_b_ == NULL ||                            \
            strcmp(check_a_, check_b_) != 0)                                   \
            harness_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, \
                         #b, check_a_ ? check_a_ : "(null)",                   \
                         check_b_ ? check_b_ : "(null)");                      \
    } while (0)

#define HARNESS_MAIN(...)                                                      \
    int main(void)                                                             \
    {                                                                          \
        static const struct harness_test tests[] = {__VA_ARGS__};              \
        return harness_run(tests, sizeof(tests) / sizeof(tests[0]));           \
    }

#define T(fn)                                                                  \
    {                                                                          \
#fn, fn                                                                \
    }

#endif
