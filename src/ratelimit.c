/*
 * ratelimit.c - a burst of events per fixed window, the rest counted.
 *
 * A fixed window, not a token bucket: "N lines held back in the last
 * second" then reads as one number per window, and the lines shown plus
 * the numbers said add up to every event.
 */
#include "ratelimit.h"

void
ratelimit_init(struct ratelimit *rl, unsigned burst, double interval)
{
	rl->interval = interval;
	rl->burst = burst;
	rl->start = -1;
	rl->passed = 0;
	rl->held = 0;
}

double
ratelimit_window_end(const struct ratelimit *rl)
{
	return rl->start + rl->interval;
}

unsigned
ratelimit_end(struct ratelimit *rl, double now)
{
	unsigned held = rl->held;

	if (rl->start < 0 || now < ratelimit_window_end(rl))
		return 0;
	rl->start = -1;
	rl->passed = 0;
	rl->held = 0;
	return held;
}

int
ratelimit_pass(struct ratelimit *rl, double now, unsigned *ended)
{
	*ended = ratelimit_end(rl, now);
	if (rl->start < 0)
		rl->start = now;
	if (rl->passed < rl->burst) {
		rl->passed++;
		return 1;
	}
	rl->held++;
	return 0;
}
