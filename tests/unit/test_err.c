/*
 * test_err.c - the error table: values, names and messages.
 */
#include "harness.h"

#include <stddef.h>

#include "base/err.h"

struct err_entry {
    int value;
    const char *name;
    const char *message;
};

/* The table as the header declares it, to compare err.c against. */
static const struct err_entry entries[] = {
#define ERR_TEST_ENTRY(name, value, message) {name, #name, message},
    ERR_TABLE(ERR_TEST_ENTRY)
#undef ERR_TEST_ENTRY
};

#define NENTRIES (sizeof(entries) / sizeof(entries[0]))

TEST(err_ok_is_zero)
{
    CHECK_INT(ERR_OK, 0);
    CHECK_INT(entries[0].value, 0);
    CHECK_STR(err_name(0), "ERR_OK");
    CHECK_STR(err_msg(0), "success");
}

TEST(err_failures_are_negative)
{
    CHECK(NENTRIES > 1);
    for (size_t i = 0; i < NENTRIES; i++) {
        if (entries[i].value == ERR_OK)
            continue;
        CHECK(entries[i].value < 0);
    }
}

TEST(err_values_are_distinct)
{
    for (size_t i = 0; i < NENTRIES; i++)
        for (size_t j = i + 1; j < NENTRIES; j++)
            CHECK(entries[i].value != entries[j].value);
}

TEST(err_name_of_each_code)
{
    for (size_t i = 0; i < NENTRIES; i++)
        CHECK_STR(err_name(entries[i].value), entries[i].name);
    CHECK_STR(err_name(ERR_NOTFOUND), "ERR_NOTFOUND");
    CHECK_STR(err_name(ERR_SYS), "ERR_SYS");
}

TEST(err_msg_of_each_code)
{
    for (size_t i = 0; i < NENTRIES; i++) {
        const char *m = err_msg(entries[i].value);

        CHECK_STR(m, entries[i].message);
        CHECK(m[0] != '\0');
    }
    CHECK_STR(err_msg(ERR_NOMEM), "out of memory");
    CHECK_STR(err_msg(ERR_TIMEOUT), "timed out");
}

TEST(err_names_and_messages_are_distinct)
{
    for (size_t i = 0; i < NENTRIES; i++) {
        for (size_t j = i + 1; j < NENTRIES; j++) {
            CHECK(strcmp(err_name(entries[i].value),
                         err_name(entries[j].value)) != 0);
            CHECK(strcmp(err_msg(entries[i].value),
                         err_msg(entries[j].value)) != 0);
        }
    }
}

TEST(err_unknown_code)
{
    static const int unknown[] = {1, 42, -17, -1000, INT32_MIN, INT32_MAX};

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        CHECK_STR(err_name(unknown[i]), "ERR_UNKNOWN");
        CHECK(err_msg(unknown[i]) != NULL);
        CHECK_STR(err_msg(unknown[i]), "unknown error");
    }
}

TEST(err_code_one_below_the_last_is_unknown)
{
    int lowest = 0;

    for (size_t i = 0; i < NENTRIES; i++)
        if (entries[i].value < lowest)
            lowest = entries[i].value;
    CHECK(strcmp(err_name(lowest), "ERR_UNKNOWN") != 0);
    CHECK_STR(err_name(lowest - 1), "ERR_UNKNOWN");
    CHECK_STR(err_msg(lowest - 1), "unknown error");
}

HARNESS_MAIN(T(err_ok_is_zero), T(err_failures_are_negative),
             T(err_values_are_distinct), T(err_name_of_each_code),
             T(err_msg_of_each_code), T(err_names_and_messages_are_distinct),
             T(err_unknown_code), T(err_code_one_below_the_last_is_unknown))
