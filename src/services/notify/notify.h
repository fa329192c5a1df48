/*
 * notify.h - the notify service: e-tickets and customer messages, made
 * from the booking events it consumes from the message queue.
 * `marquee notify` runs it.
 */
#ifndef MARQUEE_SERVICES_NOTIFY_H
#define MARQUEE_SERVICES_NOTIFY_H

/* Runs the service until SIGTERM; returns the process exit code. */
int notify_main(int argc, char **argv);

#endif
