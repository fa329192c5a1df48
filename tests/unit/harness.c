#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"

jmp_buf harness_jmp;
static char failure[1024];
/* File-level so longjmp cannot clobber them. */
static size_t passed, failed;

void harness_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(failure, sizeof(failure), "%s:%d: ", file, line);

    va_start(ap, fmt);
    vsnprintf(failure + n, sizeof(failure) - (size_t)n, fmt, ap);
    va_end(ap);
    longjmp(harness_jmp, 1);
}

int harness_run(const struct harness_test *tests, size_t n)
{
    /* Tests that exercise failure paths log; keep the report readable. */
    if (getenv("MARQUEE_TEST_LOG") == NULL)
        log_set_level(LOG_OFF);
    for (size_t i = 0; i < n; i++) {
        if (setjmp(harness_jmp) == 0) {
            tests[i].fn();
            printf("ok   %s\n", tests[i].name);
            passed++;
        } else {
            printf("FAIL %s: %s\n", tests[i].name, failure);
            failed++;
        }
        fflush(stdout);
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    /* A sanitizer may end the process at exit: the summary must be out. */
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}
