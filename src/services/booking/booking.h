/*
 * booking.h - the booking service: the seat inventory of every show, and
 * holds on seats that can never collide.  `marquee booking` runs it.
 */
#ifndef MARQUEE_SERVICES_BOOKING_H
#define MARQUEE_SERVICES_BOOKING_H

/*
 * booking.catalog_url names at most this many catalog instances, each URL
 * shorter than BOOKING_CATALOG_URL_LEN; a longer list stops the start.
 */
#define BOOKING_CATALOG_URLS_MAX 8
#define BOOKING_CATALOG_URL_LEN  128

/* Runs the service until SIGTERM; returns the process exit code. */
int booking_main(int argc, char **argv);

#endif
