/*
 * control.h - the roles of the `marquee` command that run the platform
 * rather than serve it: `marquee up` starts and supervises every role on
 * one machine, scales the ones that scale and keeps the gateway's
 * registry; `marquee status` shows what up runs.  docs/internals/control.md
 * describes both.
 */
#ifndef MARQUEE_CONTROL_CONTROL_H
#define MARQUEE_CONTROL_CONTROL_H

/* `marquee up [topology.json] [--key=value ...]`; the process's exit
 * status: 0 after a clean stop, 1 when it could not start, 2 after --help. */
int up_main(int argc, char **argv);

/* `marquee status [--status.url=http://127.0.0.1:8090]`: 0, or 1 when up
 * does not answer. */
int status_main(int argc, char **argv);

#endif
