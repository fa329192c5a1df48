/*
 * catalog.h - the catalog service: cities, cinemas, screens and their seat
 * layouts, movies, shows and prices.  `marquee catalog` runs it.
 */
#ifndef MARQUEE_SERVICES_CATALOG_H
#define MARQUEE_SERVICES_CATALOG_H

/* Runs the service until SIGTERM; returns the process exit code. */
int catalog_main(int argc, char **argv);

#endif
