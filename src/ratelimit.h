/*
 * ratelimit.h - at most a burst of events per window, and a count of the
 * ones held back, for log lines a client can provoke at will.  Pure: the
 * caller gives the time and owns the struct (one per worker, no lock).
 */
#ifndef NETTCPD_RATELIMIT_H
#define NETTCPD_RATELIMIT_H

struct ratelimit {
	double interval;        /* the window's length, seconds */
	unsigned burst;         /* events passed in one window */
	double start;           /* when the current window began; < 0: none yet */
	unsigned passed;        /* events passed in it */
	unsigned held;          /* events held back in it */
};

/* A limiter of burst events per interval seconds, before its first event. */
void ratelimit_init(struct ratelimit *rl, unsigned burst, double interval);

/*
 * One event at now: 1 to pass it, 0 to hold it back (counted).  An event
 * after the window ends starts a new one; *ended is then how many the old
 * window held back (say so before this event's line), else 0.
 */
int ratelimit_pass(struct ratelimit *rl, double now, unsigned *ended);

/* When the current window ends (a timer set there reports its count). */
double ratelimit_window_end(const struct ratelimit *rl);

/* At or after the window's end: how many it held back, and the count starts
 * again from 0 (the next event opens a new window).  Before it: 0. */
unsigned ratelimit_end(struct ratelimit *rl, double now);

#endif
