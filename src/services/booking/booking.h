/*
 * booking.h - the booking service: the seat inventory of every show, and
 * holds on seats that can never collide.  `marquee booking` runs it.
 */
#ifndef MARQUEE_SERVICES_BOOKING_H
#define MARQUEE_SERVICES_BOOKING_H

/* Runs the service until SIGTERM; returns the process exit code. */
int booking_main(int argc, char **argv);

#endif
