/*
 * gateway.h - the gateway, the platform's only public door: routes each
 * request to an instance of an upstream pool (health checks, outlier
 * ejection, a circuit breaker per pool, retries under a budget, deadlines
 * passed on), serves the web pages, and lets pools change at run time.
 * `marquee gateway` runs it; docs/internals/gateway.md has the semantics.
 */
#ifndef MARQUEE_GATEWAY_GATEWAY_H
#define MARQUEE_GATEWAY_GATEWAY_H

/* Runs the gateway until SIGTERM; returns the process exit code. */
int gateway_main(int argc, char **argv);

#endif
