/*
 * err.h - the one error vocabulary of marquee.
 *
 * Every function that can fail returns an int: 0 (ERR_OK) on success and one
 * of the negative codes below on failure.  Names and messages come from the
 * single ERR_TABLE, so adding a code is a one-line change.
 */
#ifndef MARQUEE_BASE_ERR_H
#define MARQUEE_BASE_ERR_H

/* X(name, value, message) */
#define ERR_TABLE(X)                                                           \
    X(ERR_OK, 0, "success")                                                    \
    X(ERR_NOMEM, -1, "out of memory")                                          \
    X(ERR_IO, -2, "input/output error")                                        \
    X(ERR_INVALID, -3, "invalid argument")                                     \
    X(ERR_NOTFOUND, -4, "not found")                                           \
    X(ERR_CONFLICT, -5, "conflicts with the current state")                    \
    X(ERR_BUSY, -6, "resource busy")                                           \
    X(ERR_TIMEOUT, -7, "timed out")                                            \
    X(ERR_TOOBIG, -8, "too large")                                             \
    X(ERR_FULL, -9, "queue or table full")                                     \
    X(ERR_CLOSED, -10, "closed or shutting down")                              \
    X(ERR_DB, -11, "database error")                                           \
    X(ERR_CORRUPT, -12, "data is corrupt")                                     \
    X(ERR_CONFIG, -13, "bad configuration")                                    \
    X(ERR_AGAIN, -14, "try again")                                             \
    X(ERR_DENIED, -15, "permission denied")                                    \
    X(ERR_SYS, -16, "operating system call failed")

enum err_code {
#define ERR_ENUM_ENTRY(name, value, message) name = value,
    ERR_TABLE(ERR_ENUM_ENTRY)
#undef ERR_ENUM_ENTRY
};

/* The constant name of a code ("ERR_NOTFOUND"); "ERR_UNKNOWN" for others. */
const char *err_name(int code);

/* A short lower-case message for a code; never NULL. */
const char *err_msg(int code);

#endif
