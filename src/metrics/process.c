/*
 * process.c - the process_* family, read from /proc at scrape time, with
 * the names Prometheus' own client libraries use, so that stock dashboards
 * and the alert rules of deploy/prometheus/ read them unchanged.
 */
#include "metrics/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/err.h"

#define STAT_LINE_MAX 1024

struct proc_stat {
    double cpu_seconds;
    double start_time_seconds;
    double virtual_bytes;
    double resident_bytes;
};

/* The boot time from /proc/stat, in seconds since the epoch; 0 if unknown. */
static double boot_time_seconds(void)
{
    char line[256];
    double btime = 0;
    FILE *f = fopen("/proc/stat", "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    }
    fclose(f);
    return btime;
}

static int read_proc_stat(struct proc_stat *out)
{
    char line[STAT_LINE_MAX];
    FILE *f = fopen("/proc/self/stat", "r");

    if (f == NULL)
        return ERR_SYS;
    char *got = fgets(line, sizeof(line), f);
    fclose(f);
    if (got == NULL)
        return ERR_IO;

    /* The command name may hold spaces and parentheses: fields count from
     * the last ')'. Field 3 (state) comes right after it. */
    char *p = strrchr(line, ')');
    if (p == NULL)
        return ERR_CORRUPT;
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    int n = sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                   "%llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
                   &utime, &stime, &start, &vsize, &rss);
    if (n != 5)
        return ERR_CORRUPT;

    double ticks = (double)sysconf(_SC_CLK_TCK);
    double page = (double)sysconf(_SC_PAGESIZE);
    out->cpu_seconds = (double)(utime + stime) / ticks;
    out->start_time_seconds = boot_time_seconds() + (double)start / ticks;
    out->virtual_bytes = (double)vsize;
    out->resident_bytes = (double)rss * page;
    return ERR_OK;
}

/* Open descriptors, not counting the one that reads the directory. */
static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    double n = 0;
    struct dirent *e;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static void collect_process(struct metrics_out *out, void *arg)
{
    struct proc_stat st;
    struct rlimit rl;

    (void)arg;
    if (read_proc_stat(&st) == ERR_OK) {
        metrics_out_family(out, "process_cpu_seconds_total", METRICS_COUNTER,
                           "User and system CPU time spent, in seconds.");
        metrics_out_sample(out, "process_cpu_seconds_total", NULL,
                           st.cpu_seconds);
        metrics_out_family(out, "process_resident_memory_bytes", METRICS_GAUGE,
                           "Resident memory size in bytes.");
        metrics_out_sample(out, "process_resident_memory_bytes", NULL,
                           st.resident_bytes);
        metrics_out_family(out, "process_virtual_memory_bytes", METRICS_GAUGE,
                           "Virtual memory size in bytes.");
        metrics_out_sample(out, "process_virtual_memory_bytes", NULL,
                           st.virtual_bytes);
        metrics_out_family(out, "process_start_time_seconds", METRICS_GAUGE,
                           "Start time of the process since the epoch, in "
                           "seconds.");
        metrics_out_sample(out, "process_start_time_seconds", NULL,
                           st.start_time_seconds);
    }
    double fds = open_fds();
    if (fds >= 0) {
        metrics_out_family(out, "process_open_fds", METRICS_GAUGE,
                           "Open file descriptors.");
        metrics_out_sample(out, "process_open_fds", NULL, fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        metrics_out_family(out, "process_max_fds", METRICS_GAUGE,
                           "The limit on open file descriptors.");
        metrics_out_sample(out, "process_max_fds", NULL,
                           rl.rlim_cur == RLIM_INFINITY ? -1
                                                        : (double)rl.rlim_cur);
    }
}

int metrics_add_process_collector(struct metrics *m)
{
    return metrics_add_collector(m, collect_process, NULL);
}
