/*
 * upstream.c - the asynchronous HTTP/1.1 upstream client (upstream.h).
 */
#include "http/internal.h"

void http_upstream_thread_setup(struct http_thread *t)
{
    (void)t;
}

void http_upstream_thread_stop(struct http_thread *t)
{
    (void)t;
}
