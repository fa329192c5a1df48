/*
 * payment.h - the payment service: charges and refunds against a card
 * provider, with an Idempotency-Key per attempt.  It ships a simulated
 * provider whose latency and failures are dialled at run time.
 * `marquee payment` runs it.
 */
#ifndef MARQUEE_SERVICES_PAYMENT_H
#define MARQUEE_SERVICES_PAYMENT_H

/* Runs the service until SIGTERM; returns the process exit code. */
int payment_main(int argc, char **argv);

#endif
