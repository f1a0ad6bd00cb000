/* A worker's stdout and stderr, captured into the master's log. */
#ifndef SN_OUTPUT_H
#define SN_OUTPUT_H

#include <syslog.h>

#define OUTPUT_LINE_MAX 1024     /* bytes of a line kept; the rest is cut */
#define OUTPUT_PRI      LOG_INFO /* what a worker writes is logged at */

struct output;
struct worker;

struct output *output_open(struct worker *, int fd);
void           output_exited(struct output *);
void           output_close(struct output *);

#endif
