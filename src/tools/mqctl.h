/*
 * mqctl.h - `marquee mq`: the operator's tool over the message queue.
 *
 *   marquee mq publish --topic=T --id=ID (--body=TEXT | --body-file=F)
 *   marquee mq depth QUEUE
 *   marquee mq dead QUEUE [--after=TAG] [--limit=N]
 *   marquee mq requeue QUEUE TAG
 *   marquee mq declare QUEUE PATTERN...
 *
 * It opens the queue with the same mq.* keys as the services
 * (--mq.path=..., MARQUEE_MQ_PATH, a --config file), does one thing and
 * prints its result on stdout as JSON (one object per line; `dead` prints
 * one line per dead letter).  Exit status: 0 done, 1 the queue refused or
 * failed, 2 misuse (with the usage on stderr).
 */
#ifndef MARQUEE_TOOLS_MQCTL_H
#define MARQUEE_TOOLS_MQCTL_H

/* Named limits. */
#define MQCTL_ARGS_MAX   64  /* command-line words */
#define MQCTL_DEAD_LIMIT 100 /* dead letters listed by default */

/* argv[0] is "mq"; returns the exit status. */
int mqctl_main(int argc, char **argv);

#endif
